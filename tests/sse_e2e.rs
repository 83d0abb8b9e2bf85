//! SSE `/v1/metrics/stream` against the real stack: `metric` events with the
//! caller's figures, `heartbeat`s on their interval, and `Last-Event-ID`
//! resuming the numbering.

mod common;

use std::time::{Duration, Instant};

use common::Deployment;
use serde_json::{json, Value};

/// One SSE frame: (event, id, data).
type Frame = (String, u64, Value);

/// Reads frames until `enough` holds for what was read (10 s at most).
async fn read_until(
    d: &Deployment,
    key: &str,
    last_event_id: Option<u64>,
    enough: impl Fn(&[Frame]) -> bool,
) -> Vec<Frame> {
    let mut req = d
        .client
        .get(d.url("/v1/metrics/stream"))
        .header("x-api-key", key);
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id.to_string());
    }
    let mut r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let (mut buf, mut frames) = (String::new(), vec![]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !enough(&frames) {
        assert!(Instant::now() < deadline, "not enough frames: {frames:?}");
        let chunk = tokio::time::timeout(Duration::from_secs(5), r.chunk())
            .await
            .unwrap()
            .unwrap()
            .expect("stream open");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}:")))
                    .map(|v| v.trim().to_string())
            };
            if let (Some(event), Some(id), Some(data)) =
                (field("event"), field("id"), field("data"))
            {
                frames.push((
                    event,
                    id.parse().unwrap(),
                    serde_json::from_str(&data).unwrap(),
                ));
            }
        }
    }
    frames
}

fn metric(frames: &[Frame], name: &str) -> Option<Value> {
    frames
        .iter()
        .rev()
        .find(|(e, _, d)| e == "metric" && d["name"] == name)
        .map(|(_, _, d)| d["value"].clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_stream_with_heartbeats_and_resume() {
    let d = Deployment::new("sse").await;
    let env = [
        ("AGENTBANK_SSE_METRICS_MS", "300"),
        ("AGENTBANK_SSE_HEARTBEAT_MS", "700"),
    ];
    d.start_with_env("dev", &["dev"], &env);
    d.wait_healthy().await;
    let (user, key) = d.sign_up("watcher").await;
    d.create_agent(&user, &key, json!({"balance": "5.25"}))
        .await;
    let r = d
        .client
        .get(d.url("/v1/metrics/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let frames = read_until(&d, &key, None, |f| {
        f.iter().any(|(e, _, _)| e == "heartbeat") && metric(f, "savings_total").is_some()
    })
    .await;
    assert_eq!(metric(&frames, "agents_total"), Some(json!(1)));
    assert_eq!(metric(&frames, "balance_total"), Some(json!(5.25)));
    assert_eq!(metric(&frames, "payments_sent_total"), Some(json!(0)));
    let beat = frames.iter().find(|(e, _, _)| e == "heartbeat").unwrap();
    assert!(beat.2["timestamp"].is_string());
    let ids: Vec<u64> = frames.iter().map(|(_, id, _)| *id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");

    let last = *ids.last().unwrap();
    let resumed = read_until(&d, &key, Some(last), |f| !f.is_empty()).await;
    assert_eq!(
        resumed[0].1,
        last + 1,
        "numbering continues after Last-Event-ID"
    );
    assert_eq!(resumed[0].0, "metric", "a fresh snapshot at once");
}

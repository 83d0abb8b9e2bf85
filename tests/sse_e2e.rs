//! SSE `/v1/metrics/stream` against the real stack: `metric` events with the
//! caller's figures, `heartbeat`s on their interval, and `Last-Event-ID`
//! resuming the numbering.

mod common;

use common::{metric, read_until, Deployment};
use serde_json::json;

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

//! Bounds on what a client can hold open, against the real stack: WebSocket
//! sessions and SSE streams per user (a third session is closed with 1013, a
//! second stream answered 429), freed when a client goes, and one user's
//! sessions never count against another's.

mod common;

use std::time::Duration;

use common::{eventually, Deployment};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

/// Connects and authenticates; the first answer (`auth.ok` or a close).
async fn session(d: &Deployment, key: &str) -> (common::Ws, Message) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/events", d.http))
        .await
        .unwrap();
    ws.send(Message::Text(
        json!({"type": "auth", "token": key}).to_string().into(),
    ))
    .await
    .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    (ws, first)
}

fn is_ok(m: &Message) -> bool {
    matches!(m, Message::Text(t) if serde_json::from_str::<Value>(t).unwrap()["type"] == "auth.ok")
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_and_streams_are_bounded_per_user_and_freed() {
    let d = Deployment::new("sessions").await;
    d.set_env(&[
        ("AGENTBANK_WS_SESSIONS_PER_USER", "2"),
        ("AGENTBANK_SSE_STREAMS_PER_USER", "1"),
    ]);
    d.start_dev().await;
    let (_, key) = d.sign_up("sam").await;
    let (_, other) = d.sign_up("sue").await;

    let (mut first, m) = session(&d, &key).await;
    assert!(is_ok(&m), "{m:?}");
    let (_second, m) = session(&d, &key).await;
    assert!(is_ok(&m), "{m:?}");
    let (_, m) = session(&d, &key).await;
    let Message::Close(Some(frame)) = m else {
        panic!("a third session is turned away: {m:?}")
    };
    assert_eq!(frame.code, CloseCode::Again, "1013: try again later");
    let (_theirs, m) = session(&d, &other).await;
    assert!(is_ok(&m), "another user is not counted");
    first.close(None).await.unwrap();
    eventually("a freed place", || async {
        let (_ws, m) = session(&d, &key).await;
        is_ok(&m).then_some(())
    })
    .await;

    let stream = |k: String| {
        let d = &d;
        async move {
            d.client
                .get(d.url("/v1/metrics/stream"))
                .header("x-api-key", k)
                .send()
                .await
                .unwrap()
        }
    };
    let open = stream(key.clone()).await;
    assert_eq!(open.status(), 200);
    let refused = stream(key.clone()).await;
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("at most 1"),
        "{body}"
    );
    assert_eq!(
        stream(other.clone()).await.status(),
        200,
        "another user is not counted"
    );
    drop(open);
    eventually("a freed stream", || async {
        let s = stream(key.clone()).await;
        (s.status() == 200).then_some(())
    })
    .await;
}

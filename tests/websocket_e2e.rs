//! WebSocket `/v1/events` against the real stack: auth, subscribe, events
//! from real API calls (only the caller's), disconnect, more events,
//! reconnect with `last_event_id` → exactly the missed ones, then live.

mod common;

use std::time::Duration;

use common::Deployment;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(d: &Deployment) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/events", d.http))
        .await
        .unwrap();
    ws
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next JSON text message (pings skipped), within 10 s.
async fn next(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("connection open")
            .unwrap();
        match m {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => continue,
        }
    }
}

/// Nothing more arrives within `wait`.
async fn quiet(ws: &mut Ws, wait: Duration) {
    if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(wait, ws.next()).await {
        panic!("unexpected message {t}");
    }
}

async fn authed(d: &Deployment, key: &str) -> Ws {
    let mut ws = connect(d).await;
    send(&mut ws, json!({"type": "auth", "token": key})).await;
    assert_eq!(next(&mut ws).await, json!({"type": "auth.ok"}));
    ws
}

async fn deposit(d: &Deployment, user: &str, key: &str, agent: &str, amount: &str) {
    let (status, b) = d
        .post(
            "/agents/deposit",
            Some(key),
            json!({"userid": user, "agentid": agent, "amount": amount}),
        )
        .await;
    assert_eq!(status, 200, "{b}");
}

#[tokio::test(flavor = "multi_thread")]
async fn events_stream_live_and_resume_exactly_after_last_event_id() {
    let d = Deployment::new("websocket").await;
    d.start_dev().await;
    let (user, key) = d.sign_up("listener").await;
    let (other_user, other_key) = d.sign_up("neighbour").await;

    // Authentication comes first.
    let mut ws = connect(&d).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "channels": ["payments"]}),
    )
    .await;
    match ws.next().await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 4001),
        other => panic!("expected close 4001, got {other:?}"),
    }
    let mut ws = connect(&d).await;
    send(&mut ws, json!({"type": "auth", "token": "ak_wrong"})).await;
    assert!(matches!(ws.next().await, Some(Ok(Message::Close(Some(_))))));

    let mut ws = authed(&d, &key).await;
    send(&mut ws, json!({"type": "subscribe", "channels": ["nope"]})).await;
    assert_eq!(next(&mut ws).await["type"], "error");
    send(
        &mut ws,
        json!({"type": "subscribe", "channels": ["agents", "payments"]}),
    )
    .await;
    assert_eq!(
        next(&mut ws).await,
        json!({"type": "subscribed", "channels": ["agents", "payments"]})
    );

    let agent = d.create_agent(&user, &key, json!({})).await;
    let created = next(&mut ws).await;
    assert_eq!(created["type"], "agent.created");
    assert_eq!(created["channel"], "agents");
    assert_eq!(created["data"]["agent_id"], agent.as_str());
    deposit(&d, &user, &key, &agent, "1").await;
    let first = next(&mut ws).await;
    assert_eq!(
        (first["type"].clone(), first["data"]["amount"].clone()),
        (json!("deposit.completed"), json!("1"))
    );
    assert!(first["position"].as_i64().unwrap() > created["position"].as_i64().unwrap());
    // Another user's activity never shows.
    let theirs = d.create_agent(&other_user, &other_key, json!({})).await;
    deposit(&d, &other_user, &other_key, &theirs, "9").await;
    send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(next(&mut ws).await, json!({"type": "pong"}));
    let last_seen = first["position"].as_i64().unwrap();
    ws.close(None).await.unwrap();

    // Missed while away.
    for amount in ["2", "3"] {
        deposit(&d, &user, &key, &agent, amount).await;
    }
    let mut ws = authed(&d, &key).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "channels": ["agents"], "last_event_id": last_seen}),
    )
    .await;
    let a = next(&mut ws).await;
    let b = next(&mut ws).await;
    assert_eq!(
        (a["data"]["amount"].clone(), b["data"]["amount"].clone()),
        (json!("2"), json!("3")),
        "exactly the missed ones, in order"
    );
    assert_eq!(next(&mut ws).await["type"], "subscribed");
    // Then live again, no repeat.
    deposit(&d, &user, &key, &agent, "4").await;
    let live = next(&mut ws).await;
    assert_eq!(live["data"]["amount"], "4");
    quiet(&mut ws, Duration::from_millis(700)).await;

    // The user's wallet has a channel of its own: each deposit drew on it.
    let mut ws = authed(&d, &key).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "channels": ["wallet"]}),
    )
    .await;
    assert_eq!(next(&mut ws).await["type"], "subscribed");
    deposit(&d, &user, &key, &agent, "5").await;
    let wallet = next(&mut ws).await;
    assert_eq!(
        (
            &wallet["type"],
            &wallet["channel"],
            &wallet["data"]["memo"],
            &wallet["data"]["amount"]
        ),
        (
            &json!("wallet.changed"),
            &json!("wallet"),
            &json!("agent funding"),
            &json!("5")
        ),
        "{wallet}"
    );
}

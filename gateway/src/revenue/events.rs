//! WebSocket `/v1/events`, the revenue seed's protocol:
//!
//! 1. `{"type": "auth", "token": "<API key or access token>"}` → `{"type": "auth.ok"}` (or an
//!    error and close 4001); nothing else is accepted first (10 s to do it).
//! 2. `{"type": "subscribe", "channels": [...], "last_event_id"?: <position>}`
//!    → `{"type": "subscribed", "channels": [...]}`; with `last_event_id`,
//!    every event of the caller after that position is sent first, then
//!    live ones — no gap, no repeat. `unsubscribe` removes channels;
//!    `{"type": "ping"}` → `{"type": "pong"}`.
//! 3. Events: `{type, id, position, channel, timestamp, data}` — only the
//!    caller's own. The server pings every 20 s; a client too slow to keep
//!    up (its buffer of [`crate::feed::FEED_BUFFER`] events overflows, or a
//!    send blocks 5 s) is closed with code 4008 and never slows others.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::auth::authenticate_token;
use crate::feed::{read_after, FeedEvent, CHANNELS};
use crate::AppState;

/// Largest client message accepted.
const MESSAGE_BYTES_MAX: usize = 16 * 1024;
const AUTH_WITHIN: Duration = Duration::from_secs(10);
const SEND_WITHIN: Duration = Duration::from_secs(5);
const PING_EVERY: Duration = Duration::from_secs(20);

pub async fn upgrade(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(MESSAGE_BYTES_MAX)
        .on_upgrade(move |socket| session(state, socket))
}

async fn close(mut socket: WebSocket, code: u16, reason: &str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.to_string().into(),
        })))
        .await;
}

fn text(v: Value) -> Message {
    Message::Text(v.to_string().into())
}

async fn send(socket: &mut WebSocket, message: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_WITHIN, socket.send(message)).await,
        Ok(Ok(()))
    )
}

/// The next client message as JSON (`None`: the client left).
async fn next_json(socket: &mut WebSocket) -> Option<Result<Value, String>> {
    loop {
        match socket.recv().await? {
            Ok(Message::Text(t)) => {
                return Some(
                    serde_json::from_str(&t).map_err(|_| "messages must be JSON".to_string()),
                )
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue, // pings are answered by the library
        }
    }
}

async fn session(state: AppState, mut socket: WebSocket) {
    let user = match tokio::time::timeout(AUTH_WITHIN, next_json(&mut socket)).await {
        Ok(Some(Ok(m))) if m["type"] == "auth" => {
            match authenticate_token(&state, m["token"].as_str().unwrap_or_default()).await {
                Ok(tenant) => tenant,
                Err(_) => return close(socket, 4001, "invalid token").await,
            }
        }
        Ok(None) => return,
        _ => {
            return close(
                socket,
                4001,
                "authenticate first: {\"type\":\"auth\",\"token\":…}",
            )
            .await
        }
    };
    // Held for the session's life; a user or gateway at its bound is turned away.
    let _held = match state.ws_sessions.acquire(user) {
        Ok(held) => held,
        Err(_) => return close(socket, 1013, "too many open sessions; try again later").await,
    };
    if !send(&mut socket, text(json!({"type": "auth.ok"}))).await {
        return;
    }
    metrics::gauge!("agentbank_ws_connections").increment(1.0);
    run(&state, &mut socket, user).await;
    metrics::gauge!("agentbank_ws_connections").decrement(1.0);
}

/// Subscribed channels and the last position sent.
struct Subscription {
    channels: BTreeSet<&'static str>,
    sent: i64,
}

impl Subscription {
    fn wants(&self, user: Uuid, e: &FeedEvent) -> bool {
        e.user_id == user && e.seq > self.sent && self.channels.contains(e.channel)
    }
}

fn channels(m: &Value) -> Result<Vec<&'static str>, String> {
    let list = m["channels"]
        .as_array()
        .ok_or("channels must be an array")?;
    list.iter()
        .map(|c| {
            let name = c.as_str().unwrap_or_default();
            CHANNELS
                .iter()
                .find(|k| **k == name)
                .copied()
                .ok_or_else(|| format!("unknown channel '{name}'; known: {}", CHANNELS.join(", ")))
        })
        .collect()
}

async fn run(state: &AppState, socket: &mut WebSocket, user: Uuid) {
    let mut live = state.feed.sender.subscribe();
    let mut sub = Subscription {
        channels: BTreeSet::new(),
        sent: state
            .feed
            .position
            .load(std::sync::atomic::Ordering::Acquire),
    };
    let mut ping = tokio::time::interval(PING_EVERY);
    loop {
        tokio::select! {
            incoming = next_json(socket) => {
                let Some(m) = incoming else { return };
                let reply = match m {
                    Err(e) => json!({"type": "error", "message": e}),
                    Ok(m) => match m["type"].as_str() {
                        Some("subscribe") => match channels(&m) {
                            Err(e) => json!({"type": "error", "message": e}),
                            Ok(list) => {
                                sub.channels.extend(list);
                                if let Some(after) = resume_point(&m) {
                                    if !catch_up(state, socket, user, &mut sub, after).await {
                                        return;
                                    }
                                }
                                json!({"type": "subscribed", "channels": sub.channels})
                            }
                        },
                        Some("unsubscribe") => match channels(&m) {
                            Err(e) => json!({"type": "error", "message": e}),
                            Ok(list) => {
                                for c in list {
                                    sub.channels.remove(c);
                                }
                                json!({"type": "unsubscribed", "channels": sub.channels})
                            }
                        },
                        Some("ping") => json!({"type": "pong"}),
                        _ => json!({"type": "error", "message": "expected subscribe, unsubscribe or ping"}),
                    },
                };
                if !send(socket, text(reply)).await {
                    return;
                }
            }
            event = live.recv() => match event {
                Ok(e) if sub.wants(user, &e) => {
                    sub.sent = e.seq;
                    if !send(socket, Message::Text(e.message.to_string().into())).await {
                        return;
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    metrics::counter!("agentbank_ws_slow_clients_total").increment(1);
                    let _ = socket.send(Message::Close(Some(CloseFrame {
                        code: 4008,
                        reason: "too slow: reconnect with last_event_id".into(),
                    }))).await;
                    return;
                }
                Err(RecvError::Closed) => return,
            },
            _ = ping.tick() => {
                if !send(socket, Message::Ping(Vec::new().into())).await {
                    return;
                }
            }
        }
    }
}

/// `last_event_id`: a position (number or numeric string).
fn resume_point(m: &Value) -> Option<i64> {
    match &m["last_event_id"] {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Sends the caller's events after `after` up to the live position.
async fn catch_up(
    state: &AppState,
    socket: &mut WebSocket,
    user: Uuid,
    sub: &mut Subscription,
    after: i64,
) -> bool {
    let mut from = after;
    loop {
        let Ok((last, events)) = read_after(&state.pool, Some(user), from).await else {
            return false;
        };
        if last == from {
            // Live events from here on must not repeat what was sent.
            sub.sent = sub.sent.max(from);
            return true;
        }
        for e in events.iter().filter(|e| sub.channels.contains(e.channel)) {
            if !send(socket, Message::Text(e.message.to_string().into())).await {
                return false;
            }
        }
        from = last;
        sub.sent = last;
    }
}

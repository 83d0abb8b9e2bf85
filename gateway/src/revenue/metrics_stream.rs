//! SSE `/v1/metrics/stream`: the caller's business metrics as `metric`
//! events (`{name, value, timestamp}`) every few seconds, and a `heartbeat`
//! every 30 s, as the revenue seed shows. Metrics are snapshots, so a client
//! reconnecting with `Last-Event-ID` misses nothing by design: it gets the
//! current snapshot at once, with ids continuing after the one it saw.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream};
use rust_decimal::Decimal;
use serde_json::json;
use tokio::time::Instant;

use crate::auth::Caller;
use crate::body::number;
use crate::sessions::{Held, Refused};
use crate::{ApiError, AppState};

/// The metrics of one tenant, read from the read model.
async fn snapshot(
    state: &AppState,
    caller: &Caller,
) -> Result<Vec<(&'static str, Decimal)>, ApiError> {
    Ok(
        connectors::read_model::metrics::snapshot(&state.pool, caller.user_id, caller.agent_id)
            .await?,
    )
}

enum Next {
    Metrics,
    Heartbeat,
}

struct Cursor {
    /// The stream's place, freed when the client goes.
    _held: Held,
    state: AppState,
    caller: Caller,
    id: u64,
    /// Metric events of the current snapshot still to send.
    pending: Vec<Event>,
    next_metrics: Instant,
    next_heartbeat: Instant,
}

pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let held = state
        .sse_streams
        .acquire(caller.user_id)
        .map_err(|why| ApiError::Status {
            status: 429,
            message: match why {
                Refused::PerUser(n) => {
                    format!("Too many open metric streams: at most {n} per user")
                }
                Refused::Gateway(_) => {
                    "Too many open metric streams on this gateway; try again later".into()
                }
            },
        })?;
    let resumed: u64 = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let now = Instant::now();
    let heartbeat = state.config.sse_heartbeat;
    let cursor = Cursor {
        _held: held,
        state,
        caller,
        id: resumed,
        pending: vec![],
        next_metrics: now,
        next_heartbeat: now + heartbeat,
    };
    let events = stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(e) = c.pending.pop() {
                return Some((Ok(e), c));
            }
            let due = if c.next_metrics <= c.next_heartbeat {
                Next::Metrics
            } else {
                Next::Heartbeat
            };
            tokio::time::sleep_until(c.next_metrics.min(c.next_heartbeat)).await;
            let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            match due {
                Next::Heartbeat => {
                    c.next_heartbeat += c.state.config.sse_heartbeat;
                    c.id += 1;
                    let e = Event::default()
                        .event("heartbeat")
                        .id(c.id.to_string())
                        .data(json!({"timestamp": at}).to_string());
                    return Some((Ok(e), c));
                }
                Next::Metrics => {
                    c.next_metrics += c.state.config.sse_metrics_every;
                    // A failed read skips this round; the stream goes on.
                    if let Ok(metrics) = snapshot(&c.state, &c.caller).await {
                        for (name, value) in metrics {
                            c.id += 1;
                            let data =
                                json!({"name": name, "value": number(value), "timestamp": at});
                            c.pending.push(
                                Event::default()
                                    .event("metric")
                                    .id(c.id.to_string())
                                    .data(data.to_string()),
                            );
                        }
                        c.pending.reverse();
                    }
                }
            }
        }
    });
    metrics::counter!("agentbank_sse_streams_total").increment(1);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

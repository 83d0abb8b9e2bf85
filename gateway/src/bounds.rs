//! Bounds on what one client can hold of a gateway: open connections (the
//! one beyond the cap gets a 503 and is closed), the time to send a
//! request's headers (a client trickling one byte a second is cut off), the
//! time a request may take (its body read included), and the requests one
//! credential may have in flight. Long-lived streams (WebSocket
//! `/v1/events`, SSE `/v1/metrics/stream`) have their own caps
//! ([`crate::sessions`]). Every refusal counts in
//! `agentbank_gateway_limit_hits_total{limit}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use crate::error::ApiError;

/// The bounds, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Open connections per gateway (`AGENTBANK_CONNECTIONS_MAX`).
    pub connections_max: usize,
    /// Time to send a request's headers (`AGENTBANK_HEADER_READ_TIMEOUT_MS`).
    pub header_read: Duration,
    /// Time a request may take, body included (`AGENTBANK_REQUEST_TIMEOUT_MS`).
    pub request: Duration,
    /// Requests in flight per credential (`AGENTBANK_IN_FLIGHT_PER_KEY`).
    pub in_flight_per_key: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            connections_max: 10_000,
            header_read: Duration::from_secs(10),
            request: Duration::from_secs(30),
            in_flight_per_key: 1_024,
        }
    }
}

fn hit(limit: &'static str) {
    metrics::counter!("agentbank_gateway_limit_hits_total", "limit" => limit).increment(1);
}

/// What a connection beyond the cap gets before it is closed.
fn too_many_connections() -> String {
    let body = r#"{"error":"Too many connections to this gateway; retry later"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Serves `app` on `listener` until `shutdown`, within `bounds` (then lets
/// open requests finish, for at most 10 s).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    bounds: Bounds,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ApiError> {
    let slots = Arc::new(Semaphore::new(bounds.connections_max));
    let (closing, close) = watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(bounds.header_read);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            a = listener.accept() => a,
        };
        let Ok((mut stream, _)) = accepted else {
            // Out of descriptors and the like: wait a moment, keep serving.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            hit("connections");
            tokio::spawn(async move {
                let _ = stream.write_all(too_many_connections().as_bytes()).await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let service = app
            .clone()
            .map_request(|r: Request<Incoming>| r.map(Body::new));
        let conn = builder
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
            .with_upgrades();
        let mut close = close.clone();
        tokio::spawn(async move {
            metrics::gauge!("agentbank_gateway_sessions", "kind" => "connections").increment(1.0);
            tokio::pin!(conn);
            let closing = async move {
                let _ = close.wait_for(|c| *c).await;
            };
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = closing => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            metrics::gauge!("agentbank_gateway_sessions", "kind" => "connections").decrement(1.0);
            drop(slot);
        });
    }
    let _ = closing.send(true);
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while slots.available_permits() < bounds.connections_max {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let _ = drained.await;
    Ok(())
}

/// Requests in flight per credential.
#[derive(Default)]
pub struct InFlight {
    per_key: HashMap<[u8; 16], Arc<Semaphore>>,
}

/// Long-lived streams: bounded by their own session caps, not these.
fn is_stream(path: &str) -> bool {
    matches!(
        path,
        "/v1/events" | "/events" | "/v1/metrics/stream" | "/metrics/stream"
    )
}

/// The credential a request carries (its digest: the key itself is never
/// kept), if any.
fn credential(req: &Request) -> Option<[u8; 16]> {
    let h = req.headers();
    let text = h
        .get("x-api-key")
        .or_else(|| h.get("authorization"))
        .or_else(|| h.get("x-service-token"))?
        .as_bytes();
    let digest = Sha256::digest(text);
    digest[..16].try_into().ok()
}

/// The request timeout and the in-flight cap, as a middleware (inside the
/// routers, so each API answers in its own error format).
pub async fn guard(req: Request, next: Next) -> Response {
    let Some(bounds) = req.extensions().get::<Bounds>().copied() else {
        return next.run(req).await;
    };
    if is_stream(req.uri().path()) {
        return next.run(req).await;
    }
    let permit = match (
        credential(&req),
        req.extensions().get::<Arc<Mutex<InFlight>>>(),
    ) {
        (Some(key), Some(in_flight)) => {
            let semaphore = {
                let mut f = in_flight.lock().unwrap_or_else(|p| p.into_inner());
                if f.per_key.len() > 100_000 {
                    // Forget idle credentials (all their permits free).
                    f.per_key
                        .retain(|_, s| s.available_permits() < bounds.in_flight_per_key);
                }
                f.per_key
                    .entry(key)
                    .or_insert_with(|| Arc::new(Semaphore::new(bounds.in_flight_per_key)))
                    .clone()
            };
            match semaphore.try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    hit("in_flight_per_key");
                    return ApiError::Status {
                        status: 429,
                        message: format!(
                            "Too many requests in flight for this credential: at most {}",
                            bounds.in_flight_per_key
                        ),
                    }
                    .into_response();
                }
            }
        }
        _ => None,
    };
    let answer = match tokio::time::timeout(bounds.request, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            hit("request_timeout");
            ApiError::Status {
                status: 503,
                message: format!(
                    "The request took longer than {} ms; a write may still complete — retry with the same Idempotency-Key to get its outcome",
                    bounds.request.as_millis()
                ),
            }
            .into_response()
        }
    };
    drop(permit);
    answer
}

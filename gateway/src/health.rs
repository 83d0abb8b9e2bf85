//! `GET /health`: broker, Postgres and processor status; `GET /metrics`: Prometheus.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use crate::AppState;

pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let postgres = tokio::time::timeout(
        Duration::from_secs(2),
        connectors::read_model::chain::ping(&state.pool),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    let kafka = state.config.kafka.clone();
    let topic = state.config.topics.commands.clone();
    let broker = tokio::task::spawn_blocking(move || kafka.partition_count(&topic).is_ok())
        .await
        .unwrap_or(false);
    // Apart from the gateway, a processor is watched by its own metrics
    // (`agentbank_processor_partitions_owned`), so only dev's is judged here.
    let (processor_ready, processor) = match state.processor_probe.as_ref() {
        None => (true, json!({"status": "external"})),
        Some(probe) => {
            let health = probe();
            (health.ready, health.detail)
        }
    };
    let ok = postgres && broker && processor_ready;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if ok { "ok" } else if postgres && broker { "starting" } else { "degraded" },
            "broker": if broker { "ok" } else { "unreachable" },
            "postgres": if postgres { "ok" } else { "unreachable" },
            "processor": processor,
        })),
    )
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let body = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

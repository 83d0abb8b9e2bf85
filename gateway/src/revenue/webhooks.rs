//! Webhook endpoints (the revenue API's `POST /v1/webhooks`, plus list, get,
//! update, delete, a test event, the delivery log and replays). Owner-scoped
//! by the caller's user; secrets sealed at rest (`connectors::secrets`) and
//! shown only once, when generated. Errors use the revenue API's envelope
//! (`{"error": {code, message, details, request_id, timestamp}}`).

use axum::extract::{Path, State};

use crate::body::Query;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use connectors::secrets::new_webhook_secret;
use connectors::webhooks::{check_url, EVENT_TYPES};
use schemas::ids::{self, Kind};

use connectors::read_model::webhooks::{self as store, EndpointRow};

use crate::auth::Caller;
use crate::body::JsonObject;
use crate::{ApiError, AppState};

/// Endpoints per user.
pub const ENDPOINTS_MAX: i64 = 20;
const URL_CHARS_MAX: usize = 2_048;
const SECRET_CHARS_MAX: usize = 256;
/// Deliveries one range replay may queue.
pub const REPLAY_MAX: i64 = 10_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks", post(create).get(list))
        .route("/webhooks/{id}", get(get_one).patch(update).delete(delete))
        .route("/webhooks/{id}/test", post(send_test))
        .route("/webhooks/{id}/deliveries", get(deliveries))
        .route("/webhooks/{id}/replay", post(replay_range))
        .route("/webhooks/deliveries/{id}/replay", post(replay_one))
        // The revenue API's error envelope; the per-key limits of the bank's
        // routes (webhooks serve both products' events).
        .layer(middleware::from_fn(crate::bounds::guard))
        .layer(middleware::from_fn(crate::error::envelope))
}

/// The API's view of an endpoint.
trait EndpointView {
    fn json(&self) -> Value;
}

impl EndpointView for EndpointRow {
    fn json(&self) -> Value {
        json!({
            "id": ids::short(Kind::Webhook, self.id),
            "url": self.url,
            "events": self.events,
            "active": self.active,
            "consecutive_failures": self.consecutive_failures,
            "disabled_reason": self.disabled_reason,
            "created_at": self.created_at.to_rfc3339(),
            "updated_at": self.updated_at.to_rfc3339(),
        })
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

/// Validates `events`: known types or `*`, 1 to all of them.
fn events(body: &JsonObject) -> Result<Option<Vec<String>>, ApiError> {
    if !body.has("events") {
        return Ok(None);
    }
    let list = body.opt_strings("events", EVENT_TYPES.len() + 1, 64)?;
    if list.is_empty() {
        return Err(bad("events must name at least one event type (or \"*\")"));
    }
    if let Some(unknown) = list
        .iter()
        .find(|e| *e != "*" && !EVENT_TYPES.contains(&e.as_str()))
    {
        return Err(bad(format!(
            "unknown event type '{unknown}'; known: {}",
            EVENT_TYPES.join(", ")
        )));
    }
    Ok(Some(list))
}

async fn url(state: &AppState, body: &JsonObject) -> Result<Option<String>, ApiError> {
    let Some(url) = body.opt_str("url", URL_CHARS_MAX)? else {
        return Ok(None);
    };
    check_url(&url, state.config.webhooks_allow_private)
        .await
        .map_err(bad)?;
    Ok(Some(url))
}

/// A chosen secret: ≥ 16 characters; with the `whsec_` prefix, base64
/// after it (else Standard Webhooks libraries would derive another key).
fn secret(body: &JsonObject) -> Result<Option<String>, ApiError> {
    let secret = body.opt_str("secret", SECRET_CHARS_MAX)?;
    match &secret {
        Some(s) if s.len() < 16 => Err(bad("secret must be at least 16 characters")),
        Some(s) if s.starts_with("whsec_") && connectors::webhooks::standard_key(s).is_none() => {
            Err(bad(
                "a secret starting with whsec_ must be base64 after the prefix",
            ))
        }
        _ => Ok(secret),
    }
}

fn webhook_id(text: &str) -> Result<Uuid, ApiError> {
    ids::parse(Kind::Webhook, text)
        .map_err(|_| ApiError::NotFound(format!("Webhook {text} does not exist")))
}

async fn owned(state: &AppState, caller: &Caller, text: &str) -> Result<EndpointRow, ApiError> {
    let id = webhook_id(text)?;
    store::endpoint(&state.pool, caller.user_id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Webhook {text} does not exist")))
}

/// `POST /v1/webhooks` — `{url, events, secret?, active?}`; without a secret
/// one is generated and shown in this answer only.
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_user_key()?;
    let url = url(&state, &body)
        .await?
        .ok_or_else(|| bad("url is required"))?;
    let events = events(&body)?.ok_or_else(|| bad("events is required"))?;
    let given = secret(&body)?;
    let active = body.opt_bool("active")?.unwrap_or(true);
    if store::count_endpoints(&state.pool, caller.user_id).await? >= ENDPOINTS_MAX {
        return Err(bad(format!(
            "at most {ENDPOINTS_MAX} webhook endpoints per user"
        )));
    }
    let secret = given.clone().unwrap_or_else(new_webhook_secret);
    let row = store::insert_endpoint(
        &state.pool,
        store::NewEndpoint {
            user: caller.user_id,
            url: &url,
            events: &events,
            secret_sealed: state.config.secrets.seal(&secret),
            active,
        },
    )
    .await?;
    let mut answer = row.json();
    if given.is_none() {
        answer["secret"] = json!(secret);
    }
    Ok((StatusCode::CREATED, Json(answer)))
}

async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let rows = store::list_endpoints(&state.pool, caller.user_id).await?;
    Ok(Json(
        json!({"webhooks": rows.iter().map(EndpointRow::json).collect::<Vec<_>>()}),
    ))
}

async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(owned(&state, &caller, &id).await?.json()))
}

/// `PATCH /v1/webhooks/{id}` — any of url, events, secret, active;
/// re-activating clears the failure count.
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    caller.require_user_key()?;
    let current = owned(&state, &caller, &id).await?;
    let url = url(&state, &body).await?;
    let events = events(&body)?;
    let secret = secret(&body)?;
    let active = body.opt_bool("active")?;
    let change = store::EndpointChange {
        url,
        events,
        secret_sealed: secret.map(|s| state.config.secrets.seal(&s)),
        active,
    };
    let row = store::update_endpoint(&state.pool, current.id, change).await?;
    Ok(Json(row.json()))
}

async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_user_key()?;
    let current = owned(&state, &caller, &id).await?;
    store::delete_endpoint(&state.pool, current.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/webhooks/{id}/test` — queues a `webhook.test` event for it.
async fn send_test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let endpoint = owned(&state, &caller, &id).await?;
    let event = Uuid::new_v4();
    let now = chrono::Utc::now();
    let payload = json!({
        "id": ids::short(Kind::Event, event),
        "type": "webhook.test",
        "created": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": {"webhook_id": ids::short(Kind::Webhook, endpoint.id)},
    });
    let delivery = store::queue_test(&state.pool, endpoint.id, event, &payload.to_string()).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"delivery_id": ids::short(Kind::Delivery, delivery), "event": payload})),
    ))
}

#[derive(Deserialize)]
struct LogQuery {
    status: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/webhooks/{id}/deliveries` — the delivery log, newest first
/// (`status` = pending|succeeded|dead, `limit` ≤ 100).
async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<Json<Value>, ApiError> {
    let endpoint = owned(&state, &caller, &id).await?;
    if let Some(s) = &q.status {
        if !["pending", "succeeded", "dead"].contains(&s.as_str()) {
            return Err(bad("status must be pending, succeeded or dead"));
        }
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(bad("limit must be from 1 to 100"));
    }
    let rows = store::deliveries(&state.pool, endpoint.id, q.status.as_deref(), limit).await?;
    let list: Vec<Value> = rows
        .iter()
        .map(|d| {
            json!({
                "id": ids::short(Kind::Delivery, d.id),
                "event_id": ids::short(Kind::Event, d.event_id),
                "event_type": d.event_type,
                "status": d.status,
                "attempts": d.attempts,
                "next_attempt_at": (d.status == "pending").then(|| d.next_attempt_at.to_rfc3339()),
                "last_status": d.last_status,
                "last_error": d.last_error,
                "replay_of": d.replay_of.map(|r| ids::short(Kind::Delivery, r)),
                "created_at": d.created_at.to_rfc3339(),
                "delivered_at": d.delivered_at.map(|t| t.to_rfc3339()),
            })
        })
        .collect();
    Ok(Json(json!({"deliveries": list})))
}

/// `POST /v1/webhooks/deliveries/{id}/replay` — sends that delivery's event
/// again, as a new delivery (same event id: receivers can dedupe).
async fn replay_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let not_found = || ApiError::NotFound(format!("Delivery {id} does not exist"));
    let delivery = ids::parse(Kind::Delivery, &id).map_err(|_| not_found())?;
    let copy = store::replay_delivery(&state.pool, caller.user_id, delivery)
        .await?
        .ok_or_else(not_found)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"delivery_id": ids::short(Kind::Delivery, copy), "replay_of": id})),
    ))
}

/// `POST /v1/webhooks/{id}/replay` — `{from, to}` (RFC 3339): sends every
/// event first delivered to this endpoint in that range again, in order.
async fn replay_range(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let endpoint = owned(&state, &caller, &id).await?;
    let time = |name: &str| -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
        let text = body
            .opt_str(name, 64)?
            .ok_or_else(|| bad("from and to are required (RFC 3339)"))?;
        chrono::DateTime::parse_from_rfc3339(&text)
            .map(|t| t.to_utc())
            .map_err(|_| bad(format!("{name} must be an RFC 3339 time")))
    };
    let (from, to) = (time("from")?, time("to")?);
    if to < from {
        return Err(bad("to must not be before from"));
    }
    let queued = store::replay_range(&state.pool, endpoint.id, from, to, REPLAY_MAX).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"queued": queued}))))
}

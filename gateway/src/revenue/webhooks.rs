//! Webhook endpoints (the revenue API's `POST /v1/webhooks`, plus list, get,
//! update, delete, a test event, the delivery log and replays). Owner-scoped
//! by the caller's user; secrets sealed at rest (`connectors::secrets`) and
//! shown only once, when generated. Errors use the revenue API's envelope
//! (`{"error": {code, message, details, request_id, timestamp}}`).

use axum::extract::{Path, Query, State};
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
        .layer(middleware::from_fn(crate::error::envelope))
}

#[derive(sqlx::FromRow)]
struct EndpointRow {
    id: Uuid,
    url: String,
    events: Vec<String>,
    active: bool,
    consecutive_failures: i32,
    disabled_reason: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

const ENDPOINT_COLUMNS: &str =
    "id, url, events, active, consecutive_failures, disabled_reason, created_at, updated_at";

impl EndpointRow {
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
    let row: Option<EndpointRow> = sqlx::query_as(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND user_id = $2"
    ))
    .bind(id)
    .bind(caller.user_id)
    .fetch_optional(&state.pool)
    .await?;
    row.ok_or_else(|| ApiError::NotFound(format!("Webhook {text} does not exist")))
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
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints WHERE user_id = $1")
            .bind(caller.user_id)
            .fetch_one(&state.pool)
            .await?;
    if count >= ENDPOINTS_MAX {
        return Err(bad(format!(
            "at most {ENDPOINTS_MAX} webhook endpoints per user"
        )));
    }
    let secret = given.clone().unwrap_or_else(new_webhook_secret);
    let row: EndpointRow = sqlx::query_as(&format!(
        "INSERT INTO webhook_endpoints (id, user_id, url, events, secret_sealed, active, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, now(), now()) RETURNING {ENDPOINT_COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(caller.user_id)
    .bind(&url)
    .bind(&events)
    .bind(state.config.secrets.seal(&secret))
    .bind(active)
    .fetch_one(&state.pool)
    .await?;
    let mut answer = row.json();
    if given.is_none() {
        answer["secret"] = json!(secret);
    }
    Ok((StatusCode::CREATED, Json(answer)))
}

async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let rows: Vec<EndpointRow> = sqlx::query_as(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE user_id = $1 ORDER BY created_at, id"
    ))
    .bind(caller.user_id)
    .fetch_all(&state.pool)
    .await?;
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
    let row: EndpointRow = sqlx::query_as(&format!(
        "UPDATE webhook_endpoints SET url = coalesce($2, url), events = coalesce($3, events),
            secret_sealed = coalesce($4, secret_sealed), active = coalesce($5, active),
            consecutive_failures = CASE WHEN $5 THEN 0 ELSE consecutive_failures END,
            disabled_reason = CASE WHEN $5 THEN NULL ELSE disabled_reason END, updated_at = now()
         WHERE id = $1 RETURNING {ENDPOINT_COLUMNS}"
    ))
    .bind(current.id)
    .bind(url)
    .bind(events)
    .bind(secret.map(|s| state.config.secrets.seal(&s)))
    .bind(active)
    .fetch_one(&state.pool)
    .await?;
    Ok(Json(row.json()))
}

async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_user_key()?;
    let current = owned(&state, &caller, &id).await?;
    sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
        .bind(current.id)
        .execute(&state.pool)
        .await?;
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
    let delivery: Uuid = sqlx::query_scalar(
        "INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, payload, status, next_attempt_at, created_at)
         VALUES ($1, $2, 'webhook.test', $3, 'pending', now(), now()) RETURNING id",
    )
    .bind(endpoint.id)
    .bind(event)
    .bind(payload.to_string())
    .fetch_one(&state.pool)
    .await?;
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

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: Uuid,
    event_id: Uuid,
    event_type: String,
    status: String,
    attempts: i32,
    next_attempt_at: chrono::DateTime<chrono::Utc>,
    last_status: Option<i32>,
    last_error: Option<String>,
    replay_of: Option<Uuid>,
    created_at: chrono::DateTime<chrono::Utc>,
    delivered_at: Option<chrono::DateTime<chrono::Utc>>,
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
    let rows: Vec<DeliveryRow> = sqlx::query_as(
        "SELECT id, event_id, event_type, status, attempts, next_attempt_at, last_status, last_error,
            replay_of, created_at, delivered_at
         FROM webhook_deliveries WHERE endpoint_id = $1 AND ($2::text IS NULL OR status = $2)
         ORDER BY seq DESC LIMIT $3",
    )
    .bind(endpoint.id)
    .bind(&q.status)
    .bind(limit)
    .fetch_all(&state.pool)
    .await?;
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
    let copy: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, payload, status, next_attempt_at,
            replay_of, created_at)
         SELECT d.endpoint_id, d.event_id, d.event_type, d.payload, 'pending', now(), d.id, now()
         FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
         WHERE d.id = $1 AND e.user_id = $2 RETURNING id",
    )
    .bind(delivery)
    .bind(caller.user_id)
    .fetch_optional(&state.pool)
    .await?;
    let copy = copy.ok_or_else(not_found)?;
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
    let queued = sqlx::query(
        "INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, payload, status, next_attempt_at,
            replay_of, created_at)
         SELECT endpoint_id, event_id, event_type, payload, 'pending', now(), id, now()
         FROM (SELECT * FROM webhook_deliveries WHERE endpoint_id = $1 AND replay_of IS NULL
               AND created_at BETWEEN $2 AND $3 ORDER BY seq LIMIT $4) d
         ORDER BY d.seq",
    )
    .bind(endpoint.id)
    .bind(from)
    .bind(to)
    .bind(REPLAY_MAX)
    .execute(&state.pool)
    .await?
    .rows_affected();
    Ok((StatusCode::ACCEPTED, Json(json!({"queued": queued}))))
}

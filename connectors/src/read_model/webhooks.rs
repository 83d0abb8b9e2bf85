//! Webhook endpoint and delivery queries for `/v1/webhooks`: a user's
//! endpoints (created, listed, updated, deleted — the gateway's own rows),
//! the delivery log, and queuing test and replayed deliveries for the
//! dispatcher. Secrets arrive sealed (`crate::secrets`).

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::ConnectorError;

#[derive(sqlx::FromRow)]
pub struct EndpointRow {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub active: bool,
    pub consecutive_failures: i32,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const ENDPOINT_COLUMNS: &str =
    "id, url, events, active, consecutive_failures, disabled_reason, created_at, updated_at";

/// `user`'s endpoint `id`.
pub async fn endpoint(
    pool: &PgPool,
    user: Uuid,
    id: Uuid,
) -> Result<Option<EndpointRow>, ConnectorError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND user_id = $2"
    ))
    .bind(id)
    .bind(user)
    .fetch_optional(pool)
    .await?)
}

pub async fn count_endpoints(pool: &PgPool, user: Uuid) -> Result<i64, ConnectorError> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints WHERE user_id = $1")
            .bind(user)
            .fetch_one(pool)
            .await?,
    )
}

/// A new endpoint's fields.
pub struct NewEndpoint<'a> {
    pub user: Uuid,
    pub url: &'a str,
    pub events: &'a [String],
    pub secret_sealed: String,
    pub active: bool,
}

pub async fn insert_endpoint(
    pool: &PgPool,
    e: NewEndpoint<'_>,
) -> Result<EndpointRow, ConnectorError> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO webhook_endpoints (id, user_id, url, events, secret_sealed, active, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, now(), now()) RETURNING {ENDPOINT_COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(e.user)
    .bind(e.url)
    .bind(e.events)
    .bind(e.secret_sealed)
    .bind(e.active)
    .fetch_one(pool)
    .await?)
}

/// `user`'s endpoints, oldest first.
pub async fn list_endpoints(pool: &PgPool, user: Uuid) -> Result<Vec<EndpointRow>, ConnectorError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE user_id = $1 ORDER BY created_at, id"
    ))
    .bind(user)
    .fetch_all(pool)
    .await?)
}

/// Changes to an endpoint; `None` keeps a field.
pub struct EndpointChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub secret_sealed: Option<String>,
    /// Re-activating clears the failure count.
    pub active: Option<bool>,
}

pub async fn update_endpoint(
    pool: &PgPool,
    id: Uuid,
    c: EndpointChange,
) -> Result<EndpointRow, ConnectorError> {
    Ok(sqlx::query_as(&format!(
        "UPDATE webhook_endpoints SET url = coalesce($2, url), events = coalesce($3, events),
            secret_sealed = coalesce($4, secret_sealed), active = coalesce($5, active),
            consecutive_failures = CASE WHEN $5 THEN 0 ELSE consecutive_failures END,
            disabled_reason = CASE WHEN $5 THEN NULL ELSE disabled_reason END, updated_at = now()
         WHERE id = $1 RETURNING {ENDPOINT_COLUMNS}"
    ))
    .bind(id)
    .bind(c.url)
    .bind(c.events)
    .bind(c.secret_sealed)
    .bind(c.active)
    .fetch_one(pool)
    .await?)
}

pub async fn delete_endpoint(pool: &PgPool, id: Uuid) -> Result<(), ConnectorError> {
    sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Queues a `webhook.test` delivery of `payload` to `endpoint`; its id.
pub async fn queue_test(
    pool: &PgPool,
    endpoint: Uuid,
    event: Uuid,
    payload: &str,
) -> Result<Uuid, ConnectorError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, payload, status, next_attempt_at, created_at)
         VALUES ($1, $2, 'webhook.test', $3, 'pending', now(), now()) RETURNING id",
    )
    .bind(endpoint)
    .bind(event)
    .bind(payload)
    .fetch_one(pool)
    .await?)
}

#[derive(sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub replay_of: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// `endpoint`'s deliveries, newest first, optionally by status.
pub async fn deliveries(
    pool: &PgPool,
    endpoint: Uuid,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, ConnectorError> {
    Ok(sqlx::query_as(
        "SELECT id, event_id, event_type, status, attempts, next_attempt_at, last_status, last_error,
            replay_of, created_at, delivered_at
         FROM webhook_deliveries WHERE endpoint_id = $1 AND ($2::text IS NULL OR status = $2)
         ORDER BY seq DESC LIMIT $3",
    )
    .bind(endpoint)
    .bind(status)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Queues `delivery` (one of `user`'s) again as a new delivery; its id.
pub async fn replay_delivery(
    pool: &PgPool,
    user: Uuid,
    delivery: Uuid,
) -> Result<Option<Uuid>, ConnectorError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, payload, status, next_attempt_at,
            replay_of, created_at)
         SELECT d.endpoint_id, d.event_id, d.event_type, d.payload, 'pending', now(), d.id, now()
         FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
         WHERE d.id = $1 AND e.user_id = $2 RETURNING id",
    )
    .bind(delivery)
    .bind(user)
    .fetch_optional(pool)
    .await?)
}

/// Queues again every first delivery to `endpoint` created in `[from, to]`,
/// in order, at most `max`; how many.
pub async fn replay_range(
    pool: &PgPool,
    endpoint: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    max: i64,
) -> Result<u64, ConnectorError> {
    Ok(sqlx::query(
        "INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, payload, status, next_attempt_at,
            replay_of, created_at)
         SELECT endpoint_id, event_id, event_type, payload, 'pending', now(), id, now()
         FROM (SELECT * FROM webhook_deliveries WHERE endpoint_id = $1 AND replay_of IS NULL
               AND created_at BETWEEN $2 AND $3 ORDER BY seq LIMIT $4) d
         ORDER BY d.seq",
    )
    .bind(endpoint)
    .bind(from)
    .bind(to)
    .bind(max)
    .execute(pool)
    .await?
    .rows_affected())
}

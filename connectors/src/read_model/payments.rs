//! Payment queries for the agent bank's routes: the payments a caller may
//! see (sent or received by one of its agents; an agent key: by that agent),
//! one by id, pages by approval status, a payment's sender, and exports by
//! date range (counted, read whole, or streamed row by row).

use chrono::{DateTime, Utc};
use futures::StreamExt;
use rust_decimal::Decimal;
use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

use schemas::payment::Payment;

use crate::ConnectorError;

/// A payments row with the names and direction lists show.
#[derive(sqlx::FromRow)]
pub struct PaymentRow {
    id: Uuid,
    sender_agent_id: Uuid,
    receiver_agent_id: Uuid,
    name: String,
    payment_type: String,
    amount: Decimal,
    currency: String,
    method: String,
    contact_email: Option<String>,
    contact_phone: Option<String>,
    tags: Vec<String>,
    status: String,
    approval_status: String,
    approval_required: bool,
    created_at: DateTime<Utc>,
    approved_at: Option<DateTime<Utc>>,
    tx_hash: Option<String>,
    receiver_address: Option<String>,
    pub sender_name: Option<String>,
    pub receiver_name: Option<String>,
    /// Sent by the caller (else received).
    pub outgoing: bool,
}

impl PaymentRow {
    pub fn payment(&self) -> Payment {
        Payment {
            payment_id: self.id.to_string(),
            sender_agent_id: self.sender_agent_id.to_string(),
            receiver_agent_id: self.receiver_agent_id.to_string(),
            name: self.name.clone(),
            payment_type: self.payment_type.clone(),
            amount: self.amount,
            currency: self.currency.clone(),
            method: self.method.clone(),
            contact_email: self.contact_email.clone(),
            contact_phone: self.contact_phone.clone(),
            tags: self.tags.clone(),
            status: self.status.clone(),
            approval_status: self.approval_status.clone(),
            approval_required: self.approval_required,
            created_ms: self.created_at.timestamp_millis(),
            decided_ms: self.approved_at.map(|t| t.timestamp_millis()),
            tx_hash: self.tx_hash.clone(),
            receiver_address: self.receiver_address.clone(),
        }
    }

    pub fn direction(&self) -> &'static str {
        if self.outgoing {
            "outgoing"
        } else {
            "incoming"
        }
    }
}

/// Payments the caller may see. `$1` user, `$2` agent or NULL.
const VISIBLE_PAYMENTS: &str = "
    SELECT p.id, p.sender_agent_id, p.receiver_agent_id, p.name, p.payment_type, p.amount,
           p.currency, p.method, p.contact_email, p.contact_phone, p.tags, p.status,
           p.approval_status, p.approval_required, p.created_at, p.approved_at, p.tx_hash,
           p.receiver_address, s.name AS sender_name, r.name AS receiver_name,
           (p.sender_user_id = $1 AND ($2::uuid IS NULL OR p.sender_agent_id = $2)) AS outgoing
    FROM payments p
    LEFT JOIN agents s ON s.id = p.sender_agent_id
    LEFT JOIN agents r ON r.id = p.receiver_agent_id
    WHERE ((p.sender_user_id = $1 AND ($2::uuid IS NULL OR p.sender_agent_id = $2))
        OR (r.user_id = $1 AND ($2::uuid IS NULL OR p.receiver_agent_id = $2)))";

/// Payment `id`, if `user` (narrowed to `agent`) may see it.
pub async fn visible(
    pool: &PgPool,
    user: Uuid,
    agent: Option<Uuid>,
    id: Uuid,
) -> Result<Option<PaymentRow>, ConnectorError> {
    Ok(sqlx::query_as(&format!("{VISIBLE_PAYMENTS} AND p.id = $3"))
        .bind(user)
        .bind(agent)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// A page of the visible payments, newest first, optionally by approval status.
/// Filters of a payment list: approval status, created in `[start, end]`, a tag.
#[derive(Debug, Clone, Copy, Default)]
pub struct PaymentFilter<'a> {
    pub approval_status: Option<&'a str>,
    pub start: Option<chrono::DateTime<chrono::Utc>>,
    pub end: Option<chrono::DateTime<chrono::Utc>>,
    pub tag: Option<&'a str>,
}

pub async fn list(
    pool: &PgPool,
    user: Uuid,
    agent: Option<Uuid>,
    filter: PaymentFilter<'_>,
    limit: i64,
    offset: i64,
) -> Result<Vec<PaymentRow>, ConnectorError> {
    Ok(sqlx::query_as(&format!(
        "{VISIBLE_PAYMENTS} AND ($3::text IS NULL OR p.approval_status = $3)
         AND ($6::timestamptz IS NULL OR p.created_at >= $6)
         AND ($7::timestamptz IS NULL OR p.created_at <= $7)
         AND ($8::text IS NULL OR $8 = ANY(p.tags))
         ORDER BY p.created_at DESC, p.id LIMIT $4 OFFSET $5"
    ))
    .bind(user)
    .bind(agent)
    .bind(filter.approval_status)
    .bind(limit)
    .bind(offset)
    .bind(filter.start)
    .bind(filter.end)
    .bind(filter.tag)
    .fetch_all(pool)
    .await?)
}

/// The sending agent of payment `id`, if `user` sent it.
pub async fn sender_of(
    pool: &PgPool,
    user: Uuid,
    id: Uuid,
) -> Result<Option<Uuid>, ConnectorError> {
    Ok(sqlx::query_scalar(
        "SELECT sender_agent_id FROM payments WHERE id = $1 AND sender_user_id = $2",
    )
    .bind(id)
    .bind(user)
    .fetch_optional(pool)
    .await?)
}

/// What an export covers: the caller's visible payments created in
/// `[start, end]` (either open), oldest first, at most `max` (+1 read, so
/// the caller can tell it was exceeded).
#[derive(Debug, Clone, Copy)]
pub struct ExportRange {
    pub user: Uuid,
    pub agent: Option<Uuid>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub max: i64,
}

impl ExportRange {
    fn query(&self) -> String {
        format!(
            "{VISIBLE_PAYMENTS} AND ($3::timestamptz IS NULL OR p.created_at >= $3)
               AND ($4::timestamptz IS NULL OR p.created_at <= $4)
             ORDER BY p.created_at, p.id LIMIT {}",
            self.max.saturating_add(1)
        )
    }
}

/// How many payments the export would hold (up to `max + 1`).
pub async fn export_count(pool: &PgPool, r: ExportRange) -> Result<i64, ConnectorError> {
    Ok(
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM ({}) AS x", r.query()))
            .bind(r.user)
            .bind(r.agent)
            .bind(r.start)
            .bind(r.end)
            .fetch_one(pool)
            .await?,
    )
}

/// The export's rows (up to `max + 1`).
pub async fn export_rows(pool: &PgPool, r: ExportRange) -> Result<Vec<PaymentRow>, ConnectorError> {
    Ok(sqlx::query_as(&r.query())
        .bind(r.user)
        .bind(r.agent)
        .bind(r.start)
        .bind(r.end)
        .fetch_all(pool)
        .await?)
}

/// The export's rows as Postgres returns them (memory stays flat however
/// large the export); an error ends the stream.
pub fn export_stream(
    pool: PgPool,
    r: ExportRange,
) -> mpsc::Receiver<Result<PaymentRow, ConnectorError>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let query = r.query();
        let mut rows = sqlx::query_as::<_, PaymentRow>(&query)
            .bind(r.user)
            .bind(r.agent)
            .bind(r.start)
            .bind(r.end)
            .fetch(&pool);
        while let Some(row) = rows.next().await {
            let failed = row.is_err();
            if tx.send(row.map_err(ConnectorError::from)).await.is_err() || failed {
                return;
            }
        }
    });
    rx
}

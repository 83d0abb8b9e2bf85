//! Agent queries for the agent bank's routes: one agent, a user's agents,
//! an agent's owner and funding wallet, and a movement already applied
//! (by its command id). Every query is scoped to its user where a user asks.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use schemas::reply::AgentView;

use crate::ConnectorError;

#[derive(sqlx::FromRow)]
struct AgentRow {
    id: Uuid,
    user_id: Uuid,
    name: String,
    description: String,
    wallet_address: Option<String>,
    currency: String,
    daily_limit: Option<Decimal>,
    transaction_limit: Option<Decimal>,
    require_approval_for_all: bool,
    require_approval_above_amount: Option<Decimal>,
    tags: Vec<String>,
    status: String,
    balance: Decimal,
    created_at: DateTime<Utc>,
    policies: Option<sqlx::types::Json<schemas::policy::SpendingPolicies>>,
}

impl From<AgentRow> for AgentView {
    fn from(r: AgentRow) -> Self {
        AgentView {
            agent_id: r.id,
            user_id: r.user_id,
            name: r.name,
            description: r.description,
            wallet_address: r.wallet_address,
            currency: r.currency,
            rules: schemas::command::PaymentRules {
                daily_limit: r.daily_limit,
                transaction_limit: r.transaction_limit,
                require_approval_for_all: r.require_approval_for_all,
                require_approval_above_amount: r.require_approval_above_amount,
            },
            tags: r.tags,
            status: r.status,
            created_ms: r.created_at.timestamp_millis(),
            balance: r.balance,
            policies: r.policies.map(|p| p.0).unwrap_or_default(),
        }
    }
}

const AGENT_COLUMNS: &str =
    "id, user_id, name, description, wallet_address, currency, daily_limit, transaction_limit,
    require_approval_for_all, require_approval_above_amount, tags, status, balance, created_at, policies";

/// Agent `id` of `user`.
pub async fn get(pool: &PgPool, user: Uuid, id: Uuid) -> Result<Option<AgentView>, ConnectorError> {
    let row: Option<AgentRow> = sqlx::query_as(&format!(
        "SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1 AND user_id = $2"
    ))
    .bind(id)
    .bind(user)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Into::into))
}

/// An agent's money in one statement (one snapshot of what the sink
/// wrote, so the figures agree): available, reserved for open payments,
/// and the payments waiting for the user's approval (count, amount).
#[derive(Debug, Clone, Copy, Default, sqlx::FromRow)]
pub struct Holdings {
    pub available: Decimal,
    pub reserved: Decimal,
    pub pending_approvals: i64,
    pub pending_amount: Decimal,
}

pub async fn holdings(
    pool: &PgPool,
    user: Uuid,
    id: Uuid,
) -> Result<Option<Holdings>, ConnectorError> {
    Ok(sqlx::query_as(
        "SELECT balance AS available,
                (SELECT coalesce(sum(amount), 0) FROM journal_postings WHERE account = $3) AS reserved,
                (SELECT count(*) FROM payments WHERE sender_agent_id = $1 AND approval_status = $4)
                    AS pending_approvals,
                (SELECT coalesce(sum(amount), 0) FROM payments
                  WHERE sender_agent_id = $1 AND approval_status = $4) AS pending_amount
         FROM agents WHERE id = $1 AND user_id = $2",
    )
    .bind(id)
    .bind(user)
    .bind(schemas::event::accounts::agent_reserved(id))
    .bind(schemas::payment::approval::WAITING_FOR_SENDER)
    .fetch_optional(pool)
    .await?)
}

/// A page of `user`'s agents (only `agent` when set; with `tag` and
/// `status` when given), oldest first.
pub async fn list(
    pool: &PgPool,
    user: Uuid,
    agent: Option<Uuid>,
    (tag, status): (Option<&str>, Option<&str>),
    limit: i64,
    offset: i64,
) -> Result<Vec<AgentView>, ConnectorError> {
    let rows: Vec<AgentRow> = sqlx::query_as(&format!(
        "SELECT {AGENT_COLUMNS} FROM agents WHERE user_id = $1
         AND ($2::uuid IS NULL OR id = $2) AND ($5::text IS NULL OR $5 = ANY(tags))
         AND ($6::text IS NULL OR status = $6)
         ORDER BY created_at, id LIMIT $3 OFFSET $4"
    ))
    .bind(user)
    .bind(agent)
    .bind(limit)
    .bind(offset)
    .bind(tag)
    .bind(status)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Whether `user` owns agent `id`.
pub async fn owned(pool: &PgPool, user: Uuid, id: Uuid) -> Result<bool, ConnectorError> {
    let found: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM agents WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user)
            .fetch_optional(pool)
            .await?;
    Ok(found.is_some())
}

/// The user owning agent `id`.
pub async fn owner(pool: &PgPool, id: Uuid) -> Result<Option<Uuid>, ConnectorError> {
    Ok(
        sqlx::query_scalar("SELECT user_id FROM agents WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?,
    )
}

/// The funding wallet address agent `id` of `user` was created with.
pub async fn funding_wallet(
    pool: &PgPool,
    user: Uuid,
    id: Uuid,
) -> Result<Option<String>, ConnectorError> {
    let found: Option<Option<String>> =
        sqlx::query_scalar("SELECT wallet_address FROM agents WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user)
            .fetch_optional(pool)
            .await?;
    Ok(found.flatten())
}

/// The balance a deposit or withdrawal left, if command `command` already
/// took effect on agent `agent`.
pub async fn applied_balance(
    pool: &PgPool,
    command: Uuid,
    agent: Uuid,
) -> Result<Option<Decimal>, ConnectorError> {
    Ok(sqlx::query_scalar(
        "SELECT t.balance_after FROM events e JOIN transactions t ON t.event_id = e.id
         WHERE e.command_id = $1 AND e.agent_id = $2 LIMIT 1",
    )
    .bind(command)
    .bind(agent)
    .fetch_optional(pool)
    .await?)
}

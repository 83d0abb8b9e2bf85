//! Identity: users, API keys (live and sandbox), login sessions and their
//! refresh tokens, and users' rate-limit tiers. The gateway writes these
//! tables itself: identity is not money and never passes through the pipeline.
//! Secrets are stored as SHA-256 digests (passwords as argon2 strings),
//! compared by the caller in constant time.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::ConnectorError;

/// A stored API key.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub key_id: String,
    pub secret_sha256: Vec<u8>,
    pub user_id: Uuid,
    pub agent_id: Option<Uuid>,
    /// `live` or `test`.
    pub mode: String,
}

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Creates a user and its first key in one transaction. `Ok(false)`: the
/// email is taken (case-insensitively).
pub async fn insert_user(
    pool: &PgPool,
    user_id: Uuid,
    name: &str,
    email: &str,
    password_hash: &str,
    key: &KeyRow,
) -> Result<bool, ConnectorError> {
    let mut tx = pool.begin().await?;
    let inserted =
        sqlx::query("INSERT INTO users (id, name, email, password_hash) VALUES ($1, $2, $3, $4)")
            .bind(user_id)
            .bind(name)
            .bind(email)
            .bind(password_hash)
            .execute(&mut *tx)
            .await;
    match inserted {
        Err(e) if unique_violation(&e) => return Ok(false),
        other => other?,
    };
    insert_key_in(&mut tx, key).await?;
    tx.commit().await?;
    Ok(true)
}

/// Removes a user that never became usable (its sign-up failed half-way).
pub async fn delete_user(pool: &PgPool, user_id: Uuid) -> Result<(), ConnectorError> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM api_keys WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

async fn insert_key_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    key: &KeyRow,
) -> Result<(), ConnectorError> {
    sqlx::query(
        "INSERT INTO api_keys (key_id, secret_sha256, user_id, agent_id, mode) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&key.key_id)
    .bind(&key.secret_sha256)
    .bind(key.user_id)
    .bind(key.agent_id)
    .bind(&key.mode)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn insert_key(pool: &PgPool, key: &KeyRow) -> Result<(), ConnectorError> {
    let mut tx = pool.begin().await?;
    insert_key_in(&mut tx, key).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn delete_key(pool: &PgPool, key_id: &str) -> Result<(), ConnectorError> {
    sqlx::query("DELETE FROM api_keys WHERE key_id = $1")
        .bind(key_id)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn find_key(pool: &PgPool, key_id: &str) -> Result<Option<KeyRow>, ConnectorError> {
    let row: Option<(Vec<u8>, Uuid, Option<Uuid>, String)> = sqlx::query_as(
        "SELECT secret_sha256, user_id, agent_id, mode FROM api_keys WHERE key_id = $1",
    )
    .bind(key_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(secret_sha256, user_id, agent_id, mode)| KeyRow {
        key_id: key_id.to_string(),
        secret_sha256,
        user_id,
        agent_id,
        mode,
    }))
}

/// A user's password hash by email (case-insensitive), for login.
pub async fn find_login(
    pool: &PgPool,
    email: &str,
) -> Result<Option<(Uuid, String)>, ConnectorError> {
    Ok(
        sqlx::query_as("SELECT id, password_hash FROM users WHERE lower(email) = lower($1)")
            .bind(email)
            .fetch_optional(pool)
            .await?,
    )
}

/// `None`: no such user; `Some(None)`: the user has the default tier.
pub async fn user_tier(
    pool: &PgPool,
    user_id: Uuid,
) -> Result<Option<Option<String>>, ConnectorError> {
    let row: Option<(Option<String>,)> = sqlx::query_as("SELECT tier FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|(t,)| t))
}

/// Sets a user's tier; `false` when there is no such user.
pub async fn set_tier(pool: &PgPool, user_id: Uuid, tier: &str) -> Result<bool, ConnectorError> {
    let done = sqlx::query("UPDATE users SET tier = $2 WHERE id = $1")
        .bind(user_id)
        .bind(tier)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// A refresh token as stored.
#[derive(Debug, Clone)]
pub struct RefreshRow {
    pub id: Uuid,
    pub session_id: Uuid,
    pub secret_sha256: Vec<u8>,
    pub expires_at: DateTime<Utc>,
}

/// Opens a session with its first refresh token.
pub async fn open_session(
    pool: &PgPool,
    user_id: Uuid,
    first: &RefreshRow,
) -> Result<(), ConnectorError> {
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO auth_sessions (id, user_id) VALUES ($1, $2)")
        .bind(first.session_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    insert_refresh(&mut tx, first).await?;
    tx.commit().await?;
    Ok(())
}

async fn insert_refresh(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    r: &RefreshRow,
) -> Result<(), ConnectorError> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, session_id, secret_sha256, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(r.id)
    .bind(r.session_id)
    .bind(&r.secret_sha256)
    .bind(r.expires_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A presented refresh token's row: its digest (for the caller's constant-time
/// check), its session's user, and whether it may still be used.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshState {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub secret_sha256: Vec<u8>,
    pub expires_at: DateTime<Utc>,
    pub used: bool,
    pub session_revoked: bool,
}

pub async fn find_refresh(pool: &PgPool, id: Uuid) -> Result<Option<RefreshState>, ConnectorError> {
    Ok(sqlx::query_as(
        "SELECT r.session_id, s.user_id, r.secret_sha256, r.expires_at, \
                r.used_at IS NOT NULL AS used, s.revoked_at IS NOT NULL AS session_revoked \
         FROM refresh_tokens r JOIN auth_sessions s ON s.id = r.session_id WHERE r.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// Spends refresh token `id` and stores its successor, atomically. `false`:
/// it was already spent (a concurrent refresh won), nothing is stored.
pub async fn rotate_refresh(
    pool: &PgPool,
    id: Uuid,
    next: &RefreshRow,
) -> Result<bool, ConnectorError> {
    let mut tx = pool.begin().await?;
    let spent =
        sqlx::query("UPDATE refresh_tokens SET used_at = now() WHERE id = $1 AND used_at IS NULL")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    if spent.rows_affected() != 1 {
        return Ok(false);
    }
    insert_refresh(&mut tx, next).await?;
    tx.commit().await?;
    Ok(true)
}

/// Ends a session: its access tokens and refresh tokens stop working.
pub async fn revoke_session(pool: &PgPool, session_id: Uuid) -> Result<(), ConnectorError> {
    sqlx::query("UPDATE auth_sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
        .bind(session_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Whether a session is open (exists and is not revoked).
pub async fn session_open(pool: &PgPool, session_id: Uuid) -> Result<bool, ConnectorError> {
    let row: Option<(bool,)> =
        sqlx::query_as("SELECT revoked_at IS NULL FROM auth_sessions WHERE id = $1")
            .bind(session_id)
            .fetch_optional(pool)
            .await?;
    Ok(row.is_some_and(|(open,)| open))
}

/// The channel on which every gateway hears of revoked keys (payload: the
/// key id), to forget them from its cache at once.
pub const KEYS_REVOKED_CHANNEL: &str = "agentbank_keys_revoked";

/// Deletes the keys of `agent` held by `account` — all of them, or all but
/// `keep` — and tells every gateway in the same transaction. Answers the
/// deleted key ids.
pub async fn revoke_agent_keys(
    pool: &PgPool,
    account: Uuid,
    agent: Uuid,
    keep: Option<&str>,
) -> Result<Vec<String>, ConnectorError> {
    let mut tx = pool.begin().await?;
    let gone: Vec<String> = sqlx::query_scalar(
        "DELETE FROM api_keys WHERE user_id = $1 AND agent_id = $2 \
         AND ($3::text IS NULL OR key_id <> $3) RETURNING key_id",
    )
    .bind(account)
    .bind(agent)
    .bind(keep)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, k) FROM unnest($2::text[]) AS k")
        .bind(KEYS_REVOKED_CHANNEL)
        .bind(&gone)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(gone)
}

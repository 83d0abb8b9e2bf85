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

/// A stored key's columns: secret digest, user, agent, mode, expiry.
type KeyColumns = (Vec<u8>, Uuid, Option<Uuid>, String, Option<DateTime<Utc>>);

/// A key that has not expired, with its expiry (a rotated key's overlap).
pub async fn find_key(
    pool: &PgPool,
    key_id: &str,
) -> Result<Option<(KeyRow, Option<DateTime<Utc>>)>, ConnectorError> {
    let row: Option<KeyColumns> = sqlx::query_as(
        "SELECT secret_sha256, user_id, agent_id, mode, expires_at FROM api_keys \
             WHERE key_id = $1 AND (expires_at IS NULL OR expires_at > now())",
    )
    .bind(key_id)
    .fetch_optional(pool)
    .await?;
    Ok(
        row.map(|(secret_sha256, user_id, agent_id, mode, expires)| {
            (
                KeyRow {
                    key_id: key_id.to_string(),
                    secret_sha256,
                    user_id,
                    agent_id,
                    mode,
                },
                expires,
            )
        }),
    )
}

/// Records that a key was just used (called when a gateway verifies it
/// afresh, so about once a minute per key and gateway at most).
pub async fn touch_key(pool: &PgPool, key_id: &str) -> Result<(), ConnectorError> {
    sqlx::query("UPDATE api_keys SET last_used_at = now() WHERE key_id = $1")
        .bind(key_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Most user keys (not agents') one account may hold.
pub const USER_KEYS_MAX: i64 = 20;

/// One of a user's keys as its owner may see it: never the secret.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyInfo {
    pub key_id: String,
    pub name: Option<String>,
    pub mode: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

const KEY_INFO: &str =
    "SELECT key_id, name, mode, created_at, last_used_at, expires_at FROM api_keys";

/// The account's own keys of `mode` (not its agents'), unexpired, oldest first.
pub async fn user_keys(
    pool: &PgPool,
    account: Uuid,
    mode: &str,
) -> Result<Vec<KeyInfo>, ConnectorError> {
    Ok(sqlx::query_as(&format!(
        "{KEY_INFO} WHERE user_id = $1 AND agent_id IS NULL AND mode = $2 \
         AND (expires_at IS NULL OR expires_at > now()) ORDER BY created_at, key_id"
    ))
    .bind(account)
    .bind(mode)
    .fetch_all(pool)
    .await?)
}

/// Adds a named user key unless the account holds [`USER_KEYS_MAX`]
/// already (`Ok(false)`). Serialised per account by a row lock on the user.
pub async fn add_user_key(pool: &PgPool, key: &KeyRow, name: &str) -> Result<bool, ConnectorError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
        .bind(key.user_id)
        .execute(&mut *tx)
        .await?;
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM api_keys WHERE user_id = $1 AND agent_id IS NULL \
         AND (expires_at IS NULL OR expires_at > now())",
    )
    .bind(key.user_id)
    .fetch_one(&mut *tx)
    .await?;
    if held >= USER_KEYS_MAX {
        return Ok(false);
    }
    insert_key_in(&mut tx, key).await?;
    sqlx::query("UPDATE api_keys SET name = $2 WHERE key_id = $1")
        .bind(&key.key_id)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// Revokes one of the account's own keys at once (every gateway hears it).
pub async fn revoke_user_key(
    pool: &PgPool,
    account: Uuid,
    mode: &str,
    key_id: &str,
) -> Result<bool, ConnectorError> {
    let mut tx = pool.begin().await?;
    let gone = sqlx::query(
        "DELETE FROM api_keys WHERE key_id = $1 AND user_id = $2 AND agent_id IS NULL \
         AND mode = $3 AND (expires_at IS NULL OR expires_at > now())",
    )
    .bind(key_id)
    .bind(account)
    .bind(mode)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    if gone {
        notify_revoked(&mut tx, &[key_id.to_string()]).await?;
    }
    tx.commit().await?;
    Ok(gone)
}

/// Rotates one of the account's own keys: `new` (same name) is added and
/// the old key expires after `overlap_s` seconds (at once for 0). `None`:
/// no such key.
pub async fn rotate_user_key(
    pool: &PgPool,
    account: Uuid,
    key_id: &str,
    new: &KeyRow,
    overlap_s: i64,
) -> Result<Option<DateTime<Utc>>, ConnectorError> {
    let mode = &new.mode;
    let mut tx = pool.begin().await?;
    let expires: Option<(Option<String>, DateTime<Utc>)> = sqlx::query_as(
        "UPDATE api_keys SET expires_at = LEAST(coalesce(expires_at, 'infinity'), \
         now() + make_interval(secs => $3)) \
         WHERE key_id = $1 AND user_id = $2 AND agent_id IS NULL AND mode = $4 \
         AND (expires_at IS NULL OR expires_at > now()) RETURNING name, expires_at",
    )
    .bind(key_id)
    .bind(account)
    .bind(overlap_s as f64)
    .bind(mode)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((name, expires_at)) = expires else {
        return Ok(None);
    };
    insert_key_in(&mut tx, new).await?;
    sqlx::query("UPDATE api_keys SET name = $2 WHERE key_id = $1")
        .bind(&new.key_id)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    // Gateways re-read the old key, and with it its expiry.
    notify_revoked(&mut tx, &[key_id.to_string()]).await?;
    tx.commit().await?;
    Ok(Some(expires_at))
}

async fn notify_revoked(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    key_ids: &[String],
) -> Result<(), ConnectorError> {
    sqlx::query("SELECT pg_notify($1, k) FROM unnest($2::text[]) AS k")
        .bind(KEYS_REVOKED_CHANNEL)
        .bind(key_ids)
        .execute(&mut **tx)
        .await?;
    Ok(())
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
    notify_revoked(&mut tx, &gone).await?;
    tx.commit().await?;
    Ok(gone)
}

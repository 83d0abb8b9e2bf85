//! Authentication by `x-api-key`. A key is `mag_<key id>_<secret>`: the key id
//! (public) finds the row, the 256-bit secret is checked against its stored
//! SHA-256 in constant time. Keys are shown once, at creation, and never
//! stored or logged in clear. Passwords are hashed with argon2id.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::cache::KeyCache;
use crate::error::ApiError;
use crate::rate_limit::BudgetSlot;
use crate::AppState;

pub const API_KEY_PREFIX: &str = "mag_";
/// Longest `x-api-key` value we look at.
pub const API_KEY_CHARS_MAX: usize = 128;

/// Who is calling: a user, or one agent acting with its own key.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub user_id: Uuid,
    /// Set when the key is an agent's: it may act only for that agent.
    pub agent_id: Option<Uuid>,
}

impl Caller {
    /// Rejects agent keys where a user's key is needed.
    pub fn require_user_key(&self) -> Result<(), ApiError> {
        match self.agent_id {
            None => Ok(()),
            Some(_) => Err(ApiError::Forbidden(
                "This operation requires a user API key".into(),
            )),
        }
    }

    /// Whether this caller may act for `agent_id` (ownership is checked by the
    /// processor or the scoped query; this narrows agent keys further).
    pub fn may_act_for(&self, agent_id: Uuid) -> bool {
        self.agent_id.is_none_or(|a| a == agent_id)
    }
}

/// A newly minted key: the text for the client and what we store.
pub struct NewKey {
    pub text: String,
    pub key_id: String,
    pub secret_sha256: Vec<u8>,
}

pub fn mint_key() -> NewKey {
    let mut id = [0u8; 12];
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let key_id = bs58::encode(id).into_string();
    let text = format!(
        "{API_KEY_PREFIX}{key_id}_{}",
        bs58::encode(secret).into_string()
    );
    NewKey {
        text,
        key_id,
        secret_sha256: Sha256::digest(secret).to_vec(),
    }
}

/// Splits `mag_<key id>_<secret>` into the key id and the decoded secret.
pub fn parse_key(text: &str) -> Option<(&str, Vec<u8>)> {
    if text.len() > API_KEY_CHARS_MAX {
        return None;
    }
    let rest = text.strip_prefix(API_KEY_PREFIX)?;
    let (key_id, secret) = rest.split_once('_')?;
    let secret = bs58::decode(secret).into_vec().ok()?;
    Some((key_id, secret))
}

pub async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ApiError::Internal(format!("argon2: {e}")))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// Verifies an `x-api-key` value: the key id finds the key (in the cache of
/// recently verified keys, else the `api_keys` table), the secret's SHA-256
/// is compared in constant time (also when the id is unknown, so timing says
/// nothing). Returns the key id (the rate-limit key) and who is calling.
pub async fn verify_key(
    pool: &sqlx::PgPool,
    keys: &KeyCache,
    header: Option<&str>,
) -> Result<(String, Caller), ApiError> {
    let invalid = || ApiError::Unauthorized("Invalid or missing API key".into());
    let (key_id, secret) = parse_key(header.ok_or_else(invalid)?.trim()).ok_or_else(invalid)?;
    let cached = keys.get(key_id);
    let (stored, user_id, agent_id) = match &cached {
        Some((digest, (user_id, agent_id))) => (digest.clone(), *user_id, *agent_id),
        None => {
            let row: Option<(Vec<u8>, Uuid, Option<Uuid>)> = sqlx::query_as(
                "SELECT secret_sha256, user_id, agent_id FROM api_keys WHERE key_id = $1",
            )
            .bind(key_id)
            .fetch_optional(pool)
            .await?;
            row.unwrap_or((vec![0u8; 32], Uuid::nil(), None))
        }
    };
    let matches: bool = stored
        .as_slice()
        .ct_eq(Sha256::digest(&secret).as_slice())
        .into();
    if !matches || user_id.is_nil() {
        return Err(invalid());
    }
    if cached.is_none() {
        keys.put(key_id, stored, (user_id, agent_id));
    }
    Ok((key_id.to_string(), Caller { user_id, agent_id }))
}

/// Creates a user and its first API key in one transaction; an email already
/// taken (case-insensitively) is a 409.
pub async fn create_user(
    pool: &sqlx::PgPool,
    name: &str,
    email: &str,
    password_hash: &str,
) -> Result<(Uuid, NewKey), ApiError> {
    let (user_id, key) = (Uuid::new_v4(), mint_key());
    let mut tx = pool.begin().await?;
    let inserted =
        sqlx::query("INSERT INTO users (id, name, email, password_hash) VALUES ($1, $2, $3, $4)")
            .bind(user_id)
            .bind(name)
            .bind(email)
            .bind(password_hash)
            .execute(&mut *tx)
            .await;
    if let Err(sqlx::Error::Database(e)) = &inserted {
        if e.is_unique_violation() {
            return Err(ApiError::Conflict(
                "A user with this email already exists".into(),
            ));
        }
    }
    inserted?;
    sqlx::query("INSERT INTO api_keys (key_id, secret_sha256, user_id) VALUES ($1, $2, $3)")
        .bind(&key.key_id)
        .bind(&key.secret_sha256)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((user_id, key))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get("x-api-key").and_then(|v| v.to_str().ok());
        let (key_id, caller) = verify_key(&state.pool, &state.caches.keys, header).await?;
        let checked = state.limits.check(&key_id);
        if let Some(slot) = parts.extensions.get::<BudgetSlot>() {
            let budget = match &checked {
                Ok(b) => *b,
                Err(limited) => limited.budget,
            };
            *slot.0.lock().expect("budget slot") = Some(budget);
        }
        if let Err(limited) = checked {
            metrics::counter!("agentbank_gateway_rate_limited_total").increment(1);
            return Err(ApiError::RateLimited {
                retry_after_s: limited.retry_after_s,
            });
        }
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_keys_parse_back_to_their_secret() {
        let k = mint_key();
        let (id, secret) = parse_key(&k.text).unwrap();
        assert_eq!(id, k.key_id);
        assert_eq!(Sha256::digest(&secret).to_vec(), k.secret_sha256);
        assert!(parse_key("mag_nounderscore").is_none());
        assert!(parse_key("xyz_a_b").is_none());
        assert!(parse_key(&"m".repeat(500)).is_none());
    }
}

//! Login sessions: `login` checks the password and opens a session with an
//! access token (a JWT, [`super::jwt`]) and a refresh token; `refresh`
//! spends a refresh token for a new pair; `logout` revokes the session.
//!
//! Refresh tokens are opaque (`rt_<id>_<secret>`), single-use and stored as
//! the SHA-256 of their secret. Presenting a spent one is taken as theft (one
//! of two holders is not the user) and revokes the whole session, so every
//! token of its family stops working. Access tokens are checked against
//! their session (cached for a minute), so logout ends them too.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::Utc;
use rand::RngCore;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use connectors::read_model::identity::{self, RefreshRow};

use super::api_key::verify_password;
use super::jwt::Claims;
use crate::error::ApiError;
use crate::AppState;

pub const REFRESH_PREFIX: &str = "rt_";
/// Longest refresh token looked at.
pub const REFRESH_CHARS_MAX: usize = 128;

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn invalid_login() -> ApiError {
    ApiError::Unauthorized("Invalid email or password".into())
}

fn invalid_refresh() -> ApiError {
    ApiError::Unauthorized("Invalid or expired refresh token".into())
}

/// A new refresh token of `session_id`: the text and the row.
fn mint_refresh(state: &AppState, session_id: Uuid) -> (String, RefreshRow) {
    let id = Uuid::new_v4();
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let ttl = state.identity.jwt.config().refresh_ttl;
    let row = RefreshRow {
        id,
        session_id,
        secret_sha256: Sha256::digest(secret).to_vec(),
        expires_at: Utc::now()
            + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(30)),
    };
    let text = format!(
        "{REFRESH_PREFIX}{}_{}",
        id.simple(),
        bs58::encode(secret).into_string()
    );
    (text, row)
}

fn parse_refresh(text: &str) -> Option<(Uuid, Vec<u8>)> {
    if text.len() > REFRESH_CHARS_MAX {
        return None;
    }
    let (id, secret) = text.strip_prefix(REFRESH_PREFIX)?.split_once('_')?;
    Some((
        Uuid::try_parse(id).ok()?,
        bs58::decode(secret).into_vec().ok()?,
    ))
}

/// The token pair answered by login and refresh.
fn pair(
    state: &AppState,
    user_id: Uuid,
    session_id: Uuid,
    refresh: String,
) -> Result<Value, ApiError> {
    let access = state
        .identity
        .jwt
        .issue(user_id, session_id, now_s())
        .map_err(|e| ApiError::Internal(format!("jwt: {e}")))?;
    Ok(json!({
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "bearer",
        "expires_in": state.identity.jwt.config().access_ttl.as_secs(),
    }))
}

/// Checks `email`/`password` and opens a session.
pub async fn login(state: &AppState, email: &str, password: String) -> Result<Value, ApiError> {
    let found = identity::find_login(&state.pool, email).await?;
    let ok = verify_password(password, found.as_ref().map(|(_, h)| h.clone())).await?;
    let user_id = match (ok, found) {
        (true, Some((id, _))) => id,
        _ => {
            metrics::counter!("agentbank_auth_logins_total", "result" => "refused").increment(1);
            return Err(invalid_login());
        }
    };
    let session_id = Uuid::new_v4();
    let (text, row) = mint_refresh(state, session_id);
    identity::open_session(&state.pool, user_id, &row).await?;
    metrics::counter!("agentbank_auth_logins_total", "result" => "ok").increment(1);
    pair(state, user_id, session_id, text)
}

/// Spends a refresh token for a new pair; a spent token revokes its session.
pub async fn refresh(state: &AppState, presented: &str) -> Result<Value, ApiError> {
    let (id, secret) = parse_refresh(presented.trim()).ok_or_else(invalid_refresh)?;
    let Some(found) = identity::find_refresh(&state.pool, id).await? else {
        return Err(invalid_refresh());
    };
    let matches: bool = found
        .secret_sha256
        .as_slice()
        .ct_eq(Sha256::digest(&secret).as_slice())
        .into();
    if !matches || found.session_revoked || found.expires_at <= Utc::now() {
        return Err(invalid_refresh());
    }
    let reused = || async {
        tracing::warn!(session = %found.session_id, "spent refresh token presented again: session revoked");
        metrics::counter!("agentbank_auth_refresh_reuse_total").increment(1);
        identity::revoke_session(&state.pool, found.session_id).await?;
        state.caches.sessions.forget(&found.session_id);
        Err::<Value, ApiError>(ApiError::Unauthorized(
            "Refresh token already used; the session is revoked, log in again".into(),
        ))
    };
    if found.used {
        return reused().await;
    }
    let (text, row) = mint_refresh(state, found.session_id);
    if !identity::rotate_refresh(&state.pool, id, &row).await? {
        return reused().await;
    }
    pair(state, found.user_id, found.session_id, text)
}

/// Revokes the session of the presented access token.
pub async fn logout(state: &AppState, claims: &Claims) -> Result<(), ApiError> {
    identity::revoke_session(&state.pool, claims.sid).await?;
    state.caches.sessions.forget(&claims.sid);
    Ok(())
}

/// The claims of a valid access token whose session is open.
pub async fn verify_access(state: &AppState, token: &str) -> Result<Claims, ApiError> {
    let invalid = || ApiError::Unauthorized("Invalid or expired access token".into());
    let claims = state.identity.jwt.verify(token).ok_or_else(invalid)?;
    if state.caches.sessions.get(&claims.sid).is_none() {
        if !identity::session_open(&state.pool, claims.sid).await? {
            return Err(invalid());
        }
        state.caches.sessions.put(claims.sid, ());
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_parse_strictly() {
        let id = Uuid::new_v4();
        let text = format!(
            "rt_{}_{}",
            id.simple(),
            bs58::encode([7u8; 32]).into_string()
        );
        assert_eq!(parse_refresh(&text), Some((id, vec![7u8; 32])));
        assert!(parse_refresh("rt_nothex_abc").is_none());
        assert!(parse_refresh(&format!("xx_{}_abc", id.simple())).is_none());
        assert!(parse_refresh(&"r".repeat(500)).is_none());
    }
}

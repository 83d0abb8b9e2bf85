//! API keys. A key is `mag_<key id>_<secret>` (live) or `test_sk_<key
//! id>_<secret>` (sandbox): the key id (public) finds the row, the 256-bit
//! secret is checked against its stored SHA-256 in constant time. Keys are
//! shown once, at creation, and never stored or logged in clear. Passwords
//! are hashed with argon2id.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use connectors::read_model::identity::{self, KeyRow};

use crate::cache::KeyCache;
use crate::error::ApiError;
use crate::tenant::Mode;

pub const API_KEY_PREFIX: &str = "mag_";
pub const TEST_KEY_PREFIX: &str = "test_sk_";
/// Longest `x-api-key` value we look at.
pub const API_KEY_CHARS_MAX: usize = 128;

/// A newly minted key: the text for the client and the row we store.
pub struct NewKey {
    pub text: String,
    pub row: KeyRow,
}

/// Mints a key for `user_id` (the account, never a sandbox tenant) and, for
/// an agent's key, its agent.
pub fn mint_key(user_id: Uuid, agent_id: Option<Uuid>, mode: Mode) -> NewKey {
    let mut id = [0u8; 12];
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let key_id = bs58::encode(id).into_string();
    let prefix = match mode {
        Mode::Live => API_KEY_PREFIX,
        Mode::Test => TEST_KEY_PREFIX,
    };
    let text = format!("{prefix}{key_id}_{}", bs58::encode(secret).into_string());
    NewKey {
        text,
        row: KeyRow {
            key_id,
            secret_sha256: Sha256::digest(secret).to_vec(),
            user_id,
            agent_id,
            mode: mode.as_str().to_string(),
        },
    }
}

/// Splits a key into its mode, key id and decoded secret.
pub fn parse_key(text: &str) -> Option<(Mode, &str, Vec<u8>)> {
    if text.len() > API_KEY_CHARS_MAX {
        return None;
    }
    let (mode, rest) = match text.strip_prefix(API_KEY_PREFIX) {
        Some(rest) => (Mode::Live, rest),
        None => (Mode::Test, text.strip_prefix(TEST_KEY_PREFIX)?),
    };
    let (key_id, secret) = rest.split_once('_')?;
    let secret = bs58::decode(secret).into_vec().ok()?;
    Some((mode, key_id, secret))
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

/// A valid argon2id hash of no one's password: verified against when the
/// email is unknown, so a login's timing does not tell which emails exist.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$7lY2DmrbOy1JAg2Ps4HVd6PRRVZjpwdE8fT2R3ogrMA";

/// Whether `password` matches `hash` (argon2, constant time); `None` checks
/// against a decoy and answers `false`.
pub async fn verify_password(password: String, hash: Option<String>) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let text = hash.unwrap_or_else(|| DECOY_HASH.to_string());
        let parsed =
            PasswordHash::new(&text).map_err(|e| ApiError::Internal(format!("argon2: {e}")))?;
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(ok && known)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// A verified key: its id (the bank routes' rate-limit key) and row.
pub struct VerifiedKey {
    pub key_id: String,
    pub user_id: Uuid,
    pub agent_id: Option<Uuid>,
    pub mode: Mode,
}

/// Verifies an `x-api-key` value: the key id finds the key (in the cache of
/// recently verified keys, else Postgres), the secret's SHA-256 is compared
/// in constant time (also when the id is unknown, so timing says nothing),
/// and the key's mode must be the one its prefix claims.
pub async fn verify_key(
    pool: &sqlx::PgPool,
    keys: &KeyCache,
    header: Option<&str>,
) -> Result<VerifiedKey, ApiError> {
    let invalid = || ApiError::Unauthorized("Invalid or missing API key".into());
    let (mode, key_id, secret) =
        parse_key(header.ok_or_else(invalid)?.trim()).ok_or_else(invalid)?;
    let cached = keys.get(key_id);
    let mut expires_ms = None;
    let (stored, user_id, agent_id, stored_mode) = match &cached {
        Some((digest, (user_id, agent_id, mode))) => (digest.clone(), *user_id, *agent_id, *mode),
        None => match identity::find_key(pool, key_id).await? {
            Some((row, expires)) => {
                expires_ms = expires.map(|t| t.timestamp_millis());
                (
                    row.secret_sha256,
                    row.user_id,
                    row.agent_id,
                    Mode::parse(&row.mode),
                )
            }
            None => (vec![0u8; 32], Uuid::nil(), None, mode),
        },
    };
    let matches: bool = stored
        .as_slice()
        .ct_eq(Sha256::digest(&secret).as_slice())
        .into();
    if !matches || user_id.is_nil() || stored_mode != mode {
        return Err(invalid());
    }
    if cached.is_none() {
        keys.put(key_id, stored, (user_id, agent_id, mode), expires_ms);
        // Verified afresh: about once a minute per key and gateway.
        identity::touch_key(pool, key_id).await?;
    }
    Ok(VerifiedKey {
        key_id: key_id.to_string(),
        user_id,
        agent_id,
        mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_keys_parse_back_to_their_secret_and_mode() {
        for mode in [Mode::Live, Mode::Test] {
            let k = mint_key(Uuid::new_v4(), None, mode);
            let (m, id, secret) = parse_key(&k.text).unwrap();
            assert_eq!((m, id), (mode, k.row.key_id.as_str()));
            assert_eq!(Sha256::digest(&secret).to_vec(), k.row.secret_sha256);
        }
        assert!(mint_key(Uuid::nil(), None, Mode::Test)
            .text
            .starts_with("test_sk_"));
        assert!(parse_key("mag_nounderscore").is_none());
        assert!(parse_key("xyz_a_b").is_none());
        assert!(parse_key(&"m".repeat(500)).is_none());
    }

    #[tokio::test]
    async fn passwords_verify_and_the_decoy_never_does() {
        let hash = hash_password("correct horse".into()).await.unwrap();
        assert!(verify_password("correct horse".into(), Some(hash.clone()))
            .await
            .unwrap());
        assert!(!verify_password("wrong".into(), Some(hash)).await.unwrap());
        assert!(!verify_password("anything".into(), None).await.unwrap());
    }
}

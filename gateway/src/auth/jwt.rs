//! Access tokens: HS256 JWTs (the `jsonwebtoken` crate) signed with the
//! first configured key and verified with any of them, found by the header's
//! `kid` — so keys rotate by adding a new first key and retiring the old one
//! after the access-token lifetime. `exp`, `iat`, `iss` and `aud` are
//! checked; `sid` names the login session, which logout revokes.

use std::collections::HashMap;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Signing configuration, read once at start-up.
#[derive(Clone)]
pub struct JwtConfig {
    /// `(kid, secret)`, the first signs; all verify.
    keys: Vec<(String, Vec<u8>)>,
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("JwtConfig")
            .field("kids", &kids)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .finish()
    }
}

/// The development signing key, used only when none is configured (and
/// said so in the log).
pub const DEV_KEYS: &str =
    "dev:6167656e7462616e6b2d6a77742d6465762d6b65792d6e6f742d666f722d70726f64";
/// Shortest signing secret accepted (HS256 wants at least its hash's size).
pub const SECRET_BYTES_MIN: usize = 32;

/// Why a JWT configuration was refused.
#[derive(Debug, thiserror::Error)]
#[error("AGENTBANK_JWT_KEYS: {0}")]
pub struct JwtConfigError(String);

impl JwtConfig {
    /// From `kid:hexsecret[,kid:hexsecret…]`.
    pub fn new(
        keys: &str,
        issuer: &str,
        audience: &str,
        access_ttl: Duration,
        refresh_ttl: Duration,
    ) -> Result<Self, JwtConfigError> {
        let mut parsed = Vec::new();
        for entry in keys.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (kid, hex_secret) = entry
                .split_once(':')
                .ok_or_else(|| JwtConfigError("each key is kid:hexsecret".into()))?;
            let secret = hex::decode(hex_secret)
                .map_err(|_| JwtConfigError(format!("key {kid}: the secret is not hex")))?;
            if kid.is_empty() || secret.len() < SECRET_BYTES_MIN {
                return Err(JwtConfigError(format!(
                    "key {kid:?}: needs a kid and at least {SECRET_BYTES_MIN} bytes of secret"
                )));
            }
            parsed.push((kid.to_string(), secret));
        }
        if parsed.is_empty() {
            return Err(JwtConfigError("no keys".into()));
        }
        Ok(JwtConfig {
            keys: parsed,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            access_ttl,
            refresh_ttl,
        })
    }
}

/// An access token's claims.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user.
    pub sub: Uuid,
    /// The login session.
    pub sid: Uuid,
    pub iat: u64,
    pub exp: u64,
    pub iss: String,
    pub aud: String,
}

/// Signs and verifies access tokens.
pub struct Jwt {
    config: JwtConfig,
    signing: (String, EncodingKey),
    verifying: HashMap<String, DecodingKey>,
    validation: Validation,
}

impl Jwt {
    pub fn new(config: JwtConfig) -> Self {
        let (kid, secret) = &config.keys[0];
        let signing = (kid.clone(), EncodingKey::from_secret(secret));
        let verifying = config
            .keys
            .iter()
            .map(|(kid, s)| (kid.clone(), DecodingKey::from_secret(s)))
            .collect();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 1;
        Jwt {
            config,
            signing,
            verifying,
            validation,
        }
    }

    pub fn config(&self) -> &JwtConfig {
        &self.config
    }

    /// An access token for `user_id` in session `sid`, issued at `now_s`.
    pub fn issue(
        &self,
        user_id: Uuid,
        sid: Uuid,
        now_s: u64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = Claims {
            sub: user_id,
            sid,
            iat: now_s,
            exp: now_s + self.config.access_ttl.as_secs().max(1),
            iss: self.config.issuer.clone(),
            aud: self.config.audience.clone(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.signing.0.clone());
        jsonwebtoken::encode(&header, &claims, &self.signing.1)
    }

    /// The claims of a valid token (signature, `kid`, `exp`, `iss`, `aud`);
    /// `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let key = self.verifying.get(header.kid.as_deref()?)?;
        jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .ok()
            .map(|d| d.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn jwt(keys: &str, aud: &str) -> Jwt {
        let h = Duration::from_secs(3600);
        Jwt::new(JwtConfig::new(keys, "agentbank", aud, h, h).unwrap())
    }

    const K1: &str = "k1:0000000000000000000000000000000000000000000000000000000000000001";
    const K2: &str = "k2:0000000000000000000000000000000000000000000000000000000000000002";

    #[test]
    fn tokens_verify_and_rotate_by_kid() {
        let (user, sid) = (Uuid::new_v4(), Uuid::new_v4());
        let old = jwt(K1, "api");
        let token = old.issue(user, sid, now()).unwrap();
        assert_eq!(old.verify(&token).unwrap().sub, user);
        // Rotated: k2 signs, k1 still verifies until retired.
        let rotated = jwt(&format!("{K2},{K1}"), "api");
        assert_eq!(rotated.verify(&token).unwrap().sid, sid);
        assert!(rotated.issue(user, sid, now()).is_ok());
        // Retired.
        assert!(jwt(K2, "api").verify(&token).is_none());
    }

    #[test]
    fn expired_foreign_and_tampered_tokens_fail() {
        let j = jwt(K1, "api");
        let user = Uuid::new_v4();
        assert!(j
            .verify(&j.issue(user, user, now() - 7200).unwrap())
            .is_none());
        assert!(jwt(K1, "other")
            .verify(&j.issue(user, user, now()).unwrap())
            .is_none());
        let mut t = j.issue(user, user, now()).unwrap();
        t.push('x');
        assert!(j.verify(&t).is_none());
        assert!(j.verify("not a token").is_none());
    }

    #[test]
    fn bad_configuration_is_refused() {
        let h = Duration::from_secs(1);
        assert!(JwtConfig::new("", "i", "a", h, h).is_err());
        assert!(JwtConfig::new("k:zz", "i", "a", h, h).is_err());
        assert!(JwtConfig::new("k:00", "i", "a", h, h).is_err());
        assert!(JwtConfig::new(DEV_KEYS, "i", "a", h, h).is_ok());
    }
}

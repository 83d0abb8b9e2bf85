//! Service tokens (`X-Service-Token`), for service-to-service calls. Each is
//! configured as `name:scope[+scope…]:<SHA-256 hex of the token>` — only the
//! digest is ever stored — and a presented token is hashed and compared in
//! constant time against every configured digest.
//!
//! Scopes: `act` — call any route for the user named by `X-On-Behalf-Of`;
//! `tiers` — set users' rate-limit tiers (`PUT /v1/admin/users/{id}/tier`);
//! `operate` — control the vertical agents (`POST /v1/agents/{id}/control`)
//! and see their figures over all tenants (`GET /v1/agents`).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a service token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Act,
    Tiers,
    Operate,
}

impl Scope {
    fn parse(s: &str) -> Option<Scope> {
        match s {
            "act" => Some(Scope::Act),
            "tiers" => Some(Scope::Tiers),
            "operate" => Some(Scope::Operate),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct ServiceToken {
    name: String,
    scopes: Vec<Scope>,
    sha256: [u8; 32],
}

/// The configured service tokens.
#[derive(Debug, Clone, Default)]
pub struct ServiceTokens(Vec<ServiceToken>);

/// A verified service: its name (for logs and rate limits) and scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub scopes: Vec<Scope>,
}

impl Service {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// Why a service-token configuration was refused.
#[derive(Debug, thiserror::Error)]
#[error("AGENTBANK_SERVICE_TOKENS: {0}")]
pub struct ServiceTokensError(String);

/// Longest `X-Service-Token` value looked at.
pub const SERVICE_TOKEN_CHARS_MAX: usize = 256;

/// The service behind the request's `X-Service-Token`, which must carry
/// `scope` (`doing` names what it was for, in the refusal): 401 without a
/// valid token, 403 without the scope.
pub fn require(
    tokens: &ServiceTokens,
    headers: &axum::http::HeaderMap,
    scope: Scope,
    doing: &str,
) -> Result<Service, crate::error::ApiError> {
    use crate::error::ApiError;
    let service = headers
        .get("x-service-token")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| tokens.verify(t.trim()))
        .ok_or_else(|| ApiError::Unauthorized("A valid X-Service-Token is required".into()))?;
    if !service.has(scope) {
        return Err(ApiError::Forbidden(format!(
            "This service token may not {doing}"
        )));
    }
    Ok(service)
}

impl ServiceTokens {
    /// From `name:scopes:sha256hex[,…]` (empty: none).
    pub fn parse(config: &str) -> Result<Self, ServiceTokensError> {
        let mut tokens = Vec::new();
        for entry in config.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let mut parts = entry.splitn(3, ':');
            let (Some(name), Some(scopes), Some(digest)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(ServiceTokensError(
                    "each token is name:scopes:sha256hex".into(),
                ));
            };
            let scopes = scopes
                .split('+')
                .map(|s| {
                    Scope::parse(s)
                        .ok_or_else(|| ServiceTokensError(format!("{name}: unknown scope {s:?}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let sha256: [u8; 32] = hex::decode(digest)
                .ok()
                .and_then(|d| d.try_into().ok())
                .ok_or_else(|| {
                    ServiceTokensError(format!("{name}: the digest must be 64 hex digits"))
                })?;
            tokens.push(ServiceToken {
                name: name.to_string(),
                scopes,
                sha256,
            });
        }
        Ok(ServiceTokens(tokens))
    }

    /// The service a presented token belongs to.
    pub fn verify(&self, presented: &str) -> Option<Service> {
        if presented.len() > SERVICE_TOKEN_CHARS_MAX {
            return None;
        }
        let digest = Sha256::digest(presented.as_bytes());
        let mut found = None;
        // Every digest is compared, so timing does not tell which matched.
        for t in &self.0 {
            if bool::from(t.sha256.ct_eq(digest.as_slice())) {
                found = Some(Service {
                    name: t.name.clone(),
                    scopes: t.scopes.clone(),
                });
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_by_digest_with_their_scopes() {
        let digest = hex::encode(Sha256::digest(b"s3cret-token"));
        let tokens = ServiceTokens::parse(&format!("billing:act+tiers:{digest}")).unwrap();
        let s = tokens.verify("s3cret-token").unwrap();
        assert_eq!(s.name, "billing");
        assert!(s.has(Scope::Act) && s.has(Scope::Tiers));
        assert!(tokens.verify("s3cret-tokeN").is_none());
        assert!(ServiceTokens::parse("x:act:zz").is_err());
        assert!(ServiceTokens::parse(&format!("x:fly:{digest}")).is_err());
        assert!(ServiceTokens::parse("").unwrap().verify("").is_none());
    }
}

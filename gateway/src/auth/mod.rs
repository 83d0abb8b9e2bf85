//! Authentication, one identity for both APIs. Every route accepts any of:
//!
//! - `x-api-key`: a user's or an agent's key ([`api_key`]); `test_sk_` keys
//!   act in the user's sandbox ([`crate::tenant`]);
//! - `Authorization: Bearer <JWT>` from `POST /v1/auth/login` ([`jwt`],
//!   [`sessions`]): the user, live;
//! - `X-Service-Token` with scope `act` and `X-On-Behalf-Of: <user id>`
//!   ([`service`]): that user, live.
//!
//! The [`Caller`] extractor authenticates, then counts the request against
//! the route's limits: the agent bank's per-key budgets, or on revenue routes
//! (marked by the [`Product`] extension) the tenant's tier.

pub mod api_key;
pub mod jwt;
pub mod keys;
pub mod routes;
pub mod service;
pub mod sessions;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use uuid::Uuid;

pub use api_key::{hash_password, mint_key, verify_key};

use crate::error::ApiError;
use crate::rate_limit::{Budget, BudgetSlot, Limited};
use crate::tenant::{tenant_of, Mode};
use crate::AppState;

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    ApiKey,
    Bearer,
    Service,
}

/// Which product's conventions a route follows (limits, error shape); set
/// as a request extension by the revenue router, bank by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    Bank,
    Revenue,
}

/// Who is calling: a tenant (a user, live or sandbox), or one agent acting
/// with its own key.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// The tenant every query is scoped to: the user's id, or its sandbox's.
    pub user_id: Uuid,
    /// The account behind the tenant (the `users` row).
    pub account_id: Uuid,
    /// Set when the key is an agent's: it may act only for that agent.
    pub agent_id: Option<Uuid>,
    pub mode: Mode,
    pub method: Method,
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

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Longest `Authorization` header looked at.
pub const AUTHORIZATION_CHARS_MAX: usize = 4_096;

/// Authenticates by whichever method the request uses (a service token, a
/// bearer token, an API key — in that order when several are sent). Returns
/// the caller and the key its bank-route budget is counted under.
pub async fn authenticate(
    headers: &HeaderMap,
    state: &AppState,
) -> Result<(Caller, String), ApiError> {
    if let Some(token) = header(headers, "x-service-token") {
        let service = state
            .identity
            .services
            .verify(token.trim())
            .ok_or_else(|| ApiError::Unauthorized("Invalid service token".into()))?;
        if !service.has(service::Scope::Act) {
            return Err(ApiError::Forbidden(
                "This service token may not act for users".into(),
            ));
        }
        let user_id = header(headers, "x-on-behalf-of")
            .and_then(|v| Uuid::parse_str(v.trim()).ok())
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "X-On-Behalf-Of must name the user (a UUID) a service acts for".into(),
                )
            })?;
        if state.tier_of(user_id).await?.is_none() {
            return Err(ApiError::Unauthorized(
                "Unknown user in X-On-Behalf-Of".into(),
            ));
        }
        let caller = Caller {
            user_id,
            account_id: user_id,
            agent_id: None,
            mode: Mode::Live,
            method: Method::Service,
        };
        return Ok((caller, format!("svc:{}:{user_id}", service.name)));
    }
    if let Some(value) = header(headers, "authorization") {
        let token = value
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("bearer "))
            .map(|_| value[7..].trim())
            .filter(|_| value.len() <= AUTHORIZATION_CHARS_MAX)
            .ok_or_else(|| {
                ApiError::Unauthorized("Authorization must be 'Bearer <token>'".into())
            })?;
        let claims = sessions::verify_access(state, token).await?;
        let caller = Caller {
            user_id: claims.sub,
            account_id: claims.sub,
            agent_id: None,
            mode: Mode::Live,
            method: Method::Bearer,
        };
        return Ok((caller, format!("user:{}", claims.sub)));
    }
    let key = verify_key(
        &state.pool,
        &state.caches.keys,
        header(headers, "x-api-key"),
    )
    .await?;
    let caller = Caller {
        user_id: tenant_of(key.user_id, key.mode),
        account_id: key.user_id,
        agent_id: key.agent_id,
        mode: key.mode,
        method: Method::ApiKey,
    };
    Ok((caller, key.key_id))
}

/// The tenant a bare token (the WebSocket `auth` message's) acts as: an API
/// key, or else an access token.
pub async fn authenticate_token(state: &AppState, token: &str) -> Result<Uuid, ApiError> {
    let token = token.trim();
    if token.starts_with(api_key::API_KEY_PREFIX) || token.starts_with(api_key::TEST_KEY_PREFIX) {
        let key = verify_key(&state.pool, &state.caches.keys, Some(token)).await?;
        return Ok(tenant_of(key.user_id, key.mode));
    }
    Ok(sessions::verify_access(state, token).await?.sub)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (caller, rate_key) = authenticate(&parts.headers, state).await?;
        let product = parts
            .extensions
            .get::<Product>()
            .copied()
            .unwrap_or(Product::Bank);
        let checked: Result<Option<Budget>, Limited> = match product {
            Product::Bank => state.limits.check(&rate_key).map(Some),
            Product::Revenue => {
                let tier = state
                    .tier_of(caller.account_id)
                    .await?
                    .unwrap_or(state.config.default_tier);
                state.tier_limits.check(tier, &caller.user_id.to_string())
            }
        };
        if let Some(slot) = parts.extensions.get::<BudgetSlot>() {
            let budget = match &checked {
                Ok(b) => *b,
                Err(limited) => Some(limited.budget),
            };
            *slot.0.lock().expect("budget slot") = budget;
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

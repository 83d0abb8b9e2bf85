//! The identity routes (revenue conventions: errors in the envelope):
//! `POST /v1/auth/login`, `/v1/auth/refresh`, `/v1/auth/logout`,
//! `GET /v1/auth/me`, `POST /v1/sandbox/keys` (a `test_sk_` key), and
//! `PUT /v1/admin/users/{user_id}/tier` (service token with scope `tiers`).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};
use uuid::Uuid;

use connectors::read_model::identity;

use super::service::{self, Scope};
use super::{mint_key, sessions, Caller, Method};
use crate::body::JsonObject;
use crate::error::ApiError;
use crate::rate_limit::Tier;
#[allow(unused_imports)] // named by the OpenAPI attributes
use crate::revenue::schema::{
    ErrorEnvelope, LoginRequest, Me, RefreshRequest, SandboxKey, SetTierRequest, TierSet, TokenPair,
};
use crate::tenant::Mode;
use crate::AppState;

/// Longest email or password looked at on login.
pub const LOGIN_FIELD_CHARS_MAX: usize = 254;

/// `POST /v1/auth/login {email, password}`.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest, security(()),
    responses((status = 200, body = TokenPair), (status = 400, body = ErrorEnvelope),
              (status = 401, description = "Invalid email or password", body = ErrorEnvelope),
              (status = 415, body = ErrorEnvelope), (status = 429, body = ErrorEnvelope)))]
pub async fn login(
    State(state): State<AppState>,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    let missing = "email and password are required";
    let email = body.str("email", LOGIN_FIELD_CHARS_MAX, missing)?;
    let password = body.str("password", LOGIN_FIELD_CHARS_MAX, missing)?;
    Ok(Json(sessions::login(&state, &email, password).await?))
}

/// `POST /v1/auth/refresh {refresh_token}`.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest, security(()),
    responses((status = 200, body = TokenPair), (status = 400, body = ErrorEnvelope),
              (status = 401, description = "Invalid, expired or spent (the session is revoked)", body = ErrorEnvelope),
              (status = 415, body = ErrorEnvelope)))]
pub async fn refresh(
    State(state): State<AppState>,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    let token = body.str(
        "refresh_token",
        sessions::REFRESH_CHARS_MAX,
        "refresh_token is required",
    )?;
    Ok(Json(sessions::refresh(&state, &token).await?))
}

/// `POST /v1/auth/logout` with the session's bearer token → 204.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "The session is revoked"),
              (status = 401, body = ErrorEnvelope)))]
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .ok_or_else(|| ApiError::Unauthorized("Logout needs the session's bearer token".into()))?;
    let claims = sessions::verify_access(&state, token.trim()).await?;
    sessions::logout(&state, &claims).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/auth/me`: who the credentials act as.
#[utoipa::path(get, path = "/auth/me", tag = "auth",
    responses((status = 200, body = Me), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
              (status = 429, body = ErrorEnvelope)))]
pub async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let tier = state
        .tier_of(caller.account_id)
        .await?
        .unwrap_or(state.config.default_tier);
    Ok(Json(json!({
        "tenant_id": caller.user_id,
        "user_id": caller.account_id,
        "agent_id": caller.agent_id,
        "mode": caller.mode.as_str(),
        "auth_method": match caller.method {
            Method::ApiKey => "api_key",
            Method::Bearer => "bearer",
            Method::Service => "service_token",
        },
        "tier": tier.as_str(),
    })))
}

/// `POST /v1/sandbox/keys`: a `test_sk_` key for the caller's sandbox
/// (shown once). Needs the user's live credentials.
#[utoipa::path(post, path = "/sandbox/keys", tag = "auth",
    responses((status = 201, body = SandboxKey), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 429, body = ErrorEnvelope)))]
pub async fn sandbox_key(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_user_key()?;
    if caller.mode != Mode::Live {
        return Err(ApiError::Forbidden(
            "Sandbox keys are created with live credentials".into(),
        ));
    }
    let key = mint_key(caller.account_id, None, Mode::Test);
    identity::insert_key(&state.pool, &key.row).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"api_key": key.text, "mode": "test"})),
    ))
}

/// `PUT /v1/admin/users/{user_id}/tier {tier}` with a service token of scope `tiers`.
#[utoipa::path(put, path = "/admin/users/{user_id}/tier", tag = "auth", request_body = SetTierRequest,
    security(("service_token" = [])),
    params(("user_id" = String, Path)),
    responses((status = 200, body = TierSet), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope)))]
pub async fn set_tier(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    let service = service::require(
        &state.identity.services,
        &headers,
        Scope::Tiers,
        "set tiers",
    )?;
    let not_found = || ApiError::ResourceNotFound {
        resource_type: "user",
        resource_id: user_id.clone(),
    };
    let id = Uuid::parse_str(&user_id).map_err(|_| not_found())?;
    let text = body.str("tier", 20, "tier is required")?;
    let tier = Tier::parse(&text).ok_or_else(|| ApiError::Validation {
        message: format!("Unknown tier {text:?}"),
        details: json!({"field": "tier", "allowed": Tier::ALL.map(Tier::as_str)}),
    })?;
    if !identity::set_tier(&state.pool, id, tier.as_str()).await? {
        return Err(not_found());
    }
    state.caches.tiers.forget(&id);
    tracing::info!(service = %service.name, user = %id, tier = tier.as_str(), "tier set");
    Ok(Json(json!({"user_id": id, "tier": tier.as_str()})))
}

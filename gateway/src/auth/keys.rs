//! `/v1/keys`: a user's own API keys — list them (public id, name, mode,
//! created, last used, expiry; never a secret), add named ones, revoke one
//! at once on every gateway, and rotate one with an overlap window in which
//! the old and the new key both work. Needs the user's credentials (a user
//! key or an access token), never an agent's key; a sandbox key sees and
//! manages sandbox keys only. A lost key is recovered by signing in with
//! the password (`POST /v1/auth/login`) and adding a key with the token.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use connectors::read_model::identity::{self, KeyInfo, USER_KEYS_MAX};

use super::{mint_key, Caller};
use crate::body::{JsonObject, MaybeJsonObject};
use crate::error::ApiError;
use crate::revenue::fields::{invalid, Fields};
#[allow(unused_imports)] // named by the OpenAPI attributes
use crate::revenue::schema::{CommonErrors, ErrorEnvelope};
use crate::AppState;

/// Longest key name.
pub const KEY_NAME_CHARS_MAX: usize = 60;
/// Longest overlap of a rotation: 30 days.
pub const OVERLAP_S_MAX: i64 = 30 * 86_400;
/// A rotation's overlap when none is given: one day.
pub const OVERLAP_S_DEFAULT: i64 = 86_400;

/// One key, as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// The key's public id (`mag_<id>_…`).
    pub id: String,
    /// What the key starts with, to recognise it.
    pub prefix: String,
    pub name: Option<String>,
    /// live or test.
    pub mode: String,
    pub created_at: String,
    /// To about a minute; null if never used.
    pub last_used_at: Option<String>,
    /// Set on a rotated key: it stops working then.
    pub expires_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
    /// Most keys one user may hold.
    pub max: i64,
}

/// A key just made: its secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewKey {
    pub api_key: String,
    pub key: KeyView,
    /// On a rotation: when the old key stops working.
    pub replaces: Option<Replaced>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Replaced {
    pub id: String,
    pub expires_at: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct CreateKeyRequest {
    #[schema(max_length = 60)]
    pub name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct RotateKeyRequest {
    /// Seconds both keys work (0 to 2,592,000; default 86,400).
    pub overlap_seconds: Option<i64>,
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn view(k: KeyInfo) -> KeyView {
    let prefix = match k.mode.as_str() {
        "test" => super::api_key::TEST_KEY_PREFIX,
        _ => super::api_key::API_KEY_PREFIX,
    };
    KeyView {
        prefix: format!("{prefix}{}", k.key_id),
        id: k.key_id,
        name: k.name,
        mode: k.mode,
        created_at: time(k.created_at),
        last_used_at: k.last_used_at.map(time),
        expires_at: k.expires_at.map(time),
    }
}

fn key_not_found(id: &str) -> ApiError {
    ApiError::ResourceNotFound {
        resource_type: "api_key",
        resource_id: id.chars().take(40).collect(),
    }
}

/// `GET /v1/keys`.
#[utoipa::path(get, path = "/keys", tag = "auth",
    responses((status = 200, description = "The caller's keys (never a secret)", body = KeyList), CommonErrors))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<KeyList>, ApiError> {
    caller.require_user_key()?;
    let keys = identity::user_keys(&state.pool, caller.account_id, caller.mode.as_str()).await?;
    Ok(Json(KeyList {
        keys: keys.into_iter().map(view).collect(),
        max: USER_KEYS_MAX,
    }))
}

/// `POST /v1/keys {name}`.
#[utoipa::path(post, path = "/keys", tag = "auth", request_body = CreateKeyRequest,
    responses((status = 201, description = "The new key, shown once", body = NewKey),
              (status = 409, description = "Already at the most keys", body = ErrorEnvelope), CommonErrors))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonObject,
) -> Result<(StatusCode, Json<NewKey>), ApiError> {
    caller.require_user_key()?;
    let f = Fields::root(&body.0);
    f.only(&["name"])?;
    let name = f
        .text("name", KEY_NAME_CHARS_MAX)?
        .ok_or_else(|| invalid("name", "name is required"))?;
    let key = mint_key(caller.account_id, None, caller.mode);
    if !identity::add_user_key(&state.pool, &key.row, &name).await? {
        return Err(ApiError::Conflict(format!(
            "A user holds at most {USER_KEYS_MAX} keys: revoke one first"
        )));
    }
    tracing::info!(user = %caller.account_id, key = %key.row.key_id, "api key created");
    created(&state, &caller, key, None).await
}

/// The answer for a key just made: its secret (this once) and its listing.
async fn created(
    state: &AppState,
    caller: &Caller,
    key: super::api_key::NewKey,
    replaces: Option<Replaced>,
) -> Result<(StatusCode, Json<NewKey>), ApiError> {
    let info = find(state, caller, &key.row.key_id).await?;
    Ok((
        StatusCode::CREATED,
        Json(NewKey {
            api_key: key.text,
            key: info,
            replaces,
        }),
    ))
}

async fn find(state: &AppState, caller: &Caller, id: &str) -> Result<KeyView, ApiError> {
    identity::user_keys(&state.pool, caller.account_id, caller.mode.as_str())
        .await?
        .into_iter()
        .find(|k| k.key_id == id)
        .map(view)
        .ok_or_else(|| key_not_found(id))
}

/// `DELETE /v1/keys/{key_id}`: stops working at once, on every gateway.
#[utoipa::path(delete, path = "/keys/{key_id}", tag = "auth",
    params(("key_id" = String, Path)),
    responses((status = 204, description = "Revoked"), (status = 404, body = ErrorEnvelope), CommonErrors))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_user_key()?;
    if !identity::revoke_user_key(&state.pool, caller.account_id, caller.mode.as_str(), &id).await?
    {
        return Err(key_not_found(&id));
    }
    state.caches.keys.forget(&id);
    tracing::info!(user = %caller.account_id, key = %id, "api key revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/keys/{key_id}/rotate {overlap_seconds?}`: a new key of the
/// same name; the old one keeps working for the overlap, then stops.
#[utoipa::path(post, path = "/keys/{key_id}/rotate", tag = "auth", request_body = RotateKeyRequest,
    params(("key_id" = String, Path)),
    responses((status = 201, description = "The new key, shown once, and the old one's end", body = NewKey),
              (status = 404, body = ErrorEnvelope), CommonErrors))]
pub async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    MaybeJsonObject(body): MaybeJsonObject,
) -> Result<(StatusCode, Json<NewKey>), ApiError> {
    caller.require_user_key()?;
    let overlap = match &body {
        None => OVERLAP_S_DEFAULT,
        Some(b) => {
            let f = Fields::root(&b.0);
            f.only(&["overlap_seconds"])?;
            f.int("overlap_seconds", 0, OVERLAP_S_MAX)?
                .unwrap_or(OVERLAP_S_DEFAULT)
        }
    };
    let key = mint_key(caller.account_id, None, caller.mode);
    let Some(ends) =
        identity::rotate_user_key(&state.pool, caller.account_id, &id, &key.row, overlap).await?
    else {
        return Err(key_not_found(&id));
    };
    state.caches.keys.forget(&id);
    tracing::info!(user = %caller.account_id, old = %id, new = %key.row.key_id, overlap, "api key rotated");
    let replaced = Replaced {
        id,
        expires_at: time(ends),
    };
    created(&state, &caller, key, Some(replaced)).await
}

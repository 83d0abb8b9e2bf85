//! Users: sign-up. A user is identity (the gateway's own table); money is
//! only ever moved through the pipeline.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use schemas::command::GrantSignupBonus;
use schemas::ids::{self, Kind};
use schemas::reply::Outcome;
use schemas::{Command, CommandPayload};
use uuid::Uuid;

use connectors::read_model::identity;

use crate::auth::{hash_password, mint_key};
use crate::body::{JsonObject, NAME_CHARS_MAX};
use crate::commands::unexpected;
use crate::error::ApiError;
use crate::tenant::Mode;
use crate::AppState;

pub const EMAIL_CHARS_MAX: usize = 254;
pub const PASSWORD_CHARS_MIN: usize = 8;
pub const PASSWORD_CHARS_MAX: usize = 128;

fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !email.chars().any(char::is_whitespace)
}

/// `POST /users` — `{name, email, password}` → the user and its API key (shown once).
pub async fn sign_up(
    State(state): State<AppState>,
    body: JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = body.str(
        "name",
        NAME_CHARS_MAX,
        "name, email and password are required",
    )?;
    let email = body.str(
        "email",
        EMAIL_CHARS_MAX,
        "name, email and password are required",
    )?;
    let password = match body.0.get("password") {
        Some(Value::String(p)) if !p.is_empty() => p.clone(),
        Some(v) if !v.is_null() && !v.is_string() => {
            return Err(ApiError::BadRequest("password must be a string".into()))
        }
        _ => {
            return Err(ApiError::BadRequest(
                "name, email and password are required".into(),
            ))
        }
    };
    if !valid_email(&email) {
        return Err(ApiError::BadRequest("email is not a valid address".into()));
    }
    let chars = password.chars().count();
    if !(PASSWORD_CHARS_MIN..=PASSWORD_CHARS_MAX).contains(&chars) {
        return Err(ApiError::BadRequest(format!(
            "password must be {PASSWORD_CHARS_MIN} to {PASSWORD_CHARS_MAX} characters"
        )));
    }
    let password_hash = hash_password(password).await?;
    let user_id = Uuid::new_v4();
    let key = mint_key(user_id, None, Mode::Live);
    if !identity::insert_user(
        &state.pool,
        user_id,
        &name,
        &email,
        &password_hash,
        &key.row,
    )
    .await?
    {
        return Err(ApiError::Conflict(
            "A user with this email already exists".into(),
        ));
    }
    if let Err(e) = grant_bonus(&state, user_id).await {
        // No user without its bonus: undo the sign-up so a retry starts clean.
        delete_user(&state, user_id).await;
        return Err(e);
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "success": true,
            "id": ids::short(Kind::User, user_id),
            "name": name,
            "email": email,
            "apikey": key.text,
        })),
    ))
}

/// The sandbox sign-up bonus, through the pipeline like all money: a command
/// keyed by the user, its id derived from the user's (applied once).
async fn grant_bonus(state: &AppState, user_id: Uuid) -> Result<(), ApiError> {
    let command = Command {
        id: Uuid::new_v5(&user_id, b"signup-bonus"),
        agent_id: user_id,
        user_id,
        correlation_id: None,
        timestamp_ms: chrono::Utc::now().timestamp_millis(),
        payload: CommandPayload::GrantSignupBonus(GrantSignupBonus {
            amount: schemas::money::SIGNUP_BONUS,
            currency: "USDC".into(),
        }),
    };
    match state.bus.execute(command).await? {
        Outcome::Done => Ok(()),
        other => Err(unexpected(other)),
    }
}

async fn delete_user(state: &AppState, user_id: Uuid) {
    let result = identity::delete_user(&state.pool, user_id).await;
    state.caches.keys.forget_user(user_id);
    if let Err(e) = result {
        tracing::error!(error = %e, %user_id, "could not undo a sign-up without bonus");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn emails() {
        assert!(super::valid_email("a@b.co"));
        for bad in [
            "", "a", "a@b", "@b.co", "a@.co", "a@b.co.", "a b@c.de", "a@b@c.de",
        ] {
            assert!(!super::valid_email(bad), "{bad}");
        }
    }
}

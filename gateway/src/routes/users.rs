//! Users: sign-up. A user is identity (the gateway's own table); money is
//! only ever moved through the pipeline.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use uuid::Uuid;

use schemas::ids::{self, Kind};

use crate::auth::{hash_password, mint_key};
use crate::body::{JsonObject, NAME_CHARS_MAX};
use crate::error::ApiError;
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
    let key = mint_key();
    let mut tx = state.pool.begin().await?;
    let inserted =
        sqlx::query("INSERT INTO users (id, name, email, password_hash) VALUES ($1, $2, $3, $4)")
            .bind(user_id)
            .bind(&name)
            .bind(&email)
            .bind(&password_hash)
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

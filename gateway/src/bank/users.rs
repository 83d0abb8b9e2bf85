//! Users: sign-up and the test funding of a user's wallet. A user is
//! identity (the gateway's own table); money is only ever moved through the
//! pipeline (the wallet is a machine keyed by the user).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

use schemas::command::{FundWallet, GrantSignupBonus};
use schemas::ids::{self, Kind};
use schemas::reply::Outcome;
use schemas::{Command, CommandPayload};
use uuid::Uuid;

use connectors::read_model::identity;

use crate::auth::{hash_password, mint_key, Caller};
use crate::body::{JsonObject, NAME_CHARS_MAX};
use crate::commands::{command, command_id, unexpected};
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
        // `Wallet`: a repeated bonus, answered with the wallet as it is.
        Outcome::Done | Outcome::Wallet { .. } => Ok(()),
        other => Err(unexpected(other)),
    }
}

/// `POST /user/wallet/fund` — `{amount, currency?}`: adds money from outside
/// to the caller's wallet, the documented way to fund it for tests and
/// development (at most `AGENTBANK_WALLET_TEST_FUNDING_MAX` per call; off
/// when that is 0, as in production, where wallets are funded on chain).
/// Idempotent by `Idempotency-Key`.
pub async fn fund_wallet(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    caller.require_user_key()?;
    let max = state.config.wallet_test_funding_max;
    if max <= rust_decimal::Decimal::ZERO {
        return Err(ApiError::Forbidden(
            "Test funding is turned off on this deployment".into(),
        ));
    }
    let currency = body.currency()?;
    let amount = body.positive_amount("amount", &currency, "Invalid deposit amount")?;
    if amount > max {
        return Err(ApiError::BadRequest(format!(
            "amount must be at most {} per test funding",
            schemas::money::display(max)
        )));
    }
    let id = command_id(&headers, caller.user_id, "user/wallet/fund")?;
    let payload = CommandPayload::FundWallet(FundWallet {
        amount,
        currency: currency.clone(),
        memo: "test funding".into(),
    });
    match state
        .bus
        .execute(command(id, caller.user_id, &caller, payload))
        .await?
    {
        Outcome::Wallet { balance } => Ok(Json(json!({
            "success": true,
            "balance": schemas::money::display(balance),
            "asset": currency,
            "message": format!(
                "Added {} {currency} to the wallet (test funding)",
                schemas::money::display(amount)
            ),
        }))),
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

//! An agent's lifecycle after creation, for its owner's user key: change
//! its description, tags and payment rules; pause, resume, deactivate it;
//! regenerate or revoke its API key. Every change is one `UpdateAgent`
//! command through the agent's machine (which checks ownership, the status
//! rules and records who asked and why as an `AgentUpdated` event); key
//! changes then take effect in the identity store, and every gateway drops
//! a revoked key at once (`cache::follow_revocations`).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

use connectors::read_model::identity;
use schemas::command::{agent_field as field, agent_status, FieldChange, UpdateAgent};
use schemas::ids::{self, Kind};
use schemas::money;
use schemas::policy::SpendingPolicies;
use schemas::reply::{AgentView, Outcome};
use schemas::CommandPayload;

use crate::auth::{mint_key, Caller, Method};
use crate::bank::agents::{agent_json_in, TAGS_MAX, TAG_CHARS_MAX};
use crate::body::{JsonObject, TEXT_CHARS_MAX};
use crate::commands::{command, command_id, unexpected};
use crate::error::ApiError;
use crate::AppState;

/// Longest `reason` of a change.
pub const REASON_CHARS_MAX: usize = 200;

const MISSING: &str = "agentid is required";

/// The agent a body names, which must be the caller's user key's.
fn target(body: &JsonObject, caller: &Caller) -> Result<Uuid, ApiError> {
    caller.require_user_key()?;
    if let Some(user) = body.opt_str("userid", ids::ID_TEXT_MAX)? {
        let user = ids::parse(Kind::User, &user)
            .map_err(|_| ApiError::NotFound("User not found".into()))?;
        if user != caller.account_id {
            return Err(ApiError::NotFound("User not found".into()));
        }
    }
    let text = body.str("agentid", ids::ID_TEXT_MAX, MISSING)?;
    ids::parse(Kind::Agent, &text).map_err(|_| ApiError::NotFound("Agent not found".into()))
}

fn actor(caller: &Caller) -> String {
    match caller.method {
        Method::Service => format!("service:user:{}", caller.account_id),
        _ => format!("user:{}", caller.account_id),
    }
}

fn set(name: &str, to: Option<String>) -> FieldChange {
    FieldChange {
        field: name.into(),
        from: None,
        to,
    }
}

/// A limit field: absent (unchanged), `null` (no limit) or an amount.
fn limit_change(body: &JsonObject, key: &str, name: &str) -> Result<Option<FieldChange>, ApiError> {
    match body.0.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(set(name, None))),
        Some(_) => {
            let d: Decimal = body
                .opt_amount(key)?
                .ok_or_else(|| ApiError::BadRequest(format!("{key} must be an amount or null")))?;
            money::validate_non_negative(d, "USDC")
                .map_err(|e| ApiError::BadRequest(format!("{key}: {e}")))?;
            Ok(Some(set(name, Some(d.normalize().to_string()))))
        }
    }
}

/// `spendingpolicies` as the API shows them (camelCase; amounts as numbers
/// or strings; `null` for none), replacing the agent's policies whole.
fn policies_of(v: &Value) -> Result<SpendingPolicies, ApiError> {
    let bad = |m: String| ApiError::BadRequest(format!("spendingpolicies: {m}"));
    let Value::Object(o) = v else {
        return Err(bad("must be an object".into()));
    };
    let mut out = serde_json::Map::new();
    for (key, value) in o {
        let name = match key.as_str() {
            "hourlyLimit" => "hourly_limit",
            "weeklyLimit" => "weekly_limit",
            "monthlyLimit" => "monthly_limit",
            "maxPaymentsPerHour" => "max_payments_per_hour",
            "maxPaymentsPerDay" => "max_payments_per_day",
            "allowedRecipients" => "allowed_recipients",
            "blockedRecipients" => "blocked_recipients",
            "approvalExpiryMinutes" => "approval_expiry_minutes",
            other => return Err(bad(format!("unknown field {other}"))),
        };
        let value = match (name.ends_with("_limit"), value) {
            (_, Value::Null) => continue,
            // Amounts travel as exact text.
            (true, Value::Number(n)) => Value::String(n.to_string()),
            (true, Value::String(s)) => Value::String(s.trim().to_string()),
            (true, _) => return Err(bad(format!("{key} must be an amount"))),
            // Agents named by any id form are kept as UUIDs, addresses as given.
            (false, Value::Array(items)) if name.ends_with("_recipients") => Value::Array(
                items
                    .iter()
                    .map(
                        |i| match i.as_str().map(|t| ids::parse(Kind::Agent, t.trim())) {
                            Some(Ok(agent)) => Value::String(agent.to_string()),
                            _ => i.clone(),
                        },
                    )
                    .collect(),
            ),
            (false, v) => v.clone(),
        };
        out.insert(name.into(), value);
    }
    SpendingPolicies::parse(&Value::Object(out).to_string()).map_err(bad)
}

/// Sends the changes through the agent's machine; answers the agent after.
async fn update(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    route: &str,
    agent: Uuid,
    changes: Vec<FieldChange>,
    reason: Option<String>,
) -> Result<AgentView, ApiError> {
    let id = command_id(headers, caller.user_id, route)?;
    let payload = CommandPayload::UpdateAgent(UpdateAgent {
        changes,
        actor: actor(caller),
        reason,
    });
    match state
        .bus
        .execute(command(id, agent, caller, payload))
        .await?
    {
        Outcome::Agent(view) => Ok(*view),
        other => Err(unexpected(other)),
    }
}

fn reason(body: &JsonObject) -> Result<Option<String>, ApiError> {
    body.opt_str("reason", REASON_CHARS_MAX)
}

/// `POST /agents/update {agentid, description?, tags?, dailylimit?,
/// transactionlimit?, requireapprovalforall?, requireapprovalaboveamount?,
/// reason?}`: the fields given change (a limit set to `null` is removed).
pub async fn update_agent(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    let agent = target(&body, &caller)?;
    let mut changes = vec![];
    if let Some(d) = body.opt_str("description", TEXT_CHARS_MAX)? {
        changes.push(set(field::DESCRIPTION, Some(d)));
    }
    if body.has("tags") {
        let tags = body.opt_strings("tags", TAGS_MAX, TAG_CHARS_MAX)?;
        changes.push(set(field::TAGS, Some(json!(tags).to_string())));
    }
    for (key, name) in [
        ("dailylimit", field::DAILY_LIMIT),
        ("transactionlimit", field::TRANSACTION_LIMIT),
        (
            "requireapprovalaboveamount",
            field::REQUIRE_APPROVAL_ABOVE_AMOUNT,
        ),
    ] {
        changes.extend(limit_change(&body, key, name)?);
    }
    if let Some(all) = body.opt_bool("requireapprovalforall")? {
        changes.push(set(field::REQUIRE_APPROVAL_FOR_ALL, Some(all.to_string())));
    }
    if let Some(p) = body.0.get("spendingpolicies") {
        let policies = policies_of(p)?;
        changes.push(set(field::POLICIES, Some(policies.text())));
    }
    if changes.is_empty() {
        return Err(ApiError::BadRequest(
            "Nothing to change: give description, tags, dailylimit, transactionlimit, requireapprovalforall, requireapprovalaboveamount or spendingpolicies".into(),
        ));
    }
    let view = update(
        &state,
        &caller,
        &headers,
        "agents/update",
        agent,
        changes,
        reason(&body)?,
    )
    .await?;
    Ok(Json(agent_json_in(&state, &view)))
}

/// Pause, resume or deactivate.
async fn set_status(
    state: AppState,
    caller: Caller,
    headers: HeaderMap,
    body: JsonObject,
    status: &str,
) -> Result<Json<Value>, ApiError> {
    let agent = target(&body, &caller)?;
    let route = format!("agents/{status}");
    let changes = vec![set(field::STATUS, Some(status.into()))];
    let view = update(
        &state,
        &caller,
        &headers,
        &route,
        agent,
        changes,
        reason(&body)?,
    )
    .await?;
    if status == agent_status::DEACTIVATED {
        // A deactivated agent keeps no key.
        identity::revoke_agent_keys(&state.pool, caller.account_id, agent, None).await?;
    }
    Ok(Json(agent_json_in(&state, &view)))
}

/// `POST /agents/pause {agentid, reason?}`: its payments are refused until
/// resumed; credits from others still land.
pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    set_status(state, caller, headers, body, agent_status::PAUSED).await
}

/// `POST /agents/resume {agentid, reason?}`.
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    set_status(state, caller, headers, body, agent_status::ACTIVE).await
}

/// `POST /agents/deactivate {agentid, reason?}`: final; only at zero
/// balance with nothing open. Its keys are revoked.
pub async fn deactivate(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    set_status(state, caller, headers, body, agent_status::DEACTIVATED).await
}

/// `POST /agents/keys/regenerate {agentid, reason?}`: a new key for the
/// agent (shown once); every earlier key of it stops working at once.
pub async fn regenerate_key(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    rekey(state, caller, headers, body, true).await
}

/// `POST /agents/keys/revoke {agentid, reason?}`: every key of the agent
/// stops working at once (its owner's user key still acts for it).
pub async fn revoke_keys(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    rekey(state, caller, headers, body, false).await
}

/// Records the key change through the agent's machine (which checks the
/// owner and the agent's status), then makes it: a new key when
/// `regenerate`, and every other key of the agent revoked on every gateway.
async fn rekey(
    state: AppState,
    caller: Caller,
    headers: HeaderMap,
    body: JsonObject,
    regenerate: bool,
) -> Result<Json<Value>, ApiError> {
    let agent = target(&body, &caller)?;
    let key = regenerate.then(|| mint_key(caller.account_id, Some(agent), caller.mode));
    let change = set(field::API_KEY, key.as_ref().map(|k| k.row.key_id.clone()));
    let route = if regenerate {
        "agents/keys/regenerate"
    } else {
        "agents/keys/revoke"
    };
    let reason = reason(&body)?;
    let view = update(
        &state,
        &caller,
        &headers,
        route,
        agent,
        vec![change],
        reason,
    )
    .await?;
    if let Some(k) = &key {
        identity::insert_key(&state.pool, &k.row).await?;
    }
    let keep = key.as_ref().map(|k| k.row.key_id.as_str());
    let revoked = identity::revoke_agent_keys(&state.pool, caller.account_id, agent, keep).await?;
    for k in &revoked {
        state.caches.keys.forget(k);
    }
    let mut out = json!({
        "success": true,
        "agentId": ids::short(Kind::Agent, view.agent_id),
        "revoked": revoked.len(),
    });
    if let Some(k) = key {
        out["apikey"] = json!(k.text);
    }
    Ok(Json(out))
}

//! Agents: create, read, list, deposit — the Mage shapes.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use schemas::command::{CreateAgent, FundAgent, Withdraw};
use schemas::ids::{self, Kind};
use schemas::money;
use schemas::reply::{self, AgentView, Outcome};
use schemas::CommandPayload;

use connectors::read_model::{agents, identity};

use crate::auth::{mint_key, Caller};
use crate::body::{
    number, JsonObject, Query, CURRENCY_CHARS_MAX, DEFAULT_CURRENCY, NAME_CHARS_MAX, TEXT_CHARS_MAX,
};
use crate::chain::{self, Transfer};
use crate::commands::{command, command_id, unexpected};
use crate::error::ApiError;
use crate::AppState;

pub const TAGS_MAX: usize = 5;
pub const TAG_CHARS_MAX: usize = 50;
pub const WALLET_ADDRESS_CHARS_MAX: usize = 100;
pub const PAGE_LIMIT_DEFAULT: i64 = 20;
pub const PAGE_LIMIT_MAX: i64 = 100;

/// The Mage JSON of an agent; with a chain, `walletAddress` is the agent's
/// custodial wallet there.
pub fn agent_json_in(state: &AppState, v: &AgentView) -> Value {
    let mut out = agent_json(v, &state.config.network_id);
    if let Some(chain) = &state.chain {
        out["walletAddress"] = chain.wallet_json(v.agent_id);
        if let Some(funding) = &v.wallet_address {
            out["fundingWalletAddress"] = json!(funding);
        }
    }
    out
}

/// The Mage JSON of an agent, without chain.
pub fn agent_json(v: &AgentView, network_id: &str) -> Value {
    let created = chrono::DateTime::from_timestamp_millis(v.created_ms).unwrap_or_default();
    json!({
        "id": ids::short(Kind::Agent, v.agent_id),
        "userId": ids::short(Kind::User, v.user_id),
        "name": v.name,
        "description": v.description,
        "status": v.status,
        "walletAddress": {
            "addressId": v.wallet_address.clone().unwrap_or_default(),
            "networkId": network_id,
        },
        "balance": money::display(v.balance),
        "currency": v.currency,
        "paymentRules": {
            "dailyLimit": v.rules.daily_limit.map(number),
            "transactionLimit": v.rules.transaction_limit.map(number),
            "requireApprovalAboveAmount": v.rules.require_approval_above_amount.map(number),
            "requireApprovalForAll": v.rules.require_approval_for_all,
        },
        "tags": v.tags,
        "spendingPolicies": policies_json(&v.policies),
        "created": created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

/// Recipients as the API names them: agents by their short id.
fn recipients_json(list: &[String]) -> Vec<String> {
    list.iter()
        .map(|r| match Uuid::parse_str(r) {
            Ok(agent) => ids::short(Kind::Agent, agent),
            Err(_) => r.clone(),
        })
        .collect()
}

/// An agent's spending policies as the API shows (and takes) them.
pub fn policies_json(p: &schemas::policy::SpendingPolicies) -> Value {
    json!({
        "hourlyLimit": p.hourly_limit.map(number),
        "weeklyLimit": p.weekly_limit.map(number),
        "monthlyLimit": p.monthly_limit.map(number),
        "maxPaymentsPerHour": p.max_payments_per_hour,
        "maxPaymentsPerDay": p.max_payments_per_day,
        "allowedRecipients": recipients_json(&p.allowed_recipients),
        "blockedRecipients": recipients_json(&p.blocked_recipients),
        "approvalExpiryMinutes": p.approval_expiry_minutes,
    })
}

/// The body's `userid` must be the caller; anyone else's is "not found".
fn check_user(body: &JsonObject, caller: &Caller, missing: &str) -> Result<(), ApiError> {
    let text = body.str("userid", ids::ID_TEXT_MAX, missing)?;
    let user_id =
        ids::parse(Kind::User, &text).map_err(|_| ApiError::NotFound("User not found".into()))?;
    if user_id != caller.account_id {
        return Err(ApiError::NotFound("User not found".into()));
    }
    Ok(())
}

fn limit(body: &JsonObject, name: &str) -> Result<Option<Decimal>, ApiError> {
    body.opt_amount(name)?
        .map(|d| {
            money::validate_non_negative(d, DEFAULT_CURRENCY)
                .map_err(|e| ApiError::BadRequest(format!("{name}: {e}")))
        })
        .transpose()
}

/// `POST /agents/create`
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    caller.require_user_key()?;
    check_user(&body, &caller, "userid is required")?;
    let name = body.str("name", NAME_CHARS_MAX, "Agent name is required")?;
    let description = body
        .opt_str("description", TEXT_CHARS_MAX)?
        .unwrap_or_default();
    let wallet_address = body
        .opt_str("walletaddress", WALLET_ADDRESS_CHARS_MAX)?
        .filter(|s| !s.is_empty());
    let currency = body.currency()?;
    let initial_balance = limit(&body, "balance")?.unwrap_or(Decimal::ZERO);
    let payload = CreateAgent {
        name,
        description,
        wallet_address,
        currency,
        daily_limit: limit(&body, "dailylimit")?,
        transaction_limit: limit(&body, "transactionlimit")?,
        require_approval_for_all: body.opt_bool("requireapprovalforall")?.unwrap_or(false),
        require_approval_above_amount: limit(&body, "requireapprovalaboveamount")?,
        tags: body.opt_strings("tags", TAGS_MAX, TAG_CHARS_MAX)?,
        initial_balance,
        settle_on_chain: state.chain.is_some(),
    };
    let id = command_id(&headers, caller.user_id, "agents/create")?;
    // With an Idempotency-Key the agent id is derived too, so a retry names the same agent.
    let agent_id = if headers.contains_key("idempotency-key") {
        id
    } else {
        Uuid::new_v4()
    };
    let key = mint_key(caller.account_id, Some(agent_id), caller.mode);
    identity::insert_key(&state.pool, &key.row).await?;
    // A balance comes from the user's wallet: the wallet creates the agent
    // (or refuses, and nothing is created).
    let create = if initial_balance.is_zero() {
        command(id, agent_id, &caller, CommandPayload::CreateAgent(payload))
    } else {
        let funding = FundAgent {
            agent_id: agent_id.to_string(),
            amount: initial_balance,
            currency: payload.currency.clone(),
            settle_on_chain: payload.settle_on_chain,
            create: Some(payload),
        };
        let funding = CommandPayload::FundAgent(Box::new(funding));
        command(id, caller.user_id, &caller, funding)
    };
    let outcome = state.bus.execute(create).await;
    let view = match outcome {
        Ok(Outcome::Agent(view)) => view,
        other => {
            // The agent does not exist (or not yet): its key must not either.
            identity::delete_key(&state.pool, &key.row.key_id).await?;
            state.caches.keys.forget(&key.row.key_id);
            return Err(match other {
                Ok(outcome) => unexpected(outcome),
                Err(e) => e,
            });
        }
    };
    let mut out = agent_json_in(&state, &view);
    out["apikey"] = json!(key.text);
    if let Some(chain) = &state.chain {
        use schemas::settlement::{kind, settlement_id};
        let gas = chain
            .transfer(&state.pool, settlement_id(id, kind::FAUCET_GAS))
            .await?;
        out["faucetTransaction"] =
            chain::result_json(gas.as_ref(), "ETH testnet funds sent via faucet");
        if !initial_balance.is_zero() {
            let token = chain
                .transfer(&state.pool, settlement_id(id, kind::FAUCET_TOKEN))
                .await?;
            let done = format!(
                "Sent {} {} to the agent's wallet",
                money::display(initial_balance),
                view.currency
            );
            out["transferResult"] = chain::result_json(token.as_ref(), &done);
        }
    } else if !initial_balance.is_zero() {
        out["transferResult"] = json!({
            "success": true,
            "txHash": null,
            "message": format!("Credited {} {} to the agent's ledger balance", money::display(initial_balance), view.currency),
        });
    }
    Ok(Json(out))
}

/// Deposit and withdrawal: the same body, different words.
#[derive(Clone, Copy)]
enum Movement {
    Deposit,
    Withdraw,
}

impl Movement {
    fn route(self) -> &'static str {
        match self {
            Movement::Deposit => "agents/deposit",
            Movement::Withdraw => "agents/withdraw",
        }
    }

    fn invalid_amount(self) -> &'static str {
        match self {
            Movement::Deposit => "Invalid deposit amount",
            Movement::Withdraw => "Invalid withdraw amount",
        }
    }

    /// The command, and the key it goes to: a deposit is the user's wallet
    /// funding the agent (mirrored on chain by the treasury with
    /// `on_chain`); a withdrawal is the agent's, to the address given.
    fn payload(
        self,
        agent_id: Uuid,
        amount: Decimal,
        currency: String,
        on_chain: bool,
        (to_address, to_user_wallet): (Option<String>, bool),
    ) -> CommandPayload {
        match self {
            Movement::Deposit => CommandPayload::FundAgent(Box::new(FundAgent {
                agent_id: agent_id.to_string(),
                amount,
                currency,
                settle_on_chain: on_chain,
                create: None,
            })),
            Movement::Withdraw => CommandPayload::Withdraw(Withdraw {
                amount,
                currency,
                to_address,
                to_user_wallet,
            }),
        }
    }

    /// Which machine's key decides it: the user's wallet funds, the agent withdraws.
    fn key(self, agent_id: Uuid, caller: &Caller) -> Uuid {
        match self {
            Movement::Deposit => caller.user_id,
            Movement::Withdraw => agent_id,
        }
    }

    fn settlement_kind(self) -> &'static str {
        match self {
            Movement::Deposit => schemas::settlement::kind::DEPOSIT,
            Movement::Withdraw => schemas::settlement::kind::WITHDRAWAL,
        }
    }

    fn message(self, amount: Decimal, currency: &str) -> String {
        let amount = money::display(amount);
        match self {
            Movement::Deposit => format!("Successfully deposited {amount} {currency} to agent"),
            Movement::Withdraw => {
                format!("Successfully withdrew {amount} {currency} from agent to user")
            }
        }
    }
}

/// `POST /agents/deposit`: from the user's wallet into the agent.
pub async fn deposit(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    move_funds(state, caller, headers, body, Movement::Deposit).await
}

/// `POST /agents/withdraw`: from the agent to the user's wallet, never below zero.
pub async fn withdraw(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    move_funds(state, caller, headers, body, Movement::Withdraw).await
}

async fn move_funds(
    state: AppState,
    caller: Caller,
    headers: HeaderMap,
    body: JsonObject,
    movement: Movement,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_user_key()?;
    const MISSING: &str = "userid, agentid, and amount are required.";
    if !(body.has("userid") && body.has("agentid") && body.has("amount")) {
        return Err(ApiError::BadRequest(MISSING.into()));
    }
    check_user(&body, &caller, MISSING)?;
    let agent_text = body.str("agentid", ids::ID_TEXT_MAX, MISSING)?;
    let agent_id = ids::parse(Kind::Agent, &agent_text)
        .map_err(|_| ApiError::NotFound("Agent not found".into()))?;
    let currency = body
        .opt_str("currency", CURRENCY_CHARS_MAX)?
        .unwrap_or_else(|| DEFAULT_CURRENCY.into())
        .to_ascii_uppercase();
    let amount = body.positive_amount("amount", &currency, movement.invalid_amount())?;
    let id = command_id(&headers, caller.user_id, movement.route())?;
    // A deposit for a missing or another user's agent is refused before the
    // wallet holds anything (its saga would refund it, but the journal would
    // show the hold and the refund).
    if let Movement::Deposit = movement {
        if super::agent_owner(&state, agent_id).await? != Some(caller.user_id) {
            return Err(ApiError::NotFound("Agent not found".into()));
        }
    }
    // With a chain, a withdrawal goes to `walletaddress` if given, else the
    // agent's funding wallet, else the user's custodial wallet.
    let to_address = match (&state.chain, movement) {
        (Some(chain), Movement::Withdraw) => {
            let given = body
                .opt_str("walletaddress", WALLET_ADDRESS_CHARS_MAX)?
                .filter(|s| !s.is_empty());
            if given
                .as_deref()
                .is_some_and(|a| !schemas::settlement::is_address(a))
            {
                return Err(ApiError::BadRequest("Invalid wallet address format".into()));
            }
            let funding = agents::funding_wallet(&state.pool, caller.user_id, agent_id)
                .await?
                .filter(|a| schemas::settlement::is_address(a));
            Some(
                given
                    .or(funding)
                    .unwrap_or_else(|| chain.wallets.user_address(caller.user_id).to_string()),
            )
        }
        _ => None,
    };
    // To the user's own custodial wallet: the amount lands in the user's
    // wallet (the ledger's) once the transfer confirms.
    let to_user_wallet = match (&state.chain, &to_address) {
        (Some(chain), Some(to)) => {
            to.eq_ignore_ascii_case(&chain.wallets.user_address(caller.user_id).to_string())
        }
        _ => false,
    };
    let settlement = schemas::settlement::settlement_id(id, movement.settlement_kind());
    let answer = |balance: Decimal, transfer: Option<Transfer>| {
        let mut out = json!({
            "success": true,
            "txHash": transfer.as_ref().and_then(|t| t.tx_hash.clone()),
            "message": movement.message(amount, &currency),
            "updatedBalance": money::display(balance),
        });
        if state.chain.is_none() {
            return (StatusCode::OK, Json(out));
        }
        out["settlement"] = json!({
            "id": settlement,
            "status": transfer.as_ref().map_or("queued", |t| t.status.as_str()),
            "toAddress": to_address,
            "reason": transfer.as_ref().map(|t| t.reason.clone()).filter(|r| !r.is_empty()),
        });
        if let Movement::Deposit = movement {
            return (StatusCode::OK, Json(out));
        }
        // A withdrawal answers what happened on chain: confirmed (200),
        // failed (500, the amount back on the agent), or not yet (202).
        match transfer.as_ref().filter(|t| t.decided()) {
            Some(t) if t.status == "failed" => {
                out["success"] = json!(false);
                out["error"] = json!("Transfer failed on-chain");
                out["message"] = json!(format!(
                    "The on-chain transfer failed ({}); the amount was returned to the agent",
                    t.reason
                ));
                out.as_object_mut().map(|o| o.remove("updatedBalance"));
                (StatusCode::INTERNAL_SERVER_ERROR, Json(out))
            }
            Some(_) => (StatusCode::OK, Json(out)),
            None => {
                out["status"] = json!("pending");
                out["statusUrl"] = json!(format!("/settlements/{settlement}"));
                out["message"] = json!(format!(
                    "Withdrawal of {} {currency} accepted; the on-chain transfer is pending (GET /settlements/{settlement}, or the transfer.settled webhook)",
                    money::display(amount)
                ));
                (StatusCode::ACCEPTED, Json(out))
            }
        }
    };
    let transfer = |state: AppState| async move {
        match (&state.chain, movement) {
            (Some(chain), Movement::Withdraw) => {
                let wait = state.config.settlement_wait;
                chain.outcome(&state.pool, settlement, wait).await
            }
            (Some(chain), Movement::Deposit) => chain.transfer(&state.pool, settlement).await,
            (None, _) => Ok(None),
        }
    };
    if headers.contains_key("idempotency-key") {
        // A retry of a movement that already took effect gets its original
        // answer from the read model, without producing the command again:
        // the processor's dedupe window is bounded, a client's retry delay
        // is not.
        if let Some(balance) = agents::applied_balance(&state.pool, id, agent_id).await? {
            return Ok(answer(balance, transfer(state.clone()).await?));
        }
    }
    let payload = movement.payload(
        agent_id,
        amount,
        currency.clone(),
        state.chain.is_some(),
        (to_address.clone(), to_user_wallet),
    );
    let key = movement.key(agent_id, &caller);
    match state
        .bus
        .execute(command(id, key, &caller, payload))
        .await?
    {
        Outcome::Agent(view) => Ok(answer(view.balance, transfer(state.clone()).await?)),
        // The seed's shape for a wallet that holds too little.
        Outcome::Rejected { message, .. } if message == reply::INSUFFICIENT_WALLET_FUNDS => Ok((
            StatusCode::BAD_REQUEST,
            Json(json!({"success": false, "error": message})),
        )),
        other => Err(unexpected(other)),
    }
}

/// `GET /settlements/{id}`: one of the caller's on-chain transfers (a
/// withdrawal answered 202 is polled here).
pub async fn settlement(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let not_found = || ApiError::NotFound("Settlement not found".into());
    let id = Uuid::parse_str(id.trim()).map_err(|_| not_found())?;
    let s = connectors::read_model::chain::settlement(&state.pool, caller.user_id, id)
        .await?
        .filter(|s| caller.may_act_for(s.agent_id))
        .ok_or_else(not_found)?;
    let time =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    Ok(Json(json!({
        "id": s.id,
        "agentId": ids::short(Kind::Agent, s.agent_id),
        "kind": s.kind,
        "asset": s.asset,
        "amount": money::display(s.amount),
        "status": s.status,
        "txHash": s.tx_hash,
        "toAddress": s.to_address,
        "reason": Some(s.reason).filter(|r| !r.is_empty()),
        "requestedAt": time(s.requested_at),
        "decidedAt": s.decided_at.map(time),
    })))
}

/// `GET /agentsWith/{id}` — only the caller's own agents exist for it.
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let not_found = || ApiError::NotFound("Agent not found".into());
    let agent_id = ids::parse(Kind::Agent, &id).map_err(|_| not_found())?;
    if !caller.may_act_for(agent_id) {
        return Err(not_found());
    }
    let mut view = agents::get(&state.pool, caller.user_id, agent_id)
        .await?
        .ok_or_else(not_found)?;
    let h = agents::holdings(&state.pool, caller.user_id, agent_id)
        .await?
        .ok_or_else(not_found)?;
    // The money figures come from one snapshot, so they agree.
    view.balance = h.available;
    let mut out = agent_json_in(&state, &view);
    out["reservedBalance"] = json!(money::display(h.reserved));
    out["pendingApprovals"] = json!({
        "count": h.pending_approvals,
        "amount": money::display(h.pending_amount),
    });
    Ok(Json(out))
}

#[derive(Deserialize)]
pub struct PageQuery {
    pub page: Option<String>,
    pub limit: Option<String>,
}

/// `page` ≥ 1 and 1 ≤ `limit` ≤ 100, as the API docs state.
pub fn page_bounds(q: &PageQuery) -> Result<(i64, i64), ApiError> {
    let parse = |v: &Option<String>, name: &str, default: i64, max: i64| -> Result<i64, ApiError> {
        match v {
            None => Ok(default),
            Some(s) => match s.parse::<i64>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::BadRequest(format!(
                    "{name} must be an integer from 1 to {max}"
                ))),
            },
        }
    };
    let page = parse(&q.page, "page", 1, 1_000_000)?;
    let limit = parse(&q.limit, "limit", PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX)?;
    Ok((page, limit))
}

/// `GET /agents/{userId}` — the caller's agents, oldest first, paginated.
#[derive(Deserialize)]
pub struct AgentListQuery {
    page: Option<String>,
    limit: Option<String>,
    /// Only agents with this tag.
    tag: Option<String>,
    /// Only agents in this status (active, paused, deactivated).
    status: Option<String>,
}

pub async fn list_for_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<AgentListQuery>,
) -> Result<Json<Value>, ApiError> {
    let user_id =
        ids::parse(Kind::User, &id).map_err(|_| ApiError::NotFound("User not found".into()))?;
    if user_id != caller.account_id {
        return Err(ApiError::NotFound("User not found".into()));
    }
    let (page, limit) = page_bounds(&PageQuery {
        page: q.page,
        limit: q.limit,
    })?;
    let tag = q.tag.as_deref().map(str::trim).filter(|t| !t.is_empty());
    if tag.is_some_and(|t| t.chars().count() > TAG_CHARS_MAX) {
        return Err(ApiError::BadRequest(format!(
            "tag must be at most {TAG_CHARS_MAX} characters"
        )));
    }
    let status = q.status.as_deref().map(str::trim).filter(|t| !t.is_empty());
    use schemas::command::agent_status as st;
    if status.is_some_and(|s| ![st::ACTIVE, st::PAUSED, st::DEACTIVATED].contains(&s)) {
        return Err(ApiError::BadRequest(
            "status must be active, paused or deactivated".into(),
        ));
    }
    let rows = agents::list(
        &state.pool,
        caller.user_id,
        caller.agent_id,
        (tag, status),
        limit,
        (page - 1) * limit,
    )
    .await?;
    Ok(Json(Value::Array(
        rows.iter()
            .map(|view| agent_json_in(&state, view))
            .collect(),
    )))
}

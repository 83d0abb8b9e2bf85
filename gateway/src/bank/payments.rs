//! Payments: register, approve, decline (commands to the sender's processor,
//! answered when the saga has finished) and the reads — one payment, the
//! user's payments with direction — from the read model. Mage shapes.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use schemas::command::{PaymentRef, RegisterPayment};
use schemas::ids::{self, Kind};
use schemas::payment::{approval, Payment, PAYMENT_TYPES};
use schemas::reply::Outcome;
use schemas::settlement;
use schemas::CommandPayload;

use connectors::read_model::payments;
use connectors::read_model::payments::PaymentRow;

use crate::auth::Caller;
use crate::bank::agents::{page_bounds, PageQuery};
use crate::bank::agents::{TAGS_MAX, TAG_CHARS_MAX};
use crate::body::{number, JsonObject, Query, NAME_CHARS_MAX};
use crate::commands::{command, command_id, unexpected};
use crate::error::ApiError;
use crate::AppState;

pub const METHOD_CHARS_MAX: usize = 50;
pub const EMAIL_CHARS_MAX: usize = 254;
pub const PHONE_CHARS_MAX: usize = 32;
const DEFAULT_METHOD: &str = "CRYPTO_ADDRESS";
const REQUIRED: &str =
    "Required fields missing: senderagentid, receiveragentid, paymentdetails, name, type";

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The Mage JSON of a payment (`Payment` in the OpenAPI document). Absent
/// optional values are left out rather than `null`: the schema types them as
/// plain strings.
pub fn payment_json(p: &Payment) -> Value {
    let short = |kind, text: &str| {
        Uuid::parse_str(text).map_or_else(|_| text.to_string(), |id| ids::short(kind, id))
    };
    let mut contact = Map::new();
    if let Some(email) = &p.contact_email {
        contact.insert("email".into(), json!(email));
    }
    if let Some(phone) = &p.contact_phone {
        contact.insert("phoneNumber".into(), json!(phone));
    }
    let mut out = json!({
        "id": short(Kind::Payee, &p.payment_id),
        "name": p.name,
        "type": p.payment_type,
        "senderagentid": short(Kind::Agent, &p.sender_agent_id),
        "receiveragentid": p
            .receiver_address
            .clone()
            .unwrap_or_else(|| short(Kind::Agent, &p.receiver_agent_id)),
        "status": p.status,
        "approvalstatus": p.approval_status,
        "approvalrequired": p.approval_required,
        "paymentdetails": {
            "method": p.method,
            "amount": number(p.amount),
            "currency": p.currency,
        },
        "contactdetails": contact,
        "tags": p.tags,
        "createdat": rfc3339(p.created_ms),
    });
    if let Some(ms) = p.decided_ms {
        out["approvedat"] = json!(rfc3339(ms));
    }
    if let Some(tx) = &p.tx_hash {
        out["txHash"] = json!(tx);
    }
    out
}

/// A nested object of the body (`paymentdetails`, `contactdetails`), if present.
fn nested(body: &JsonObject, name: &str) -> Result<Option<JsonObject>, ApiError> {
    match body.0.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(JsonObject(map.clone()))),
        Some(_) => Err(ApiError::BadRequest(format!("{name} must be an object"))),
    }
}

fn agent_id(text: &str, missing: &str) -> Result<Uuid, ApiError> {
    ids::parse(Kind::Agent, text).map_err(|_| ApiError::NotFound(missing.into()))
}

/// The payment a finished command names, read back (a retried command whose
/// payment has left the processor's open set since).
async fn settled(state: &AppState, caller: &Caller, id: Uuid) -> Result<Payment, ApiError> {
    visible_payment(state, caller, id)
        .await?
        .ok_or_else(|| ApiError::Unavailable("Payment is being processed; retry".into()))
}

/// `POST /payments/register`
pub async fn register(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    let required = [
        "senderagentid",
        "receiveragentid",
        "paymentdetails",
        "name",
        "type",
    ];
    if !required.iter().all(|f| body.has(f)) {
        return Err(ApiError::BadRequest(REQUIRED.into()));
    }
    let sender_text = body.str("senderagentid", ids::ID_TEXT_MAX, REQUIRED)?;
    let receiver_text = body.str("receiveragentid", ids::ID_TEXT_MAX, REQUIRED)?;
    let name = body.str("name", NAME_CHARS_MAX, REQUIRED)?;
    let payment_type = body.str("type", 10, REQUIRED)?.to_ascii_uppercase();
    if !PAYMENT_TYPES.contains(&payment_type.as_str()) {
        return Err(ApiError::BadRequest(
            "Invalid payment type. Use INTERNAL or EXTERNAL".into(),
        ));
    }
    let details =
        nested(&body, "paymentdetails")?.ok_or_else(|| ApiError::BadRequest(REQUIRED.into()))?;
    let currency = details.currency()?;
    let amount = details.positive_amount(
        "amount",
        &currency,
        "Invalid payment details. Amount must be positive.",
    )?;
    let method = details
        .opt_str("method", METHOD_CHARS_MAX)?
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| DEFAULT_METHOD.into());
    let contact = nested(&body, "contactdetails")?;
    let (contact_email, contact_phone) = match &contact {
        Some(c) => (
            c.opt_str("email", EMAIL_CHARS_MAX)?
                .filter(|s| !s.is_empty()),
            c.opt_str("phoneNumber", PHONE_CHARS_MAX)?
                .filter(|s| !s.is_empty()),
        ),
        None => (None, None),
    };
    let tags = body.opt_strings("tags", TAGS_MAX, TAG_CHARS_MAX)?;

    let sender = agent_id(&sender_text, "Sender agent not found")?;
    if !caller.may_act_for(sender)
        || super::agent_owner(&state, sender).await? != Some(caller.user_id)
    {
        return Err(ApiError::NotFound("Sender agent not found".into()));
    }
    // An EXTERNAL payment may name a wallet address instead of an agent: it
    // is then settled on chain from the sender's custodial wallet.
    let (receiver, receiver_address) = if settlement::is_address(&receiver_text) {
        if payment_type != "EXTERNAL" {
            return Err(ApiError::BadRequest(
                "Payments to a wallet address must be of type EXTERNAL".into(),
            ));
        }
        if state.chain.is_none() {
            return Err(ApiError::BadRequest(
                "Payments to wallet addresses need on-chain settlement, which is not enabled"
                    .into(),
            ));
        }
        (Uuid::nil(), Some(receiver_text.clone()))
    } else {
        let receiver = agent_id(&receiver_text, "Receiver agent not found")?;
        let Some(receiver_owner) = super::agent_owner(&state, receiver).await? else {
            return Err(ApiError::NotFound("Receiver agent not found".into()));
        };
        if payment_type == "INTERNAL" && receiver_owner != caller.user_id {
            return Err(ApiError::BadRequest(
                "INTERNAL payments are between your own agents; use EXTERNAL".into(),
            ));
        }
        (receiver, None)
    };
    let id = command_id(&headers, caller.user_id, "payments/register")?;
    // Derived from the command id: a retried registration names the same payment.
    let payment_id = Uuid::new_v5(&id, b"payment");
    let payload = CommandPayload::RegisterPayment(RegisterPayment {
        payment_id: payment_id.to_string(),
        receiver_agent_id: receiver.to_string(),
        name,
        payment_type,
        amount,
        currency,
        method,
        contact_email,
        contact_phone,
        tags,
        receiver_address,
    });
    // A retry of a registration that already took effect: the payment as it
    // is now, from the read model (the processor's dedupe window is bounded).
    let applied = if headers.contains_key("idempotency-key") {
        visible_payment(&state, &caller, payment_id).await?
    } else {
        None
    };
    let payment = match applied {
        Some(p) => p,
        None => registered(&state, &caller, command(id, sender, &caller, payload)).await?,
    };
    let mut out = payment_json(&payment);
    out["approvalRequired"] = json!(payment.approval_required);
    out["txHash"] = json!(payment.tx_hash);
    if let (Some(chain), Some(_)) = (&state.chain, &payment.receiver_address) {
        out["settlement"] = settlement_json(chain, &state, &payment).await?;
        out["txHash"] = out["settlement"]["txHash"].clone();
    }
    Ok(Json(out))
}

/// An on-chain payment's transfer, once sent (waited for briefly); an
/// approval-waiting payment has none yet.
async fn settlement_json(
    chain: &crate::chain::ChainAccess,
    state: &AppState,
    payment: &Payment,
) -> Result<Value, ApiError> {
    let id = settlement::settlement_id(payment.id(), settlement::kind::PAYMENT);
    let transfer = if payment.is_waiting_for_approval() {
        None
    } else {
        chain.transfer(&state.pool, id).await?
    };
    Ok(json!({
        "id": id,
        "status": transfer.as_ref().map_or(
            if payment.is_waiting_for_approval() { "awaiting approval" } else { "queued" },
            |t| t.status.as_str()),
        "txHash": transfer.as_ref().and_then(|t| t.tx_hash.clone()).or(payment.tx_hash.clone()),
        "toAddress": payment.receiver_address,
    }))
}

/// Sends a registration and waits for the payment it answers with.
async fn registered(
    state: &AppState,
    caller: &Caller,
    command: schemas::Command,
) -> Result<Payment, ApiError> {
    Ok(match state.bus.execute(command).await? {
        Outcome::Payment(p) => *p,
        Outcome::PaymentSettled { payment_id } => settled(state, caller, payment_id).await?,
        other => return Err(unexpected(other)),
    })
}

/// Approve or decline: both name a payment the caller sent.
async fn decide(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    body: &JsonObject,
    approve: bool,
) -> Result<Payment, ApiError> {
    // Approval is the human's check on the agent: an agent's own key may
    // register payments but never decide on them.
    caller.require_user_key()?;
    let text = body.str("paymentId", ids::ID_TEXT_MAX, "Payment ID is required")?;
    let not_found = || ApiError::NotFound("Payment not found".into());
    let payment_id = ids::parse(Kind::Payee, &text).map_err(|_| not_found())?;
    let sender = payments::sender_of(&state.pool, caller.user_id, payment_id)
        .await?
        .filter(|s| caller.may_act_for(*s))
        .ok_or_else(not_found)?;
    let r = PaymentRef {
        payment_id: payment_id.to_string(),
    };
    let (route, payload) = if approve {
        ("payments/setApprove", CommandPayload::ApprovePayment(r))
    } else {
        ("payments/setDecline", CommandPayload::DeclinePayment(r))
    };
    let id = command_id(headers, caller.user_id, route)?;
    match state
        .bus
        .execute(command(id, sender, caller, payload))
        .await?
    {
        Outcome::Payment(p) => Ok(*p),
        Outcome::PaymentSettled { payment_id } => settled(state, caller, payment_id).await,
        other => Err(unexpected(other)),
    }
}

/// `POST /payments/setApprove` — answers once the payment has been credited.
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    let p = decide(&state, &caller, &headers, &body, true).await?;
    Ok(Json(json!({
        "message": "Approval Status Done.",
        "status": p.status,
        "approvalstatus": p.approval_status,
        "txHash": p.tx_hash,
    })))
}

/// `POST /payments/setDecline` — final; the reservation is released.
pub async fn decline(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    let p = decide(&state, &caller, &headers, &body, false).await?;
    Ok(Json(json!({
        "message": "Payment declined successfully",
        "status": approval::DECLINE,
        "paymentStatus": p.status,
        "txHash": null,
    })))
}

/// `PaymentWithDirection`: a payment as the list shows it.
pub(crate) fn json_with_direction(row: &PaymentRow) -> Value {
    let mut out = payment_json(&row.payment());
    out["initiatedBy"] = json!(row.sender_name.clone().unwrap_or_default());
    out["receivedBy"] = json!(row.receiver_name.clone().unwrap_or_default());
    out["direction"] = json!(row.direction());
    out
}

async fn visible_payment(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<Option<Payment>, ApiError> {
    let row = payments::visible(&state.pool, caller.user_id, caller.agent_id, id).await?;
    Ok(row.map(|r| r.payment()))
}

/// `GET /payments/{id}` — short (`payee_…`) or UUID; another user's is a 404.
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let not_found = || ApiError::NotFound("Payment not found".into());
    let id = ids::parse(Kind::Payee, &id).map_err(|_| not_found())?;
    let payment = visible_payment(&state, &caller, id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(payment_json(&payment)))
}

/// The `approvalStatus` filter: the documented values and what they match.
fn approval_filter(value: &str) -> Result<&'static str, ApiError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "approved" => Ok(approval::APPROVED),
        "declined" | "decline" => Ok(approval::DECLINE),
        // Payments awaiting the sender's decision are the ones pending/waiting.
        "waiting for sender approval" | "waiting" | "pending" => Ok(approval::WAITING_FOR_SENDER),
        _ => Err(ApiError::BadRequest(
            "approvalStatus must be one of: Approved, Declined, Pending, Waiting, Waiting for Sender Approval"
                .into(),
        )),
    }
}

#[derive(Deserialize)]
pub struct UserPaymentsQuery {
    #[serde(rename = "approvalStatus")]
    approval_status: Option<String>,
    page: Option<String>,
    limit: Option<String>,
    /// Created at or after (ISO 8601; a plain date is its start).
    start_date: Option<String>,
    /// Created at or before (a plain date is its whole day).
    end_date: Option<String>,
    /// Only payments with this tag.
    tag: Option<String>,
}

/// `GET /user/payments` — newest first, paginated, optionally by approval status.
pub async fn list_for_user(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<UserPaymentsQuery>,
) -> Result<Json<Value>, ApiError> {
    let (page, limit) = page_bounds(&PageQuery {
        page: q.page,
        limit: q.limit,
    })?;
    let filter = q
        .approval_status
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(approval_filter)
        .transpose()?;
    let (start, end) =
        crate::bank::reports::date_range(q.start_date.as_deref(), q.end_date.as_deref())?;
    let tag = q.tag.as_deref().map(str::trim).filter(|t| !t.is_empty());
    if tag.is_some_and(|t| t.chars().count() > crate::bank::agents::TAG_CHARS_MAX) {
        return Err(ApiError::BadRequest(
            "tag must be at most 50 characters".into(),
        ));
    }
    let filter = payments::PaymentFilter {
        approval_status: filter,
        start,
        end,
        tag,
    };
    let rows = payments::list(
        &state.pool,
        caller.user_id,
        caller.agent_id,
        filter,
        limit,
        (page - 1) * limit,
    )
    .await?;
    Ok(Json(Value::Array(
        rows.iter().map(json_with_direction).collect(),
    )))
}

//! Payments between agents, as a saga across partitions:
//!
//! 1. `RegisterPayment` on the sender: check the spending rules, reserve the
//!    amount (available → reserved). If approval is needed the payment waits
//!    (`ApprovePayment` continues, `DeclinePayment` releases and ends it);
//!    otherwise it continues at once.
//! 2. `CreditPayment` on the receiver (a saga command): credit from the
//!    settlement clearing account, or refuse (no such agent, wrong currency).
//! 3. `SettlePayment` on the sender: confirm (reserved → clearing) or release
//!    (reserved → available). The caller's reply comes from this step.
//!
//! Every step posts one balanced journal entry. Steps are applied once: the
//! receiver remembers the highest origin offset per origin partition, the
//! sender settles only an in-flight payment.
//!
//! Spending rules: above `transactionlimit` a payment is rejected; it needs
//! the sender's approval when `requireapprovalforall` is set, when the amount
//! exceeds `requireapprovalaboveamount`, or when it would take the UTC day's
//! approved spending above `dailylimit` (the daily limit never rejects: the
//! user may approve a payment past it).

use rust_decimal::Decimal;
use uuid::Uuid;

use schemas::command::{CreditPayment, PaymentRef, RegisterPayment, SettlePayment};
use schemas::event::{accounts, JournalEntry, PaymentChange, Posting};
use schemas::payment::{self, approval, status, Payment, PAYMENT_TYPES};
use schemas::reply::{Outcome, RejectCode};
use schemas::{money, Command, CommandPayload, EventPayload};

use super::{settlement, AgentState, Decided, Decision, Position, BALANCE_MAX};

/// Most payments one agent may have open (awaiting approval or in flight):
/// bounds the agent's state, which every checkpoint of the agent carries.
pub const OPEN_PAYMENTS_MAX: usize = 1_000;

const MS_PER_DAY: i64 = 86_400_000;

/// The receiver's refusal when it does not exist (answered as a 404).
const RECEIVER_NOT_FOUND: &str = "Receiver agent not found";

fn invalid(message: &str) -> (RejectCode, String) {
    (RejectCode::Invalid, message.into())
}

fn payment_not_found() -> (RejectCode, String) {
    (RejectCode::NotFound, "Payment not found".into())
}

/// The sender agent, if it exists and is the caller's.
fn own<'a>(
    state: Option<&'a mut AgentState>,
    cmd: &Command,
    missing: fn() -> (RejectCode, String),
) -> Result<&'a mut AgentState, (RejectCode, String)> {
    match state {
        Some(s) if s.view.user_id == cmd.user_id => Ok(s),
        _ => Err(missing()),
    }
}

/// Starts the UTC day of `now_ms` if the counter is on an earlier one.
fn roll_day(s: &mut AgentState, now_ms: i64) {
    let day = now_ms.div_euclid(MS_PER_DAY);
    if day != s.spent_day {
        s.spent_day = day;
        s.spent_today = Decimal::ZERO;
    }
}

/// Moves `amount` between two accounts of the ledger; `from` loses it.
pub(super) fn entry(entry_id: String, from: String, to: String, amount: Decimal) -> JournalEntry {
    JournalEntry {
        entry_id,
        postings: vec![
            Posting {
                account: from,
                amount: -amount,
            },
            Posting {
                account: to,
                amount,
            },
        ],
    }
}

fn change(s: &AgentState, payment: &Payment, journal: Option<JournalEntry>) -> PaymentChange {
    PaymentChange {
        payment: payment.clone(),
        balance_after: s.view.balance,
        reserved_after: s.reserved,
        journal,
    }
}

/// Sends an approved payment on: to its receiver agent, where the caller is
/// answered when the saga comes back (`settle`); or, to an address, to the
/// settlement service, answering the caller at once with the payment in
/// flight (the chain's result comes later: `settle_on_chain`).
fn start_credit(
    s: &mut AgentState,
    cmd: &Command,
    event: EventPayload,
    payment: &Payment,
    at: Position,
) -> Decision {
    if let Some(to) = &payment.receiver_address {
        let request = settlement::pay_on_chain(s, payment, to, cmd);
        return Decision::answer(vec![event], Outcome::Payment(Box::new(payment.clone())))
            .with_transfers(vec![request]);
    }
    let step = CommandPayload::CreditPayment(CreditPayment {
        payment: payment.clone(),
        origin_partition: at.partition,
        origin_offset: at.offset,
        origin_sub: at.sub as i32,
    });
    Decision {
        payloads: vec![event],
        sagas: vec![(payment.receiver(), step)],
        transfers: vec![],
        reply: None,
        pending: Some(payment.id()),
    }
}

/// A receiver's step: its events (if any) and the answer back to the sender.
fn reply_to_sender(payloads: Vec<EventPayload>, step: (Uuid, CommandPayload)) -> Decision {
    Decision {
        payloads,
        sagas: vec![step],
        transfers: vec![],
        reply: None,
        pending: None,
    }
}

pub(super) fn register(
    state: Option<&mut AgentState>,
    cmd: &Command,
    r: &RegisterPayment,
    at: Position,
) -> Decided {
    let s = own(state, cmd, || {
        (RejectCode::NotFound, "Sender agent not found".into())
    })?;
    super::lifecycle::may_pay(s)?;
    let payment_id = Uuid::parse_str(&r.payment_id).map_err(|_| invalid("Invalid payment id"))?;
    let receiver =
        Uuid::parse_str(&r.receiver_agent_id).map_err(|_| invalid("Invalid receiver agent id"))?;
    if let Some(to) = &r.receiver_address {
        if !schemas::settlement::is_address(to) || !receiver.is_nil() {
            return Err(invalid("Invalid receiver wallet address"));
        }
        if r.payment_type != "EXTERNAL" {
            return Err(invalid(
                "Payments to a wallet address must be of type EXTERNAL",
            ));
        }
        settlement::room(s, 1)?;
    }
    if receiver == s.view.agent_id {
        return Err(invalid("Sender and receiver must be different agents"));
    }
    if !PAYMENT_TYPES.contains(&r.payment_type.as_str()) {
        return Err(invalid("Invalid payment type. Use INTERNAL or EXTERNAL"));
    }
    if r.currency != s.view.currency {
        return Err(invalid(&format!(
            "Sender agent holds {}, not {}",
            s.view.currency, r.currency
        )));
    }
    if money::validate_positive(r.amount, &r.currency).is_err() {
        return Err(invalid("Invalid payment details. Amount must be positive."));
    }
    if s.open_payments.contains_key(&payment_id) {
        return Err((RejectCode::Conflict, "Payment already exists".into()));
    }
    let recipient = r
        .receiver_address
        .clone()
        .unwrap_or_else(|| receiver.to_string());
    if let Some(why) = s.view.policies.refuses(&recipient) {
        return Err(invalid(why));
    }
    let rules = s.view.rules.clone();
    if rules.transaction_limit.is_some_and(|l| r.amount > l) {
        return Err(invalid(
            "Payment exceeds the sender agent's transaction limit",
        ));
    }
    if r.amount > s.view.balance {
        return Err(invalid("Insufficient balance in sender agent's wallet"));
    }
    if s.open_payments.len() >= OPEN_PAYMENTS_MAX {
        return Err((
            RejectCode::Conflict,
            format!(
                "Sender agent has {OPEN_PAYMENTS_MAX} open payments; approve or decline some first"
            ),
        ));
    }
    roll_day(s, cmd.timestamp_ms);
    // Hard caps: checked now, and again when an approval spends it.
    s.window.roll(cmd.timestamp_ms);
    if let Some(why) = s.window.refuses(&s.view.policies, r.amount) {
        return Err(invalid(why));
    }
    let approval_required = rules.require_approval_for_all
        || rules
            .require_approval_above_amount
            .is_some_and(|a| r.amount > a)
        || rules
            .daily_limit
            .is_some_and(|d| s.spent_today + r.amount > d);
    let payment = Payment {
        payment_id: payment_id.to_string(),
        sender_agent_id: s.view.agent_id.to_string(),
        receiver_agent_id: receiver.to_string(),
        name: r.name.clone(),
        payment_type: r.payment_type.clone(),
        amount: r.amount,
        currency: r.currency.clone(),
        method: r.method.clone(),
        contact_email: r.contact_email.clone(),
        contact_phone: r.contact_phone.clone(),
        tags: r.tags.clone(),
        status: status::NEW.into(),
        approval_status: if approval_required {
            approval::WAITING_FOR_SENDER
        } else {
            approval::APPROVED
        }
        .into(),
        approval_required,
        created_ms: cmd.timestamp_ms,
        decided_ms: (!approval_required).then_some(cmd.timestamp_ms),
        tx_hash: None,
        receiver_address: r.receiver_address.clone(),
    };
    let agent = s.view.agent_id;
    let journal = entry(
        format!("{payment_id}:reserve"),
        accounts::agent_available(agent),
        accounts::agent_reserved(agent),
        r.amount,
    );
    s.view.balance -= r.amount;
    s.reserved += r.amount;
    let event = EventPayload::PaymentRegistered(change(s, &payment, Some(journal)));
    s.open_payments.insert(payment_id, payment.clone());
    if approval_required {
        if let Some(minutes) = s.view.policies.approval_expiry_minutes {
            let ends = cmd.timestamp_ms + i64::from(minutes) * 60_000;
            s.expiries.insert(payment_id, ends);
        }
        return Ok(Some(Decision::answer(
            vec![event],
            Outcome::Payment(Box::new(payment)),
        )));
    }
    s.spent_today += r.amount;
    s.window.add(r.amount);
    Ok(Some(start_credit(s, cmd, event, &payment, at)))
}

/// The open payment `r` names, if it waits for the sender's decision.
fn waiting<'a>(
    s: &'a mut AgentState,
    r: &PaymentRef,
    verb: &str,
) -> Result<&'a mut Payment, (RejectCode, String)> {
    match s.open_payments.get_mut(&payment::uuid(&r.payment_id)) {
        Some(p) if p.is_waiting_for_approval() => Ok(p),
        // Finished payments leave the open set; the gateway has already
        // checked that the payment exists and is the caller's.
        _ => Err(invalid(&format!(
            "Only payments waiting for sender approval can be {verb}"
        ))),
    }
}

pub(super) fn approve(
    state: Option<&mut AgentState>,
    cmd: &Command,
    r: &PaymentRef,
    at: Position,
) -> Decided {
    let s = own(state, cmd, payment_not_found)?;
    super::lifecycle::may_pay(s)?;
    roll_day(s, cmd.timestamp_ms);
    s.window.roll(cmd.timestamp_ms);
    let policies = s.view.policies.clone();
    let amount = waiting(s, r, "approved")?.amount;
    if let Some(why) = s.window.refuses(&policies, amount) {
        return Err(invalid(why));
    }
    let p = waiting(s, r, "approved")?;
    p.approval_status = approval::APPROVED.into();
    p.decided_ms = Some(cmd.timestamp_ms);
    let payment = p.clone();
    s.spent_today += payment.amount;
    s.window.add(payment.amount);
    s.expiries.remove(&payment.id());
    let event = EventPayload::PaymentApproved(change(s, &payment, None));
    Ok(Some(start_credit(s, cmd, event, &payment, at)))
}

pub(super) fn decline(state: Option<&mut AgentState>, cmd: &Command, r: &PaymentRef) -> Decided {
    let s = own(state, cmd, payment_not_found)?;
    let p = waiting(s, r, "declined")?;
    p.status = status::CONFIRMED.into();
    p.approval_status = approval::DECLINE.into();
    p.decided_ms = Some(cmd.timestamp_ms);
    let payment = p.clone();
    let journal = release(s, &payment);
    let event = EventPayload::PaymentDeclined(change(s, &payment, Some(journal)));
    s.open_payments.remove(&payment.id());
    s.expiries.remove(&payment.id());
    Ok(Some(Decision::answer(
        vec![event],
        Outcome::Payment(Box::new(payment)),
    )))
}

/// The scheduler's tick at `through`: every payment whose approval expired
/// by then is declined as `Expired` (at its expiry instant, whenever the
/// tick comes) and its hold released.
pub(super) fn expire(s: &mut AgentState, through: i64) -> Vec<EventPayload> {
    let due: Vec<(Uuid, i64)> = s
        .expiries
        .iter()
        .filter(|(_, at)| **at <= through)
        .map(|(id, at)| (*id, *at))
        .collect();
    let mut events = vec![];
    for (id, at) in due {
        s.expiries.remove(&id);
        let Some(p) = s
            .open_payments
            .get_mut(&id)
            .filter(|p| p.is_waiting_for_approval())
        else {
            continue;
        };
        p.status = status::CONFIRMED.into();
        p.approval_status = approval::EXPIRED.into();
        p.decided_ms = Some(at);
        let payment = p.clone();
        let journal = release(s, &payment);
        events.push(EventPayload::PaymentDeclined(change(
            s,
            &payment,
            Some(journal),
        )));
        s.open_payments.remove(&id);
    }
    events
}

/// Returns a payment's reservation to the available balance.
fn release(s: &mut AgentState, payment: &Payment) -> JournalEntry {
    let agent = s.view.agent_id;
    s.reserved -= payment.amount;
    s.view.balance += payment.amount;
    entry(
        format!("{}:release", payment.payment_id),
        accounts::agent_reserved(agent),
        accounts::agent_available(agent),
        payment.amount,
    )
}

/// The receiver's step. `None` state: the receiver does not exist, and the
/// sender is told so (that answer is idempotent on the sender's side).
pub(super) fn credit(state: Option<&mut AgentState>, c: &CreditPayment) -> Decided {
    let payment = &c.payment;
    let sender = payment.sender();
    let refuse = |reason: &str| {
        Ok(Some(reply_to_sender(
            vec![],
            settle_step(sender, payment, false, reason),
        )))
    };
    let Some(s) = state else {
        return refuse(RECEIVER_NOT_FOUND);
    };
    let origin = super::Origin {
        offset: c.origin_offset,
        sub: c.origin_sub,
    };
    if s.saga_seen
        .get(&c.origin_partition)
        .is_some_and(|seen| origin <= *seen)
    {
        return Ok(None);
    }
    s.saga_seen.insert(c.origin_partition, origin);
    if super::lifecycle::is_deactivated(s) {
        return refuse("Receiver agent is deactivated");
    }
    if payment.currency != s.view.currency {
        return refuse("Receiver agent holds another currency");
    }
    if s.view.balance + payment.amount > BALANCE_MAX {
        return refuse("Payment would exceed the receiver's maximum balance");
    }
    let journal = entry(
        format!("{}:credit", payment.payment_id),
        accounts::settlement_clearing(&payment.currency),
        accounts::agent_available(s.view.agent_id),
        payment.amount,
    );
    s.view.balance += payment.amount;
    let mut received = payment.clone();
    received.status = status::CONFIRMED.into();
    let event = EventPayload::PaymentReceived(change(s, &received, Some(journal)));
    Ok(Some(reply_to_sender(
        vec![event],
        settle_step(sender, payment, true, ""),
    )))
}

fn settle_step(
    sender: Uuid,
    payment: &Payment,
    credited: bool,
    reason: &str,
) -> (Uuid, CommandPayload) {
    (
        sender,
        CommandPayload::SettlePayment(SettlePayment {
            payment_id: payment.payment_id.clone(),
            credited,
            reason: reason.into(),
        }),
    )
}

/// The sender's last step; answers the caller waiting since register/approve.
pub(super) fn settle(state: Option<&mut AgentState>, c: &SettlePayment) -> Decided {
    let Some(s) = state else {
        return Ok(None);
    };
    let id = payment::uuid(&c.payment_id);
    let in_flight = s
        .open_payments
        .get(&id)
        .is_some_and(|p| p.status == status::NEW && p.approval_status == approval::APPROVED);
    if !in_flight {
        return Ok(None); // settled before: a replayed step
    }
    let mut payment = s.open_payments.remove(&id).expect("checked above");
    if c.credited {
        let agent = s.view.agent_id;
        s.reserved -= payment.amount;
        payment.status = status::CONFIRMED.into();
        let journal = entry(
            format!("{}:confirm", payment.payment_id),
            accounts::agent_reserved(agent),
            accounts::settlement_clearing(&payment.currency),
            payment.amount,
        );
        let event = EventPayload::PaymentConfirmed(change(s, &payment, Some(journal)));
        return Ok(Some(Decision::answer(
            vec![event],
            Outcome::Payment(Box::new(payment)),
        )));
    }
    payment.status = status::FAILED.into();
    let journal = release(s, &payment);
    let event = EventPayload::PaymentFailed(change(s, &payment, Some(journal)));
    // The receiver's refusal reaches the caller as the API's own error.
    let code = if c.reason == RECEIVER_NOT_FOUND {
        RejectCode::NotFound
    } else {
        RejectCode::Invalid
    };
    let outcome = Outcome::Rejected {
        code,
        message: c.reason.clone(),
    };
    Ok(Some(Decision::answer(vec![event], outcome)))
}

/// The chain's result for an EXTERNAL payment to an address: confirm it
/// (reserved → `external:<cur>:onchain`, with its transaction) or fail it
/// (reservation released). `None`: not in flight (a replay).
pub(super) fn settle_on_chain(
    s: &mut AgentState,
    id: Uuid,
    r: &schemas::settlement::SettlementResult,
) -> Option<Vec<EventPayload>> {
    let in_flight = s
        .open_payments
        .get(&id)
        .is_some_and(|p| p.status == status::NEW && p.approval_status == approval::APPROVED);
    if !in_flight {
        return None;
    }
    let mut payment = s.open_payments.remove(&id).expect("checked above");
    payment.tx_hash = r.tx_hash.clone();
    if r.confirmed() {
        s.reserved -= payment.amount;
        payment.status = status::CONFIRMED.into();
        let journal = entry(
            format!("{}:confirm", payment.payment_id),
            accounts::agent_reserved(s.view.agent_id),
            accounts::onchain_outflow(&payment.currency),
            payment.amount,
        );
        return Some(vec![EventPayload::PaymentConfirmed(change(
            s,
            &payment,
            Some(journal),
        ))]);
    }
    payment.status = status::FAILED.into();
    let journal = release(s, &payment);
    Some(vec![EventPayload::PaymentFailed(change(
        s,
        &payment,
        Some(journal),
    ))])
}

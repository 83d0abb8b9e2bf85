//! The revenue ledger as a keyed machine (key: the tenant's ledger). Each
//! `RecordRevenue` posts one balanced double entry (chart of accounts in
//! `schemas::revenue::ledger`), seals it into the tenant's hash chain, and
//! classifies what it moves — one-time or recurring revenue, refunds, and
//! each subscriber's monthly recurring revenue (new, expansion,
//! contraction, churn, reactivation) — so the daily aggregates the sink
//! keeps, and the analytics read from them, need no scan of raw events.
//! A month's revenue crossing the tenant's target emits one
//! `revenue.milestone` per month and currency. Idempotent by command id and
//! by natural key within the last [`RECENT_KEPT`] events (the gateway
//! answers older repeats from the read model).

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use schemas::money::iso_4217_scale;
use schemas::reply::{Outcome, RejectCode};
use schemas::revenue::ledger::{
    LedgerEntry, Movement, RecordRevenue, RevenueKind, RevenueMilestone, RevenueRecorded,
    RevenueTargetSet, SetRevenueTarget, GENESIS,
};
use schemas::{Command, CommandPayload, Event, EventPayload};

use crate::runtime::machine::{Ids, Machine, Route, Step};

/// Recent events remembered by id and natural key (repeats answered).
pub const RECENT_KEPT: usize = 1_000;
/// Subscribers (customer × currency) one tenant's state holds: its
/// checkpoint is one record (about 150 bytes each, well under the broker's
/// 1 MB). Beyond it the longest-churned subscriber is forgotten (a return
/// then counts as new); when all are active, new subscriptions are refused.
pub const SUBSCRIBERS_MAX: usize = 3_000;
/// Months (× currency) whose totals are kept for milestones.
pub const MONTHS_KEPT: usize = 36;

/// A subscriber's recurring revenue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscriber {
    #[serde(with = "rust_decimal::serde::str")]
    pub mrr: Decimal,
    pub active: bool,
    pub changed_ms: i64,
}

/// A month's revenue in one currency, and whether its target was reached.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MonthTotal {
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
    pub reached: bool,
}

/// A recently recorded event: its id and its natural key's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recent {
    pub event_id: Uuid,
    pub natural: Option<Uuid>,
}

/// One tenant's ledger state.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RevenueState {
    pub tenant: Uuid,
    /// Entries posted; the last one's hash.
    pub sequence: i64,
    pub head: String,
    /// +1 per event.
    pub version: i64,
    pub recent: VecDeque<Recent>,
    /// By `currency|customer_id`.
    pub subscribers: BTreeMap<String, Subscriber>,
    /// Monthly targets by currency.
    pub targets: BTreeMap<String, Decimal>,
    /// By `YYYY-MM|currency`.
    pub months: BTreeMap<String, MonthTotal>,
}

/// The id of a natural key within a tenant.
pub fn natural_id(tenant: Uuid, natural_key: &str) -> Uuid {
    Uuid::new_v5(&tenant, format!("revenue-natural:{natural_key}").as_bytes())
}

/// `YYYY-MM` (UTC) of a time in ms.
pub fn month_of(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m")
        .to_string()
}

/// What `r` moves, given the subscribers before it; updates them. Amounts
/// of subscription events are the subscription's monthly charge, so the
/// difference to the subscriber's current MRR is expansion or contraction,
/// whatever the event's name.
pub fn classify(
    subscribers: &mut BTreeMap<String, Subscriber>,
    kind: RevenueKind,
    r: &RecordRevenue,
) -> Result<Movement, &'static str> {
    let mut m = Movement::default();
    match kind {
        RevenueKind::PaymentReceived => m.one_time = r.amount,
        RevenueKind::Refund => m.refunds = r.amount,
        _ => m.recurring = r.amount,
    }
    if !kind.is_subscription() {
        return Ok(m);
    }
    let key = format!("{}|{}", r.currency, r.customer_id);
    let before = subscribers.get(&key).cloned();
    let active = before.as_ref().is_some_and(|s| s.active);
    if kind == RevenueKind::SubscriptionCancelled {
        if let Some(s) = before.filter(|s| s.active) {
            m.churned_customers = 1;
            m.churned_mrr = s.mrr;
            subscribers.insert(
                key,
                Subscriber {
                    mrr: Decimal::ZERO,
                    active: false,
                    changed_ms: r.occurred_ms,
                },
            );
        }
        return Ok(m);
    }
    match before {
        Some(s) if active => {
            let diff = r.amount - s.mrr;
            if diff > Decimal::ZERO {
                m.expansion = diff;
            } else {
                m.contraction = -diff;
            }
        }
        Some(_) => {
            m.reactivated_customers = 1;
            m.reactivation_mrr = r.amount;
        }
        None => {
            if subscribers.len() >= SUBSCRIBERS_MAX && !forget_one_churned(subscribers) {
                return Err("Too many active subscribers for one ledger");
            }
            m.new_customers = 1;
            m.new_mrr = r.amount;
        }
    }
    subscribers.insert(
        key,
        Subscriber {
            mrr: r.amount,
            active: true,
            changed_ms: r.occurred_ms,
        },
    );
    Ok(m)
}

/// Forgets the subscriber churned longest ago; false when none is churned.
fn forget_one_churned(subscribers: &mut BTreeMap<String, Subscriber>) -> bool {
    let oldest = subscribers
        .iter()
        .filter(|(_, s)| !s.active)
        .min_by_key(|(k, s)| (s.changed_ms, (*k).clone()))
        .map(|(k, _)| k.clone());
    oldest.is_some_and(|k| subscribers.remove(&k).is_some())
}

/// Checks what the gateway already checked: a known type, a currency with
/// minor units, an amount at its scale, positive (zero only to cancel).
pub fn validate(r: &RecordRevenue) -> Result<RevenueKind, &'static str> {
    let kind = RevenueKind::parse(&r.event_type).ok_or("Unknown event_type")?;
    let scale = iso_4217_scale(&r.currency).ok_or("Unknown currency")?;
    if r.amount.normalize().scale() > scale {
        return Err("amount has more decimals than the currency allows");
    }
    let zero_ok = kind == RevenueKind::SubscriptionCancelled;
    if r.amount < Decimal::ZERO || (r.amount.is_zero() && !zero_ok) {
        return Err("amount must be positive");
    }
    Ok(kind)
}

/// The revenue ledger machine.
#[derive(Debug, Clone, Default)]
pub struct RevenueMachine;

fn envelope(s: &mut RevenueState, command: &Command, id: Uuid, payload: EventPayload) -> Event {
    s.version += 1;
    Event {
        id,
        agent_id: command.agent_id,
        user_id: s.tenant,
        command_id: command.id,
        correlation_id: command.correlation_id.clone(),
        timestamp_ms: command.timestamp_ms,
        agent_version: s.version,
        payload,
    }
}

fn record(s: &mut RevenueState, command: &Command, r: &RecordRevenue, ids: &Ids<'_>) -> Step {
    let natural = r.natural_key.as_deref().map(|k| natural_id(s.tenant, k));
    let repeat = s
        .recent
        .iter()
        .any(|x| x.event_id == command.id || (natural.is_some() && x.natural == natural));
    if repeat {
        // Recorded before: the gateway answers it from the read model.
        return Step::reply(Outcome::Done);
    }
    let kind = match validate(r) {
        Ok(k) => k,
        Err(m) => return Step::rejected(RejectCode::Invalid, m),
    };
    let movement = match classify(&mut s.subscribers, kind, r) {
        Ok(m) => m,
        Err(m) => return Step::rejected(RejectCode::Invalid, m),
    };
    let (debit_account, credit_account) = kind.accounts(&r.vertical);
    let mut entry = LedgerEntry {
        event_id: command.id,
        tenant_id: s.tenant,
        sequence: s.sequence + 1,
        event_type: r.event_type.clone(),
        amount: r.amount,
        currency: r.currency.clone(),
        debit_account,
        credit_account,
        product_id: r.product_id.clone(),
        customer_id: r.customer_id.clone(),
        vertical: r.vertical.clone(),
        customer_segment: r.customer_segment.clone(),
        occurred_ms: r.occurred_ms,
        recorded_ms: command.timestamp_ms,
        natural_key: r.natural_key.clone(),
        metadata: r.metadata.clone(),
        previous_hash: String::new(),
        transaction_hash: String::new(),
        movement,
    };
    let head = if s.head.is_empty() { GENESIS } else { &s.head };
    entry.seal(head);
    s.sequence = entry.sequence;
    s.head = entry.transaction_hash.clone();
    s.recent.push_back(Recent {
        event_id: command.id,
        natural,
    });
    while s.recent.len() > RECENT_KEPT {
        s.recent.pop_front();
    }
    let milestone = count_month(s, &entry);
    let mut events = vec![envelope(
        s,
        command,
        ids.id(0),
        EventPayload::RevenueRecorded(RevenueRecorded {
            entry: Box::new(entry.clone()),
        }),
    )];
    if let Some(m) = milestone {
        events.push(envelope(
            s,
            command,
            ids.id(1),
            EventPayload::RevenueMilestone(m),
        ));
    }
    Step {
        events,
        ..Step::reply(Outcome::RevenueEntry(Box::new(entry)))
    }
}

/// Adds the entry to its month's total; the milestone when that crosses
/// the currency's target for the first time this month.
fn count_month(s: &mut RevenueState, e: &LedgerEntry) -> Option<RevenueMilestone> {
    let month = month_of(e.occurred_ms);
    let key = format!("{month}|{}", e.currency);
    let total = s.months.entry(key.clone()).or_default();
    total.total += e.movement.revenue();
    let target = s.targets.get(&e.currency).copied();
    let crossed = match target {
        Some(t) if !total.reached && total.total >= t => {
            total.reached = true;
            Some(RevenueMilestone {
                milestone: "monthly_target".into(),
                month,
                currency: e.currency.clone(),
                achieved: total.total,
                target: t,
            })
        }
        _ => None,
    };
    while s.months.len() > MONTHS_KEPT {
        let Some(oldest) = s.months.keys().next().cloned() else {
            break;
        };
        s.months.remove(&oldest);
    }
    crossed
}

fn set_target(
    s: &mut RevenueState,
    command: &Command,
    t: &SetRevenueTarget,
    ids: &Ids<'_>,
) -> Step {
    if iso_4217_scale(&t.currency).is_none() || t.monthly_target < Decimal::ZERO {
        return Step::rejected(RejectCode::Invalid, "Invalid target");
    }
    if t.monthly_target.is_zero() {
        s.targets.remove(&t.currency);
    } else {
        s.targets.insert(t.currency.clone(), t.monthly_target);
    }
    let e = envelope(
        s,
        command,
        ids.id(0),
        EventPayload::RevenueTargetSet(RevenueTargetSet {
            currency: t.currency.clone(),
            monthly_target: t.monthly_target,
        }),
    );
    Step {
        events: vec![e],
        ..Step::reply(Outcome::Done)
    }
}

impl Machine for RevenueMachine {
    type State = RevenueState;

    fn route(&self, command: &Command) -> Route {
        Route::Key(command.agent_id)
    }

    fn apply(&self, state: &mut Option<RevenueState>, command: &Command, ids: &Ids<'_>) -> Step {
        let s = state.get_or_insert_with(|| RevenueState {
            tenant: command.user_id,
            head: GENESIS.to_string(),
            ..RevenueState::default()
        });
        if s.tenant != command.user_id {
            return Step::rejected(RejectCode::NotFound, "Ledger not found");
        }
        match &command.payload {
            CommandPayload::RecordRevenue(r) => record(s, command, r, ids),
            CommandPayload::SetRevenueTarget(t) => set_target(s, command, t, ids),
            _ => Step::rejected(RejectCode::Invalid, "not a command for the revenue ledger"),
        }
    }

    fn wants_broadcast(&self, _: &RevenueState) -> bool {
        false
    }

    fn observe(&self, event: &Event) {
        match &event.payload {
            EventPayload::RevenueRecorded(r) => {
                metrics::counter!("agentbank_revenue_events_total", "event_type" => r.entry.event_type.clone())
                    .increment(1);
            }
            EventPayload::RevenueMilestone(_) => {
                metrics::counter!("agentbank_revenue_milestones_total").increment(1);
            }
            _ => {}
        }
    }
}

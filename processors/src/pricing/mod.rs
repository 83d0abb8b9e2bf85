//! Pricing as a keyed machine (key: a tenant's product). `RequestQuote`
//! draws a price by contextual Thompson sampling ([`model`]) with the
//! randomness of the command's position; `ExecuteQuote` records a
//! conversion; the `ExpireQuotes` tick closes every quote that expired
//! unexecuted as a non-conversion. The model learns each quote's outcome at
//! its expiry, converted or not: conversions are known at once and
//! non-conversions only at expiry, and learning the first early would
//! inflate the conversion of whatever was quoted most recently — the
//! model would drift to cheap, often-converting prices while their
//! failures were still pending. Replaying the log reproduces every quote. When a
//! product's recent quoted prices disperse beyond a threshold, a
//! `system.alert` goes out (once per crossing).

#[cfg(test)]
mod machine_tests;
pub mod model;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use schemas::reply::{Outcome, RejectCode};
pub use schemas::revenue::pricing::product_key;
use schemas::revenue::pricing::{
    status, ExecuteQuote, Quote, QuoteChange, RequestQuote, SystemAlert,
};
use schemas::{Command, CommandPayload, Event, EventPayload};

use crate::runtime::machine::{Ids, Machine, Route, Step};
use model::Posterior;

/// Open quotes one product may have at once. A product's state is one
/// checkpoint record, which must stay well under the broker's record limit
/// (1 MB by default); an open quote takes about 600 bytes of it.
pub const OPEN_MAX: usize = 1_000;
/// Closed quotes remembered (by id and outcome), so a retried request or
/// execute is answered, not applied again.
pub const CLOSED_KEPT: usize = 2_000;
/// Contexts (segment × value third) one product may learn.
pub const CONTEXTS_MAX: usize = 3_000;
/// Quotes a product's price dispersion is measured over.
pub const DISPERSION_WINDOW: usize = 50;
/// Quotes needed before dispersion is judged at all.
pub const DISPERSION_MIN: usize = 20;
/// Default dispersion (std / mean of recent quoted prices) above which a
/// `system.alert` fires; it re-arms below 80 % of it.
pub const DEFAULT_DISPERSION_ALERT: f64 = 0.3;

/// Dispersion of `prices`: standard deviation over mean.
pub fn dispersion(prices: &VecDeque<Decimal>) -> f64 {
    let xs: Vec<f64> = prices.iter().map(|p| model::to_f64(*p)).collect();
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.is_empty() || mean <= 0.0 {
        return 0.0;
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    var.sqrt() / mean
}

/// One product's pricing state.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PricingState {
    pub tenant: Uuid,
    pub product_id: String,
    /// Posteriors by `segment|value third`.
    pub posteriors: BTreeMap<String, Posterior>,
    pub open: BTreeMap<Uuid, Quote>,
    pub closed: VecDeque<Closed>,
    /// +1 per event of this product.
    pub version: i64,
    /// The last [`DISPERSION_WINDOW`] quoted prices, and whether their
    /// dispersion is above the alert threshold (alerts fire on crossing up).
    #[serde(default)]
    pub recent_prices: VecDeque<Decimal>,
    #[serde(default)]
    pub alerting: bool,
}

/// A closed quote as remembered: its id and whether it converted (the
/// record itself is in the read model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closed {
    pub quote_id: Uuid,
    pub executed: bool,
}

fn context(segment: &str, bucket: i64) -> String {
    format!("{segment}|{bucket}")
}

impl PricingState {
    fn find_closed(&self, id: Uuid) -> Option<Closed> {
        self.closed.iter().find(|c| c.quote_id == id).copied()
    }

    /// Learns a quote's outcome (at its expiry) and remembers it closed.
    fn learn(&mut self, q: &Quote) {
        let converted = q.status == status::EXECUTED;
        self.posteriors
            .entry(context(&q.segment_id, q.value_bucket))
            .or_default()
            .learn(q.arm as usize, converted);
        self.closed.push_back(Closed {
            quote_id: q.quote_id,
            executed: converted,
        });
        while self.closed.len() > CLOSED_KEPT {
            self.closed.pop_front();
        }
    }
}

/// The pricing machine, with its alert threshold.
#[derive(Debug, Clone)]
pub struct PricingMachine {
    pub dispersion_alert: f64,
}

impl Default for PricingMachine {
    fn default() -> Self {
        PricingMachine {
            dispersion_alert: DEFAULT_DISPERSION_ALERT,
        }
    }
}

fn done() -> Step {
    Step::reply(Outcome::Done)
}

fn answer(q: &Quote) -> Step {
    Step::reply(Outcome::Quote(Box::new(q.clone())))
}

const NOT_FOUND: &str = "Quote not found";
const EXPIRED: &str = "Quote expired";

fn event(
    s: &mut PricingState,
    command: &Command,
    id: Uuid,
    q: &Quote,
    payload: fn(QuoteChange) -> EventPayload,
) -> Event {
    s.version += 1;
    Event {
        id,
        agent_id: q.product_key,
        user_id: q.tenant_id,
        command_id: command.id,
        correlation_id: command.correlation_id.clone(),
        timestamp_ms: command.timestamp_ms,
        agent_version: s.version,
        payload: payload(QuoteChange {
            quote: Box::new(q.clone()),
        }),
    }
}

/// Tracks the quoted prices' dispersion; a `system.alert` when it crosses
/// above `threshold`.
fn watch_dispersion(s: &mut PricingState, price: Decimal, threshold: f64) -> Option<SystemAlert> {
    s.recent_prices.push_back(price);
    while s.recent_prices.len() > DISPERSION_WINDOW {
        s.recent_prices.pop_front();
    }
    if s.recent_prices.len() < DISPERSION_MIN {
        return None;
    }
    let d = dispersion(&s.recent_prices);
    if !s.alerting && d > threshold {
        s.alerting = true;
        return Some(SystemAlert {
            severity: "warning".into(),
            component: "monetizer".into(),
            message: "High pricing variance detected".into(),
            product_id: Some(s.product_id.clone()),
            variance: Some((d * 1_000.0).round() / 1_000.0),
        });
    }
    if s.alerting && d < 0.8 * threshold {
        s.alerting = false;
    }
    None
}

fn quote(
    s: &mut PricingState,
    command: &Command,
    r: &RequestQuote,
    ids: &Ids<'_>,
    alert_above: f64,
) -> Step {
    // A retried request: the same quote (a closed one is read back by the gateway).
    if let Some(q) = s.open.get(&command.id) {
        return if q.status == status::OPEN {
            answer(q)
        } else {
            done()
        };
    }
    if s.find_closed(command.id).is_some() {
        return done();
    }
    let prices: Vec<Decimal> = r.competitor_prices.iter().map(|c| c.price).collect();
    let Some(reference) = model::reference_price(&prices) else {
        return Step::rejected(
            RejectCode::Invalid,
            "competitor_pricing needs at least one positive price",
        );
    };
    if s.open.len() >= OPEN_MAX {
        return Step::rejected(
            RejectCode::Invalid,
            "Too many open quotes for this product; execute or let some expire",
        );
    }
    let bucket = i64::from(model::value_bucket(r.user_value_score));
    let key = context(&r.segment_id, bucket);
    if !s.posteriors.contains_key(&key) && s.posteriors.len() >= CONTEXTS_MAX {
        return Step::rejected(RejectCode::Invalid, "Too many segments for this product");
    }
    let choice = s
        .posteriors
        .entry(key)
        .or_default()
        .choose(reference, &mut ids.rng());
    let q = Quote {
        quote_id: command.id,
        tenant_id: s.tenant,
        product_key: command.agent_id,
        product_id: r.product_id.clone(),
        segment_id: r.segment_id.clone(),
        arm: choice.arm as i64,
        value_bucket: bucket,
        reference_price: reference,
        recommended_price: choice.price,
        lower: choice.lower,
        upper: choice.upper,
        expected_conversion: choice.expected_conversion,
        expected_ltv: model::expected_ltv(choice.price, r.user_value_score),
        price_elasticity: choice.price_elasticity,
        created_ms: command.timestamp_ms,
        expires_ms: command.timestamp_ms.saturating_add(r.ttl_ms.max(1)),
        status: status::OPEN.into(),
        final_price: None,
        discount_percentage: None,
        reason: None,
        closed_ms: None,
        version: 1,
    };
    s.open.insert(q.quote_id, q.clone());
    let mut events = vec![event(s, command, ids.id(0), &q, EventPayload::QuoteIssued)];
    if let Some(alert) = watch_dispersion(s, q.recommended_price, alert_above) {
        s.version += 1;
        events.push(Event {
            id: ids.id(1),
            agent_id: q.product_key,
            user_id: q.tenant_id,
            command_id: command.id,
            correlation_id: command.correlation_id.clone(),
            timestamp_ms: command.timestamp_ms,
            agent_version: s.version,
            payload: EventPayload::SystemAlert(alert),
        });
    }
    Step {
        events,
        ..answer(&q)
    }
}

fn execute(s: &mut PricingState, command: &Command, x: &ExecuteQuote, ids: &Ids<'_>) -> Step {
    let Some(open) = s
        .open
        .get(&x.quote_id)
        .filter(|q| q.status == status::OPEN)
        .cloned()
    else {
        if s.open.contains_key(&x.quote_id) {
            return done(); // executed before, not yet learned from
        }
        return match s.find_closed(x.quote_id) {
            // Executed before: the gateway answers the quote from the read model.
            Some(c) if c.executed => done(),
            Some(_) => Step::rejected(RejectCode::Invalid, EXPIRED),
            None => Step::rejected(RejectCode::NotFound, NOT_FOUND),
        };
    };
    if command.timestamp_ms > open.expires_ms {
        return Step::rejected(RejectCode::Invalid, EXPIRED); // the tick closes it
    }
    let discount = x
        .discount_percentage
        .clamp(Decimal::ZERO, Decimal::ONE_HUNDRED);
    let mut q = open;
    q.final_price = Some(
        (q.recommended_price * (Decimal::ONE_HUNDRED - discount) / Decimal::ONE_HUNDRED)
            .round_dp(2),
    );
    q.discount_percentage = Some(discount);
    q.reason = Some(x.reason.clone()).filter(|r| !r.is_empty());
    q.status = status::EXECUTED.into();
    q.closed_ms = Some(command.timestamp_ms);
    q.version += 1;
    // Learned at its expiry, with the quotes that did not convert.
    s.open.insert(q.quote_id, q.clone());
    let e = event(s, command, ids.id(0), &q, EventPayload::QuoteExecuted);
    Step {
        events: vec![e],
        ..answer(&q)
    }
}

fn expire(s: &mut PricingState, command: &Command, through: i64, ids: &Ids<'_>) -> Step {
    let due: Vec<Uuid> = s
        .open
        .values()
        .filter(|q| q.expires_ms <= through)
        .map(|q| q.quote_id)
        .collect();
    let mut events = Vec::with_capacity(due.len());
    for (i, id) in due.into_iter().enumerate() {
        let Some(mut q) = s.open.remove(&id) else {
            continue;
        };
        if q.status == status::OPEN {
            q.status = status::EXPIRED.into();
            q.closed_ms = Some(q.expires_ms);
            q.version += 1;
            events.push(event(
                s,
                command,
                ids.id(i as u32),
                &q,
                EventPayload::QuoteExpired,
            ));
        }
        s.learn(&q);
    }
    Step {
        events,
        ..Step::default()
    }
}

impl Machine for PricingMachine {
    type State = PricingState;

    fn route(&self, command: &Command) -> Route {
        match command.payload {
            CommandPayload::ExpireQuotes(_) => Route::Broadcast,
            _ => Route::Key(command.agent_id),
        }
    }

    fn apply(&self, state: &mut Option<PricingState>, command: &Command, ids: &Ids<'_>) -> Step {
        match &command.payload {
            CommandPayload::RequestQuote(r) => {
                let s = state.get_or_insert_with(|| PricingState {
                    tenant: command.user_id,
                    product_id: r.product_id.clone(),
                    ..PricingState::default()
                });
                if s.tenant != command.user_id {
                    return Step::rejected(RejectCode::NotFound, NOT_FOUND);
                }
                quote(s, command, r, ids, self.dispersion_alert)
            }
            CommandPayload::ExecuteQuote(x) => {
                match state.as_mut().filter(|s| s.tenant == command.user_id) {
                    Some(s) => execute(s, command, x, ids),
                    None => Step::rejected(RejectCode::NotFound, NOT_FOUND),
                }
            }
            CommandPayload::ExpireQuotes(t) => match state.as_mut() {
                Some(s) => expire(s, command, t.through, ids),
                None => Step::default(),
            },
            _ => Step::rejected(RejectCode::Invalid, "not a command for pricing"),
        }
    }

    fn wants_broadcast(&self, state: &PricingState) -> bool {
        !state.open.is_empty()
    }

    fn observe(&self, event: &Event) {
        let outcome = match event.payload {
            EventPayload::QuoteIssued(_) => "issued",
            EventPayload::QuoteExecuted(_) => "executed",
            EventPayload::QuoteExpired(_) => "expired",
            EventPayload::SystemAlert(_) => {
                metrics::counter!("agentbank_alerts_total", "component" => "monetizer")
                    .increment(1);
                return;
            }
            _ => return,
        };
        metrics::counter!("agentbank_quotes_total", "event" => outcome).increment(1);
    }
}

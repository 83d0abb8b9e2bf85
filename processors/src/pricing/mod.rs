//! Pricing as a keyed machine (key: a tenant's product). `RequestQuote`
//! draws a price by contextual Thompson sampling ([`model`]) with the
//! randomness of the command's position; `ExecuteQuote` records a
//! conversion at the quote's arm; the `ExpireQuotes` tick closes every quote
//! that expired unexecuted as a non-conversion — so the posterior learns
//! from both outcomes, and replaying the log reproduces every quote.

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
use schemas::revenue::pricing::{status, ExecuteQuote, Quote, QuoteChange, RequestQuote};
use schemas::{Command, CommandPayload, Event, EventPayload};

use crate::runtime::machine::{Ids, Machine, Route, Step};
use model::Posterior;

/// Open quotes one product may have at once.
pub const OPEN_MAX: usize = 100_000;
/// Closed quotes remembered (retried executes get their first answer).
pub const CLOSED_KEPT: usize = 1_000;
/// Contexts (segment × value third) one product may learn.
pub const CONTEXTS_MAX: usize = 3_000;

/// One product's pricing state.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PricingState {
    pub tenant: Uuid,
    pub product_id: String,
    /// Posteriors by `segment|value third`.
    pub posteriors: BTreeMap<String, Posterior>,
    pub open: BTreeMap<Uuid, Quote>,
    pub closed: VecDeque<Quote>,
    /// +1 per event of this product.
    pub version: i64,
}

fn context(segment: &str, bucket: i64) -> String {
    format!("{segment}|{bucket}")
}

impl PricingState {
    fn find_closed(&self, id: Uuid) -> Option<&Quote> {
        self.closed.iter().find(|q| q.quote_id == id)
    }

    /// Closes `q` as `executed` or `expired` and learns its outcome.
    fn close(&mut self, mut q: Quote, converted: bool, at_ms: i64) -> Quote {
        let post = self
            .posteriors
            .entry(context(&q.segment_id, q.value_bucket))
            .or_default();
        post.learn(q.arm as usize, converted);
        q.status = if converted {
            status::EXECUTED
        } else {
            status::EXPIRED
        }
        .into();
        q.closed_ms = Some(at_ms);
        q.version += 1;
        self.closed.push_back(q.clone());
        while self.closed.len() > CLOSED_KEPT {
            self.closed.pop_front();
        }
        q
    }
}

/// The pricing machine.
#[derive(Debug, Clone, Default)]
pub struct PricingMachine;

fn rejected(code: RejectCode, message: &str) -> Step {
    Step {
        reply: Some(Outcome::Rejected {
            code,
            message: message.into(),
        }),
        ..Step::default()
    }
}

fn answer(q: &Quote) -> Step {
    Step {
        reply: Some(Outcome::Quote(Box::new(q.clone()))),
        ..Step::default()
    }
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

fn quote(s: &mut PricingState, command: &Command, r: &RequestQuote, ids: &Ids<'_>) -> Step {
    if let Some(q) = s
        .open
        .get(&command.id)
        .or_else(|| s.find_closed(command.id))
    {
        return answer(q); // a retried request: the same quote
    }
    let prices: Vec<Decimal> = r.competitor_prices.iter().map(|c| c.price).collect();
    let Some(reference) = model::reference_price(&prices) else {
        return rejected(
            RejectCode::Invalid,
            "competitor_pricing needs at least one positive price",
        );
    };
    if s.open.len() >= OPEN_MAX {
        return rejected(
            RejectCode::Invalid,
            "Too many open quotes for this product; execute or let some expire",
        );
    }
    let bucket = i64::from(model::value_bucket(r.user_value_score));
    let key = context(&r.segment_id, bucket);
    if !s.posteriors.contains_key(&key) && s.posteriors.len() >= CONTEXTS_MAX {
        return rejected(RejectCode::Invalid, "Too many segments for this product");
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
    let e = event(s, command, ids.id(0), &q, EventPayload::QuoteIssued);
    Step {
        events: vec![e],
        ..answer(&q)
    }
}

fn execute(s: &mut PricingState, command: &Command, x: &ExecuteQuote, ids: &Ids<'_>) -> Step {
    let Some(open) = s.open.get(&x.quote_id).cloned() else {
        return match s.find_closed(x.quote_id) {
            Some(q) if q.status == status::EXECUTED => answer(q),
            Some(_) => rejected(RejectCode::Invalid, EXPIRED),
            None => rejected(RejectCode::NotFound, NOT_FOUND),
        };
    };
    if command.timestamp_ms > open.expires_ms {
        return rejected(RejectCode::Invalid, EXPIRED); // the tick closes it
    }
    s.open.remove(&x.quote_id);
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
    let q = s.close(q, true, command.timestamp_ms);
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
        let Some(q) = s.open.remove(&id) else {
            continue;
        };
        let at = q.expires_ms;
        let q = s.close(q, false, at);
        events.push(event(
            s,
            command,
            ids.id(i as u32),
            &q,
            EventPayload::QuoteExpired,
        ));
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
                    return rejected(RejectCode::NotFound, NOT_FOUND);
                }
                quote(s, command, r, ids)
            }
            CommandPayload::ExecuteQuote(x) => {
                match state.as_mut().filter(|s| s.tenant == command.user_id) {
                    Some(s) => execute(s, command, x, ids),
                    None => rejected(RejectCode::NotFound, NOT_FOUND),
                }
            }
            CommandPayload::ExpireQuotes(t) => match state.as_mut() {
                Some(s) => expire(s, command, t.through, ids),
                None => Step::default(),
            },
            _ => rejected(RejectCode::Invalid, "not a command for pricing"),
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
            _ => return,
        };
        metrics::counter!("agentbank_quotes_total", "event" => outcome).increment(1);
    }
}

//! The agent bank as a keyed machine: one state per agent, driven by the
//! generic runtime. Routing (interest ticks go to every agent with savings)
//! and the bank's business metrics live here; the decisions are [`apply`].

use rust_decimal::Decimal;

use schemas::interest::RateSchedule;
use schemas::{Command, CommandPayload, Event, EventPayload};

use super::{apply, AgentState};
use crate::runtime::machine::{Ids, Machine, Route, Step};

/// The agent machine, with the savings rate history interest accrues by.
#[derive(Debug, Clone)]
pub struct AgentMachine {
    pub rates: RateSchedule,
}

impl AgentMachine {
    pub fn new(rates: RateSchedule) -> Self {
        AgentMachine { rates }
    }
}

impl Machine for AgentMachine {
    type State = AgentState;

    fn route(&self, command: &Command) -> Route {
        match command.payload {
            // A tick: every agent of the partition with savings accrues, each once.
            CommandPayload::AccrueInterest(_) => Route::Broadcast,
            _ => Route::Key(command.agent_id),
        }
    }

    fn apply(&self, state: &mut Option<AgentState>, command: &Command, ids: &Ids<'_>) -> Step {
        let applied = apply(state, command, ids.position(), &self.rates, |i| ids.id(i));
        Step {
            events: applied.events,
            commands: applied.commands,
            settlements: applied.settlements,
            reply: applied.reply,
            ..Step::default()
        }
    }

    fn wants_broadcast(&self, state: &AgentState) -> bool {
        // Ticks accrue interest and expire waiting approvals.
        !state.savings.is_empty() || !state.expiries.is_empty()
    }

    /// Payments by outcome, volume by currency, deposits.
    fn observe(&self, event: &Event) {
        use EventPayload as P;
        let (outcome, change) = match &event.payload {
            P::PaymentConfirmed(c) => ("settled", c),
            P::PaymentFailed(c) => ("failed", c),
            P::PaymentDeclined(c) => ("declined", c),
            P::FundsDeposited(d) => {
                metrics::counter!("agentbank_deposits_total", "currency" => d.currency.clone())
                    .increment(1);
                return;
            }
            _ => return,
        };
        let currency = change.payment.currency.clone();
        metrics::counter!("agentbank_payments_total", "outcome" => outcome, "currency" => currency.clone())
            .increment(1);
        if outcome == "settled" {
            // Micro-units: counters are integers, amounts have 6 places.
            let micros = (change.payment.amount * Decimal::from(1_000_000))
                .trunc()
                .try_into()
                .unwrap_or(0u64);
            metrics::counter!("agentbank_payment_volume_micros_total", "currency" => currency)
                .increment(micros);
        }
    }
}

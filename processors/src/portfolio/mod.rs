//! The portfolio as a keyed machine (key: the tenant's portfolio): it
//! opens a position when an opportunity is executed (once per opportunity)
//! and applies a rebalance's trades only if the portfolio is still at the
//! version the weights were solved against — so two rebalances racing never
//! both apply to the same positions. Valuation and the solvers are pure
//! functions of the read model (`schemas::revenue::portfolio`).

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use schemas::reply::{Outcome, RejectCode};
use schemas::revenue::portfolio::{
    ApplyRebalance, OpenPosition, PortfolioRebalanced, Position, PositionOpened,
};
use schemas::{Command, CommandPayload, Event, EventPayload};

use crate::runtime::machine::{Ids, Machine, Route, Step};

/// Positions one portfolio holds (its state is one checkpoint record,
/// about 200 bytes a position).
pub const POSITIONS_MAX: usize = 1_000;

/// One tenant's portfolio.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PortfolioState {
    pub tenant: Uuid,
    pub positions: BTreeMap<Uuid, Position>,
    /// +1 per event.
    pub version: i64,
}

/// The portfolio machine.
#[derive(Debug, Clone, Default)]
pub struct PortfolioMachine;

fn event(s: &mut PortfolioState, command: &Command, ids: &Ids<'_>, payload: EventPayload) -> Event {
    s.version += 1;
    Event {
        id: ids.id(0),
        agent_id: command.agent_id,
        user_id: s.tenant,
        command_id: command.id,
        correlation_id: command.correlation_id.clone(),
        timestamp_ms: command.timestamp_ms,
        agent_version: s.version,
        payload,
    }
}

fn open(s: &mut PortfolioState, command: &Command, o: &OpenPosition, ids: &Ids<'_>) -> Step {
    if s.positions.contains_key(&o.opportunity_id) {
        return Step::reply(Outcome::Done); // opened before
    }
    if s.positions.len() >= POSITIONS_MAX {
        return Step::rejected(
            RejectCode::Invalid,
            &format!("A portfolio holds at most {POSITIONS_MAX} positions"),
        );
    }
    if o.capital < Decimal::ZERO {
        return Step::rejected(RejectCode::Invalid, "allocation must not be negative");
    }
    let p = Position {
        opportunity_id: o.opportunity_id,
        tenant_id: s.tenant,
        product_id: o.product_id.clone(),
        capital: o.capital,
        opened_ms: o.opened_ms,
    };
    s.positions.insert(p.opportunity_id, p.clone());
    let e = event(
        s,
        command,
        ids,
        EventPayload::PositionOpened(PositionOpened { position: p }),
    );
    Step {
        events: vec![e],
        ..Step::reply(Outcome::Done)
    }
}

fn rebalance(s: &mut PortfolioState, command: &Command, r: &ApplyRebalance, ids: &Ids<'_>) -> Step {
    if r.expected_version != s.version {
        return Step::rejected(
            RejectCode::Conflict,
            "The portfolio changed since these weights were solved; solve again",
        );
    }
    if r.trades
        .iter()
        .any(|t| !s.positions.contains_key(&t.opportunity_id))
    {
        return Step::rejected(
            RejectCode::Invalid,
            "A trade names no position of this portfolio",
        );
    }
    if r.trades.iter().map(|t| t.amount).sum::<Decimal>() != Decimal::ZERO {
        return Step::rejected(RejectCode::Invalid, "A rebalance's trades must sum to zero");
    }
    for t in &r.trades {
        if let Some(p) = s.positions.get_mut(&t.opportunity_id) {
            p.capital += t.amount;
        }
    }
    let positions = s.positions.values().cloned().collect();
    let e = event(
        s,
        command,
        ids,
        EventPayload::PortfolioRebalanced(PortfolioRebalanced {
            strategy: r.strategy.clone(),
            reason: r.reason.clone(),
            trades: r.trades.clone(),
            positions,
        }),
    );
    Step {
        events: vec![e],
        ..Step::reply(Outcome::Done)
    }
}

impl Machine for PortfolioMachine {
    type State = PortfolioState;

    fn route(&self, command: &Command) -> Route {
        Route::Key(command.agent_id)
    }

    fn apply(&self, state: &mut Option<PortfolioState>, command: &Command, ids: &Ids<'_>) -> Step {
        let s = state.get_or_insert_with(|| PortfolioState {
            tenant: command.user_id,
            ..PortfolioState::default()
        });
        if s.tenant != command.user_id {
            return Step::rejected(RejectCode::NotFound, "Portfolio not found");
        }
        match &command.payload {
            CommandPayload::OpenPosition(o) => open(s, command, o, ids),
            CommandPayload::ApplyRebalance(r) => rebalance(s, command, r, ids),
            _ => Step::rejected(RejectCode::Invalid, "not a command for the portfolio"),
        }
    }

    fn observe(&self, event: &Event) {
        if let EventPayload::PortfolioRebalanced(_) = event.payload {
            metrics::counter!("agentbank_portfolio_rebalances_total").increment(1);
        }
    }
}

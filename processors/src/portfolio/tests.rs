//! The portfolio machine, pure: a position opens once per opportunity, a
//! rebalance applies only at the version it was solved against, its trades
//! must sum to zero and name known positions.

use rust_decimal::Decimal;
use uuid::Uuid;

use schemas::reply::{Outcome, RejectCode};
use schemas::revenue::portfolio::{portfolio_key, ApplyRebalance, OpenPosition, Trade};
use schemas::{Command, CommandPayload, EventPayload};

use super::{PortfolioMachine, PortfolioState};
use crate::runtime::machine::{Ids, Machine, Position};

fn at(offset: i64) -> Ids<'static> {
    Ids::new(
        "portfolio",
        Position {
            partition: 0,
            offset,
            sub: 0,
        },
        None,
    )
}

fn command(payload: CommandPayload) -> Command {
    let tenant = Uuid::from_u128(9);
    Command {
        id: Uuid::new_v4(),
        agent_id: portfolio_key(tenant),
        user_id: tenant,
        correlation_id: None,
        timestamp_ms: 1_780_000_000_000,
        payload,
    }
}

fn open(id: u128, capital: i64) -> CommandPayload {
    CommandPayload::OpenPosition(OpenPosition {
        opportunity_id: Uuid::from_u128(id),
        product_id: format!("prod_{id}"),
        capital: Decimal::from(capital),
        opened_ms: 1_780_000_000_000,
    })
}

fn rebalance(version: i64, trades: &[(u128, i64)]) -> CommandPayload {
    CommandPayload::ApplyRebalance(ApplyRebalance {
        strategy: "equal_weight".into(),
        expected_version: version,
        trades: trades
            .iter()
            .map(|(id, a)| Trade {
                opportunity_id: Uuid::from_u128(*id),
                amount: Decimal::from(*a),
            })
            .collect(),
        reason: String::new(),
    })
}

fn rejected(step: &crate::runtime::machine::Step) -> Option<RejectCode> {
    match &step.reply {
        Some(Outcome::Rejected { code, .. }) => Some(*code),
        _ => None,
    }
}

#[test]
fn positions_open_once_and_rebalances_apply_at_their_version() {
    let m = PortfolioMachine;
    let mut state: Option<PortfolioState> = None;
    assert_eq!(
        m.apply(&mut state, &command(open(1, 100)), &at(0))
            .events
            .len(),
        1
    );
    assert!(m
        .apply(&mut state, &command(open(1, 100)), &at(1))
        .events
        .is_empty());
    assert_eq!(
        m.apply(&mut state, &command(open(2, 300)), &at(2))
            .events
            .len(),
        1
    );
    assert_eq!(state.as_ref().unwrap().version, 2);

    // Solved at version 1: stale.
    let stale = m.apply(
        &mut state,
        &command(rebalance(1, &[(1, 100), (2, -100)])),
        &at(3),
    );
    assert_eq!(rejected(&stale), Some(RejectCode::Conflict));
    // Unbalanced, or an unknown position: refused.
    let unbalanced = m.apply(&mut state, &command(rebalance(2, &[(1, 100)])), &at(4));
    assert_eq!(rejected(&unbalanced), Some(RejectCode::Invalid));
    let unknown = m.apply(
        &mut state,
        &command(rebalance(2, &[(3, 100), (2, -100)])),
        &at(5),
    );
    assert_eq!(rejected(&unknown), Some(RejectCode::Invalid));
    // At its version: applied, every position after it in the event.
    let step = m.apply(
        &mut state,
        &command(rebalance(2, &[(1, 100), (2, -100)])),
        &at(6),
    );
    let Some(EventPayload::PortfolioRebalanced(r)) = step.events.first().map(|e| e.payload.clone())
    else {
        panic!("no rebalance event: {step:?}")
    };
    let capitals: Vec<Decimal> = r.positions.iter().map(|p| p.capital).collect();
    assert_eq!(capitals, vec![Decimal::from(200), Decimal::from(200)]);
    assert_eq!(state.as_ref().unwrap().version, 3);
}

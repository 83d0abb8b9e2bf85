//! Property tests of an agent's on-chain transfers: withdrawals to addresses
//! hold their amount until the settlement result, results arrive in any
//! order and any number of times. After every step: no balance below zero,
//! the journal balances and agrees with the state (available, held), the
//! held amount is exactly what is still settling; every result applies once.

use std::collections::HashMap;

use proptest::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::apply_at_default_rate as apply;
use super::*;
use schemas::command::{CreateAgent, Deposit, Withdraw};
use schemas::settlement::{self as st, SettlementResult};

const ADDRESS: &str = "0x00000000000000000000000000000000000000aB";

fn command(id: Uuid, agent: Uuid, user: Uuid, payload: CommandPayload) -> Command {
    Command {
        id,
        agent_id: agent,
        user_id: user,
        correlation_id: None,
        timestamp_ms: 1,
        payload,
    }
}

pub(crate) fn result(r: &st::SettlementRequest, confirmed: bool) -> CommandPayload {
    CommandPayload::CompleteSettlement(SettlementResult {
        request_id: r.id,
        agent_id: r.agent_id,
        user_id: r.user_id,
        kind: r.kind.clone(),
        asset: r.asset.clone(),
        amount: r.amount,
        payment_id: r.payment_id.clone(),
        status: if confirmed {
            st::status::CONFIRMED
        } else {
            st::status::FAILED
        }
        .into(),
        from_address: String::new(),
        to_address: ADDRESS.into(),
        tx_hash: Some(format!("0x{}", "1".repeat(64))),
        block_number: Some(1),
        chain_id: 31337,
        reason: String::new(),
        timestamp: 2,
    })
}

/// A plain USDC agent with no spending rules (shared with the runtime's tests).
pub(crate) fn create_agent(initial_balance: Decimal, settle_on_chain: bool) -> CommandPayload {
    CommandPayload::CreateAgent(CreateAgent {
        name: "a".into(),
        description: String::new(),
        wallet_address: None,
        currency: "USDC".into(),
        daily_limit: None,
        transaction_limit: None,
        require_approval_for_all: false,
        require_approval_above_amount: None,
        tags: vec![],
        initial_balance,
        settle_on_chain,
    })
}

#[derive(Debug, Clone)]
enum Op {
    Deposit(i64),
    Withdraw(i64),
    /// Deliver the result of the n-th request (again, if delivered before).
    Result {
        nth: usize,
        confirmed: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (1i64..30).prop_map(Op::Deposit),
        2 => (0i64..40).prop_map(Op::Withdraw),
        3 => (0usize..30, any::<bool>()).prop_map(|(nth, confirmed)| Op::Result { nth, confirmed }),
    ]
}

proptest! {
    #[test]
    fn results_apply_once_and_holds_match_what_is_settling(ops in proptest::collection::vec(op(), 1..60)) {
        let (agent, user) = (Uuid::new_v4(), Uuid::new_v4());
        let mut state = None;
        let mut ledger: HashMap<String, Decimal> = HashMap::new();
        let mut seq = 0u32;
        let mut step = |state: &mut Option<AgentState>, payload: CommandPayload, ledger: &mut HashMap<String, Decimal>| {
            seq += 1;
            let applied = apply(state, &command(Uuid::from_u128(seq as u128), agent, user, payload),
                Position { partition: 0, offset: seq as i64, sub: 0 }, |i| Uuid::from_u128(((seq as u128) << 32) | i as u128));
            for e in &applied.events {
                if let Some(j) = e.payload.journal() {
                    prop_assert!(j.is_balanced());
                    for p in &j.postings {
                        *ledger.entry(p.account.clone()).or_default() += p.amount;
                    }
                }
            }
            Ok(applied)
        };
        let create = create_agent(Decimal::new(20, 0), true);
        let mut requests = step(&mut state, create, &mut ledger)?.settlements;
        prop_assert_eq!(requests.len(), 2); // faucet gas + tokens
        let mut applied_results: HashMap<Uuid, bool> = HashMap::new();
        let mut withdrawn = Decimal::ZERO;
        for op in ops {
            match op {
                Op::Deposit(n) => {
                    let d = CommandPayload::Deposit(Deposit { amount: Decimal::new(n, 0), currency: "USDC".into(), settle_on_chain: true });
                    requests.extend(step(&mut state, d, &mut ledger)?.settlements);
                }
                Op::Withdraw(n) => {
                    let w = CommandPayload::Withdraw(Withdraw { amount: Decimal::new(n, 0), currency: "USDC".into(), to_address: Some(ADDRESS.into()), to_user_wallet: false });
                    requests.extend(step(&mut state, w, &mut ledger)?.settlements);
                }
                Op::Result { nth, confirmed } => {
                    let Some(r) = requests.get(nth % requests.len().max(1)).cloned() else { continue };
                    let applied = step(&mut state, result(&r, confirmed), &mut ledger)?;
                    match applied_results.get(&r.id) {
                        Some(_) => prop_assert!(applied.events.is_empty(), "a result applied twice"),
                        None => {
                            prop_assert_eq!(applied.events.len(), 1);
                            applied_results.insert(r.id, confirmed);
                            if confirmed && r.kind == st::kind::WITHDRAWAL {
                                withdrawn += r.amount;
                            }
                        }
                    }
                }
            }
            let s = state.as_ref().unwrap();
            prop_assert!(s.view.balance >= Decimal::ZERO);
            let held: Decimal = s.settling.values().filter(|t| t.kind == st::kind::WITHDRAWAL).map(|t| t.amount).sum();
            prop_assert_eq!(s.reserved, held);
            let get = |a: String| ledger.get(&a).copied().unwrap_or_default();
            prop_assert_eq!(get(accounts::agent_available(agent)), s.view.balance);
            prop_assert_eq!(get(accounts::agent_reserved(agent)), s.reserved);
            prop_assert_eq!(get(accounts::onchain_outflow("USDC")), withdrawn);
            prop_assert_eq!(ledger.values().copied().sum::<Decimal>(), Decimal::ZERO);
            let waiting = requests.iter().filter(|r| !applied_results.contains_key(&r.id)).count();
            prop_assert_eq!(s.settling.len(), waiting);
        }
    }
}

#[test]
fn withdrawals_to_bad_addresses_are_refused_without_effect() {
    let (agent, user) = (Uuid::new_v4(), Uuid::new_v4());
    let mut state = None;
    let create = create_agent(Decimal::new(5, 0), false);
    let created = apply(
        &mut state,
        &command(Uuid::from_u128(1), agent, user, create),
        Position {
            partition: 0,
            offset: 1,
            sub: 0,
        },
        |i| Uuid::from_u128(100 + i as u128),
    );
    assert!(created.settlements.is_empty(), "no faucet without a chain");
    let w = CommandPayload::Withdraw(Withdraw {
        amount: Decimal::ONE,
        currency: "USDC".into(),
        to_address: Some("0x12".into()),
        to_user_wallet: false,
    });
    let before = state.clone();
    let applied = apply(
        &mut state,
        &command(Uuid::from_u128(2), agent, user, w),
        Position {
            partition: 0,
            offset: 2,
            sub: 0,
        },
        |i| Uuid::from_u128(200 + i as u128),
    );
    assert!(matches!(applied.reply, Some(Outcome::Rejected { .. })));
    assert!(applied.events.is_empty() && applied.settlements.is_empty());
    assert_eq!(
        state.as_ref().unwrap().view.balance,
        before.unwrap().view.balance
    );
}

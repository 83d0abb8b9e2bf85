//! Property tests of the agent state machine: the ledger balances, a command
//! id is applied once, no balance goes negative, rejections change nothing.

use std::collections::HashMap;

use proptest::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::apply_at_default_rate as apply;
use super::*;
use schemas::command::{CreateAgent, Deposit, Withdraw};

fn create(agent: Uuid, user: Uuid, initial: Decimal) -> (CommandPayload, Uuid, Uuid) {
    let payload = CommandPayload::CreateAgent(CreateAgent {
        name: "a".into(),
        description: String::new(),
        wallet_address: None,
        currency: "USDC".into(),
        daily_limit: None,
        transaction_limit: Some(Decimal::new(100, 0)),
        require_approval_for_all: false,
        require_approval_above_amount: None,
        tags: vec![],
        initial_balance: initial,
        settle_on_chain: false,
    });
    (payload, agent, user)
}

fn command(id: Uuid, (payload, agent_id, user_id): (CommandPayload, Uuid, Uuid)) -> Command {
    Command {
        id,
        agent_id,
        user_id,
        correlation_id: None,
        timestamp_ms: 1,
        payload,
    }
}

fn deposit(agent: Uuid, user: Uuid, amount: Decimal) -> (CommandPayload, Uuid, Uuid) {
    (
        CommandPayload::Deposit(Deposit {
            amount,
            currency: "USDC".into(),
            settle_on_chain: false,
        }),
        agent,
        user,
    )
}

fn withdraw(agent: Uuid, user: Uuid, amount: Decimal) -> (CommandPayload, Uuid, Uuid) {
    (
        CommandPayload::Withdraw(Withdraw {
            amount,
            currency: "USDC".into(),
            to_address: None,
            to_user_wallet: false,
        }),
        agent,
        user,
    )
}

fn at(seed: u32) -> Position {
    Position {
        partition: 0,
        offset: seed as i64,
        sub: 0,
    }
}

fn ids(seed: u32) -> impl Fn(u32) -> Uuid {
    move |i| Uuid::from_u128(((seed as u128) << 32) | i as u128)
}

#[test]
fn create_then_deposit_posts_a_balanced_entry() {
    let (agent, user) = (Uuid::new_v4(), Uuid::new_v4());
    let mut state = None;
    let a = apply(
        &mut state,
        &command(Uuid::new_v4(), create(agent, user, Decimal::new(6, 0))),
        at(1),
        ids(1),
    );
    assert_eq!(a.events.len(), 2, "AgentCreated + initial FundsDeposited");
    let d = apply(
        &mut state,
        &command(Uuid::new_v4(), deposit(agent, user, Decimal::new(505, 1))),
        at(2),
        ids(2),
    );
    let Outcome::Agent(view) = d.reply.as_ref().unwrap() else {
        panic!("{:?}", d.reply)
    };
    assert_eq!(view.balance, Decimal::new(565, 1));
    let j = d.events[0].payload.journal().unwrap();
    assert!(j.is_balanced());
    assert_eq!(d.events[0].agent_version, 3);
}

#[test]
fn deposits_to_missing_or_foreign_agents_are_not_found() {
    let (agent, user) = (Uuid::new_v4(), Uuid::new_v4());
    let mut none = None;
    let r = apply(
        &mut none,
        &command(Uuid::new_v4(), deposit(agent, user, Decimal::ONE)),
        at(1),
        ids(1),
    );
    assert!(matches!(
        r.reply.clone().unwrap(),
        Outcome::Rejected {
            code: RejectCode::NotFound,
            ..
        }
    ));
    let mut state = None;
    apply(
        &mut state,
        &command(Uuid::new_v4(), create(agent, user, Decimal::ZERO)),
        at(1),
        ids(1),
    );
    let before = state.clone().unwrap();
    let r = apply(
        &mut state,
        &command(Uuid::new_v4(), deposit(agent, Uuid::new_v4(), Decimal::ONE)),
        at(2),
        ids(2),
    );
    assert!(matches!(
        r.reply.clone().unwrap(),
        Outcome::Rejected {
            code: RejectCode::NotFound,
            ..
        }
    ));
    assert!(r.events.is_empty());
    assert_eq!(
        state.as_ref().unwrap().view,
        before.view,
        "rejection changed nothing"
    );
}

#[test]
fn invalid_amounts_are_rejected_without_effect() {
    let (agent, user) = (Uuid::new_v4(), Uuid::new_v4());
    let mut state = None;
    apply(
        &mut state,
        &command(Uuid::new_v4(), create(agent, user, Decimal::ZERO)),
        at(1),
        ids(1),
    );
    for bad in [
        Decimal::ZERO,
        Decimal::new(-1, 0),
        Decimal::new(1, 7),
        BALANCE_MAX,
    ] {
        let r = apply(
            &mut state,
            &command(Uuid::new_v4(), deposit(agent, user, bad)),
            at(2),
            ids(2),
        );
        assert!(
            matches!(
                r.reply.clone().unwrap(),
                Outcome::Rejected {
                    code: RejectCode::Invalid,
                    ..
                }
            ),
            "{bad}"
        );
        assert!(r.events.is_empty());
    }
    assert_eq!(state.unwrap().view.balance, Decimal::ZERO);
}

#[test]
fn withdrawals_never_overdraw() {
    let (agent, user) = (Uuid::new_v4(), Uuid::new_v4());
    let mut state = None;
    apply(
        &mut state,
        &command(Uuid::new_v4(), create(agent, user, Decimal::new(10, 0))),
        at(1),
        ids(1),
    );
    let r = apply(
        &mut state,
        &command(
            Uuid::new_v4(),
            withdraw(agent, user, Decimal::new(1000001, 5)),
        ),
        at(2),
        ids(2),
    );
    assert_eq!(
        r.reply.clone().unwrap(),
        Outcome::Rejected {
            code: RejectCode::Invalid,
            message: "Insufficient balance".into()
        }
    );
    let r = apply(
        &mut state,
        &command(Uuid::new_v4(), withdraw(agent, user, Decimal::new(10, 0))),
        at(3),
        ids(3),
    );
    let Outcome::Agent(view) = r.reply.as_ref().unwrap() else {
        panic!("{:?}", r.reply)
    };
    assert!(view.balance.is_zero());
    assert!(r.events[0].payload.journal().unwrap().is_balanced());
}

#[derive(Debug, Clone)]
enum Op {
    Create {
        agent: usize,
        initial_units: i64,
    },
    Deposit {
        agent: usize,
        units: i64,
    },
    Withdraw {
        agent: usize,
        units: i64,
    },
    /// Re-send the i-th command sent so far (a retry).
    Retry {
        nth: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..4, 0i64..5_000_000).prop_map(|(agent, initial_units)| Op::Create {
            agent,
            initial_units
        }),
        (0usize..4, -1_000i64..50_000_000).prop_map(|(agent, units)| Op::Deposit { agent, units }),
        (0usize..4, -1_000i64..60_000_000).prop_map(|(agent, units)| Op::Withdraw { agent, units }),
        (0usize..64).prop_map(|nth| Op::Retry { nth }),
    ]
}

proptest! {
    #[test]
    fn ledger_balances_and_commands_apply_once(ops in proptest::collection::vec(op(), 1..80)) {
        let user = Uuid::from_u128(7);
        let agents: Vec<Uuid> = (0..4).map(|i| Uuid::from_u128(100 + i)).collect();
        let mut states: HashMap<Uuid, Option<AgentState>> = HashMap::new();
        let mut sent: Vec<Command> = vec![];
        let mut applied_ids: HashMap<Uuid, usize> = HashMap::new();
        let mut ledger: HashMap<String, Decimal> = HashMap::new();
        let mut seen_events = std::collections::HashSet::new();
        let mut first_answers: HashMap<Uuid, Outcome> = HashMap::new();

        for (n, op) in ops.iter().enumerate() {
            let cmd = match op {
                Op::Create { agent, initial_units } =>
                    command(Uuid::new_v4(), create(agents[*agent], user, Decimal::new(*initial_units, 6))),
                Op::Deposit { agent, units } =>
                    command(Uuid::new_v4(), deposit(agents[*agent], user, Decimal::new(*units, 6))),
                Op::Withdraw { agent, units } =>
                    command(Uuid::new_v4(), withdraw(agents[*agent], user, Decimal::new(*units, 6))),
                Op::Retry { nth } => match sent.get(*nth) { Some(c) => c.clone(), None => continue },
            };
            let state = states.entry(cmd.agent_id).or_insert(None);
            let before = state.clone();
            let r = apply(state, &cmd, at(n as u32), ids(n as u32));
            if r.duplicate {
                prop_assert!(r.events.is_empty());
                prop_assert_eq!(&before, &*state, "a duplicate changed state");
                prop_assert_eq!(r.reply.as_ref(), first_answers.get(&cmd.id), "a retry got a different answer");
            } else {
                first_answers.insert(cmd.id, r.reply.clone().unwrap());
            }
            if !r.events.is_empty() {
                *applied_ids.entry(cmd.id).or_default() += 1;
            }
            for e in &r.events {
                prop_assert!(seen_events.insert(e.id));
                if let Some(j) = e.payload.journal() {
                    prop_assert!(j.is_balanced());
                    for p in &j.postings {
                        *ledger.entry(p.account.clone()).or_default() += p.amount;
                    }
                }
            }
            sent.push(cmd);
        }
        prop_assert!(applied_ids.values().all(|n| *n == 1), "a command was applied twice");
        prop_assert!(ledger.values().copied().sum::<Decimal>().is_zero(), "ledger does not sum to zero");
        for (agent, state) in &states {
            if let Some(s) = state {
                prop_assert!(s.view.balance >= Decimal::ZERO);
                let posted = ledger.get(&schemas::event::accounts::agent_available(*agent)).copied().unwrap_or_default();
                prop_assert_eq!(posted, s.view.balance, "balance differs from the journal");
            }
        }
    }
}

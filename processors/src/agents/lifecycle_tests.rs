//! Property tests of an agent's lifecycle in its machine: over random
//! sequences of updates, pauses, resumes, deactivations, deposits,
//! withdrawals and payments — no payment leaves a paused or deactivated
//! agent, a deactivation happens only at zero balance with nothing held,
//! nothing changes a deactivated agent, every event's `from → to` is the
//! state before and after, a repeated command id changes nothing, and an
//! update to the current values records nothing.

use proptest::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::apply_at_default_rate as apply;
use super::payment_tests::plain_payment;
use super::*;
use schemas::command::{
    agent_field as field, agent_status, CreateAgent, Deposit, FieldChange, UpdateAgent, Withdraw,
};

#[derive(Debug, Clone)]
enum Op {
    Status(&'static str),
    Limit(Option<u32>),
    Tags(Vec<String>),
    Deposit(u32),
    Withdraw(u32),
    Pay(u32),
    Repeat,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        prop::sample::select(vec![
            agent_status::ACTIVE,
            agent_status::PAUSED,
            agent_status::DEACTIVATED,
            "sleeping"
        ])
        .prop_map(Op::Status),
        prop::option::of(0u32..300).prop_map(Op::Limit),
        prop::collection::vec("[a-z]{1,5}", 0..3).prop_map(Op::Tags),
        (1u32..200).prop_map(Op::Deposit),
        (1u32..200).prop_map(Op::Withdraw),
        (1u32..200).prop_map(Op::Pay),
        Just(Op::Repeat),
    ]
}

fn change(name: &str, to: Option<String>) -> FieldChange {
    FieldChange {
        field: name.into(),
        from: None,
        to,
    }
}

fn update(changes: Vec<FieldChange>) -> CommandPayload {
    CommandPayload::UpdateAgent(UpdateAgent {
        changes,
        actor: "user:test".into(),
        reason: Some("because".into()),
    })
}

fn payload(op: &Op) -> CommandPayload {
    let usd = |n: u32| Decimal::from(n);
    match op {
        Op::Status(s) => update(vec![change(field::STATUS, Some(s.to_string()))]),
        Op::Limit(l) => update(vec![change(field::DAILY_LIMIT, l.map(|n| n.to_string()))]),
        Op::Tags(t) => update(vec![change(
            field::TAGS,
            Some(serde_json::to_string(t).unwrap()),
        )]),
        Op::Deposit(n) => CommandPayload::Deposit(Deposit {
            amount: usd(*n),
            currency: "USDC".into(),
            settle_on_chain: false,
        }),
        Op::Withdraw(n) => CommandPayload::Withdraw(Withdraw {
            amount: usd(*n),
            currency: "USDC".into(),
            to_address: None,
            to_user_wallet: false,
        }),
        Op::Pay(n) => CommandPayload::RegisterPayment(plain_payment(
            Uuid::from_u128(*n as u128 + 7),
            Uuid::from_u128(99),
            usd(*n),
            "INTERNAL",
        )),
        Op::Repeat => unreachable!(),
    }
}

fn created(agent: Uuid, user: Uuid) -> Option<AgentState> {
    let mut state = None;
    let c = Command {
        id: Uuid::new_v4(),
        agent_id: agent,
        user_id: user,
        correlation_id: None,
        timestamp_ms: 1,
        payload: CommandPayload::CreateAgent(CreateAgent {
            name: "a".into(),
            description: String::new(),
            wallet_address: None,
            currency: "USDC".into(),
            daily_limit: Some(Decimal::from(500)),
            transaction_limit: None,
            require_approval_for_all: false,
            require_approval_above_amount: None,
            tags: vec![],
            initial_balance: Decimal::from(100),
            settle_on_chain: false,
        }),
    };
    apply(
        &mut state,
        &c,
        Position {
            partition: 0,
            offset: 0,
            sub: 0,
        },
        |i| Uuid::from_u128(i as u128),
    );
    state
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn lifecycle_rules_hold_over_any_sequence(ops in prop::collection::vec(op(), 1..40)) {
        let (agent, user) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut state = created(agent, user);
        let mut last: Option<Command> = None;
        for (i, op) in ops.iter().enumerate() {
            let cmd = match (op, &last) {
                (Op::Repeat, Some(c)) => c.clone(),
                (Op::Repeat, None) => continue,
                _ => Command {
                    id: Uuid::from_u128(1_000 + i as u128),
                    agent_id: agent,
                    user_id: user,
                    correlation_id: None,
                    timestamp_ms: 1_000 + i as i64,
                    payload: payload(op),
                },
            };
            let before = state.clone().unwrap();
            let at = Position { partition: 0, offset: i as i64 + 1, sub: 0 };
            let out = apply(&mut state, &cmd, at, |j| Uuid::from_u128(((i as u128) << 32) | j as u128));
            let after = state.clone().unwrap();
            if matches!(op, Op::Repeat) {
                prop_assert!(out.duplicate && out.events.is_empty());
                prop_assert_eq!(&before, &after);
                continue;
            }
            last = Some(cmd.clone());
            let refused = matches!(out.reply, Some(Outcome::Rejected { .. }));
            if refused {
                prop_assert!(out.events.is_empty());
            }
            // Nothing changes a deactivated agent.
            if before.view.status == agent_status::DEACTIVATED {
                prop_assert!(out.events.is_empty(), "{:?} changed a deactivated agent", op);
                prop_assert_eq!(&before.view, &after.view);
            }
            // No payment leaves an agent that is not active.
            if matches!(op, Op::Pay(_)) && before.view.status != agent_status::ACTIVE {
                prop_assert!(refused);
            }
            // Deactivated only from zero with nothing held.
            if after.view.status == agent_status::DEACTIVATED
                && before.view.status != agent_status::DEACTIVATED
            {
                prop_assert!(before.view.balance.is_zero() && before.reserved.is_zero());
                prop_assert!(before.open_payments.is_empty());
            }
            for e in &out.events {
                if let EventPayload::AgentUpdated(u) = &e.payload {
                    prop_assert!(!u.changes.is_empty(), "an update to the same values records nothing");
                    for c in &u.changes {
                        prop_assert_eq!(lifecycle_text(&before.view, &c.field), c.from.clone());
                        prop_assert_eq!(lifecycle_text(&after.view, &c.field), c.to.clone());
                    }
                    prop_assert_eq!(&u.status, &after.view.status);
                    prop_assert_eq!(u.reason.as_deref(), Some("because"));
                }
            }
            prop_assert!(after.view.balance >= Decimal::ZERO && after.reserved >= Decimal::ZERO);
        }
    }
}

fn lifecycle_text(v: &AgentView, name: &str) -> Option<String> {
    match name {
        field::STATUS => Some(v.status.clone()),
        field::DAILY_LIMIT => v.rules.daily_limit.map(|d| d.normalize().to_string()),
        field::TAGS => Some(serde_json::to_string(&v.tags).unwrap()),
        other => panic!("unexpected change of {other}"),
    }
}

#[test]
fn key_changes_are_audited_without_touching_the_agent() {
    let (agent, user) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let mut state = created(agent, user);
    let before = state.clone().unwrap().view;
    let cmd = Command {
        id: Uuid::from_u128(5),
        agent_id: agent,
        user_id: user,
        correlation_id: None,
        timestamp_ms: 9,
        payload: update(vec![change(field::API_KEY, Some("k1".into()))]),
    };
    let out = apply(
        &mut state,
        &cmd,
        Position {
            partition: 0,
            offset: 0,
            sub: 0,
        },
        |i| Uuid::from_u128(i as u128 + 50),
    );
    let EventPayload::AgentUpdated(u) = &out.events[0].payload else {
        panic!()
    };
    assert_eq!(
        (u.changes[0].field.as_str(), u.changes[0].to.as_deref()),
        ("api_key", Some("k1"))
    );
    assert_eq!(state.unwrap().view, before);
    // Another user's command finds no agent.
    let mut state = created(agent, user);
    let foreign = Command {
        user_id: Uuid::from_u128(3),
        id: Uuid::from_u128(6),
        ..cmd
    };
    let out = apply(
        &mut state,
        &foreign,
        Position {
            partition: 0,
            offset: 0,
            sub: 0,
        },
        |i| Uuid::from_u128(i as u128),
    );
    assert!(matches!(
        out.reply,
        Some(Outcome::Rejected {
            code: RejectCode::NotFound,
            ..
        })
    ));
}

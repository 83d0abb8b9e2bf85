//! Property tests of the spending policies in the agent's machine, over
//! random policies (caps per hour, week and month; velocities; allow and
//! block lists; approval expiries), payments, approvals, declines and
//! scheduler ticks across random stretches of time: no approved spending
//! in any window passes its cap or its count, no payment reaches a blocked
//! or unlisted recipient, no hold outlives its expiry past a tick, the
//! reserved balance always equals the open payments, and every entry of
//! the journal balances (the ledger sums to zero).

use std::collections::BTreeMap;

use proptest::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::apply_at_default_rate as apply;
use super::payment_tests::plain_payment;
use super::*;
use schemas::command::{
    agent_field, AccrueInterest, CreateAgent, FieldChange, PaymentRef, UpdateAgent,
};
use schemas::payment::approval;
use schemas::policy::{windows, SpendingPolicies};

#[derive(Debug, Clone)]
enum Op {
    Pay { amount: u32, to: usize },
    Approve(usize),
    Decline(usize),
    Tick,
    Wait(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u32..60, 0usize..4).prop_map(|(amount, to)| Op::Pay { amount, to }),
        2 => (0usize..8).prop_map(Op::Approve),
        1 => (0usize..8).prop_map(Op::Decline),
        1 => Just(Op::Tick),
        2 => prop_oneof![1i64..120_000, 60_000i64..7_200_000, 3_600_000i64..800_000_000].prop_map(Op::Wait),
    ]
}

fn recipients() -> [Uuid; 4] {
    [1, 2, 3, 4].map(|n| Uuid::from_u128(100 + n))
}

fn policies() -> impl Strategy<Value = SpendingPolicies> {
    let cap = prop::option::of((10u32..300).prop_map(Decimal::from));
    (
        cap.clone(),
        cap.clone(),
        cap,
        prop::option::of(1u32..6),
        prop::option::of(1u32..12),
        0usize..3,
        prop::option::of(1u32..600),
    )
        .prop_map(|(h, w, m, ph, pd, lists, expiry)| {
            let r = recipients().map(|u| u.to_string());
            SpendingPolicies {
                hourly_limit: h,
                weekly_limit: w,
                monthly_limit: m,
                max_payments_per_hour: ph,
                max_payments_per_day: pd,
                // 0: no lists; 1: a block list; 2: an allow list.
                allowed_recipients: if lists == 2 { r[..2].to_vec() } else { vec![] },
                blocked_recipients: if lists == 1 {
                    vec![r[3].clone()]
                } else {
                    vec![]
                },
                approval_expiry_minutes: expiry,
            }
        })
}

struct World {
    state: Option<AgentState>,
    n: u32,
    now: i64,
    ledger: BTreeMap<String, Decimal>,
}

impl World {
    fn run(&mut self, payload: CommandPayload) -> Applied {
        self.n += 1;
        let n = self.n;
        let cmd = Command {
            id: Uuid::from_u128(10_000 + n as u128),
            agent_id: Uuid::from_u128(1),
            user_id: Uuid::from_u128(2),
            correlation_id: None,
            timestamp_ms: self.now,
            payload,
        };
        let at = Position {
            partition: 0,
            offset: n as i64,
            sub: 0,
        };
        let out = apply(&mut self.state, &cmd, at, |i| {
            Uuid::from_u128(((n as u128) << 32) | i as u128)
        });
        for e in &out.events {
            // Also a broadcast tick's events name the agent they are about.
            assert_eq!(e.agent_id, Uuid::from_u128(1), "{:?}", e.payload);
            if let Some(j) = e.payload.journal() {
                for p in &j.postings {
                    *self.ledger.entry(p.account.clone()).or_default() += p.amount;
                }
            }
        }
        out
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn spending_policies_hold(p in policies(), ops in prop::collection::vec(op(), 1..60), approval_all in any::<bool>()) {
        let start = 1_704_067_200_000; // a Monday, 00:00 UTC
        let mut w = World { state: None, n: 0, now: start, ledger: BTreeMap::new() };
        w.run(CommandPayload::CreateAgent(CreateAgent {
            name: "spender".into(),
            description: String::new(),
            wallet_address: None,
            currency: "USDC".into(),
            daily_limit: None,
            transaction_limit: None,
            require_approval_for_all: approval_all,
            require_approval_above_amount: Some(Decimal::from(40)),
            tags: vec![],
            initial_balance: Decimal::from(100_000),
            settle_on_chain: false,
        }));
        let out = w.run(CommandPayload::UpdateAgent(UpdateAgent {
            changes: vec![FieldChange { field: agent_field::POLICIES.into(), from: None, to: Some(p.text()) }],
            actor: "user:test".into(),
            reason: None,
        }));
        prop_assert!(!matches!(out.reply, Some(Outcome::Rejected { .. })), "{:?}", out.reply);
        // Approved spending: (time, amount, recipient).
        let mut spent: Vec<(i64, Decimal, Uuid)> = vec![];
        let mut expiry_of: BTreeMap<Uuid, i64> = BTreeMap::new();
        for op in &ops {
            match op {
                Op::Wait(ms) => { w.now += ms; continue; }
                Op::Tick => {
                    w.run(CommandPayload::AccrueInterest(AccrueInterest { through: w.now }));
                    // No hold outlives its expiry past a tick.
                    let s = w.state.as_ref().unwrap();
                    for (id, ends) in &expiry_of {
                        if *ends <= w.now {
                            prop_assert!(
                                !s.open_payments.get(id).is_some_and(|p| p.is_waiting_for_approval()),
                                "{id} still held after its expiry"
                            );
                        }
                    }
                    continue;
                }
                Op::Pay { amount, to } => {
                    let receiver = recipients()[*to];
                    let id = Uuid::from_u128(50_000 + w.n as u128);
                    let out = w.run(CommandPayload::RegisterPayment(plain_payment(
                        id,
                        receiver,
                        Decimal::from(*amount),
                        "INTERNAL",
                    )));
                    let refused = matches!(out.reply, Some(Outcome::Rejected { .. }));
                    if p.refuses(&receiver.to_string()).is_some() {
                        prop_assert!(refused, "a payment reached a refused recipient");
                    }
                    if let Some(Outcome::Payment(pay)) = &out.reply {
                        if pay.approval_status == approval::APPROVED {
                            spent.push((w.now, pay.amount, receiver));
                        } else if let Some(m) = p.approval_expiry_minutes {
                            expiry_of.insert(id, w.now + i64::from(m) * 60_000);
                        }
                    }
                }
                Op::Approve(k) | Op::Decline(k) => {
                    let s = w.state.as_ref().unwrap();
                    let waiting: Vec<_> = s.open_payments.values().filter(|p| p.is_waiting_for_approval()).cloned().collect();
                    let Some(pay) = waiting.get(k % waiting.len().max(1)).cloned() else { continue };
                    let r = PaymentRef { payment_id: pay.payment_id.clone() };
                    let approving = matches!(op, Op::Approve(_));
                    let out = w.run(if approving { CommandPayload::ApprovePayment(r) } else { CommandPayload::DeclinePayment(r) });
                    if approving && !matches!(out.reply, Some(Outcome::Rejected { .. })) {
                        spent.push((w.now, pay.amount, Uuid::parse_str(&pay.receiver_agent_id).unwrap()));
                    }
                }
            }
            let s = w.state.as_ref().unwrap();
            let open: Decimal = s.open_payments.values().map(|p| p.amount).sum();
            prop_assert_eq!(s.reserved, open, "reserved is the open holds");
            prop_assert!(w.ledger.values().copied().sum::<Decimal>().is_zero());
        }
        // No window's approved spending passes its cap or count.
        let mut by: BTreeMap<(u8, i64), (Decimal, u32)> = BTreeMap::new();
        for (t, amount, to) in &spent {
            prop_assert!(p.refuses(&to.to_string()).is_none());
            let (h, d, wk, m) = windows(*t);
            for key in [(0u8, h), (1, d), (2, wk), (3, m)] {
                let e = by.entry(key).or_default();
                e.0 += amount;
                e.1 += 1;
            }
        }
        for ((kind, _), (amount, count)) in by {
            match kind {
                0 => {
                    prop_assert!(p.hourly_limit.is_none_or(|c| amount <= c), "hour {amount}");
                    prop_assert!(p.max_payments_per_hour.is_none_or(|n| count <= n));
                }
                1 => prop_assert!(p.max_payments_per_day.is_none_or(|n| count <= n)),
                2 => prop_assert!(p.weekly_limit.is_none_or(|c| amount <= c), "week {amount}"),
                _ => prop_assert!(p.monthly_limit.is_none_or(|c| amount <= c), "month {amount}"),
            }
        }
    }
}

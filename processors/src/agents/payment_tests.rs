//! Property tests of the payment saga: a small world of agents on a few
//! partitions exchanges commands through a simulated topic that may deliver
//! saga steps late, interleaved and more than once (as a replaying sender
//! would). After every step: no balance below zero, the journal balances and
//! agrees with every agent's balances, the daily limit holds; at the end every
//! payment is finished exactly once and the clearing account is empty.

use std::collections::{HashMap, VecDeque};

use proptest::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::apply_at_default_rate as apply;
use super::*;
use schemas::command::{PaymentRef, RegisterPayment};
use schemas::event::accounts;
use schemas::payment::{approval, status};

const AGENTS: usize = 4;
const PARTITIONS: i32 = 2;
const DAY_MS: i64 = 86_400_000;

/// A payment's registration with nothing but what the rules look at: its
/// id, receiver, amount and type (the other test modules build theirs here).
pub(super) fn plain_payment(
    id: Uuid,
    receiver: Uuid,
    amount: Decimal,
    payment_type: &str,
) -> RegisterPayment {
    RegisterPayment {
        payment_id: id.to_string(),
        receiver_agent_id: receiver.to_string(),
        name: "p".into(),
        payment_type: payment_type.into(),
        amount,
        currency: "USDC".into(),
        method: "CRYPTO_ADDRESS".into(),
        contact_email: None,
        contact_phone: None,
        tags: vec![],
        receiver_address: None,
    }
}

#[derive(Debug, Clone)]
enum Op {
    Deposit {
        agent: usize,
        units: i64,
    },
    Pay {
        from: usize,
        to: usize,
        units: i64,
    },
    Approve {
        nth: usize,
    },
    Decline {
        nth: usize,
    },
    /// Deliver the oldest pending saga step (and maybe again later).
    Deliver {
        again: bool,
    },
    /// Let time pass (hours), possibly into a new UTC day.
    Wait {
        hours: i64,
    },
    /// Re-send an earlier gateway command with the same id (a client retry).
    Retry {
        nth: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..AGENTS, 0i64..40).prop_map(|(agent, units)| Op::Deposit { agent, units }),
        4 => (0..AGENTS, 0..AGENTS + 1, -1i64..30)
            .prop_map(|(from, to, units)| Op::Pay { from, to, units }),
        2 => (0usize..40).prop_map(|nth| Op::Approve { nth }),
        1 => (0usize..40).prop_map(|nth| Op::Decline { nth }),
        4 => any::<bool>().prop_map(|again| Op::Deliver { again }),
        1 => (1i64..30).prop_map(|hours| Op::Wait { hours }),
        1 => (0usize..60).prop_map(|nth| Op::Retry { nth }),
    ]
}

/// (daily limit, transaction limit, approval for all, approval above).
type Rules = (Option<i64>, Option<i64>, bool, Option<i64>);

/// Random rules per agent: the "limit changes" of the world.
fn rules() -> impl Strategy<Value = Vec<Rules>> {
    proptest::collection::vec(
        (
            proptest::option::of(5i64..60),
            proptest::option::of(3i64..40),
            proptest::bool::weighted(0.15),
            proptest::option::of(2i64..30),
        ),
        AGENTS,
    )
}

struct World {
    user: Uuid,
    agents: Vec<Uuid>,
    states: HashMap<Uuid, Option<AgentState>>,
    next_offset: HashMap<i32, i64>,
    /// Saga steps produced but not delivered yet.
    pending: VecDeque<Command>,
    ledger: HashMap<String, Decimal>,
    now_ms: i64,
    sent: Vec<Command>,
    payments: Vec<Uuid>,
    /// Per payment: how many times it was credited / finished on the sender.
    credited: HashMap<Uuid, u32>,
    finished: HashMap<Uuid, u32>,
    /// (agent, UTC day) → sum of payments approved without the user.
    auto_approved: HashMap<(Uuid, i64), Decimal>,
}

impl World {
    fn partition(agent: Uuid) -> i32 {
        (agent.as_u128() % PARTITIONS as u128) as i32
    }

    /// Appends `cmd` to its partition and applies it, like the runtime.
    fn deliver(&mut self, cmd: &Command) -> Result<Applied, TestCaseError> {
        let p = Self::partition(cmd.agent_id);
        let offset = self.next_offset.entry(p).or_default();
        let at = Position {
            partition: p,
            offset: *offset,
            sub: 0,
        };
        *offset += 1;
        let state = self.states.entry(cmd.agent_id).or_insert(None);
        let seed = ((p as u128) << 64) | at.offset as u128;
        let applied = apply(state, cmd, at, |i| {
            Uuid::from_u128((seed << 20) | i as u128)
        });
        for e in &applied.events {
            if let Some(j) = e.payload.journal() {
                prop_assert!(j.is_balanced(), "unbalanced {:?}", j);
                for posting in &j.postings {
                    *self.ledger.entry(posting.account.clone()).or_default() += posting.amount;
                }
            }
            match &e.payload {
                EventPayload::PaymentReceived(c) => {
                    *self.credited.entry(c.payment.id()).or_default() += 1
                }
                EventPayload::PaymentConfirmed(c)
                | EventPayload::PaymentFailed(c)
                | EventPayload::PaymentDeclined(c) => {
                    *self.finished.entry(c.payment.id()).or_default() += 1
                }
                _ => {}
            }
            if let EventPayload::PaymentRegistered(c) = &e.payload {
                if !c.payment.approval_required {
                    let day = c.payment.created_ms.div_euclid(DAY_MS);
                    *self.auto_approved.entry((e.agent_id, day)).or_default() += c.payment.amount;
                }
            }
        }
        self.pending.extend(applied.commands.iter().cloned());
        Ok(applied)
    }

    fn gateway(&mut self, agent: Uuid, payload: CommandPayload) -> Command {
        let cmd = Command {
            id: Uuid::new_v4(),
            agent_id: agent,
            user_id: self.user,
            correlation_id: Some("c".into()),
            timestamp_ms: self.now_ms,
            payload,
        };
        self.sent.push(cmd.clone());
        cmd
    }

    fn check(&self) -> Result<(), TestCaseError> {
        for (agent, state) in &self.states {
            let Some(s) = state else { continue };
            prop_assert!(s.view.balance >= Decimal::ZERO, "negative balance");
            prop_assert!(s.reserved >= Decimal::ZERO, "negative reservation");
            let open: Decimal = s.open_payments.values().map(|p| p.amount).sum();
            prop_assert_eq!(open, s.reserved, "reservation differs from open payments");
            let posted = |account: String| self.ledger.get(&account).copied().unwrap_or_default();
            prop_assert_eq!(posted(accounts::agent_available(*agent)), s.view.balance);
            prop_assert_eq!(posted(accounts::agent_reserved(*agent)), s.reserved);
            let limit = s.view.rules.daily_limit;
            for ((a, _), spent) in &self.auto_approved {
                if a == agent {
                    prop_assert!(limit.is_none_or(|l| *spent <= l), "daily limit exceeded");
                }
            }
        }
        let total: Decimal = self.ledger.values().copied().sum();
        prop_assert!(total.is_zero(), "ledger sums to {}", total);
        Ok(())
    }
}

fn units(n: i64) -> Decimal {
    Decimal::new(n, 0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn payments_move_money_once_and_never_below_zero(
        rules in rules(),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let mut w = World {
            user: Uuid::from_u128(9),
            agents: (0..AGENTS).map(|i| Uuid::from_u128(1000 + i as u128)).collect(),
            states: HashMap::new(),
            next_offset: HashMap::new(),
            pending: VecDeque::new(),
            ledger: HashMap::new(),
            now_ms: 1_700_000_000_000,
            sent: vec![],
            payments: vec![],
            credited: HashMap::new(),
            finished: HashMap::new(),
            auto_approved: HashMap::new(),
        };
        for (i, (daily, tx, all, above)) in rules.iter().enumerate() {
            let create = schemas::command::CreateAgent {
                name: format!("agent {i}"),
                description: String::new(),
                wallet_address: None,
                currency: "USDC".into(),
                daily_limit: daily.map(units),
                transaction_limit: tx.map(units),
                require_approval_for_all: *all,
                require_approval_above_amount: above.map(units),
                tags: vec![],
                initial_balance: units(20),
                settle_on_chain: false,
            };
            let cmd = w.gateway(w.agents[i], CommandPayload::CreateAgent(create));
            w.deliver(&cmd)?;
        }
        for op in ops {
            match op {
                Op::Deposit { agent, units: n } => {
                    let cmd = w.gateway(w.agents[agent], CommandPayload::Deposit(
                        schemas::command::Deposit { amount: units(n), currency: "USDC".into(), settle_on_chain: false }));
                    w.deliver(&cmd)?;
                }
                Op::Pay { from, to, units: n } => {
                    let payment = Uuid::new_v4();
                    // `to == AGENTS`: an agent that does not exist.
                    let receiver = w.agents.get(to).copied().unwrap_or(Uuid::from_u128(77));
                    let cmd = w.gateway(w.agents[from], CommandPayload::RegisterPayment(plain_payment(payment, receiver, units(n), "EXTERNAL")));
                    let r = w.deliver(&cmd)?;
                    if !matches!(r.reply, Some(Outcome::Rejected { .. })) {
                        w.payments.push(payment);
                    }
                }
                Op::Approve { nth } | Op::Decline { nth } => {
                    let Some(payment) = w.payments.get(nth).copied() else { continue };
                    let sender = w.states.values().flatten()
                        .find(|s| s.open_payments.contains_key(&payment))
                        .map(|s| s.view.agent_id);
                    let Some(sender) = sender else { continue };
                    let r = PaymentRef { payment_id: payment.to_string() };
                    let payload = if matches!(op, Op::Approve { .. }) {
                        CommandPayload::ApprovePayment(r)
                    } else {
                        CommandPayload::DeclinePayment(r)
                    };
                    let cmd = w.gateway(sender, payload);
                    w.deliver(&cmd)?;
                }
                Op::Deliver { again } => {
                    if let Some(cmd) = w.pending.pop_front() {
                        w.deliver(&cmd)?;
                        if again {
                            w.pending.push_back(cmd);
                        }
                    }
                }
                Op::Wait { hours } => w.now_ms += hours * 3_600_000,
                Op::Retry { nth } => {
                    let Some(cmd) = w.sent.get(nth).cloned() else { continue };
                    let before = w.states.get(&cmd.agent_id).cloned();
                    let r = w.deliver(&cmd)?;
                    prop_assert!(r.duplicate && r.events.is_empty() && r.commands.is_empty());
                    prop_assert_eq!(before.as_ref(), w.states.get(&cmd.agent_id));
                }
            }
            w.check()?;
        }
        // Drain the saga: every in-flight payment finishes.
        let mut steps = 0;
        while let Some(cmd) = w.pending.pop_front() {
            w.deliver(&cmd)?;
            steps += 1;
            prop_assert!(steps < 10_000);
        }
        w.check()?;
        let clearing = w.ledger.get(&accounts::settlement_clearing("USDC")).copied().unwrap_or_default();
        prop_assert!(clearing.is_zero(), "clearing holds {} after every saga finished", clearing);
        for p in &w.payments {
            prop_assert!(w.credited.get(p).copied().unwrap_or(0) <= 1, "payment credited twice");
            let finished = w.finished.get(p).copied().unwrap_or(0);
            let waiting = w.states.values().flatten().any(|s| {
                s.open_payments.get(p).is_some_and(|x| x.approval_status == approval::WAITING_FOR_SENDER)
            });
            prop_assert!(finished == 1 || (finished == 0 && waiting), "payment {} finished {} times", p, finished);
        }
        for s in w.states.values().flatten() {
            for p in s.open_payments.values() {
                prop_assert_eq!(p.status.as_str(), status::NEW);
            }
        }
    }
}

/// The documented flows, one by one: instant, approval, decline, missing receiver.
#[test]
fn documented_lifecycles() {
    let user = Uuid::from_u128(1);
    let (a, b) = (Uuid::from_u128(11), Uuid::from_u128(12));
    let mut states: HashMap<Uuid, Option<AgentState>> = HashMap::new();
    let mut offset = 0;
    let mut run = |cmd: &Command, states: &mut HashMap<Uuid, Option<AgentState>>| {
        offset += 1;
        let at = Position {
            partition: 0,
            offset,
            sub: 0,
        };
        apply(states.entry(cmd.agent_id).or_insert(None), cmd, at, |i| {
            Uuid::from_u128(((offset as u128) << 20) | i as u128)
        })
    };
    let cmd = |agent, payload| Command {
        id: Uuid::new_v4(),
        agent_id: agent,
        user_id: user,
        correlation_id: Some("c".into()),
        timestamp_ms: 0,
        payload,
    };
    for (agent, above) in [(a, Some(units(10))), (b, None)] {
        let c = schemas::command::CreateAgent {
            name: "n".into(),
            description: String::new(),
            wallet_address: None,
            currency: "USDC".into(),
            daily_limit: None,
            transaction_limit: Some(units(100)),
            require_approval_for_all: false,
            require_approval_above_amount: above,
            tags: vec![],
            initial_balance: units(50),
            settle_on_chain: false,
        };
        run(&cmd(agent, CommandPayload::CreateAgent(c)), &mut states);
    }
    let pay = |to: Uuid, n: i64| {
        CommandPayload::RegisterPayment(plain_payment(Uuid::new_v4(), to, units(n), "INTERNAL"))
    };
    let balance = |states: &HashMap<Uuid, Option<AgentState>>, x: Uuid| {
        states[&x].as_ref().unwrap().view.balance
    };

    // Instant: no reply until the saga ends; then Confirmed/Approved.
    let r = run(&cmd(a, pay(b, 5)), &mut states);
    assert!(r.reply.is_none());
    let credit = run(&r.commands[0], &mut states);
    let done = run(&credit.commands[0], &mut states);
    let Some(Outcome::Payment(p)) = done.reply else {
        panic!("{:?}", done.reply)
    };
    assert_eq!(
        (p.status.as_str(), p.approval_status.as_str()),
        ("Confirmed", "Approved")
    );
    assert_eq!(
        (balance(&states, a), balance(&states, b)),
        (units(45), units(55))
    );

    // Above the approval threshold: waits, then approve completes it.
    let r = run(&cmd(a, pay(b, 20)), &mut states);
    let Some(Outcome::Payment(waiting)) = r.reply else {
        panic!("{:?}", r.reply)
    };
    assert_eq!(waiting.approval_status, "Waiting for Sender Approval");
    assert_eq!(balance(&states, a), units(25), "reserved at registration");
    let id = PaymentRef {
        payment_id: waiting.payment_id.clone(),
    };
    let r = run(
        &cmd(a, CommandPayload::ApprovePayment(id.clone())),
        &mut states,
    );
    let credit = run(&r.commands[0], &mut states);
    run(&credit.commands[0], &mut states);
    assert_eq!(balance(&states, b), units(75));
    let again = run(&cmd(a, CommandPayload::DeclinePayment(id)), &mut states);
    assert!(
        matches!(again.reply, Some(Outcome::Rejected { .. })),
        "an approved payment cannot be declined"
    );

    // Decline releases the reservation and is final.
    let r = run(&cmd(a, pay(b, 15)), &mut states);
    let Some(Outcome::Payment(waiting)) = r.reply else {
        panic!()
    };
    let id = PaymentRef {
        payment_id: waiting.payment_id,
    };
    let d = run(
        &cmd(a, CommandPayload::DeclinePayment(id.clone())),
        &mut states,
    );
    let Some(Outcome::Payment(p)) = d.reply else {
        panic!()
    };
    assert_eq!(
        (p.status.as_str(), p.approval_status.as_str()),
        ("Confirmed", "Decline")
    );
    assert_eq!(balance(&states, a), units(25));
    let r = run(&cmd(a, CommandPayload::ApprovePayment(id)), &mut states);
    assert!(
        matches!(r.reply, Some(Outcome::Rejected { .. })),
        "decline is final"
    );

    // Over the transaction limit: rejected outright. Unknown receiver: released.
    let r = run(&cmd(b, pay(a, 101)), &mut states);
    assert!(matches!(
        r.reply,
        Some(Outcome::Rejected {
            code: RejectCode::Invalid,
            ..
        })
    ));
    let r = run(&cmd(b, pay(Uuid::from_u128(99), 5)), &mut states);
    let refused = run(&r.commands[0], &mut states);
    let failed = run(&refused.commands[0], &mut states);
    assert!(matches!(
        failed.reply,
        Some(Outcome::Rejected {
            code: RejectCode::NotFound,
            ..
        })
    ));
    assert_eq!(balance(&states, b), units(75));
    assert!(states[&b].as_ref().unwrap().reserved.is_zero());
}

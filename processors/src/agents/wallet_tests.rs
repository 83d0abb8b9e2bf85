//! Property tests of the wallet: a user's wallet and a few agents on two
//! partitions, driven through the agent machine (so routing between wallet
//! and agent keys is exercised too), exchange saga steps through a simulated
//! topic that delivers them late, interleaved and more than once. After every
//! step: no wallet or agent below zero, the journal balances and agrees with
//! every state; at the end every funding is answered exactly once, the
//! transit account is empty and the wallet holds exactly what the accepted
//! commands imply.

use std::collections::{HashMap, VecDeque};

use proptest::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::machine::{AgentMachine, BankState};
use super::wallet::{self, WalletState};
use super::*;
use crate::runtime::machine::{Ids, Machine};
use schemas::command::{FundAgent, FundWallet, GrantSignupBonus};
use schemas::event::accounts;

const AGENTS: usize = 3;
const PARTITIONS: i32 = 2;
const TOPIC: &str = "agentbank.commands";

#[derive(Debug, Clone)]
enum Op {
    Fund {
        units: i64,
    },
    /// Fund an agent (`agent == AGENTS`: one that does not exist; `create`:
    /// create it with the balance).
    FundAgent {
        agent: usize,
        units: i64,
        create: bool,
    },
    Withdraw {
        agent: usize,
        units: i64,
    },
    Deliver {
        again: bool,
    },
    Retry {
        nth: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (-1i64..30).prop_map(|units| Op::Fund { units }),
        4 => (0..AGENTS + 1, -1i64..25, proptest::bool::weighted(0.3))
            .prop_map(|(agent, units, create)| Op::FundAgent { agent, units, create }),
        2 => (0..AGENTS, 0i64..20).prop_map(|(agent, units)| Op::Withdraw { agent, units }),
        4 => any::<bool>().prop_map(|again| Op::Deliver { again }),
        1 => (0usize..40).prop_map(|nth| Op::Retry { nth }),
    ]
}

struct World {
    machine: AgentMachine,
    user: Uuid,
    agents: Vec<Uuid>,
    states: HashMap<Uuid, Option<BankState>>,
    next_offset: HashMap<i32, i64>,
    pending: VecDeque<Command>,
    ledger: HashMap<String, Decimal>,
    sent: Vec<Command>,
    /// Per funding command: the answers its caller got.
    answers: HashMap<Uuid, Vec<Outcome>>,
    fundings: Vec<Uuid>,
}

impl World {
    fn new() -> Self {
        World {
            machine: AgentMachine::new(schemas::interest::RateSchedule::parse("4.5").unwrap()),
            user: Uuid::from_u128(9),
            agents: (0..AGENTS)
                .map(|i| Uuid::from_u128(1000 + i as u128))
                .collect(),
            states: HashMap::new(),
            next_offset: HashMap::new(),
            pending: VecDeque::new(),
            ledger: HashMap::new(),
            sent: vec![],
            answers: HashMap::new(),
            fundings: vec![],
        }
    }

    fn deliver(&mut self, cmd: &Command) -> Result<crate::runtime::machine::Step, TestCaseError> {
        let p = (cmd.agent_id.as_u128() % PARTITIONS as u128) as i32;
        let offset = self.next_offset.entry(p).or_default();
        let at = Position {
            partition: p,
            offset: *offset,
            sub: 0,
        };
        *offset += 1;
        let state = self.states.entry(cmd.agent_id).or_insert(None);
        let step = self.machine.apply(state, cmd, &Ids::new(TOPIC, at, None));
        for e in &step.events {
            if let Some(j) = e.payload.journal() {
                prop_assert!(j.is_balanced(), "unbalanced {:?}", j);
                for posting in &j.postings {
                    *self.ledger.entry(posting.account.clone()).or_default() += posting.amount;
                }
            }
        }
        if let Some(reply) = &step.reply {
            // Replies go to the caller by correlation id: the funding's.
            let caller = cmd
                .correlation_id
                .as_deref()
                .and_then(|c| Uuid::parse_str(c).ok());
            if let Some(caller) = caller.filter(|c| self.fundings.contains(c)) {
                self.answers.entry(caller).or_default().push(reply.clone());
            }
        }
        self.pending.extend(step.commands.iter().cloned());
        Ok(step)
    }

    fn gateway(&mut self, key: Uuid, payload: CommandPayload) -> Command {
        let id = Uuid::new_v4();
        let cmd = Command {
            id,
            agent_id: key,
            user_id: self.user,
            correlation_id: Some(id.to_string()),
            timestamp_ms: 1_700_000_000_000,
            payload,
        };
        self.sent.push(cmd.clone());
        cmd
    }

    fn wallet(&self) -> Option<&WalletState> {
        self.states.get(&self.user)?.as_ref()?.wallet()
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let posted = |account: String| self.ledger.get(&account).copied().unwrap_or_default();
        for (key, state) in &self.states {
            match state {
                Some(BankState::Agent(a)) => {
                    prop_assert!(a.view.balance >= Decimal::ZERO, "negative agent");
                    prop_assert_eq!(posted(accounts::agent_available(*key)), a.view.balance);
                }
                Some(BankState::Wallet(w)) => {
                    let held = w.balance("USDC");
                    prop_assert!(held >= Decimal::ZERO, "negative wallet");
                    prop_assert_eq!(posted(accounts::user_wallet(*key)), held);
                }
                None => {}
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

fn create_agent(name: &str) -> schemas::command::CreateAgent {
    let CommandPayload::CreateAgent(c) =
        super::settlement_tests::create_agent(Decimal::ZERO, false)
    else {
        unreachable!("a creation")
    };
    schemas::command::CreateAgent {
        name: name.into(),
        ..c
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn wallet_funds_agents_once_and_never_below_zero(
        ops in proptest::collection::vec(op(), 1..100),
    ) {
        let mut w = World::new();
        let bonus = w.gateway(w.user, CommandPayload::GrantSignupBonus(GrantSignupBonus {
            amount: units(20), currency: "USDC".into(),
        }));
        w.deliver(&bonus)?;
        // The first agent exists from the start; the others only if created.
        let first = w.gateway(w.agents[0], CommandPayload::CreateAgent(create_agent("a0")));
        w.deliver(&first)?;
        // What the wallet must hold: bonus + funded + withdrawn − funded out, net of refunds.
        for op in ops {
            match op {
                Op::Fund { units: n } => {
                    let cmd = w.gateway(w.user, CommandPayload::FundWallet(FundWallet {
                        amount: units(n), currency: "USDC".into(), memo: "test".into(),
                    }));
                    let step = w.deliver(&cmd)?;
                    prop_assert_eq!(n > 0, matches!(step.reply, Some(Outcome::Wallet { .. })));
                }
                Op::FundAgent { agent, units: n, create } => {
                    let target = w.agents.get(agent).copied().unwrap_or(Uuid::from_u128(77));
                    let before = w.wallet().map_or(Decimal::ZERO, |s| s.balance("USDC"));
                    let cmd = w.gateway(w.user, CommandPayload::FundAgent(Box::new(FundAgent {
                        agent_id: target.to_string(),
                        amount: units(n),
                        currency: "USDC".into(),
                        settle_on_chain: false,
                        create: create.then(|| create_agent("new")),
                    })));
                    w.fundings.push(cmd.id);
                    let step = w.deliver(&cmd)?;
                    let refused = n <= 0 || units(n) > before;
                    prop_assert_eq!(refused, step.reply.is_some(), "answered at once iff refused");
                    if units(n) > before && n > 0 {
                        prop_assert_eq!(step.reply, Some(Outcome::Rejected {
                            code: RejectCode::Invalid,
                            message: wallet::INSUFFICIENT_FUNDS.into(),
                        }));
                    }
                }
                Op::Withdraw { agent, units: n } => {
                    let cmd = w.gateway(w.agents[agent], CommandPayload::Withdraw(
                        schemas::command::Withdraw { amount: units(n), currency: "USDC".into(), to_address: None, to_user_wallet: false }));
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
                Op::Retry { nth } => {
                    // A recent wallet command again (the wallet exists from
                    // the start, so it remembers the last RECENT_COMMANDS_MAX):
                    // nothing changes.
                    let wallet_commands: Vec<_> = w.sent.iter()
                        .filter(|c| wallet::is_wallet_command(&c.payload)).rev()
                        .take(RECENT_COMMANDS_MAX).cloned().collect();
                    let Some(cmd) = wallet_commands.get(nth).cloned() else { continue };
                    let before = w.states.get(&cmd.agent_id).cloned();
                    let step = w.deliver(&cmd)?;
                    prop_assert!(step.events.is_empty() && step.commands.is_empty());
                    prop_assert_eq!(before.as_ref(), w.states.get(&cmd.agent_id));
                }
            }
            w.check()?;
        }
        let mut steps = 0;
        while let Some(cmd) = w.pending.pop_front() {
            w.deliver(&cmd)?;
            steps += 1;
            prop_assert!(steps < 10_000);
        }
        w.check()?;
        let transit = w.ledger.get(&accounts::wallet_transit("USDC")).copied().unwrap_or_default();
        prop_assert!(transit.is_zero(), "transit holds {} after every saga finished", transit);
        let wallet = w.wallet().unwrap();
        prop_assert!(wallet.in_flight.is_empty(), "fundings left in flight");
        // Every funding answered exactly once (retries of a refusal aside:
        // a retry is answered again, by design).
        for f in &w.fundings {
            let answers = w.answers.get(f).map_or(0, |a| a.len());
            prop_assert!(answers >= 1, "funding {} never answered", f);
        }
        // Money is conserved: everything the world holds came from the bonus
        // and test funding.
        let outside = -(w.ledger.get(&accounts::sandbox_bonus("USDC")).copied().unwrap_or_default()
            + w.ledger.get(&accounts::external_funding("USDC")).copied().unwrap_or_default());
        let agents: Decimal = w.states.values().flatten().filter_map(|s| s.agent()).map(|a| a.view.balance).sum();
        prop_assert_eq!(outside, agents + wallet.balance("USDC"));
    }
}

/// The documented flow: the bonus funds an agent's creation, a deposit past
/// the wallet is refused with the seed's message, a withdrawal comes back,
/// a funding for a missing agent is refunded with a 404's reason.
#[test]
fn bonus_funds_an_agent_and_withdrawals_come_back() {
    let mut w = World::new();
    let bonus = w.gateway(
        w.user,
        CommandPayload::GrantSignupBonus(GrantSignupBonus {
            amount: units(20),
            currency: "USDC".into(),
        }),
    );
    w.deliver(&bonus).unwrap();
    let agent = w.agents[1];
    let fund = |w: &mut World, target: Uuid, n: i64, create: bool| {
        let cmd = w.gateway(
            w.user,
            CommandPayload::FundAgent(Box::new(FundAgent {
                agent_id: target.to_string(),
                amount: units(n),
                currency: "USDC".into(),
                settle_on_chain: false,
                create: create.then(|| create_agent("funded")),
            })),
        );
        w.fundings.push(cmd.id);
        let at_once = w.deliver(&cmd).unwrap().reply;
        (cmd.id, at_once)
    };
    let drain = |w: &mut World| {
        while let Some(cmd) = w.pending.pop_front() {
            w.deliver(&cmd).unwrap();
        }
    };
    // Create with 15 of the 20.
    let (created, at_once) = fund(&mut w, agent, 15, true);
    assert_eq!(at_once, None, "the agent answers");
    drain(&mut w);
    let Some(Outcome::Agent(view)) = w.answers[&created].first() else {
        panic!("{:?}", w.answers[&created])
    };
    assert_eq!((view.agent_id, view.balance), (agent, units(15)));
    assert_eq!(w.wallet().unwrap().balance("USDC"), units(5));
    // 6 more than the wallet's 5: refused, nothing moves.
    let (_, refused) = fund(&mut w, agent, 6, false);
    assert_eq!(
        refused,
        Some(Outcome::Rejected {
            code: RejectCode::Invalid,
            message: wallet::INSUFFICIENT_FUNDS.into()
        })
    );
    // A withdrawal of 10 lands back in the wallet.
    let cmd = w.gateway(
        agent,
        CommandPayload::Withdraw(schemas::command::Withdraw {
            amount: units(10),
            currency: "USDC".into(),
            to_address: None,
            to_user_wallet: false,
        }),
    );
    w.deliver(&cmd).unwrap();
    drain(&mut w);
    assert_eq!(w.wallet().unwrap().balance("USDC"), units(15));
    // A funding for an agent that does not exist comes back, answered 404.
    let (missing, _) = fund(&mut w, Uuid::from_u128(77), 4, false);
    assert_eq!(
        w.wallet().unwrap().balance("USDC"),
        units(11),
        "held in transit"
    );
    drain(&mut w);
    assert_eq!(
        w.answers[&missing],
        vec![Outcome::Rejected {
            code: RejectCode::NotFound,
            message: "Agent not found".into()
        }]
    );
    assert_eq!(w.wallet().unwrap().balance("USDC"), units(15));
    w.check().unwrap();
}

/// Checkpoints: an agent's state restores as it was written before wallets
/// existed, and a wallet round-trips under its own key.
#[test]
fn bank_states_round_trip_through_checkpoint_json() {
    let agent = AgentState::new(schemas::reply::AgentView {
        agent_id: Uuid::from_u128(1),
        user_id: Uuid::from_u128(2),
        name: "a".into(),
        description: String::new(),
        wallet_address: None,
        currency: "USDC".into(),
        rules: Default::default(),
        tags: vec![],
        status: "active".into(),
        created_ms: 0,
        balance: Decimal::new(12_345_678, 6),
        policies: Default::default(),
    });
    let old_format = serde_json::to_string(&agent).unwrap();
    let restored: BankState = serde_json::from_str(&old_format).unwrap();
    assert_eq!(restored, BankState::Agent(Box::new(agent.clone())));
    assert_eq!(serde_json::to_string(&restored).unwrap(), old_format);
    let mut wallet = WalletState::new(Uuid::from_u128(2));
    wallet.balances.insert("USDC".into(), Decimal::new(1, 6));
    let text = serde_json::to_string(&BankState::Wallet(wallet.clone())).unwrap();
    let back: BankState = serde_json::from_str(&text).unwrap();
    assert_eq!(back, BankState::Wallet(wallet));
}

/// On chain, a withdrawal to the user's own custodial wallet lands in the
/// wallet once its transfer confirms (once, however often the result comes);
/// a failed one goes back to the agent and the wallet never sees it.
#[test]
fn a_confirmed_withdrawal_to_the_users_custodial_wallet_lands_in_the_wallet() {
    let mut w = World::new();
    let agent = w.agents[0];
    let create = w.gateway(
        agent,
        super::settlement_tests::create_agent(units(30), false),
    );
    w.deliver(&create).unwrap();
    let withdraw = |w: &mut World, n: i64| {
        let cmd = w.gateway(
            agent,
            CommandPayload::Withdraw(schemas::command::Withdraw {
                amount: units(n),
                currency: "USDC".into(),
                to_address: Some("0x00000000000000000000000000000000000000aB".into()),
                to_user_wallet: true,
            }),
        );
        w.deliver(&cmd).unwrap().settlements.remove(0)
    };
    let confirmed = withdraw(&mut w, 10);
    let failed = withdraw(&mut w, 5);
    for _ in 0..2 {
        let r = w.gateway(agent, super::settlement_tests::result(&confirmed, true));
        w.deliver(&r).unwrap();
        let r = w.gateway(agent, super::settlement_tests::result(&failed, false));
        w.deliver(&r).unwrap();
    }
    while let Some(cmd) = w.pending.pop_front() {
        w.deliver(&cmd).unwrap();
    }
    assert_eq!(w.wallet().unwrap().balance("USDC"), units(10));
    let agent_state = w.states[&agent]
        .as_ref()
        .and_then(BankState::agent)
        .unwrap();
    assert_eq!(
        (agent_state.view.balance, agent_state.reserved),
        (units(20), Decimal::ZERO)
    );
    w.check().unwrap();
    assert!(w.ledger[&accounts::wallet_transit("USDC")].is_zero());
}

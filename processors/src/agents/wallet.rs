//! The user's wallet: the primary account agents are funded from, keyed by
//! the user on the agents' topic. The sign-up bonus, test funding and agents'
//! withdrawals land in it; agent creation with a balance and deposits draw on
//! it, as a saga:
//!
//! 1. `FundAgent` on the wallet: refuse when it holds too little; otherwise
//!    wallet → transit (`wallet:<currency>:transit`), the funding recorded
//!    in flight, and `CreditFromWallet` sent to the agent.
//! 2. `CreditFromWallet` on the agent ([`credit_from_wallet`]): create the
//!    agent if asked, credit transit → agent and answer the caller; or refuse.
//!    Either way `SettleWallet` goes back with the answer.
//! 3. `SettleWallet` on the wallet: a landed funding is forgotten; a refused
//!    one comes back transit → wallet and the caller gets the refusal.
//!
//! Once every saga has finished the transit account nets to zero. Each step
//! applies once: the wallet remembers recent command ids and the fundings
//! in flight (only an in-flight funding settles, so a funding sent twice by
//! a replay, refused twice, refunds once); the agent dedupes by origin.

use std::collections::{BTreeMap, VecDeque};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use schemas::command::{CreditFromWallet, Deposit, FundAgent, FundWallet, SettleWallet};
use schemas::event::{accounts, wallet_memo, BonusGranted, WalletChange};
use schemas::reply::{Outcome, RejectCode};
use schemas::{money, Command, CommandPayload, Event, EventPayload};

use super::payments::entry;
use super::{AgentState, Answer, Applied, Decided, Decision, Origin, Position};

/// Most fundings one wallet may have in flight: bounds its state.
pub const FUNDING_IN_FLIGHT_MAX: usize = 1_000;

/// Largest amount one wallet may hold, as for an agent.
pub const WALLET_MAX: Decimal = super::BALANCE_MAX;

pub use schemas::reply::{INSUFFICIENT_WALLET_FUNDS as INSUFFICIENT_FUNDS, WALLET_NOT_FOUND};
/// The agent's refusal of a funding for an agent that does not exist.
const AGENT_NOT_FOUND: &str = "Agent not found";

/// One user's wallet, as checkpointed to the changelog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalletState {
    pub user_id: Uuid,
    /// Balance per currency (the ledger's `user:<id>:wallet`).
    #[serde(default)]
    pub balances: BTreeMap<String, Decimal>,
    /// +1 per event of this wallet.
    pub version: i64,
    pub bonus_granted: bool,
    /// The last [`super::RECENT_COMMANDS_MAX`] command ids and their answers.
    #[serde(default)]
    pub recent: VecDeque<(Uuid, Answer)>,
    /// Fundings sent to agents and not yet answered, by request id.
    #[serde(default)]
    pub in_flight: BTreeMap<Uuid, Funding>,
    /// Per agent partition, the highest origin of a withdrawal credited.
    #[serde(default)]
    pub saga_seen: BTreeMap<i32, Origin>,
}

/// A funding on its way to an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Funding {
    pub agent_id: Uuid,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
}

impl WalletState {
    pub fn new(user_id: Uuid) -> Self {
        WalletState {
            user_id,
            balances: BTreeMap::new(),
            version: 0,
            bonus_granted: false,
            recent: VecDeque::new(),
            in_flight: BTreeMap::new(),
            saga_seen: BTreeMap::new(),
        }
    }

    pub fn balance(&self, currency: &str) -> Decimal {
        self.balances.get(currency).copied().unwrap_or_default()
    }

    /// Moves `delta` into (positive) or out of the wallet against `counter`;
    /// the event that records it.
    fn post(
        &mut self,
        entry_id: String,
        delta: Decimal,
        currency: &str,
        counter: String,
        memo: &str,
        agent: Option<Uuid>,
    ) -> EventPayload {
        let balance = self.balances.entry(currency.to_string()).or_default();
        *balance += delta;
        debug_assert!(*balance >= Decimal::ZERO, "wallet below zero");
        let wallet = accounts::user_wallet(self.user_id);
        let (from, to) = if delta >= Decimal::ZERO {
            (counter, wallet)
        } else {
            (wallet, counter)
        };
        EventPayload::WalletChanged(WalletChange {
            amount: delta.abs(),
            currency: currency.to_string(),
            balance_after: *balance,
            memo: memo.into(),
            agent: agent.map(|a| a.to_string()),
            journal: entry(entry_id, from, to, delta.abs()),
        })
    }
}

/// Whether this command is the wallet's (keyed by the user).
pub fn is_wallet_command(payload: &CommandPayload) -> bool {
    matches!(
        payload,
        CommandPayload::GrantSignupBonus(_)
            | CommandPayload::FundWallet(_)
            | CommandPayload::FundAgent(_)
            | CommandPayload::SettleWallet(_)
    )
}

/// Applies one of the wallet's commands to the wallet of `command.agent_id`
/// (the user's id; `None`: no wallet yet).
pub fn apply(
    state: &mut Option<WalletState>,
    command: &Command,
    at: Position,
    id: impl Fn(u32) -> Uuid,
) -> Applied {
    if let Some(s) = state.as_ref() {
        if let Some((_, answer)) = s.recent.iter().find(|(id, _)| *id == command.id) {
            return Applied {
                events: vec![],
                commands: vec![],
                settlements: vec![],
                reply: answer.wallet_outcome(),
                duplicate: true,
            };
        }
    }
    let decided = if command.agent_id != command.user_id {
        Err(invalid("A wallet is keyed by its user"))
    } else {
        match &command.payload {
            CommandPayload::GrantSignupBonus(b) => grant_bonus(state, command, b),
            CommandPayload::FundWallet(f) => fund_wallet(state, command, f),
            CommandPayload::FundAgent(f) => fund_agent(state.as_mut(), command, f, at),
            CommandPayload::SettleWallet(s) => settle(state, command, s),
            _ => Err(invalid("not a command for a wallet")),
        }
    };
    let decision = match super::decision_of(decided) {
        Ok(d) => d,
        Err(repeated) => return repeated,
    };
    let mut events = Vec::with_capacity(decision.payloads.len());
    if let Some(s) = state.as_mut() {
        for (i, payload) in decision.payloads.into_iter().enumerate() {
            s.version += 1;
            events.push(Event {
                id: id(i as u32),
                agent_id: s.user_id,
                user_id: s.user_id,
                command_id: command.id,
                correlation_id: command.correlation_id.clone(),
                timestamp_ms: command.timestamp_ms,
                agent_version: s.version,
                payload,
            });
        }
        // Saga steps dedupe by their own means; callers' commands here.
        if !matches!(command.payload, CommandPayload::SettleWallet(_)) {
            let answer = match &decision.reply {
                Some(outcome) => Answer::of(outcome),
                // A funding under way: its answer comes from the agent.
                None => Answer::Payment(command.id),
            };
            super::remember(&mut s.recent, command.id, answer);
        }
    }
    let commands = super::saga_commands(command, decision.sagas, &id);
    Applied {
        events,
        commands,
        settlements: vec![],
        reply: decision.reply,
        duplicate: false,
    }
}

fn invalid(message: &str) -> (RejectCode, String) {
    (RejectCode::Invalid, message.into())
}

/// The bonus, once per user; it opens the wallet.
fn grant_bonus(
    state: &mut Option<WalletState>,
    command: &Command,
    b: &schemas::command::GrantSignupBonus,
) -> Decided {
    if money::validate_positive(b.amount, &b.currency).is_err() || b.amount > money::SIGNUP_BONUS {
        return Err(invalid("Invalid bonus amount"));
    }
    let s = state.get_or_insert_with(|| WalletState::new(command.user_id));
    if s.bonus_granted {
        return Ok(Some(Decision::answer(vec![], Outcome::Done)));
    }
    s.bonus_granted = true;
    let event = s.post(
        format!("{}:signup-bonus", command.user_id),
        b.amount,
        &b.currency,
        accounts::sandbox_bonus(&b.currency),
        "signup bonus",
        None,
    );
    // Published as the bonus event consumers know, with the same entry.
    let EventPayload::WalletChanged(change) = event else {
        unreachable!("post records a wallet change")
    };
    let bonus = EventPayload::SignupBonusGranted(BonusGranted {
        amount: change.amount,
        currency: change.currency,
        journal: change.journal,
    });
    Ok(Some(Decision::answer(vec![bonus], Outcome::Done)))
}

fn checked_amount(
    amount: Decimal,
    currency: &str,
    message: &str,
) -> Result<(), (RejectCode, String)> {
    money::validate_positive(amount, currency)
        .map(|_| ())
        .map_err(|_| invalid(message))
}

/// Outside money into the wallet (the test-funding route); opens the wallet.
fn fund_wallet(state: &mut Option<WalletState>, command: &Command, f: &FundWallet) -> Decided {
    checked_amount(f.amount, &f.currency, "Invalid deposit amount")?;
    let held = state
        .as_ref()
        .map_or(Decimal::ZERO, |s| s.balance(&f.currency));
    if held + f.amount > WALLET_MAX {
        return Err(invalid("Deposit would exceed the wallet's maximum balance"));
    }
    let s = state.get_or_insert_with(|| WalletState::new(command.user_id));
    let event = s.post(
        format!("{}:wallet-funded", command.id),
        f.amount,
        &f.currency,
        accounts::external_funding(&f.currency),
        wallet_memo::FUNDED,
        None,
    );
    let balance = s.balance(&f.currency);
    Ok(Some(Decision::answer(
        vec![event],
        Outcome::Wallet { balance },
    )))
}

/// Step 1: hold the amount in transit and send it to the agent.
fn fund_agent(
    state: Option<&mut WalletState>,
    command: &Command,
    f: &FundAgent,
    at: Position,
) -> Decided {
    let agent_id = Uuid::parse_str(&f.agent_id).map_err(|_| invalid(AGENT_NOT_FOUND))?;
    checked_amount(f.amount, &f.currency, "Invalid deposit amount")?;
    let s = state.ok_or_else(|| invalid(WALLET_NOT_FOUND))?;
    if s.balance(&f.currency) < f.amount {
        return Err(invalid(INSUFFICIENT_FUNDS));
    }
    if s.in_flight.len() >= FUNDING_IN_FLIGHT_MAX {
        return Err(invalid("Too many fundings in flight; retry shortly"));
    }
    let event = s.post(
        format!("{}:agent-funding", command.id),
        -f.amount,
        &f.currency,
        accounts::wallet_transit(&f.currency),
        wallet_memo::AGENT_FUNDING,
        Some(agent_id),
    );
    s.in_flight.insert(
        command.id,
        Funding {
            agent_id,
            amount: f.amount,
            currency: f.currency.clone(),
        },
    );
    let step = CommandPayload::CreditFromWallet(Box::new(CreditFromWallet {
        request_id: command.id.to_string(),
        amount: f.amount,
        currency: f.currency.clone(),
        settle_on_chain: f.settle_on_chain,
        create: f.create.clone(),
        origin_partition: at.partition,
        origin_offset: at.offset,
        origin_sub: at.sub as i32,
    }));
    Ok(Some(Decision {
        payloads: vec![event],
        sagas: vec![(agent_id, step)],
        transfers: vec![],
        reply: None,
        pending: None,
    }))
}

/// Step 3, or an agent's withdrawal landing.
fn settle(state: &mut Option<WalletState>, command: &Command, c: &SettleWallet) -> Decided {
    let agent_id = Uuid::parse_str(&c.agent_id).ok();
    let Some(request) = &c.request_id else {
        // Opens the wallet of a user whose account predates wallets.
        let s = state.get_or_insert_with(|| WalletState::new(command.user_id));
        return Ok(credit_withdrawal(s, c, agent_id));
    };
    let request = Uuid::parse_str(request).map_err(|_| invalid("Invalid funding id"))?;
    let Some(s) = state.as_mut() else {
        return Ok(None);
    };
    let Some(funding) = s.in_flight.remove(&request) else {
        return Ok(None); // answered before: a repeated step
    };
    let Some(reason) = &c.refund_reason else {
        return Ok(Some(Decision::events_only(vec![])));
    };
    let event = s.post(
        format!("{request}:refund"),
        funding.amount,
        &funding.currency,
        accounts::wallet_transit(&funding.currency),
        wallet_memo::REFUND,
        Some(funding.agent_id),
    );
    let code = if reason == AGENT_NOT_FOUND {
        RejectCode::NotFound
    } else {
        RejectCode::Invalid
    };
    Ok(Some(Decision::answer(
        vec![event],
        Outcome::Rejected {
            code,
            message: reason.clone(),
        },
    )))
}

/// An agent's withdrawal into the wallet (opening it if need be), once per
/// origin.
fn credit_withdrawal(
    s: &mut WalletState,
    c: &SettleWallet,
    agent_id: Option<Uuid>,
) -> Option<Decision> {
    let origin = Origin {
        offset: c.origin_offset,
        sub: c.origin_sub,
    };
    if s.saga_seen
        .get(&c.origin_partition)
        .is_some_and(|seen| origin <= *seen)
    {
        return None;
    }
    s.saga_seen.insert(c.origin_partition, origin);
    let event = s.post(
        format!(
            "{}:{}:{}:withdrawal-landed",
            c.origin_partition, c.origin_offset, c.origin_sub
        ),
        c.amount,
        &c.currency,
        accounts::wallet_transit(&c.currency),
        wallet_memo::AGENT_WITHDRAWAL,
        agent_id,
    );
    Some(Decision::events_only(vec![event]))
}

/// Step 2, on the agent: create it if asked, credit the funding from transit,
/// answer the caller; or refuse. Either way the wallet hears back.
pub(super) fn credit_from_wallet(
    state: &mut Option<AgentState>,
    cmd: &Command,
    c: &CreditFromWallet,
) -> Decided {
    let origin = Origin {
        offset: c.origin_offset,
        sub: c.origin_sub,
    };
    if let Some(s) = state.as_ref() {
        if s.saga_seen
            .get(&c.origin_partition)
            .is_some_and(|seen| origin <= *seen)
        {
            return Ok(None);
        }
    }
    let answer = |refund_reason: Option<String>| {
        (
            cmd.user_id,
            CommandPayload::SettleWallet(SettleWallet {
                agent_id: cmd.agent_id.to_string(),
                amount: c.amount,
                currency: c.currency.clone(),
                request_id: Some(c.request_id.clone()),
                refund_reason,
                origin_partition: c.origin_partition,
                origin_offset: c.origin_offset,
                origin_sub: c.origin_sub,
            }),
        )
    };
    let transit = accounts::wallet_transit(&c.currency);
    // Journal entries and on-chain transfers are named by the caller's
    // command, as when the agent is funded directly: a retry finds them.
    let request = Command {
        id: Uuid::parse_str(&c.request_id).unwrap_or(cmd.id),
        ..cmd.clone()
    };
    let cmd = &request;
    let credited = match &c.create {
        Some(create) => {
            let create = schemas::command::CreateAgent {
                initial_balance: c.amount,
                settle_on_chain: c.settle_on_chain,
                ..create.clone()
            };
            super::create_agent_funded(state, cmd, &create, &transit)
        }
        None => super::deposit_funded(
            state.as_mut(),
            cmd,
            &Deposit {
                amount: c.amount,
                currency: c.currency.clone(),
                settle_on_chain: c.settle_on_chain,
            },
            &transit,
        ),
    };
    if let Some(s) = state.as_mut() {
        s.saga_seen.insert(c.origin_partition, origin);
    }
    match credited {
        Ok(Some(mut decision)) => {
            decision.sagas.push(answer(None));
            Ok(Some(decision))
        }
        Ok(None) => Ok(None),
        Err((_, reason)) => Ok(Some(Decision {
            payloads: vec![],
            sagas: vec![answer(Some(reason))],
            transfers: vec![],
            reply: None,
            pending: None,
        })),
    }
}

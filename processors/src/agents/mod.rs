//! Agents: an agent's wallet, rules, open payments and ledger postings, as a
//! pure state machine. [`apply`] decides one command against one agent's
//! state and returns the events it causes, the saga commands it sends to other
//! agents ([`payments`]) and the answer for the caller.

use std::collections::{BTreeMap, VecDeque};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use schemas::command::{CreateAgent, Deposit, SettleWallet, Withdraw};
use schemas::event::{accounts, AgentCreated, FundsMovement, JournalEntry, Posting};
use schemas::interest::RateSchedule;
use schemas::money;
use schemas::payment::Payment;
use schemas::reply::{AgentView, Outcome, RejectCode};
use schemas::{Command, CommandPayload, Event, EventPayload};

mod lifecycle;
#[cfg(test)]
mod lifecycle_tests;
pub mod machine;
#[cfg(test)]
mod payment_tests;
pub mod payments;
#[cfg(test)]
mod policy_tests;
pub mod savings;
#[cfg(test)]
mod savings_tests;
pub mod settlement;
#[cfg(test)]
pub(crate) mod settlement_tests;
#[cfg(test)]
mod tests;
pub mod wallet;
#[cfg(test)]
mod wallet_tests;

pub use crate::runtime::machine::Position;
pub use machine::AgentMachine;

/// Output ids at or above this index name saga commands, below it events.
pub const SAGA_ID_BASE: u32 = 1 << 16;

/// How many recent command ids (with their outcomes) an agent remembers, so a
/// retried command gets its first answer back instead of applying twice.
/// Gateway retries arrive within seconds; 32 is ample per agent, and each
/// entry is in every checkpoint of the agent, so the window stays small.
pub const RECENT_COMMANDS_MAX: usize = 32;

/// Largest balance an agent may hold (10^15 units), keeping sums far from
/// `Decimal`'s limits.
pub const BALANCE_MAX: Decimal = Decimal::from_parts(2_764_472_320, 232_830, 0, false, 0);

/// One agent's state, as checkpointed to the changelog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    pub view: AgentView,
    /// +1 per event of this agent; events carry it so readers can order them.
    pub version: i64,
    /// The last [`RECENT_COMMANDS_MAX`] command ids and what they answered.
    #[serde(deserialize_with = "recent_compat")]
    pub recent: VecDeque<(Uuid, Answer)>,
    /// Funds held for open payments (the ledger's `agent:<id>:reserved`).
    #[serde(default, with = "rust_decimal::serde::str")]
    pub reserved: Decimal,
    /// Payments this agent sent that are not finished: awaiting approval or
    /// in flight to the receiver. Finished ones leave (the read model keeps them).
    #[serde(default)]
    pub open_payments: BTreeMap<Uuid, Payment>,
    /// The UTC day (days since the epoch) `spent_today` counts.
    #[serde(default)]
    pub spent_day: i64,
    /// Approved payment amounts on `spent_day`, for the daily limit.
    #[serde(default, with = "rust_decimal::serde::str")]
    pub spent_today: Decimal,
    /// Per origin partition, the highest origin position of a saga command
    /// this agent applied: a replayed saga command is at or below it.
    #[serde(default, deserialize_with = "saga_seen_compat")]
    pub saga_seen: BTreeMap<i32, Origin>,
    /// Active savings positions (completed ones leave; the read model keeps them).
    #[serde(default)]
    pub savings: BTreeMap<Uuid, schemas::event::SavingsPosition>,
    /// On-chain transfers asked for and not yet answered by the settlement
    /// service, by settlement id (a result applies once: it must find its
    /// entry here). Bounded by [`settlement::SETTLING_MAX`].
    #[serde(default)]
    pub settling: BTreeMap<Uuid, settlement::Settling>,
    /// Approved spending in the current hour, day, week and month, for the
    /// spending policies' caps.
    #[serde(default)]
    pub window: schemas::policy::WindowSpend,
    /// Payments waiting for approval that expire, and when (ms).
    #[serde(default)]
    pub expiries: BTreeMap<Uuid, i64>,
}

/// Where a saga command's origin sits in its partition: the record's offset
/// and the item within a packed record (origins are applied in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Origin {
    pub offset: i64,
    #[serde(default)]
    pub sub: i32,
}

/// Reads `saga_seen` of any checkpoint format: before packed records it held
/// a bare offset per partition.
fn saga_seen_compat<'de, D>(d: D) -> Result<BTreeMap<i32, Origin>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    // Via `Value`, not `#[serde(untagged)]`, for the reason `recent_compat` gives.
    let entries = BTreeMap::<i32, serde_json::Value>::deserialize(d)?;
    entries
        .into_iter()
        .map(|(p, v)| {
            let origin = match v.as_i64() {
                Some(offset) => Origin { offset, sub: 0 },
                None => serde_json::from_value(v).map_err(serde::de::Error::custom)?,
            };
            Ok((p, origin))
        })
        .collect()
}

/// Reads the dedupe window of any checkpoint format written so far:
/// format 1 kept whole outcomes (a full agent view per entry), format 2 keeps
/// [`Answer`]s. An upgraded processor must restore what the old one wrote.
fn recent_compat<'de, D>(d: D) -> Result<VecDeque<(Uuid, Answer)>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    // Via `Value`, not `#[serde(untagged)]`: untagged buffering loses numbers
    // under serde_json's arbitrary_precision (which exact amounts need).
    let entries = Vec::<(Uuid, serde_json::Value)>::deserialize(d)?;
    entries
        .into_iter()
        .map(|(id, v)| {
            let answer = match serde_json::from_value::<Answer>(v.clone()) {
                Ok(answer) => answer,
                Err(_) => Answer::of(
                    &serde_json::from_value::<Outcome>(v).map_err(serde::de::Error::custom)?,
                ),
            };
            Ok((id, answer))
        })
        .collect()
}

/// What a remembered command answered, in as few bytes as rebuild it: the
/// balance it left (the rest of the view is the agent's own) or the rejection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Answer {
    Balance(#[serde(with = "rust_decimal::serde::str")] Decimal),
    Rejected {
        code: RejectCode,
        message: String,
    },
    /// A payment command: answered with the payment as it is when retried.
    Payment(Uuid),
}

impl Answer {
    fn of(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Agent(view) => Answer::Balance(view.balance),
            Outcome::Payment(p) => Answer::Payment(p.id()),
            Outcome::PaymentSettled { payment_id } => Answer::Payment(*payment_id),
            // Never an agent's answer (another machine's); kept as "done".
            Outcome::Wallet { balance } => Answer::Balance(*balance),
            Outcome::Done
            | Outcome::Opportunity(_)
            | Outcome::Quote(_)
            | Outcome::RevenueEntry(_) => Answer::Balance(Decimal::ZERO),
            Outcome::Rejected { code, message } => Answer::Rejected {
                code: *code,
                message: message.clone(),
            },
        }
    }

    /// The answer again, for a wallet's repeated command (`None`: a funding
    /// under way, which the agent answers).
    fn wallet_outcome(&self) -> Option<Outcome> {
        match self {
            Answer::Balance(balance) => Some(Outcome::Wallet { balance: *balance }),
            Answer::Payment(_) => None,
            Answer::Rejected { code, message } => Some(Outcome::Rejected {
                code: *code,
                message: message.clone(),
            }),
        }
    }

    fn outcome(&self, state: &AgentState) -> Outcome {
        match self {
            Answer::Balance(balance) => Outcome::Agent(Box::new(AgentView {
                balance: *balance,
                ..state.view.clone()
            })),
            Answer::Payment(id) => match state.open_payments.get(id) {
                Some(p) => Outcome::Payment(Box::new(p.clone())),
                None => Outcome::PaymentSettled { payment_id: *id },
            },
            Answer::Rejected { code, message } => Outcome::Rejected {
                code: *code,
                message: message.clone(),
            },
        }
    }
}

/// The result of applying one command.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub events: Vec<Event>,
    /// Commands for other agents (saga steps), keyed by their `agent_id`.
    pub commands: Vec<Command>,
    /// On-chain transfers for the settlement service.
    pub settlements: Vec<schemas::settlement::SettlementRequest>,
    /// The answer for the caller, when this step is the last one it waits for
    /// (a payment's caller waits for the saga to finish).
    pub reply: Option<Outcome>,
    /// The command was applied before; nothing changed.
    pub duplicate: bool,
}

/// What a command decided: its events, saga steps (target agent, payload),
/// the answer (None: a later saga step answers).
struct Decision {
    payloads: Vec<EventPayload>,
    sagas: Vec<(Uuid, CommandPayload)>,
    /// On-chain transfers to ask the settlement service for.
    transfers: Vec<schemas::settlement::SettlementRequest>,
    reply: Option<Outcome>,
    /// The payment whose saga will answer the caller; a retry meanwhile is
    /// answered with the payment as it then is.
    pending: Option<Uuid>,
}

impl Decision {
    /// The same decision, asking for these on-chain transfers too.
    fn with_transfers(self, transfers: Vec<schemas::settlement::SettlementRequest>) -> Self {
        Decision { transfers, ..self }
    }

    /// Events and nothing to say: a step whose caller was answered before.
    fn events_only(payloads: Vec<EventPayload>) -> Self {
        Decision {
            payloads,
            sagas: vec![],
            transfers: vec![],
            reply: None,
            pending: None,
        }
    }

    fn answer(payloads: Vec<EventPayload>, outcome: Outcome) -> Self {
        Decision {
            payloads,
            sagas: vec![],
            transfers: vec![],
            reply: Some(outcome),
            pending: None,
        }
    }
}

/// Applies `command`, read at `at`, to the state of its agent (`None` when
/// the agent does not exist yet). `id(i)` names the i-th output; the runtime
/// derives it from `at` so replays produce the same ids.
pub fn apply(
    state: &mut Option<AgentState>,
    command: &Command,
    at: Position,
    rates: &RateSchedule,
    id: impl Fn(u32) -> Uuid,
) -> Applied {
    if let Some(s) = state.as_ref() {
        if let Some((_, outcome)) = s.recent.iter().find(|(id, _)| *id == command.id) {
            return Applied {
                events: vec![],
                commands: vec![],
                settlements: vec![],
                reply: Some(outcome.outcome(s)),
                duplicate: true,
            };
        }
    }
    // Saga steps are deduplicated by their origin or by payment state, not by
    // the recent-commands window, which they would crowd out.
    let saga_step = matches!(
        command.payload,
        CommandPayload::CreditPayment(_)
            | CommandPayload::SettlePayment(_)
            | CommandPayload::AccrueInterest(_)
            | CommandPayload::CompleteSettlement(_)
            | CommandPayload::CreditFromWallet(_)
    );
    let decided = match &command.payload {
        CommandPayload::CreateAgent(c) => create_agent(state, command, c),
        CommandPayload::Deposit(d) => deposit(state.as_mut(), command, d),
        CommandPayload::Withdraw(w) => withdraw(state.as_mut(), command, w, at),
        CommandPayload::RegisterPayment(r) => payments::register(state.as_mut(), command, r, at),
        CommandPayload::ApprovePayment(r) => payments::approve(state.as_mut(), command, r, at),
        CommandPayload::DeclinePayment(r) => payments::decline(state.as_mut(), command, r),
        CommandPayload::CreditPayment(c) => payments::credit(state.as_mut(), c),
        CommandPayload::SettlePayment(c) => payments::settle(state.as_mut(), c),
        CommandPayload::DepositSavings(d) => savings::deposit(state.as_mut(), command, d, rates),
        CommandPayload::WithdrawSavings(w) => savings::withdraw(state.as_mut(), command, w, rates),
        CommandPayload::CompleteSettlement(r) => settlement::complete(state.as_mut(), r, at),
        CommandPayload::UpdateAgent(u) => lifecycle::update(state.as_mut(), command, u),
        CommandPayload::CreditFromWallet(c) => wallet::credit_from_wallet(state, command, c),
        // A tick: the runtime hands it to every agent of the partition.
        CommandPayload::AccrueInterest(t) => Ok(state.as_mut().map(|s| Decision {
            payloads: [
                payments::expire(s, t.through),
                savings::accrue(s, t.through, rates),
            ]
            .concat(),
            sagas: vec![],
            transfers: vec![],
            reply: None,
            pending: None,
        })),
        // Another machine's command on the agents' topic: refused, not applied.
        CommandPayload::CreateOpportunity(_)
        | CommandPayload::ExecuteOpportunity(_)
        | CommandPayload::CompleteOpportunity(_)
        | CommandPayload::RequestQuote(_)
        | CommandPayload::ExecuteQuote(_)
        | CommandPayload::ExpireQuotes(_)
        | CommandPayload::RecordRevenue(_)
        | CommandPayload::SetRevenueTarget(_)
        | CommandPayload::OpenPosition(_)
        | CommandPayload::ApplyRebalance(_) => Err((
            RejectCode::Invalid,
            "not a command for the agent bank".to_string(),
        )),
        // The user's wallet decides these (`wallet::apply`), never an agent.
        CommandPayload::GrantSignupBonus(_)
        | CommandPayload::FundWallet(_)
        | CommandPayload::FundAgent(_)
        | CommandPayload::SettleWallet(_) => Err((
            RejectCode::Invalid,
            "not a command for an agent".to_string(),
        )),
    };
    let decision = match decision_of(decided) {
        Ok(d) => d,
        Err(repeated) => return repeated,
    };
    // A funding's events carry the caller's command id, so a retried
    // deposit finds what it did in the read model.
    let command_id = match &command.payload {
        CommandPayload::CreditFromWallet(c) => Uuid::parse_str(&c.request_id).unwrap_or(command.id),
        _ => command.id,
    };
    let mut events = Vec::with_capacity(decision.payloads.len());
    if let Some(s) = state.as_mut() {
        for (i, payload) in decision.payloads.into_iter().enumerate() {
            s.version += 1;
            if let Some(j) = payload.journal() {
                debug_assert!(j.is_balanced(), "unbalanced journal entry {j:?}");
            }
            events.push(Event {
                id: id(i as u32),
                // The state's agent: a broadcast tick's own key names none.
                agent_id: s.view.agent_id,
                user_id: s.view.user_id,
                command_id,
                correlation_id: command.correlation_id.clone(),
                timestamp_ms: command.timestamp_ms,
                agent_version: s.version,
                payload,
            });
        }
        let answer = decision
            .reply
            .as_ref()
            .map(Answer::of)
            .or(decision.pending.map(Answer::Payment));
        if let (false, Some(answer)) = (saga_step, answer) {
            remember(&mut s.recent, command.id, answer);
        }
    }
    let commands = saga_commands(command, decision.sagas, &id);
    Applied {
        events,
        commands,
        settlements: decision.transfers,
        reply: decision.reply,
        duplicate: false,
    }
}

/// The decision to carry out: a refusal becomes the caller's answer; a
/// replayed saga step (`Ok(None)`) is `Err` with its answer — nothing.
fn decision_of(decided: Decided) -> Result<Decision, Applied> {
    match decided {
        Ok(Some(d)) => Ok(d),
        Ok(None) => Err(Applied {
            events: vec![],
            commands: vec![],
            settlements: vec![],
            reply: None,
            duplicate: true,
        }),
        Err((code, message)) => Ok(Decision::answer(
            vec![],
            Outcome::Rejected { code, message },
        )),
    }
}

/// The saga steps a command decided, as commands for their keys: ids
/// derived from the input (above [`SAGA_ID_BASE`]), the caller's
/// correlation so the last step answers it.
fn saga_commands(
    command: &Command,
    sagas: Vec<(Uuid, CommandPayload)>,
    id: &impl Fn(u32) -> Uuid,
) -> Vec<Command> {
    sagas
        .into_iter()
        .enumerate()
        .map(|(i, (target, payload))| Command {
            id: id(SAGA_ID_BASE + i as u32),
            agent_id: target,
            user_id: command.user_id,
            correlation_id: command.correlation_id.clone(),
            timestamp_ms: command.timestamp_ms,
            payload,
        })
        .collect()
}

/// Remembers a command's answer in a bounded dedupe window.
fn remember(recent: &mut VecDeque<(Uuid, Answer)>, command: Uuid, answer: Answer) {
    recent.push_back((command, answer));
    while recent.len() > RECENT_COMMANDS_MAX {
        recent.pop_front();
    }
}

/// [`apply`] at a fixed 4.5% rate, for tests that hold no savings.
#[cfg(test)]
fn apply_at_default_rate(
    state: &mut Option<AgentState>,
    command: &Command,
    at: Position,
    id: impl Fn(u32) -> Uuid,
) -> Applied {
    apply(state, command, at, &RateSchedule::parse("4.5").unwrap(), id)
}

/// `Ok(None)`: a replayed saga step, ignored.
type Decided = Result<Option<Decision>, (RejectCode, String)>;

fn agent_answer(payloads: Vec<EventPayload>, view: AgentView) -> Decided {
    Ok(Some(Decision::answer(
        payloads,
        Outcome::Agent(Box::new(view)),
    )))
}

fn not_found() -> (RejectCode, String) {
    (RejectCode::NotFound, "Agent not found".into())
}

fn create_agent(state: &mut Option<AgentState>, cmd: &Command, c: &CreateAgent) -> Decided {
    let funding = accounts::external_funding(&c.currency);
    create_agent_funded(state, cmd, c, &funding)
}

/// Creates the agent with its initial balance from `funding` (outside money,
/// or the wallets' transit account for a balance from the user's wallet).
fn create_agent_funded(
    state: &mut Option<AgentState>,
    cmd: &Command,
    c: &CreateAgent,
    funding: &str,
) -> Decided {
    if state.is_some() {
        return Err((RejectCode::Conflict, "Agent already exists".into()));
    }
    let amount_ok = |d: Decimal| money::validate_non_negative(d, &c.currency).is_ok();
    let limits = [
        c.daily_limit,
        c.transaction_limit,
        c.require_approval_above_amount,
    ];
    if !amount_ok(c.initial_balance) || limits.iter().flatten().any(|d| !amount_ok(*d)) {
        return Err((RejectCode::Invalid, "Invalid amount or currency".into()));
    }
    let view = AgentView {
        agent_id: cmd.agent_id,
        user_id: cmd.user_id,
        name: c.name.clone(),
        description: c.description.clone(),
        wallet_address: c.wallet_address.clone(),
        currency: c.currency.clone(),
        rules: c.rules(),
        tags: c.tags.clone(),
        status: "active".into(),
        created_ms: cmd.timestamp_ms,
        balance: Decimal::ZERO,
        policies: Default::default(),
    };
    let mut payloads = vec![EventPayload::AgentCreated(AgentCreated {
        name: c.name.clone(),
        description: c.description.clone(),
        wallet_address: c.wallet_address.clone(),
        currency: c.currency.clone(),
        daily_limit: c.daily_limit,
        transaction_limit: c.transaction_limit,
        require_approval_for_all: c.require_approval_for_all,
        require_approval_above_amount: c.require_approval_above_amount,
        tags: c.tags.clone(),
        status: view.status.clone(),
    })];
    let mut new_state = AgentState::new(view);
    if !c.initial_balance.is_zero() {
        let memo = "initial balance";
        let journal = post(&mut new_state, cmd.id, c.initial_balance, memo, funding);
        payloads.push(EventPayload::FundsDeposited(FundsMovement {
            amount: c.initial_balance,
            currency: c.currency.clone(),
            balance_after: new_state.view.balance,
            memo: memo.into(),
            journal,
        }));
    }
    let view = new_state.view.clone();
    let transfers = if c.settle_on_chain {
        settlement::faucet(&mut new_state, cmd, c.initial_balance)
    } else {
        vec![]
    };
    *state = Some(new_state);
    Ok(Some(
        Decision::answer(payloads, Outcome::Agent(Box::new(view))).with_transfers(transfers),
    ))
}

/// Checks a deposit or withdrawal against the agent: it exists and is the
/// caller's, the currency is the agent's, the amount is a valid positive one.
fn movable<'a>(
    state: Option<&'a mut AgentState>,
    cmd: &Command,
    amount: Decimal,
    currency: &str,
    invalid_amount: &str,
) -> Result<&'a mut AgentState, (RejectCode, String)> {
    let s = state.ok_or_else(not_found)?;
    if s.view.user_id != cmd.user_id {
        // Another user's agent is indistinguishable from a missing one.
        return Err(not_found());
    }
    if currency != s.view.currency {
        return Err((
            RejectCode::Invalid,
            format!("Agent holds {}, not {currency}", s.view.currency),
        ));
    }
    if money::validate_positive(amount, currency).is_err() {
        return Err((RejectCode::Invalid, invalid_amount.into()));
    }
    Ok(s)
}

impl AgentState {
    pub fn new(view: AgentView) -> Self {
        AgentState {
            view,
            version: 0,
            recent: VecDeque::new(),
            reserved: Decimal::ZERO,
            open_payments: BTreeMap::new(),
            spent_day: 0,
            spent_today: Decimal::ZERO,
            saga_seen: BTreeMap::new(),
            savings: BTreeMap::new(),
            settling: BTreeMap::new(),
            window: Default::default(),
            expiries: BTreeMap::new(),
        }
    }
}

/// Validates everything first, then mutates: a rejected deposit changes nothing.
fn deposit(state: Option<&mut AgentState>, cmd: &Command, d: &Deposit) -> Decided {
    deposit_funded(state, cmd, d, &accounts::external_funding(&d.currency))
}

/// A deposit from `funding` (outside money, or the wallets' transit account).
fn deposit_funded(
    state: Option<&mut AgentState>,
    cmd: &Command,
    d: &Deposit,
    funding: &str,
) -> Decided {
    let s = movable(state, cmd, d.amount, &d.currency, "Invalid deposit amount")?;
    if lifecycle::is_deactivated(s) {
        return Err((RejectCode::Invalid, "Agent is deactivated".into()));
    }
    if s.view.balance + d.amount > BALANCE_MAX {
        return Err((
            RejectCode::Invalid,
            "Deposit would exceed the maximum balance".into(),
        ));
    }
    let transfers = if d.settle_on_chain {
        vec![settlement::mirror_deposit(s, cmd, d.amount)?]
    } else {
        vec![]
    };
    let memo = "deposit";
    let journal = post(s, cmd.id, d.amount, memo, funding);
    let payload = EventPayload::FundsDeposited(FundsMovement {
        amount: d.amount,
        currency: d.currency.clone(),
        balance_after: s.view.balance,
        memo: memo.into(),
        journal,
    });
    Ok(Some(
        Decision::answer(vec![payload], Outcome::Agent(Box::new(s.view.clone())))
            .with_transfers(transfers),
    ))
}

/// Withdraws to the user's wallet (through transit: the wallet is another
/// machine's, credited by a `SettleWallet` step); never below zero.
fn withdraw(state: Option<&mut AgentState>, cmd: &Command, w: &Withdraw, at: Position) -> Decided {
    let s = movable(state, cmd, w.amount, &w.currency, "Invalid withdraw amount")?;
    if w.amount > s.view.balance {
        return Err((RejectCode::Invalid, "Insufficient balance".into()));
    }
    if let Some(to) = &w.to_address {
        return settlement::withdraw_on_chain(s, cmd, w, to);
    }
    let memo = "withdrawal";
    let transit = accounts::wallet_transit(&w.currency);
    let journal = post(s, cmd.id, -w.amount, memo, &transit);
    debug_assert!(s.view.balance >= Decimal::ZERO);
    let payload = EventPayload::FundsWithdrawn(FundsMovement {
        amount: w.amount,
        currency: w.currency.clone(),
        balance_after: s.view.balance,
        memo: memo.into(),
        journal,
    });
    let landing = CommandPayload::SettleWallet(SettleWallet {
        agent_id: s.view.agent_id.to_string(),
        amount: w.amount,
        currency: w.currency.clone(),
        request_id: None,
        refund_reason: None,
        origin_partition: at.partition,
        origin_offset: at.offset,
        origin_sub: at.sub as i32,
    });
    Ok(Some(Decision {
        sagas: vec![(s.view.user_id, landing)],
        ..Decision::answer(vec![payload], Outcome::Agent(Box::new(s.view.clone())))
    }))
}

/// Moves `delta` between `counter` (an account outside the agent) and the
/// agent's available balance (positive: into the agent): one balanced
/// journal entry. Mutates only the view's balance.
pub(crate) fn post(
    state: &mut AgentState,
    command_id: Uuid,
    delta: Decimal,
    memo: &str,
    counter: &str,
) -> JournalEntry {
    state.view.balance += delta;
    JournalEntry {
        entry_id: format!("{command_id}:{memo}"),
        postings: vec![
            Posting {
                account: accounts::agent_available(state.view.agent_id),
                amount: delta,
            },
            Posting {
                account: counter.to_string(),
                amount: -delta,
            },
        ],
    }
}

//! Agents: an agent's wallet, rules and ledger postings, as a pure state
//! machine. [`apply`] decides one command against one agent's state and
//! returns the events it causes and the outcome for the caller.

use std::collections::VecDeque;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use schemas::command::{CreateAgent, Deposit, Withdraw};
use schemas::event::{accounts, AgentCreated, FundsMovement, JournalEntry, Posting};
use schemas::money;
use schemas::reply::{AgentView, Outcome, RejectCode};
use schemas::{Command, CommandPayload, Event, EventPayload};

#[cfg(test)]
mod tests;

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
    Rejected { code: RejectCode, message: String },
}

impl Answer {
    fn of(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Agent(view) => Answer::Balance(view.balance),
            Outcome::Rejected { code, message } => Answer::Rejected {
                code: *code,
                message: message.clone(),
            },
        }
    }

    fn outcome(&self, state: &AgentState) -> Outcome {
        match self {
            Answer::Balance(balance) => Outcome::Agent(Box::new(AgentView {
                balance: *balance,
                ..state.view.clone()
            })),
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
    pub outcome: Outcome,
    /// The command id was applied before; nothing changed.
    pub duplicate: bool,
}

/// Applies `command` to the state of its agent (`None` when the agent does not
/// exist yet). `event_id(i)` names the i-th event; the runtime derives it from
/// the command's position so replays produce the same ids.
pub fn apply(
    state: &mut Option<AgentState>,
    command: &Command,
    event_id: impl Fn(u32) -> Uuid,
) -> Applied {
    if let Some(s) = state.as_ref() {
        if let Some((_, outcome)) = s.recent.iter().find(|(id, _)| *id == command.id) {
            return Applied {
                events: vec![],
                outcome: outcome.outcome(s),
                duplicate: true,
            };
        }
    }
    let decided = match &command.payload {
        CommandPayload::CreateAgent(c) => create_agent(state, command, c),
        CommandPayload::Deposit(d) => deposit(state.as_mut(), command, d),
        CommandPayload::Withdraw(w) => withdraw(state.as_mut(), command, w),
    };
    let (payloads, outcome) = match decided {
        Ok((payloads, view)) => (payloads, Outcome::Agent(Box::new(view))),
        Err((code, message)) => (vec![], Outcome::Rejected { code, message }),
    };
    let mut events = Vec::with_capacity(payloads.len());
    if let Some(s) = state.as_mut() {
        for (i, payload) in payloads.into_iter().enumerate() {
            s.version += 1;
            if let Some(j) = payload.journal() {
                debug_assert!(j.is_balanced(), "unbalanced journal entry {j:?}");
            }
            events.push(Event {
                id: event_id(i as u32),
                agent_id: command.agent_id,
                user_id: s.view.user_id,
                command_id: command.id,
                correlation_id: command.correlation_id.clone(),
                timestamp_ms: command.timestamp_ms,
                agent_version: s.version,
                payload,
            });
        }
        s.recent.push_back((command.id, Answer::of(&outcome)));
        while s.recent.len() > RECENT_COMMANDS_MAX {
            s.recent.pop_front();
        }
    }
    Applied {
        events,
        outcome,
        duplicate: false,
    }
}

type Decided = Result<(Vec<EventPayload>, AgentView), (RejectCode, String)>;

fn not_found() -> (RejectCode, String) {
    (RejectCode::NotFound, "Agent not found".into())
}

fn create_agent(state: &mut Option<AgentState>, cmd: &Command, c: &CreateAgent) -> Decided {
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
    let mut new_state = AgentState {
        view,
        version: 0,
        recent: VecDeque::new(),
    };
    if !c.initial_balance.is_zero() {
        let memo = "initial balance";
        let journal = post(&mut new_state, cmd.id, c.initial_balance, memo);
        payloads.push(EventPayload::FundsDeposited(FundsMovement {
            amount: c.initial_balance,
            currency: c.currency.clone(),
            balance_after: new_state.view.balance,
            memo: memo.into(),
            journal,
        }));
    }
    let view = new_state.view.clone();
    *state = Some(new_state);
    Ok((payloads, view))
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

/// Validates everything first, then mutates: a rejected deposit changes nothing.
fn deposit(state: Option<&mut AgentState>, cmd: &Command, d: &Deposit) -> Decided {
    let s = movable(state, cmd, d.amount, &d.currency, "Invalid deposit amount")?;
    if s.view.balance + d.amount > BALANCE_MAX {
        return Err((
            RejectCode::Invalid,
            "Deposit would exceed the maximum balance".into(),
        ));
    }
    let memo = "deposit";
    let journal = post(s, cmd.id, d.amount, memo);
    let payload = EventPayload::FundsDeposited(FundsMovement {
        amount: d.amount,
        currency: d.currency.clone(),
        balance_after: s.view.balance,
        memo: memo.into(),
        journal,
    });
    Ok((vec![payload], s.view.clone()))
}

/// Withdraws to the user's wallet; never below zero.
fn withdraw(state: Option<&mut AgentState>, cmd: &Command, w: &Withdraw) -> Decided {
    let s = movable(state, cmd, w.amount, &w.currency, "Invalid withdraw amount")?;
    if w.amount > s.view.balance {
        return Err((RejectCode::Invalid, "Insufficient balance".into()));
    }
    let memo = "withdrawal";
    let journal = post(s, cmd.id, -w.amount, memo);
    debug_assert!(s.view.balance >= Decimal::ZERO);
    let payload = EventPayload::FundsWithdrawn(FundsMovement {
        amount: w.amount,
        currency: w.currency.clone(),
        balance_after: s.view.balance,
        memo: memo.into(),
        journal,
    });
    Ok((vec![payload], s.view.clone()))
}

/// Moves `delta` between external funding and the agent's available balance
/// (positive: into the agent): one balanced journal entry. Mutates only the
/// view's balance.
fn post(state: &mut AgentState, command_id: Uuid, delta: Decimal, memo: &str) -> JournalEntry {
    state.view.balance += delta;
    let currency = &state.view.currency;
    JournalEntry {
        entry_id: format!("{command_id}:{memo}"),
        postings: vec![
            Posting {
                account: accounts::agent_available(state.view.agent_id),
                amount: delta,
            },
            Posting {
                account: accounts::external_funding(currency),
                amount: -delta,
            },
        ],
    }
}

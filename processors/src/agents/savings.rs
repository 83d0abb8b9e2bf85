//! The savings vault of one agent: positions in its state, moved in and out
//! by balanced journal entries, and interest accrued by tick commands.
//!
//! Accounts: `agent:<id>:available` → `agent:<id>:savings` (principal) on a
//! deposit; `interest:<cur>:expense` → `agent:<id>:interest` as interest is
//! posted; both vault accounts → available on a withdrawal. Interest posted
//! is always the rounded value to date minus what was posted before
//! (`schemas::interest`), so however often ticks arrive the posted total is
//! the formula's, rounded once toward zero. A withdrawal first accrues to
//! its own timestamp, so it pays interest to the millisecond. A position
//! earns the rate in force when it opened for its whole life (recorded on
//! it, `rate_pct`); later changes of the schedule apply to new positions.

use rust_decimal::Decimal;
use uuid::Uuid;

use schemas::command::{DepositSavings, WithdrawSavings};
use schemas::event::{accounts, JournalEntry, Posting, SavingsChange, SavingsPosition};
use schemas::interest::{self, RateSchedule};
use schemas::reply::{Outcome, RejectCode};
use schemas::{Command, EventPayload};

use super::{movable, AgentState, Decided, Decision};

/// Active positions one agent may hold at once.
pub const POSITIONS_MAX: usize = 100;

fn entry(id: String, postings: &[(String, Decimal)]) -> JournalEntry {
    JournalEntry {
        entry_id: id,
        postings: postings
            .iter()
            .filter(|(_, amount)| !amount.is_zero())
            .map(|(account, amount)| Posting {
                account: account.clone(),
                amount: *amount,
            })
            .collect(),
    }
}

/// `POST /savings/deposit`: available → a new active position.
pub(super) fn deposit(
    state: Option<&mut AgentState>,
    cmd: &Command,
    d: &DepositSavings,
    rates: &RateSchedule,
) -> Decided {
    let s = movable(state, cmd, d.amount, &d.currency, "Invalid deposit amount")?;
    if s.view.balance < d.amount {
        return Err((
            RejectCode::Invalid,
            "Insufficient balance in agent's wallet".into(),
        ));
    }
    if s.savings.len() >= POSITIONS_MAX {
        return Err((
            RejectCode::Invalid,
            format!("An agent may hold at most {POSITIONS_MAX} active investments"),
        ));
    }
    let id = schemas::payment::uuid(&d.investment_id);
    if id.is_nil() || s.savings.contains_key(&id) {
        return Err((RejectCode::Conflict, "Investment already exists".into()));
    }
    let agent = s.view.agent_id;
    s.view.balance -= d.amount;
    let position = SavingsPosition {
        investment_id: id.to_string(),
        principal: d.amount,
        currency: d.currency.clone(),
        invested_ms: cmd.timestamp_ms,
        status: SavingsPosition::ACTIVE.into(),
        rate_ms: Decimal::ZERO,
        accrued_to_ms: cmd.timestamp_ms,
        interest_posted: Decimal::ZERO,
        closed_ms: None,
        rate_pct: Some(rates.at(cmd.timestamp_ms).rate_pct),
    };
    s.savings.insert(id, position.clone());
    let journal = entry(
        format!("{id}:savings deposit"),
        &[
            (accounts::agent_available(agent), -d.amount),
            (accounts::savings_principal(agent), d.amount),
        ],
    );
    let change = SavingsChange {
        position,
        amount: d.amount,
        balance_after: s.view.balance,
        journal,
    };
    Ok(Some(Decision::answer(
        vec![EventPayload::SavingsDeposited(change)],
        Outcome::Done,
    )))
}

/// Accrues every active position of `s` to `through`, posting what is due.
/// Positions already accrued past `through` are left alone (a late tick).
pub fn accrue(s: &mut AgentState, through: i64, rates: &RateSchedule) -> Vec<EventPayload> {
    let agent = s.view.agent_id;
    let balance = s.view.balance;
    let mut payloads = vec![];
    for (id, p) in s.savings.iter_mut() {
        if let Some(change) = accrue_one(agent, *id, p, through, rates, balance) {
            payloads.push(EventPayload::InterestAccrued(change));
        }
    }
    payloads
}

/// Moves `p`'s growth to `through` and posts the interest now due, if any.
fn accrue_one(
    agent: Uuid,
    id: Uuid,
    p: &mut SavingsPosition,
    through: i64,
    rates: &RateSchedule,
    balance: Decimal,
) -> Option<SavingsChange> {
    if through <= p.accrued_to_ms {
        return None;
    }
    // The position's own rate (an older one without a recorded rate takes
    // the schedule's at its opening, and keeps it from now on).
    let rate = p.rate(rates);
    p.rate_pct = Some(rate);
    let rate_ms = p.rate_ms + rate * Decimal::from(through - p.accrued_to_ms);
    // Beyond Decimal's range only after centuries at the highest rate: then
    // the position stops growing rather than the processor stopping.
    let earned = interest::earned(p.principal, rate_ms)?;
    p.rate_ms = rate_ms;
    p.accrued_to_ms = through;
    let due = earned - p.interest_posted;
    if due <= Decimal::ZERO {
        return None;
    }
    p.interest_posted = earned;
    let journal = entry(
        format!("{id}:interest:{through}"),
        &[
            (accounts::interest_expense(&p.currency), -due),
            (accounts::savings_interest(agent), due),
        ],
    );
    Some(SavingsChange {
        position: p.clone(),
        amount: due,
        balance_after: balance,
        journal,
    })
}

/// `POST /savings/withdraw`: accrue to now, then principal and all posted
/// interest back to available; the position completes and leaves the state.
pub(super) fn withdraw(
    state: Option<&mut AgentState>,
    cmd: &Command,
    w: &WithdrawSavings,
    rates: &RateSchedule,
) -> Decided {
    let not_found = || (RejectCode::NotFound, "Investment not found".to_string());
    let s = state.ok_or_else(not_found)?;
    if s.view.user_id != cmd.user_id {
        return Err(not_found());
    }
    let id = schemas::payment::uuid(&w.investment_id);
    let agent = s.view.agent_id;
    let balance = s.view.balance;
    // Worked on a copy: a refused withdrawal changes nothing.
    let mut p = s.savings.get(&id).ok_or_else(not_found)?.clone();
    let mut payloads = vec![];
    if let Some(change) = accrue_one(agent, id, &mut p, cmd.timestamp_ms, rates, balance) {
        payloads.push(EventPayload::InterestAccrued(change));
    }
    let amount = p.principal + p.interest_posted;
    if s.view.balance + amount > super::BALANCE_MAX {
        return Err((
            RejectCode::Invalid,
            "Withdrawal would exceed the maximum balance".into(),
        ));
    }
    s.savings.remove(&id);
    s.view.balance += amount;
    p.status = SavingsPosition::COMPLETED.into();
    p.closed_ms = Some(cmd.timestamp_ms);
    let journal = entry(
        format!("{id}:savings withdrawal"),
        &[
            (accounts::savings_principal(agent), -p.principal),
            (accounts::savings_interest(agent), -p.interest_posted),
            (accounts::agent_available(agent), amount),
        ],
    );
    payloads.push(EventPayload::SavingsWithdrawn(SavingsChange {
        position: p,
        amount,
        balance_after: s.view.balance,
        journal,
    }));
    Ok(Some(Decision::answer(payloads, Outcome::Done)))
}

//! Events: facts about an agent, the public stream on `agentbank.events`,
//! keyed by agent id. Shape: `avro/event.avsc`. At-least-once on the topic,
//! with deterministic ids: consumers dedupe by `id`.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::payment::Payment;

/// The event envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: Uuid,
    pub agent_id: Uuid,
    pub user_id: Uuid,
    pub command_id: Uuid,
    pub correlation_id: Option<String>,
    pub timestamp_ms: i64,
    /// The agent's version after this event: +1 per event of the agent.
    pub agent_version: i64,
    pub payload: EventPayload,
}

/// The order of variants is the Avro union's order: append only.
#[derive(Debug, Clone, PartialEq)]
pub enum EventPayload {
    AgentCreated(AgentCreated),
    FundsDeposited(FundsMovement),
    FundsWithdrawn(FundsMovement),
    PaymentRegistered(PaymentChange),
    PaymentApproved(PaymentChange),
    PaymentDeclined(PaymentChange),
    PaymentConfirmed(PaymentChange),
    PaymentFailed(PaymentChange),
    PaymentReceived(PaymentChange),
    SignupBonusGranted(BonusGranted),
    SavingsDeposited(SavingsChange),
    InterestAccrued(SavingsChange),
    SavingsWithdrawn(SavingsChange),
    TransferSettled(TransferSettled),
    /// Revenue platform: an opportunity as it is after the event.
    OpportunityCreated(OpportunityChange),
    OpportunityActivated(OpportunityChange),
    OpportunityExecuted(OpportunityChange),
    /// Pricing: a quote as it is after the event.
    QuoteIssued(crate::revenue::pricing::QuoteChange),
    QuoteExecuted(crate::revenue::pricing::QuoteChange),
    QuoteExpired(crate::revenue::pricing::QuoteChange),
    SystemAlert(crate::revenue::pricing::SystemAlert),
    /// The revenue ledger: an entry posted, a target crossed, a target set.
    RevenueRecorded(crate::revenue::ledger::RevenueRecorded),
    RevenueMilestone(crate::revenue::ledger::RevenueMilestone),
    RevenueTargetSet(crate::revenue::ledger::RevenueTargetSet),
    /// The portfolio: a position opened, a rebalance applied.
    PositionOpened(crate::revenue::portfolio::PositionOpened),
    PortfolioRebalanced(crate::revenue::portfolio::PortfolioRebalanced),
    /// The agent bank: an agent's description, tags, rules or status changed.
    AgentUpdated(AgentUpdated),
    /// The agent bank: the user's wallet moved (on the user's key).
    WalletChanged(WalletChange),
}

/// An opportunity event's payload: the whole record after it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OpportunityChange {
    pub opportunity: Box<crate::revenue::opportunity::Opportunity>,
}

impl EventPayload {
    pub fn type_name(&self) -> &'static str {
        match self {
            EventPayload::AgentCreated(_) => "AgentCreated",
            EventPayload::FundsDeposited(_) => "FundsDeposited",
            EventPayload::FundsWithdrawn(_) => "FundsWithdrawn",
            EventPayload::PaymentRegistered(_) => "PaymentRegistered",
            EventPayload::PaymentApproved(_) => "PaymentApproved",
            EventPayload::PaymentDeclined(_) => "PaymentDeclined",
            EventPayload::PaymentConfirmed(_) => "PaymentConfirmed",
            EventPayload::PaymentFailed(_) => "PaymentFailed",
            EventPayload::PaymentReceived(_) => "PaymentReceived",
            EventPayload::SignupBonusGranted(_) => "SignupBonusGranted",
            EventPayload::SavingsDeposited(_) => "SavingsDeposited",
            EventPayload::InterestAccrued(_) => "InterestAccrued",
            EventPayload::SavingsWithdrawn(_) => "SavingsWithdrawn",
            EventPayload::TransferSettled(_) => "TransferSettled",
            EventPayload::OpportunityCreated(_) => "OpportunityCreated",
            EventPayload::OpportunityActivated(_) => "OpportunityActivated",
            EventPayload::OpportunityExecuted(_) => "OpportunityExecuted",
            EventPayload::QuoteIssued(_) => "QuoteIssued",
            EventPayload::QuoteExecuted(_) => "QuoteExecuted",
            EventPayload::QuoteExpired(_) => "QuoteExpired",
            EventPayload::SystemAlert(_) => "SystemAlert",
            EventPayload::RevenueRecorded(_) => "RevenueRecorded",
            EventPayload::RevenueMilestone(_) => "RevenueMilestone",
            EventPayload::RevenueTargetSet(_) => "RevenueTargetSet",
            EventPayload::PositionOpened(_) => "PositionOpened",
            EventPayload::PortfolioRebalanced(_) => "PortfolioRebalanced",
            EventPayload::AgentUpdated(_) => "AgentUpdated",
            EventPayload::WalletChanged(_) => "WalletChanged",
        }
    }

    /// The journal entry this event posts, if it moves money.
    pub fn journal(&self) -> Option<&JournalEntry> {
        match self {
            EventPayload::AgentCreated(_) => None,
            EventPayload::FundsDeposited(e) => Some(&e.journal),
            EventPayload::FundsWithdrawn(e) => Some(&e.journal),
            EventPayload::SignupBonusGranted(e) => Some(&e.journal),
            EventPayload::WalletChanged(e) => Some(&e.journal),
            EventPayload::SavingsDeposited(e)
            | EventPayload::InterestAccrued(e)
            | EventPayload::SavingsWithdrawn(e) => Some(&e.journal),
            EventPayload::TransferSettled(e) => e.journal.as_ref(),
            _ => self.payment().and_then(|c| c.journal.as_ref()),
        }
    }

    /// The payment change this event records, if it is a payment event.
    pub fn payment(&self) -> Option<&PaymentChange> {
        match self {
            EventPayload::PaymentRegistered(c)
            | EventPayload::PaymentApproved(c)
            | EventPayload::PaymentDeclined(c)
            | EventPayload::PaymentConfirmed(c)
            | EventPayload::PaymentFailed(c)
            | EventPayload::PaymentReceived(c) => Some(c),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentCreated {
    pub name: String,
    pub description: String,
    pub wallet_address: Option<String>,
    pub currency: String,
    #[serde(with = "rust_decimal::serde::str_option")]
    pub daily_limit: Option<Decimal>,
    #[serde(with = "rust_decimal::serde::str_option")]
    pub transaction_limit: Option<Decimal>,
    pub require_approval_for_all: bool,
    #[serde(with = "rust_decimal::serde::str_option")]
    pub require_approval_above_amount: Option<Decimal>,
    pub tags: Vec<String>,
    pub status: String,
}

/// What changed of an agent (`changes`: field, before, after, as text), who
/// asked and why, and the changeable fields as they are after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentUpdated {
    pub changes: Vec<crate::command::FieldChange>,
    pub actor: String,
    pub reason: Option<String>,
    pub description: String,
    #[serde(with = "rust_decimal::serde::str_option")]
    pub daily_limit: Option<Decimal>,
    #[serde(with = "rust_decimal::serde::str_option")]
    pub transaction_limit: Option<Decimal>,
    pub require_approval_for_all: bool,
    #[serde(with = "rust_decimal::serde::str_option")]
    pub require_approval_above_amount: Option<Decimal>,
    pub tags: Vec<String>,
    pub status: String,
}

/// Money into (`FundsDeposited`) or out of (`FundsWithdrawn`) an agent's
/// available balance; the two Avro records share this shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FundsMovement {
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub balance_after: Decimal,
    pub memo: String,
    pub journal: JournalEntry,
}

/// A change to a payment, on the agent it happened to: the payment as it is
/// now, that agent's balances after it, and the money it moved (if any).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentChange {
    pub payment: Payment,
    #[serde(with = "rust_decimal::serde::str")]
    pub balance_after: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub reserved_after: Decimal,
    pub journal: Option<JournalEntry>,
}

/// One of the agent's on-chain transfers finished (see `avro/event.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferSettled {
    pub settlement_id: String,
    pub kind: String,
    pub asset: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub to_address: String,
    pub status: String,
    pub tx_hash: Option<String>,
    pub block_number: Option<i64>,
    pub reason: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub balance_after: Decimal,
    pub journal: Option<JournalEntry>,
}

/// The sandbox sign-up bonus, on the user's key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BonusGranted {
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
    pub journal: JournalEntry,
}

/// The user's wallet moved: `memo` says why ([`wallet_memo`]); `agent` is
/// the agent on the other side, if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalletChange {
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub balance_after: Decimal,
    pub memo: String,
    pub agent: Option<String>,
    pub journal: JournalEntry,
}

/// Why a user's wallet moved (`WalletChange::memo`).
pub mod wallet_memo {
    pub const FUNDED: &str = "funded";
    pub const AGENT_FUNDING: &str = "agent funding";
    pub const REFUND: &str = "refund";
    pub const AGENT_WITHDRAWAL: &str = "withdrawal from agent";
}

/// A double-entry journal entry: postings whose signed amounts sum to zero.
/// A vault position as of its latest change (see `schemas::interest`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavingsPosition {
    pub investment_id: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub principal: Decimal,
    pub currency: String,
    pub invested_ms: i64,
    /// `active` or `completed`.
    pub status: String,
    /// Σ rate % × ms since investing, accrued to `accrued_to_ms`.
    #[serde(with = "rust_decimal::serde::str")]
    pub rate_ms: Decimal,
    pub accrued_to_ms: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub interest_posted: Decimal,
    pub closed_ms: Option<i64>,
    /// The annual rate (%) recorded when the position opened, applied for
    /// its life. `None` only on positions opened before rates were
    /// recorded: they take the rate in force at `invested_ms`
    /// ([`SavingsPosition::rate`]).
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub rate_pct: Option<Decimal>,
}

impl SavingsPosition {
    /// The position's annual rate (%): recorded, or for an older position
    /// the schedule's at its opening.
    pub fn rate(&self, rates: &crate::interest::RateSchedule) -> Decimal {
        self.rate_pct
            .unwrap_or_else(|| rates.at(self.invested_ms).rate_pct)
    }

    pub const ACTIVE: &'static str = "active";
    pub const COMPLETED: &'static str = "completed";

    pub fn id(&self) -> Uuid {
        crate::payment::uuid(&self.investment_id)
    }
}

/// A savings change: the position after it, the amount it moved, the
/// agent's available balance after it, and its journal entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavingsChange {
    pub position: SavingsPosition,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub balance_after: Decimal,
    pub journal: JournalEntry,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub entry_id: String,
    pub postings: Vec<Posting>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Posting {
    pub account: String,
    /// Signed change of the account's balance.
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
}

impl JournalEntry {
    /// Debits equal credits: the signed amounts sum to zero.
    pub fn is_balanced(&self) -> bool {
        self.postings.len() >= 2
            && self
                .postings
                .iter()
                .map(|p| p.amount)
                .sum::<Decimal>()
                .is_zero()
    }
}

/// Ledger account names, defined once.
pub mod accounts {
    use uuid::Uuid;

    /// An agent's spendable balance.
    pub fn agent_available(agent_id: Uuid) -> String {
        format!("agent:{agent_id}:available")
    }

    /// Where money enters from outside the ledger (deposits from the chain).
    pub fn external_funding(currency: &str) -> String {
        format!("external:{currency}:funding")
    }

    /// Funds of an agent held for its in-flight or awaiting-approval payments.
    pub fn agent_reserved(agent_id: Uuid) -> String {
        format!("agent:{agent_id}:reserved")
    }

    /// Payments between the sender's confirmation and the receiver's credit;
    /// nets to zero once every saga has finished.
    pub fn settlement_clearing(currency: &str) -> String {
        format!("settlement:{currency}:clearing")
    }

    /// Where money leaves the ledger on chain: confirmed withdrawals and
    /// EXTERNAL payments to addresses (the counterpart of `external_funding`).
    pub fn onchain_outflow(currency: &str) -> String {
        format!("external:{currency}:onchain")
    }

    /// A user's wallet: the sign-up bonus and agents' withdrawals land here.
    pub fn user_wallet(user_id: Uuid) -> String {
        format!("user:{user_id}:wallet")
    }

    /// Funding between a user's wallet and an agent, in flight between the
    /// two machines; nets to zero once every funding saga has finished.
    pub fn wallet_transit(currency: &str) -> String {
        format!("wallet:{currency}:transit")
    }

    /// Where the sandbox sign-up bonuses come from.
    pub fn sandbox_bonus(currency: &str) -> String {
        format!("bonus:{currency}:sandbox")
    }

    /// An agent's vault: principal of its positions.
    pub fn savings_principal(agent_id: Uuid) -> String {
        format!("agent:{agent_id}:savings")
    }

    /// An agent's vault: interest posted to its positions, not yet withdrawn.
    pub fn savings_interest(agent_id: Uuid) -> String {
        format!("agent:{agent_id}:interest")
    }

    /// The bank's interest expense: where posted interest comes from.
    pub fn interest_expense(currency: &str) -> String {
        format!("interest:{currency}:expense")
    }
}

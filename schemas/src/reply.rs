//! Replies: a processor's answer to one command, on `agentbank.replies`, keyed
//! by correlation id. Internal to agentbank (JSON, not a public contract):
//! only the gateway that sent the command reads them.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::command::PaymentRules;
use crate::payment::Payment;

/// An agent as the processor knows it; what a write's reply carries back so
/// the client sees its own write at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentView {
    pub agent_id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub description: String,
    pub wallet_address: Option<String>,
    pub currency: String,
    pub rules: PaymentRules,
    pub tags: Vec<String>,
    pub status: String,
    pub created_ms: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub balance: Decimal,
    /// Spending policies beyond the rules (none by default).
    #[serde(default)]
    pub policies: crate::policy::SpendingPolicies,
}

/// Why a processor refused a command. The gateway maps each to an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectCode {
    /// No such agent, or not the caller's (indistinguishable on purpose).
    NotFound,
    /// The command contradicts the agent's state (e.g. wrong currency).
    Invalid,
    /// The agent already exists with different content.
    Conflict,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    // Boxed: outcomes are kept per agent (dedupe window), mostly small rejections or views.
    Agent(Box<AgentView>),
    /// A payment as the sender's processor holds it after the command.
    Payment(Box<Payment>),
    /// A payment that has left the sender's open set since (a retried
    /// command): the gateway reads it from the read model.
    PaymentSettled {
        payment_id: Uuid,
    },
    /// An opportunity as its machine holds it after the command.
    Opportunity(Box<crate::revenue::opportunity::Opportunity>),
    /// A quote as the pricing machine holds it after the command.
    Quote(Box<crate::revenue::pricing::Quote>),
    /// A revenue event's posted entry.
    RevenueEntry(Box<crate::revenue::ledger::LedgerEntry>),
    /// A user's wallet balance after the command (in its currency).
    Wallet {
        #[serde(with = "rust_decimal::serde::str")]
        balance: Decimal,
    },
    /// Done; nothing to show (e.g. the sign-up bonus).
    Done,
    Rejected {
        code: RejectCode,
        message: String,
    },
}

/// The seed's answer when a user's wallet holds less than a funding asks
/// for (agent creation with a balance, `POST /agents/deposit`).
pub const INSUFFICIENT_WALLET_FUNDS: &str = "Transfer failed on-chain: insufficient funds";
/// The seed's answer when the user has no wallet yet.
pub const WALLET_NOT_FOUND: &str = "User wallet not found or inaccessible";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub correlation_id: String,
    pub command_id: Uuid,
    pub outcome: Outcome,
    /// (events partition, offset) pairs the Postgres sink must have written
    /// before the gateway answers, so the client's next read sees this write.
    pub wait_for: Vec<(i32, i64)>,
}

impl Reply {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("replies serialize")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, crate::SchemaError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// Every reply of one record of the replies topic: a packed record's
    /// items ([`crate::packed`]) or a single reply.
    pub fn decode_all(record: &[u8]) -> Vec<Result<Self, crate::SchemaError>> {
        crate::packed::decode_each(record, Reply::decode)
    }
}

/// A correlation id naming the replies partition its gateway reads:
/// `<partition>.<uuid>`. Each gateway reads one partition, so a processor
/// batch's replies go to few partitions instead of all of them.
pub fn correlation_id(reply_partition: i32) -> String {
    format!("{reply_partition}.{}", Uuid::new_v4().simple())
}

/// The replies partition a correlation id names, if it names one.
pub fn reply_partition(correlation_id: &str) -> Option<i32> {
    correlation_id
        .split_once('.')?
        .0
        .parse()
        .ok()
        .filter(|p: &i32| *p >= 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn correlation_ids_carry_their_partition() {
        let c = super::correlation_id(3);
        assert_eq!(super::reply_partition(&c), Some(3));
        assert_eq!(super::reply_partition("no-partition"), None);
        assert_eq!(super::reply_partition("-1.x"), None);
    }
}

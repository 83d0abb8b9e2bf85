//! Payments: the record a payment is, wherever it travels (events, replies,
//! processor state, the read model), and its status vocabulary — the Mage
//! API's strings, spelled once.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `status`: where the money is.
pub mod status {
    /// Registered; awaiting approval or in flight between the two agents.
    pub const NEW: &str = "New";
    /// Finished: credited to the receiver, or declined (see approval status).
    pub const CONFIRMED: &str = "Confirmed";
    /// The receiver could not be credited; the reservation was released.
    pub const FAILED: &str = "Failed";
}

/// `approvalstatus`: what the sender's rules and user decided.
pub mod approval {
    pub const WAITING_FOR_SENDER: &str = "Waiting for Sender Approval";
    pub const APPROVED: &str = "Approved";
    /// The docs' spelling in `setDecline`'s response; `Declined` is accepted
    /// as a filter alias by the gateway.
    pub const DECLINE: &str = "Decline";
    /// Declined by the agent's approval expiry (spending policies).
    pub const EXPIRED: &str = "Expired";
}

/// `type`: the payment's classification.
pub const PAYMENT_TYPES: [&str; 2] = ["INTERNAL", "EXTERNAL"];

/// One payment, as of its latest change on the sender's side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub payment_id: String,
    pub sender_agent_id: String,
    pub receiver_agent_id: String,
    pub name: String,
    pub payment_type: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
    pub method: String,
    pub contact_email: Option<String>,
    pub contact_phone: Option<String>,
    pub tags: Vec<String>,
    pub status: String,
    pub approval_status: String,
    pub approval_required: bool,
    /// Milliseconds since the Unix epoch (UTC).
    pub created_ms: i64,
    /// When it was approved or declined (`approvedat`).
    pub decided_ms: Option<i64>,
    /// The settlement transaction, once settled on a chain; `None` on the ledger.
    pub tx_hash: Option<String>,
    /// An EXTERNAL on-chain payment's receiving address (`receiver_agent_id`
    /// is then the nil UUID); `None` between agents.
    #[serde(default)]
    pub receiver_address: Option<String>,
}

/// An id as a payment record spells it (a UUID's text). Records are built
/// from parsed UUIDs, so this never fails for them; anything else reads as the
/// nil UUID, which names nothing.
pub fn uuid(text: &str) -> Uuid {
    Uuid::parse_str(text).unwrap_or_default()
}

impl Payment {
    pub fn id(&self) -> Uuid {
        uuid(&self.payment_id)
    }

    pub fn sender(&self) -> Uuid {
        uuid(&self.sender_agent_id)
    }

    pub fn receiver(&self) -> Uuid {
        uuid(&self.receiver_agent_id)
    }

    pub fn is_waiting_for_approval(&self) -> bool {
        self.status == status::NEW && self.approval_status == approval::WAITING_FOR_SENDER
    }
}

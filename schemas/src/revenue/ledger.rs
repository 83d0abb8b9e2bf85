//! The revenue ledger's contract: the revenue event types, the chart of
//! accounts each posts to, the command that records one, the entry the
//! revenue machine posts (balanced double entry in `Decimal` at the
//! currency's ISO 4217 scale, with its place in the tenant's hash chain and
//! its movement of the daily aggregates), the chain's canonical form and its
//! verification, and the revenue API's views. Shapes in `avro/command.avsc`
//! and `avro/event.avsc`.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::rfc3339;

/// The revenue event types (`event_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RevenueKind {
    /// A one-time payment (not a subscription charge).
    PaymentReceived,
    /// Money given back: contra-revenue.
    Refund,
    /// A subscription's first charge; `amount` is its monthly charge.
    SubscriptionStarted,
    /// A period's charge of a running subscription; `amount` is the charge.
    SubscriptionRenewed,
    /// A move to a higher monthly charge (`amount`: the new charge).
    SubscriptionUpgraded,
    /// A move to a lower monthly charge (`amount`: the new charge).
    SubscriptionDowngraded,
    /// The subscription ends; `amount` is a final charge (often 0).
    SubscriptionCancelled,
}

impl RevenueKind {
    pub const ALL: [RevenueKind; 7] = [
        RevenueKind::PaymentReceived,
        RevenueKind::Refund,
        RevenueKind::SubscriptionStarted,
        RevenueKind::SubscriptionRenewed,
        RevenueKind::SubscriptionUpgraded,
        RevenueKind::SubscriptionDowngraded,
        RevenueKind::SubscriptionCancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RevenueKind::PaymentReceived => "payment_received",
            RevenueKind::Refund => "refund",
            RevenueKind::SubscriptionStarted => "subscription_started",
            RevenueKind::SubscriptionRenewed => "subscription_renewed",
            RevenueKind::SubscriptionUpgraded => "subscription_upgraded",
            RevenueKind::SubscriptionDowngraded => "subscription_downgraded",
            RevenueKind::SubscriptionCancelled => "subscription_cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<RevenueKind> {
        RevenueKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// A subscription's charge (recurring revenue) rather than a one-time one.
    pub fn is_subscription(self) -> bool {
        !matches!(self, RevenueKind::PaymentReceived | RevenueKind::Refund)
    }

    /// The (debit, credit) accounts of an entry of this type in `vertical`.
    /// Revenue is recognised against receivables (the seed's entry);
    /// refunds debit the vertical's contra-revenue account.
    pub fn accounts(self, vertical: &str) -> (String, String) {
        match self {
            RevenueKind::Refund => (format!("refunds_{vertical}"), RECEIVABLES.to_string()),
            _ => (RECEIVABLES.to_string(), format!("revenue_{vertical}")),
        }
    }
}

/// The receivables account every entry touches.
pub const RECEIVABLES: &str = "accounts_receivable";

/// `RecordRevenue` (key: the tenant's ledger): the command's id is the
/// event's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordRevenue {
    pub event_type: String,
    /// Positive (zero only for a cancellation), at the currency's scale.
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
    pub product_id: String,
    pub customer_id: String,
    pub vertical: String,
    pub customer_segment: String,
    /// When the revenue happened (ms); analytics place it on this day.
    pub occurred_ms: i64,
    /// The natural key (`event_type:invoice_id`), unique per tenant.
    pub natural_key: Option<String>,
    /// The request's `metadata`, as compact JSON.
    pub metadata: String,
}

/// `SetRevenueTarget`: a tenant's monthly revenue target in a currency
/// (zero clears it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetRevenueTarget {
    pub currency: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub monthly_target: Decimal,
}

/// What one entry moves in the daily aggregates (all amounts ≥ 0).
/// Revenue of a day = `recurring + one_time − refunds`; monthly recurring
/// revenue moves by `new_mrr + reactivation_mrr + expansion − contraction −
/// churned_mrr`; subscribers by `new + reactivated − churned`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Movement {
    #[serde(with = "rust_decimal::serde::str")]
    pub recurring: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub one_time: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub refunds: Decimal,
    pub new_customers: i64,
    pub reactivated_customers: i64,
    pub churned_customers: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub new_mrr: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub reactivation_mrr: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub expansion: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub contraction: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub churned_mrr: Decimal,
}

impl Movement {
    pub fn revenue(&self) -> Decimal {
        self.recurring + self.one_time - self.refunds
    }

    pub fn mrr_change(&self) -> Decimal {
        self.new_mrr + self.reactivation_mrr + self.expansion - self.contraction - self.churned_mrr
    }

    pub fn subscriber_change(&self) -> i64 {
        self.new_customers + self.reactivated_customers - self.churned_customers
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Movement) {
        self.recurring += other.recurring;
        self.one_time += other.one_time;
        self.refunds += other.refunds;
        self.new_customers += other.new_customers;
        self.reactivated_customers += other.reactivated_customers;
        self.churned_customers += other.churned_customers;
        self.new_mrr += other.new_mrr;
        self.reactivation_mrr += other.reactivation_mrr;
        self.expansion += other.expansion;
        self.contraction += other.contraction;
        self.churned_mrr += other.churned_mrr;
    }
}

/// One posted entry: a revenue event as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The revenue event's id (its command's id).
    #[serde(with = "crate::ids::uuid_text")]
    pub event_id: Uuid,
    #[serde(with = "crate::ids::uuid_text")]
    pub tenant_id: Uuid,
    /// 1, 2, … per tenant: the entry's place in the hash chain.
    pub sequence: i64,
    pub event_type: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
    pub debit_account: String,
    pub credit_account: String,
    pub product_id: String,
    pub customer_id: String,
    pub vertical: String,
    pub customer_segment: String,
    pub occurred_ms: i64,
    pub recorded_ms: i64,
    pub natural_key: Option<String>,
    pub metadata: String,
    /// `0x` + hex SHA-256: the previous entry's hash (zeros for the first)
    /// and this entry's.
    pub previous_hash: String,
    pub transaction_hash: String,
    pub movement: Movement,
}

/// The chain's start: the "previous hash" of a tenant's first entry.
pub const GENESIS: &str = "0x0000000000000000000000000000000000000000000000000000000000000000";

impl LedgerEntry {
    /// The entry's canonical form, hashed into the chain: a JSON array of
    /// every posted field, amounts normalised (`79.00` → `"79"`), so the
    /// same entry always hashes the same and no two entries share a form.
    pub fn canonical(&self) -> String {
        serde_json::json!([
            "agentbank.revenue.v1",
            self.tenant_id.to_string(),
            self.sequence,
            self.event_id.to_string(),
            self.event_type,
            self.amount.normalize().to_string(),
            self.currency,
            self.debit_account,
            self.credit_account,
            self.product_id,
            self.customer_id,
            self.vertical,
            self.customer_segment,
            self.occurred_ms,
            self.recorded_ms,
            self.natural_key,
            self.metadata,
        ])
        .to_string()
    }

    /// `0x` + hex SHA-256 of the previous hash's bytes and the canonical form.
    pub fn chain_hash(previous_hash: &str, canonical: &str) -> String {
        let prev = hex::decode(previous_hash.trim_start_matches("0x")).unwrap_or_default();
        let mut h = Sha256::new();
        h.update(&prev);
        h.update(canonical.as_bytes());
        format!("0x{}", hex::encode(h.finalize()))
    }

    /// Seals the entry after `previous_hash`: sets both hashes.
    pub fn seal(&mut self, previous_hash: &str) {
        self.previous_hash = previous_hash.to_string();
        self.transaction_hash = Self::chain_hash(previous_hash, &self.canonical());
    }
}

/// Why a chain does not verify: the first bad entry and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub sequence: i64,
    pub reason: &'static str,
}

/// Recomputes a tenant's chain entry by entry (in sequence order).
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    next_sequence: i64,
    head: String,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier {
            next_sequence: 1,
            head: GENESIS.to_string(),
        }
    }
}

impl ChainVerifier {
    /// Checks the next entry: its sequence follows, it names the running
    /// head as its previous hash, and its hash is the recomputed one.
    pub fn push(&mut self, e: &LedgerEntry) -> Result<(), ChainBreak> {
        let broken = |reason| ChainBreak {
            sequence: self.next_sequence,
            reason,
        };
        if e.sequence != self.next_sequence {
            return Err(broken("an entry is missing or out of order"));
        }
        if e.previous_hash != self.head {
            return Err(broken("previous_hash does not match the chain"));
        }
        let recomputed = LedgerEntry::chain_hash(&self.head, &e.canonical());
        if recomputed != e.transaction_hash {
            return Err(broken("the entry was altered: its hash does not match"));
        }
        self.head = recomputed;
        self.next_sequence += 1;
        Ok(())
    }

    /// Entries verified so far.
    pub fn checked(&self) -> i64 {
        self.next_sequence - 1
    }

    pub fn head(&self) -> &str {
        &self.head
    }
}

/// `revenue.milestone`: a tenant's month crossed its target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevenueMilestone {
    pub milestone: String,
    /// `YYYY-MM` (UTC) of the revenue.
    pub month: String,
    pub currency: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub achieved: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub target: Decimal,
}

impl RevenueMilestone {
    /// The seed's `data`: `{milestone, achieved, target, percentage}`.
    pub fn view(&self) -> serde_json::Value {
        let percentage = if self.target > Decimal::ZERO {
            (self.achieved * Decimal::ONE_HUNDRED / self.target).round_dp(0)
        } else {
            Decimal::ZERO
        };
        serde_json::json!({
            "milestone": self.milestone,
            "month": self.month,
            "currency": self.currency,
            "achieved": crate::money::json_number(self.achieved),
            "target": crate::money::json_number(self.target),
            "percentage": crate::money::json_number(percentage),
        })
    }
}

/// A revenue event's payload: the posted entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevenueRecorded {
    pub entry: Box<LedgerEntry>,
}

/// A tenant's monthly target as set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevenueTargetSet {
    pub currency: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub monthly_target: Decimal,
}

/// One side of a ledger entry in the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PostingView {
    pub account: String,
    #[serde(serialize_with = "super::json_number")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub amount: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerEntryView {
    pub debit: PostingView,
    pub credit: PostingView,
}

/// `POST /v1/revenue/events`' answer (the seed's shape, with the entry's
/// place in the chain).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordedView {
    /// `evt_…`
    pub event_id: String,
    /// `recorded`.
    pub status: String,
    /// When the ledger recorded it.
    pub timestamp: String,
    pub occurred_at: String,
    pub sequence: i64,
    pub transaction_hash: String,
    pub ledger_entry: LedgerEntryView,
}

/// One `GET /v1/revenue/transactions` item.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransactionView {
    pub event_id: String,
    pub event_type: String,
    #[serde(serialize_with = "super::json_number")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub amount: Decimal,
    pub currency: String,
    pub product_id: String,
    pub customer_id: String,
    pub vertical: String,
    pub customer_segment: String,
    pub occurred_at: String,
    pub recorded_at: String,
    pub sequence: i64,
    pub previous_hash: String,
    pub transaction_hash: String,
    pub ledger_entry: LedgerEntryView,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: serde_json::Value,
}

impl LedgerEntry {
    pub fn postings(&self) -> LedgerEntryView {
        LedgerEntryView {
            debit: PostingView {
                account: self.debit_account.clone(),
                amount: self.amount,
            },
            credit: PostingView {
                account: self.credit_account.clone(),
                amount: self.amount,
            },
        }
    }

    pub fn recorded_view(&self) -> RecordedView {
        RecordedView {
            event_id: crate::ids::short(crate::ids::Kind::Event, self.event_id),
            status: "recorded".into(),
            timestamp: rfc3339(self.recorded_ms),
            occurred_at: rfc3339(self.occurred_ms),
            sequence: self.sequence,
            transaction_hash: self.transaction_hash.clone(),
            ledger_entry: self.postings(),
        }
    }

    pub fn transaction_view(&self) -> TransactionView {
        TransactionView {
            event_id: crate::ids::short(crate::ids::Kind::Event, self.event_id),
            event_type: self.event_type.clone(),
            amount: self.amount,
            currency: self.currency.clone(),
            product_id: self.product_id.clone(),
            customer_id: self.customer_id.clone(),
            vertical: self.vertical.clone(),
            customer_segment: self.customer_segment.clone(),
            occurred_at: rfc3339(self.occurred_ms),
            recorded_at: rfc3339(self.recorded_ms),
            sequence: self.sequence,
            previous_hash: self.previous_hash.clone(),
            transaction_hash: self.transaction_hash.clone(),
            ledger_entry: self.postings(),
            metadata: serde_json::from_str(&self.metadata).unwrap_or_default(),
        }
    }
}

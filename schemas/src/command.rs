//! Commands: requests to change an agent's state, on `agentbank.commands`,
//! keyed by the agent whose processor decides them. Shape: `avro/command.avsc`.
//!
//! Two encodings, both accepted everywhere: Avro single-object (the published
//! schema, for outside producers and single-command records) and the
//! pipeline's internal codec ([`Command::encode_internal`]: a version mark,
//! then JSON), which the gateway and the processors use inside packed records
//! because it is an order of magnitude cheaper than Avro through
//! `apache_avro::Value` (a `CreditPayment` saga step, release build: internal
//! 0.9 µs to encode and 2.0 µs to decode, Avro 13.8 µs and 9.3 µs;
//! `avro::speed`).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::payment::Payment;
use crate::revenue::ledger::{RecordRevenue, SetRevenueTarget};
use crate::revenue::opportunity::{CompleteOpportunity, CreateOpportunity, ExecuteOpportunity};
use crate::revenue::portfolio::{ApplyRebalance, OpenPosition};
use crate::revenue::pricing::{ExecuteQuote, ExpireQuotes, RequestQuote};
use crate::settlement::SettlementResult;

/// The command envelope. `id` is the idempotency key: a processor applies a
/// command id at most once per agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub id: Uuid,
    pub agent_id: Uuid,
    pub user_id: Uuid,
    pub correlation_id: Option<String>,
    pub timestamp_ms: i64,
    pub payload: CommandPayload,
}

/// Marks a command in the internal codec, version 1: JSON of [`Command`]
/// follows. Never the start of Avro single-object encoding (`C3 01`).
pub const INTERNAL_V1: [u8; 2] = [b'J', 0x01];

impl Command {
    /// The internal codec: [`INTERNAL_V1`], then JSON.
    pub fn encode_internal(&self) -> Result<Vec<u8>, crate::SchemaError> {
        let mut out = INTERNAL_V1.to_vec();
        serde_json::to_writer(&mut out, self)?;
        Ok(out)
    }

    /// One command in either encoding.
    pub fn decode_item(item: &[u8]) -> Result<Command, crate::SchemaError> {
        match item.strip_prefix(&INTERNAL_V1) {
            Some(json) => Ok(serde_json::from_slice(json)?),
            None => Command::decode(item),
        }
    }

    /// Every command of one record of the commands topic, in order: a packed
    /// record's items ([`crate::packed`]) or a single command. One item that
    /// does not decode is an error in its place; its neighbours still decode.
    pub fn decode_all(record: &[u8]) -> Vec<Result<Command, crate::SchemaError>> {
        crate::packed::decode_each(record, Command::decode_item)
    }
}

/// What a command asks for. The order of variants is the Avro union's order:
/// append only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CommandPayload {
    CreateAgent(CreateAgent),
    Deposit(Deposit),
    Withdraw(Withdraw),
    RegisterPayment(RegisterPayment),
    ApprovePayment(PaymentRef),
    DeclinePayment(PaymentRef),
    CreditPayment(CreditPayment),
    SettlePayment(SettlePayment),
    GrantSignupBonus(GrantSignupBonus),
    DepositSavings(DepositSavings),
    WithdrawSavings(WithdrawSavings),
    AccrueInterest(AccrueInterest),
    /// The settlement service's result for one of the agent's transfers.
    CompleteSettlement(SettlementResult),
    /// Revenue platform: score and keep a new opportunity (key: its id).
    CreateOpportunity(Box<CreateOpportunity>),
    ExecuteOpportunity(ExecuteOpportunity),
    /// The opportunities machine's own follow-up that completes an execution.
    CompleteOpportunity(CompleteOpportunity),
    /// Pricing (key: the tenant's product): a quote, its conversion, and the
    /// expiry tick that closes unexecuted ones.
    RequestQuote(Box<RequestQuote>),
    ExecuteQuote(ExecuteQuote),
    ExpireQuotes(ExpireQuotes),
    /// The revenue ledger (key: the tenant's ledger): a revenue event, and
    /// the tenant's monthly target.
    RecordRevenue(Box<RecordRevenue>),
    SetRevenueTarget(SetRevenueTarget),
    /// The portfolio (key: the tenant's portfolio): a position opened by an
    /// execution, and a rebalance's trades.
    OpenPosition(OpenPosition),
    ApplyRebalance(ApplyRebalance),
    /// The agent bank: change an agent's description, tags, payment rules
    /// or status (pause, resume, deactivate).
    UpdateAgent(UpdateAgent),
    /// The user's wallet (key: the user): money from outside, and funding an
    /// agent from it (a saga: `CreditFromWallet` on the agent, `SettleWallet`
    /// back with its answer; withdrawals land by `SettleWallet` too).
    FundWallet(FundWallet),
    FundAgent(Box<FundAgent>),
    CreditFromWallet(Box<CreditFromWallet>),
    SettleWallet(SettleWallet),
}

impl CommandPayload {
    /// The machine that decides this command.
    pub fn machine(&self) -> crate::topics::MachineKind {
        match self {
            CommandPayload::CreateOpportunity(_)
            | CommandPayload::ExecuteOpportunity(_)
            | CommandPayload::CompleteOpportunity(_) => crate::topics::MachineKind::Opportunities,
            CommandPayload::RequestQuote(_)
            | CommandPayload::ExecuteQuote(_)
            | CommandPayload::ExpireQuotes(_) => crate::topics::MachineKind::Pricing,
            CommandPayload::RecordRevenue(_) | CommandPayload::SetRevenueTarget(_) => {
                crate::topics::MachineKind::Revenue
            }
            CommandPayload::OpenPosition(_) | CommandPayload::ApplyRebalance(_) => {
                crate::topics::MachineKind::Portfolio
            }
            _ => crate::topics::MachineKind::Agents,
        }
    }

    /// The record name, also the envelope's `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            CommandPayload::CreateAgent(_) => "CreateAgent",
            CommandPayload::Deposit(_) => "Deposit",
            CommandPayload::Withdraw(_) => "Withdraw",
            CommandPayload::RegisterPayment(_) => "RegisterPayment",
            CommandPayload::ApprovePayment(_) => "ApprovePayment",
            CommandPayload::DeclinePayment(_) => "DeclinePayment",
            CommandPayload::CreditPayment(_) => "CreditPayment",
            CommandPayload::SettlePayment(_) => "SettlePayment",
            CommandPayload::GrantSignupBonus(_) => "GrantSignupBonus",
            CommandPayload::DepositSavings(_) => "DepositSavings",
            CommandPayload::WithdrawSavings(_) => "WithdrawSavings",
            CommandPayload::AccrueInterest(_) => "AccrueInterest",
            CommandPayload::CompleteSettlement(_) => "CompleteSettlement",
            CommandPayload::CreateOpportunity(_) => "CreateOpportunity",
            CommandPayload::ExecuteOpportunity(_) => "ExecuteOpportunity",
            CommandPayload::CompleteOpportunity(_) => "CompleteOpportunity",
            CommandPayload::UpdateAgent(_) => "UpdateAgent",
            CommandPayload::RequestQuote(_) => "RequestQuote",
            CommandPayload::ExecuteQuote(_) => "ExecuteQuote",
            CommandPayload::ExpireQuotes(_) => "ExpireQuotes",
            CommandPayload::RecordRevenue(_) => "RecordRevenue",
            CommandPayload::SetRevenueTarget(_) => "SetRevenueTarget",
            CommandPayload::OpenPosition(_) => "OpenPosition",
            CommandPayload::ApplyRebalance(_) => "ApplyRebalance",
            CommandPayload::FundWallet(_) => "FundWallet",
            CommandPayload::FundAgent(_) => "FundAgent",
            CommandPayload::CreditFromWallet(_) => "CreditFromWallet",
            CommandPayload::SettleWallet(_) => "SettleWallet",
        }
    }
}

/// Spending rules of an agent (Mage `paymentRules`); `None` means no limit.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PaymentRules {
    #[serde(with = "rust_decimal::serde::str_option")]
    pub daily_limit: Option<Decimal>,
    #[serde(with = "rust_decimal::serde::str_option")]
    pub transaction_limit: Option<Decimal>,
    pub require_approval_for_all: bool,
    #[serde(with = "rust_decimal::serde::str_option")]
    pub require_approval_above_amount: Option<Decimal>,
}

/// One field of an agent and its value as text (`None`: no value, e.g. no
/// limit). Fields: [`crate::command::agent_field`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// `UpdateAgent`: the fields to set (`from` unused), who asks and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateAgent {
    pub changes: Vec<FieldChange>,
    /// `user:<id>`, or `service:<name>` for a service acting for the user.
    pub actor: String,
    pub reason: Option<String>,
}

/// The rule fields are spelled out rather than `#[serde(flatten)]`-ed from
/// [`PaymentRules`]: the Avro record is flat, and apache-avro cannot decode
/// optional fields through `flatten` (tried; the round-trip test fails).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateAgent {
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
    #[serde(with = "rust_decimal::serde::str")]
    pub initial_balance: Decimal,
    /// Sandbox faucet: gas and the initial balance to the agent's wallet on chain.
    #[serde(default)]
    pub settle_on_chain: bool,
}

impl CreateAgent {
    pub fn rules(&self) -> PaymentRules {
        PaymentRules {
            daily_limit: self.daily_limit,
            transaction_limit: self.transaction_limit,
            require_approval_for_all: self.require_approval_for_all,
            require_approval_above_amount: self.require_approval_above_amount,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deposit {
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
    /// Mirror it on chain: the treasury sends the amount to the agent's wallet.
    #[serde(default)]
    pub settle_on_chain: bool,
}

/// Moves funds from the agent's available balance to its user's wallet
/// account, or (with `to_address`) on chain from the agent's wallet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Withdraw {
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
    #[serde(default)]
    pub to_address: Option<String>,
    /// `to_address` is the user's own custodial wallet: once the transfer
    /// confirms, the amount lands in the user's wallet.
    #[serde(default)]
    pub to_user_wallet: bool,
}

/// Keyed by the sender agent: check its rules, reserve the amount, then wait
/// for approval or start the credit saga.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterPayment {
    pub payment_id: String,
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
    /// An EXTERNAL payment to this address, settled on chain.
    #[serde(default)]
    pub receiver_address: Option<String>,
}

/// Names a payment (approve, decline); keyed by its sender agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentRef {
    pub payment_id: String,
}

/// Saga step keyed by the receiver: credit `payment`. `origin_*` is the
/// sender-side input position that emitted it; the receiver applies each
/// origin once (replays re-emit the same origin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreditPayment {
    pub payment: Payment,
    pub origin_partition: i32,
    pub origin_offset: i64,
    /// The origin's item index within a packed record (0 when unpacked).
    #[serde(default)]
    pub origin_sub: i32,
}

/// Saga step keyed by the sender: the receiver credited (`credited`) or could
/// not (`reason`). Idempotent by the payment's state: only an in-flight
/// payment settles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettlePayment {
    pub payment_id: String,
    pub credited: bool,
    pub reason: String,
}

/// Keyed by the user: the sandbox sign-up bonus into the user's wallet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrantSignupBonus {
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
}

/// Keyed by the user: money from outside into the user's wallet (the
/// documented test-funding route). Applied once per command id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FundWallet {
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
    pub memo: String,
}

/// Keyed by the user: `amount` from the wallet to `agent_id`, creating the
/// agent first when `create` is set (agent creation with a balance).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FundAgent {
    pub agent_id: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
    /// Mirror it on chain: the treasury sends the amount to the agent's wallet.
    #[serde(default)]
    pub settle_on_chain: bool,
    pub create: Option<CreateAgent>,
}

/// Saga step keyed by the agent: credit `amount` from the wallets' transit
/// account (creating the agent when `create` is set), or refuse and send the
/// amount back with `SettleWallet`. `request_id`, the caller's command id,
/// is the `command_id` of the agent's events (an idempotent retry finds them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreditFromWallet {
    pub request_id: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
    #[serde(default)]
    pub settle_on_chain: bool,
    pub create: Option<CreateAgent>,
    pub origin_partition: i32,
    pub origin_offset: i64,
    #[serde(default)]
    pub origin_sub: i32,
}

/// Saga step keyed by the user: the wallet's side of a movement with an
/// agent. Without `request_id`: an agent's withdrawal, credited from transit
/// (applied once per origin). With it: the agent's answer to that funding —
/// landed (`refund_reason` none; nothing moves) or refused (the amount back
/// from transit, the caller answered with the reason). Only an in-flight
/// funding settles, so a repeated answer changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettleWallet {
    pub agent_id: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
    pub request_id: Option<String>,
    pub refund_reason: Option<String>,
    pub origin_partition: i32,
    pub origin_offset: i64,
    #[serde(default)]
    pub origin_sub: i32,
}

/// Keyed by the agent: `amount` from available into a new vault position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DepositSavings {
    pub investment_id: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
}

/// Keyed by the agent: close a position, principal and interest to available.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WithdrawSavings {
    pub investment_id: String,
}

/// A tick for one partition (agent id nil): every active position there
/// accrues interest to `through` (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccrueInterest {
    pub through: i64,
}

/// The agent fields `UpdateAgent` may set.
pub mod agent_field {
    pub const DESCRIPTION: &str = "description";
    pub const TAGS: &str = "tags";
    pub const DAILY_LIMIT: &str = "daily_limit";
    pub const TRANSACTION_LIMIT: &str = "transaction_limit";
    pub const REQUIRE_APPROVAL_FOR_ALL: &str = "require_approval_for_all";
    pub const REQUIRE_APPROVAL_ABOVE_AMOUNT: &str = "require_approval_above_amount";
    pub const STATUS: &str = "status";
    /// The spending policies, as `schemas::policy::SpendingPolicies` JSON
    /// (replaced whole).
    pub const POLICIES: &str = "policies";
    /// Audit only: the agent's key was regenerated (`to`: the new key's
    /// public id) or revoked (`to`: none). Keys live in the identity store.
    pub const API_KEY: &str = "api_key";
}

/// An agent's statuses: `paused` refuses its payments (credits still land);
/// `deactivated` is final.
pub mod agent_status {
    pub const ACTIVE: &str = "active";
    pub const PAUSED: &str = "paused";
    pub const DEACTIVATED: &str = "deactivated";
}

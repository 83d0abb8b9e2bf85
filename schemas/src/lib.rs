//! agentbank's public contract, in one place: what travels on the topics and
//! the rules money obeys. Every other crate takes these definitions from here.
//!
//! - [`topics`]: topic names (with an optional prefix) and their partitioning.
//! - [`money`]: `Decimal` amounts, currency scale, parsing and the one rounding rule.
//! - [`ids`]: UUIDs and the Mage short ids (`agent_…`, `user_…`), deterministic ids.
//! - [`command`], [`event`]: the command and event envelopes and their payloads.
//! - [`avro`]: the published `.avsc` schemas and Avro single-object encoding.
//! - [`payment`]: the payment record and its Mage status strings.
//! - [`settlement`]: on-chain transfer requests and results (Avro).
//! - [`revenue`]: the revenue platform's messages (opportunities, …).
//! - [`reply`]: command results for the gateway (internal, JSON) and the agent view they carry.

pub mod avro;
pub mod command;
pub mod event;
pub mod ids;
pub mod interest;
pub mod money;
pub mod packed;
pub mod payment;
pub mod policy;
pub mod reply;
pub mod revenue;
pub mod settlement;

pub mod topics;

pub use command::{Command, CommandPayload};
pub use event::{Event, EventPayload};

/// Everything that can go wrong decoding or validating the contract's data.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("avro: {0}")]
    Avro(#[from] Box<apache_avro::Error>),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not single-object encoded: {0}")]
    Framing(&'static str),
    #[error("record does not match the schema: {0}")]
    Shape(String),
    #[error("invalid amount: {0}")]
    Amount(String),
    #[error("invalid id: {0}")]
    Id(String),
}

impl From<apache_avro::Error> for SchemaError {
    fn from(e: apache_avro::Error) -> Self {
        SchemaError::Avro(Box::new(e))
    }
}

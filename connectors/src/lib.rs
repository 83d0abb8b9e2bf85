//! The edges of agentbank: everything that talks to the outside world.
//!
//! - [`kafka`]: client configuration (written out, not left to defaults) and
//!   topic administration; the only place that builds Kafka clients.
//! - [`db`]: the Postgres pool and the `sqlx` migrations of the read model.
//! - [`postgres_sink`]: consumes events and writes the read model in batches,
//!   with its consumed offsets in the same transaction (exactly-once into Postgres),
//!   and queues webhook deliveries in that same transaction.
//! - [`publisher`]: copies the packed events log to the public events topic,
//!   one Avro event per record, off the payment path.
//! - [`webhooks`]: envelopes, signatures and the delivery dispatcher.
//! - [`chain`]: on-chain settlement (EVM JSON-RPC via alloy): wallets, the
//!   settlement service.
//! - [`read_model`]: every query the gateway runs (no SQL in handlers).
//! - [`secrets`]: sealing secrets that must be usable again (AES-256-GCM).
//! - [`workers`]: the vertical agents' worker pools (opportunity executions).

pub mod chain;
pub mod db;
pub mod kafka;
pub mod postgres_sink;
pub mod publisher;
pub mod read_model;
pub mod secrets;
pub mod webhooks;
pub mod workers;

/// Everything that can fail at the edges.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("schema: {0}")]
    Schema(#[from] schemas::SchemaError),
    #[error("chain: {0}")]
    Chain(String),
    #[error("{0}")]
    Config(String),
}

//! Processors: the only place where money moves.
//!
//! - [`agents`]: the agent state machine — `apply(state, command) -> events +
//!   outcome`. Pure and deterministic: no I/O, no clock (time is the command's
//!   timestamp), so replaying the commands topic yields the same events.
//! - [`opportunities`]: the revenue platform's opportunities, scored and
//!   executed as a keyed machine on the same runtime.
//! - [`pricing`]: the contextual Thompson-sampling pricing model.
//! - [`portfolio`]: positions and rebalances (valuation is the read model's).
//! - [`revenue`]: the revenue ledger (double entry, hash chain, aggregates).
//! - [`runtime`]: drives the state machines from Kafka — consumes a partition,
//!   applies, produces outputs with deterministic ids, checkpoints state to the
//!   compacted changelog after the outputs are acknowledged, restores on
//!   assignment. The only code here that does I/O.
//! - [`scheduler`]: interest ticks onto the commands topic (time as data).

pub mod agents;
pub mod opportunities;
pub mod portfolio;
pub mod pricing;
pub mod revenue;
pub mod runtime;
pub mod scheduler;

/// Everything that can stop a processor.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error(transparent)]
    Connector(#[from] connectors::ConnectorError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("schema: {0}")]
    Schema(#[from] schemas::SchemaError),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

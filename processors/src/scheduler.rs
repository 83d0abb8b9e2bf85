//! The scheduler: time enters the pipeline as data. Every interval it
//! produces one tick to each partition of a machine's commands topic (key
//! nil, `through` = now), which the machine broadcasts to its states:
//!
//! - [`Tick::Interest`] (`AccrueInterest`, agents' topic): every active
//!   savings position accrues to the tick's time;
//! - [`Tick::QuoteExpiry`] (`ExpireQuotes`, pricing topic): every quote
//!   expired by then closes as a non-conversion.
//!
//! Replaying the topic applies the same ticks; a late or repeated tick does
//! nothing twice (positions remember how far they accrued, quotes close once).

use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use connectors::kafka::{produce_all, KafkaConfig, Outgoing};
use schemas::command::AccrueInterest;
use schemas::revenue::pricing::ExpireQuotes;
use schemas::topics::Topics;
use schemas::{Command, CommandPayload};

use crate::ProcessorError;

/// A kind of tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    Interest,
    QuoteExpiry,
}

impl Tick {
    fn name(self) -> &'static str {
        match self {
            Tick::Interest => "interest",
            Tick::QuoteExpiry => "quote_expiry",
        }
    }

    /// The topic this tick goes to.
    pub fn topic(self, topics: &Topics) -> &str {
        match self {
            Tick::Interest => &topics.commands,
            Tick::QuoteExpiry => &topics.pricing_commands,
        }
    }

    /// The tick for `partition` at `through` (ms since the epoch).
    pub fn command(self, partition: i32, through: i64) -> Command {
        let payload = match self {
            Tick::Interest => CommandPayload::AccrueInterest(AccrueInterest { through }),
            Tick::QuoteExpiry => CommandPayload::ExpireQuotes(ExpireQuotes { through }),
        };
        Command {
            id: schemas::ids::derived(&format!("{}-ticks", self.name()), partition, through, 0),
            agent_id: Uuid::nil(),
            user_id: Uuid::nil(),
            correlation_id: None,
            timestamp_ms: through,
            payload,
        }
    }
}

/// The interest tick for `partition` at `through`.
pub fn tick(partition: i32, through: i64) -> Command {
    Tick::Interest.command(partition, through)
}

/// Produces one round of `kind` ticks to every partition of its topic.
pub async fn tick_all(
    kafka: &KafkaConfig,
    producer: &rdkafka::producer::FutureProducer,
    topics: &Topics,
    kind: Tick,
    through: i64,
) -> Result<(), ProcessorError> {
    let topic = kind.topic(topics).to_string();
    let (k, t) = (kafka.clone(), topic.clone());
    let partitions = tokio::task::spawn_blocking(move || k.partition_count(&t))
        .await
        .map_err(|e| ProcessorError::Checkpoint(format!("partition lookup: {e}")))??;
    let records = (0..partitions)
        .map(|p| {
            Ok(Outgoing {
                topic: topic.clone(),
                key: Uuid::nil().to_string(),
                payload: Some(kind.command(p, through).encode()?),
                partition: Some(p),
            })
        })
        .collect::<Result<Vec<_>, ProcessorError>>()?;
    produce_all(producer, &records).await?;
    Ok(())
}

/// Produces `kind` ticks every `interval` until shutdown.
pub async fn run(
    kafka: KafkaConfig,
    topics: Topics,
    kind: Tick,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ProcessorError> {
    let producer = kafka.producer()?;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return Ok(()),
        }
        let now = chrono::Utc::now().timestamp_millis();
        tick_all(&kafka, &producer, &topics, kind, now).await?;
        metrics::counter!("agentbank_ticks_total", "kind" => kind.name()).increment(1);
    }
}

//! The interest scheduler: time enters the pipeline as data. Every interval
//! it produces one `AccrueInterest` tick to each partition of the commands
//! topic (agent id nil, `through` = now); the processor accrues every active
//! position on that partition to the tick's time, so replaying the topic
//! accrues the same units. A late or repeated tick accrues nothing twice
//! (positions remember how far they have accrued).

use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use connectors::kafka::{produce_all, KafkaConfig, Outgoing};
use schemas::command::AccrueInterest;
use schemas::topics::Topics;
use schemas::{Command, CommandPayload};

use crate::ProcessorError;

/// The tick for `partition` at `through` (ms since the epoch).
pub fn tick(partition: i32, through: i64) -> Command {
    Command {
        id: schemas::ids::derived("interest-ticks", partition, through, 0),
        agent_id: Uuid::nil(),
        user_id: Uuid::nil(),
        correlation_id: None,
        timestamp_ms: through,
        payload: CommandPayload::AccrueInterest(AccrueInterest { through }),
    }
}

/// Produces the ticks of one round to every partition of `topics.commands`.
pub async fn tick_all(
    kafka: &KafkaConfig,
    producer: &rdkafka::producer::FutureProducer,
    topics: &Topics,
    through: i64,
) -> Result<(), ProcessorError> {
    let (k, topic) = (kafka.clone(), topics.commands.clone());
    let partitions = tokio::task::spawn_blocking(move || k.partition_count(&topic))
        .await
        .map_err(|e| ProcessorError::Checkpoint(format!("partition lookup: {e}")))??;
    let records = (0..partitions)
        .map(|p| {
            Ok(Outgoing {
                topic: topics.commands.clone(),
                key: Uuid::nil().to_string(),
                payload: Some(tick(p, through).encode()?),
                partition: Some(p),
            })
        })
        .collect::<Result<Vec<_>, ProcessorError>>()?;
    produce_all(producer, &records).await?;
    Ok(())
}

/// Ticks every `interval` until shutdown.
pub async fn run(
    kafka: KafkaConfig,
    topics: Topics,
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
        tick_all(&kafka, &producer, &topics, now).await?;
        metrics::counter!("agentbank_interest_ticks_total").increment(1);
    }
}

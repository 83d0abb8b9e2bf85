//! The publisher: copies the events log (`agentbank.events.log`, the
//! processors' events packed per batch) to the public `agentbank.events`
//! topic, one Avro event per record keyed by agent id — the contract outside
//! consumers read (`tests/avro_contract.rs`). Off the payment path: the
//! processor answers once its packed record is acknowledged and the sink has
//! passed it; the per-event records are written here, after.
//!
//! At least once, in order: per batch it produces every event, waits for all
//! acknowledgements, then commits the log offsets (under its own group id,
//! partitions assigned, not balanced). A crash re-publishes at most the
//! batch in hand — the same events, byte for byte, under the same ids, which
//! consumers already dedupe. An events-log partition maps to the same
//! partition of the public topic (same key, same count), so an agent's events
//! keep their order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, DefaultConsumerContext, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use schemas::topics::Topics;

use crate::kafka::{produce_all, report_lag, AbortOnDrop, KafkaConfig, Outgoing};
use crate::ConnectorError;

/// Most events-log records (each many events) published per produce round.
pub const PUBLISH_RECORDS_MAX: usize = 500;
/// How long its fetches wait when the log is idle: it is off the payment
/// path, and every 10 ms poll of a partition costs the broker storage queries
/// (see `load-tests/README.md`), so it polls ten times less often than the
/// payment path's consumers and publishes up to ~100 ms later.
pub const PUBLISHER_FETCH_WAIT_MS: u32 = 100;

#[derive(Debug, Clone)]
pub struct PublisherConfig {
    pub kafka: KafkaConfig,
    pub topics: Topics,
    /// Its consumer group: where its offsets on the events log are committed.
    pub group_id: String,
}

/// Runs the publisher until `shutdown` turns true; the batch in hand is
/// published and committed first.
pub async fn run(
    config: PublisherConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectorError> {
    let log = &config.topics.events_log;
    let consumer: StreamConsumer =
        polling(&config.kafka).group_consumer(&config.group_id, DefaultConsumerContext)?;
    let producer = config.kafka.producer()?;
    let partitions = config.kafka.partition_count(log)?;
    let mut wanted = TopicPartitionList::new();
    for p in 0..partitions {
        wanted.add_partition(log, p);
    }
    let committed = consumer.committed_offsets(wanted, Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for e in committed.elements() {
        let offset = match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        };
        next.insert(e.partition(), offset);
        tpl.add_partition_offset(log, e.partition(), Offset::Offset(offset))?;
    }
    consumer.assign(&tpl)?;
    tracing::info!(topic = %log, partitions, "publisher started");
    let next = Arc::new(std::sync::Mutex::new(next));
    let positions = next.clone();
    let lag = tokio::spawn(report_lag(
        config.kafka.clone(),
        log.clone(),
        "publisher",
        move || {
            let now = positions.lock().expect("publisher offsets").clone();
            async move { Some(now) }
        },
    ));
    let _stop_lag = AbortOnDrop(lag);

    loop {
        let first = tokio::select! {
            _ = shutdown.changed() => break,
            m = consumer.recv() => m?.detach(),
        };
        let mut batch = vec![first];
        while batch.len() < PUBLISH_RECORDS_MAX {
            match consumer.recv().now_or_never() {
                Some(Ok(m)) => batch.push(m.detach()),
                Some(Err(e)) => return Err(e.into()),
                None => break,
            }
        }
        let records = public_records(&config.topics, &batch);
        produce_all(&producer, &records).await?;
        let mut done = TopicPartitionList::new();
        let mut reached = BTreeMap::new();
        for m in &batch {
            reached.insert(m.partition(), m.offset() + 1);
        }
        for (p, o) in &reached {
            done.add_partition_offset(log, *p, Offset::Offset(*o))?;
        }
        consumer.commit(&done, CommitMode::Async)?;
        next.lock().expect("publisher offsets").extend(reached);
        metrics::counter!("agentbank_publisher_events_total").increment(records.len() as u64);
        if *shutdown.borrow() {
            break;
        }
    }
    tracing::info!("publisher stopped");
    Ok(())
}

/// The publisher's consumer settings: the payment path's, but waiting
/// `PUBLISHER_FETCH_WAIT_MS` per fetch.
fn polling(kafka: &KafkaConfig) -> KafkaConfig {
    kafka.polling_every(PUBLISHER_FETCH_WAIT_MS)
}

/// One public record per event of `batch`, in order; an item whose framing
/// is broken is skipped and counted (the sink counts the same items).
fn public_records(topics: &Topics, batch: &[rdkafka::message::OwnedMessage]) -> Vec<Outgoing> {
    let mut out = vec![];
    for m in batch {
        for item in schemas::packed::unpack(m.payload().unwrap_or_default()) {
            match item.and_then(schemas::packed::split_keyed) {
                Ok((agent, event)) => out.push(Outgoing {
                    topic: topics.events.clone(),
                    key: agent.to_string(),
                    payload: Some(event.to_vec()),
                    partition: None,
                }),
                Err(e) => {
                    tracing::error!(partition = m.partition(), offset = m.offset(), error = %e,
                        "unframed events-log item skipped");
                    metrics::counter!("agentbank_publisher_undecodable_total").increment(1);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_publisher_polls_less_often_than_the_payment_path() {
        // The wait was once defined but not applied: the publisher polled
        // every 10 ms like the payment path, a sixth of a core of Tansu's.
        let kafka = KafkaConfig {
            bootstrap_servers: "broker:9092".into(),
            partitions: 4,
            replication_factor: 3,
            fetch_wait_ms: 10,
        };
        let publisher = polling(&kafka);
        assert_eq!(publisher.fetch_wait_ms, PUBLISHER_FETCH_WAIT_MS);
        assert!(publisher.fetch_wait_ms > kafka.fetch_wait_ms);
        assert_eq!(publisher.bootstrap_servers, kafka.bootstrap_servers);
        assert_eq!(publisher.partitions, kafka.partitions);
    }
}

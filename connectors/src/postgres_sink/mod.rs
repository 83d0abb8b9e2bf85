//! The Postgres sink: consumes the events log (`agentbank.events.log`, the
//! processors' events packed per batch) and writes the read model.
//!
//! Exactly-once into Postgres: each batch is one SQL transaction holding the
//! rows *and* the sink's next offsets, so after a crash it resumes from the
//! offsets it stored, never re-applying or skipping a batch. Events can also
//! appear twice on the topic (at-least-once upstream); rows are keyed by event
//! id (`ON CONFLICT DO NOTHING`) and agent rows only move forward by
//! `agent_version`, so a duplicate changes nothing. After each commit the sink
//! `NOTIFY`s its new offsets, which [`watermark`] turns into read-your-writes.

pub mod ledger;
mod portfolio;
pub mod revenue;
mod rows;
mod time;
pub mod watermark;

use std::collections::HashMap;
use std::time::Instant;

use futures::FutureExt;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio::sync::watch;

use schemas::Event;

use crate::kafka::{report_lag, AbortOnDrop, KafkaConfig};
use crate::ConnectorError;

pub use rows::Rows;

/// Most events written in one SQL transaction.
pub const SINK_BATCH_MAX: usize = 2_000;
/// The Postgres NOTIFY channel carrying `<topic>:<partition>:<next_offset>`.
pub const NOTIFY_CHANNEL: &str = "agentbank_sink";

pub struct SinkConfig {
    pub kafka: KafkaConfig,
    pub topic: String,
}

/// Runs the sink until `shutdown` turns true; finishes the batch in hand first.
pub async fn run(
    config: SinkConfig,
    pool: PgPool,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectorError> {
    let consumer = config.kafka.assigned_consumer()?;
    let partitions = config.kafka.partition_count(&config.topic)?;
    let stored = stored_offsets(&pool, &config.topic).await?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let offset = stored
            .get(&p)
            .map_or(Offset::Beginning, |o| Offset::Offset(*o));
        tpl.add_partition_offset(&config.topic, p, offset)?;
    }
    consumer.assign(&tpl)?;
    tracing::info!(topic = %config.topic, partitions, resumed = stored.len(), "sink started");
    let (lag_pool, lag_topic) = (pool.clone(), config.topic.clone());
    let lag = tokio::spawn(report_lag(
        config.kafka.clone(),
        config.topic.clone(),
        "sink",
        move || {
            let (pool, topic) = (lag_pool.clone(), lag_topic.clone());
            async move {
                let stored = stored_offsets(&pool, &topic).await.ok()?;
                Some(
                    (0..partitions)
                        .map(|p| (p, stored.get(&p).copied().unwrap_or(0)))
                        .collect(),
                )
            }
        },
    ));
    let _stop_lag = AbortOnDrop(lag);

    loop {
        let first = tokio::select! {
            _ = shutdown.changed() => break,
            m = consumer.recv() => m?,
        };
        let mut batch = vec![];
        push_events(&mut batch, &first);
        while batch.len() < SINK_BATCH_MAX {
            match consumer.recv().now_or_never() {
                Some(Ok(m)) => push_events(&mut batch, &m),
                Some(Err(e)) => return Err(e.into()),
                None => break,
            }
        }
        write_batch(&pool, &config.topic, batch).await?;
        if *shutdown.borrow() {
            break;
        }
    }
    tracing::info!("sink stopped");
    Ok(())
}

/// Follows the sink's commits: `wait` returns when the sink has committed a
/// batch or after `at_most`, whichever is first (plain sleeping when the
/// LISTEN connection could not be made: followers then poll).
pub struct CommitFollower(Option<sqlx::postgres::PgListener>);

impl CommitFollower {
    pub async fn new(pool: &PgPool) -> Self {
        let listener = match sqlx::postgres::PgListener::connect_with(pool).await {
            Ok(mut l) => l.listen(NOTIFY_CHANNEL).await.ok().map(|_| l),
            Err(_) => None,
        };
        CommitFollower(listener)
    }

    pub async fn wait(&mut self, at_most: std::time::Duration) {
        match self.0.as_mut() {
            Some(l) => {
                let _ = tokio::time::timeout(at_most, l.recv()).await;
            }
            None => tokio::time::sleep(at_most).await,
        }
    }
}

/// Aborts a background task when the sink stops.
/// The events of one record, each at the record's position (an undecodable
/// item as `None`: its offset still counts as passed). An events-log record
/// is packed, its items keyed; a record of the public topic is one event.
fn push_events(batch: &mut Vec<(i32, i64, Option<Event>)>, m: &impl Message) {
    let (p, o) = (m.partition(), m.offset());
    let payload = m.payload().unwrap_or_default();
    let items = if schemas::packed::is_packed(payload) {
        schemas::packed::decode_each(payload, |item| {
            Event::decode(schemas::packed::split_keyed(item)?.1)
        })
    } else {
        vec![Event::decode(payload)]
    };
    for item in items {
        match item {
            Ok(e) => batch.push((p, o, Some(e))),
            Err(e) => {
                // Not ours to fix here: count it, skip it, keep the partition moving.
                tracing::error!(partition = p, offset = o, error = %e, "undecodable event skipped");
                metrics::counter!("agentbank_sink_undecodable_total").increment(1);
                batch.push((p, o, None));
            }
        }
    }
}

async fn stored_offsets(pool: &PgPool, topic: &str) -> Result<HashMap<i32, i64>, ConnectorError> {
    let rows: Vec<(i32, i64)> =
        sqlx::query_as("SELECT partition, next_offset FROM sink_offsets WHERE topic = $1")
            .bind(topic)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}

/// Writes one batch and the offsets after it in one transaction, then notifies.
pub async fn write_batch(
    pool: &PgPool,
    topic: &str,
    batch: Vec<(i32, i64, Option<Event>)>,
) -> Result<(), ConnectorError> {
    let started = Instant::now();
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut rows = Rows::default();
    let count = batch.len();
    for (partition, offset, event) in batch {
        let n = next.entry(partition).or_insert(offset + 1);
        *n = (*n).max(offset + 1);
        if let Some(e) = event {
            rows.push(&e, partition, offset);
        }
    }
    let mut tx = pool.begin().await?;
    rows.write(&mut tx).await?;
    for (partition, next_offset) in &next {
        sqlx::query(
            "INSERT INTO sink_offsets (topic, partition, next_offset) VALUES ($1, $2, $3)
             ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset
             WHERE sink_offsets.next_offset < EXCLUDED.next_offset",
        )
        .bind(topic)
        .bind(partition)
        .bind(next_offset)
        .execute(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(NOTIFY_CHANNEL)
            .bind(format!("{topic}:{partition}:{next_offset}"))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    metrics::counter!("agentbank_sink_events_total").increment(count as u64);
    metrics::histogram!("agentbank_sink_batch_seconds").record(started.elapsed().as_secs_f64());
    Ok(())
}

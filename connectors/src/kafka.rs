//! Kafka clients. Every option that matters for correctness is written out
//! here rather than left to librdkafka's defaults, so reading this file tells
//! what the pipeline relies on from the broker. Only `bootstrap.servers`
//! ties us to a particular broker (Nisshi locally; Kafka/Redpanda/MSK in production).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;

use crate::ConnectorError;

/// How long a produce may stay undelivered before it fails (librdkafka retries
/// inside this window). Bounded so a dead broker surfaces as an error.
pub const MESSAGE_TIMEOUT_MS: u32 = 30_000;

/// Where the brokers are, and the topics' shape when we create them.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    /// Partitions of every topic we create. Commands and state must match.
    pub partitions: i32,
    pub replication_factor: i32,
    /// `fetch.wait.max.ms` of the consumers on the payment path (commands,
    /// events, replies). The local broker (Nisshi 0.8) answers a fetch as
    /// soon as a look finds data and, while there is none, looks again after
    /// half the time left (about log2 of the wait in ms looks per wait), so
    /// it bounds a hop's latency and sets the polling that costs the broker
    /// CPU when idle ([`DEFAULT_FETCH_WAIT_MS`]). Tansu 0.6, its
    /// predecessor, held every fetch the whole wait, data or not.
    pub fetch_wait_ms: u32,
}

/// Measured on the 2-core box (load-tests/README.md): 10 ms.
pub const DEFAULT_FETCH_WAIT_MS: u32 = 10;
/// The revenue machines' commands consumers: 25 ms halves the processor's
/// idle cost to the broker (load-tests/README.md) for ~20 ms more per
/// revenue answer.
pub const DEFAULT_REVENUE_FETCH_WAIT_MS: u32 = 25;

impl KafkaConfig {
    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("socket.keepalive.enable", "true")
            .set("log_level", "4");
        // Operators can turn on librdkafka's debug contexts (e.g. "cgrp").
        if let Ok(contexts) = std::env::var("AGENTBANK_KAFKA_DEBUG") {
            c.set("debug", contexts).set("log_level", "7");
        }
        c
    }

    /// An idempotent producer: no duplicates from librdkafka's own retries,
    /// and per-partition order kept (the checkpoint protocol relies on it).
    pub fn producer(&self) -> Result<FutureProducer, ConnectorError> {
        Ok(self
            .base()
            // Java clients' partitioner, so any client keyed by agent id lands
            // on the same partition as ours.
            .set("partitioner", "murmur2_random")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("message.timeout.ms", MESSAGE_TIMEOUT_MS.to_string())
            // A small linger batches the outputs of one processor batch into
            // few produce requests without adding visible latency.
            .set("linger.ms", "1")
            .set("compression.type", "none")
            .create()?)
    }

    /// A consumer in group `group_id` that never commits on its own: the
    /// processor commits only offsets already backed by a checkpoint.
    pub fn group_consumer<C: ConsumerContext + 'static>(
        &self,
        group_id: &str,
        context: C,
    ) -> Result<StreamConsumer<C>, ConnectorError> {
        Ok(self
            .base()
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // No broker transactions in the pipeline (the design needs none), so
            // read_committed would buy nothing; say so explicitly.
            .set("isolation.level", "read_uncommitted")
            .set("partition.assignment.strategy", "range")
            // A killed member holds its partitions until its session expires
            // (a broker may evict lazily, on the next group request): keep it short.
            // librdkafka heartbeats from its own thread, so a busy loop is safe.
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .set("fetch.wait.max.ms", self.fetch_wait_ms.to_string())
            .create_with_context(context)?)
    }

    /// Settings of a consumer outside any group, positioned by the caller
    /// with `assign`; its offsets live elsewhere (Postgres, checkpoints).
    fn ungrouped(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("group.id", "agentbank-unused")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_uncommitted")
            .set("fetch.wait.max.ms", self.fetch_wait_ms.to_string());
        c
    }

    /// An async consumer outside any group (the sink, the gateway's replies).
    pub fn assigned_consumer(&self) -> Result<StreamConsumer, ConnectorError> {
        Ok(self.ungrouped().create()?)
    }

    /// An async consumer outside any group that polls slowly: for watching
    /// a topic where a late answer is fine (the processor's fence: safety
    /// comes from epochs, not from noticing a claim quickly; settlement
    /// requests, which wait for blocks anyway). Measured on Tansu 0.6: idle
    /// polling at 10 ms by agentbank's consumers costs the broker 0.3–0.4 of
    /// a core; a slow watcher costs next to nothing.
    pub fn watcher(&self) -> Result<StreamConsumer, ConnectorError> {
        self.watcher_every(500)
    }

    /// An ungrouped consumer polling every `wait_ms` when idle.
    pub fn watcher_every(&self, wait_ms: u32) -> Result<StreamConsumer, ConnectorError> {
        self.polling_every(wait_ms).assigned_consumer()
    }

    /// The same settings, with consumers that wait `wait_ms` per fetch: the
    /// one way a role off the payment path polls less often (each idle poll
    /// costs the broker storage queries).
    pub fn polling_every(&self, wait_ms: u32) -> KafkaConfig {
        KafkaConfig {
            fetch_wait_ms: wait_ms,
            ..self.clone()
        }
    }

    /// A blocking consumer for reading a partition start to end (restores).
    pub fn reader(&self) -> Result<BaseConsumer, ConnectorError> {
        Ok(self.ungrouped().create()?)
    }

    /// Creates the topics that do not exist yet with the configured partition
    /// count; existing ones are left as they are.
    pub async fn ensure_topics(&self, topics: &[(&str, bool)]) -> Result<(), ConnectorError> {
        self.ensure_topics_with(topics, self.partitions).await
    }

    /// Every topic of a deployment: `topics.all()` with the configured
    /// partition count and `topics.sized()` with their own.
    pub async fn ensure_deployment_topics(
        &self,
        topics: &schemas::topics::Topics,
    ) -> Result<(), ConnectorError> {
        self.ensure_topics(&topics.all()).await?;
        for (name, partitions) in topics.sized() {
            self.ensure_topics_with(&[(name, false)], partitions)
                .await?;
        }
        Ok(())
    }

    /// Creates the topics that do not exist yet with `partitions` each.
    pub async fn ensure_topics_with(
        &self,
        topics: &[(&str, bool)],
        partitions: i32,
    ) -> Result<(), ConnectorError> {
        let admin: AdminClient<DefaultClientContext> = self.base().create()?;
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|(name, compacted)| {
                let t = NewTopic::new(
                    name,
                    partitions,
                    TopicReplication::Fixed(self.replication_factor),
                );
                if *compacted {
                    t.set("cleanup.policy", "compact")
                } else {
                    t
                }
            })
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for result in admin.create_topics(&new, &opts).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(ConnectorError::Config(format!("creating {topic}: {code}")))
                }
            }
        }
        Ok(())
    }

    /// Partition count of `topic` as the broker reports it.
    pub fn partition_count(&self, topic: &str) -> Result<i32, ConnectorError> {
        let reader = self.reader()?;
        let md = reader.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| ConnectorError::Config(format!("topic {topic} not found")))?;
        if t.error().is_some() || t.partitions().is_empty() {
            return Err(ConnectorError::Config(format!("topic {topic} not found")));
        }
        Ok(t.partitions().len() as i32)
    }
}

/// One record to produce. `payload: None` is a tombstone.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub topic: String,
    pub key: String,
    pub payload: Option<Vec<u8>>,
    /// Explicit partition; `None` lets the partitioner hash the key.
    pub partition: Option<i32>,
}

impl Outgoing {
    /// `items` packed ([`schemas::packed`]) into as few records as its
    /// bounds allow, in order, all for `partition` of `topic`. `key` should
    /// hash to `partition`, so the record lands where its items would.
    pub fn packed<T: AsRef<[u8]>>(
        topic: &str,
        key: &str,
        partition: i32,
        items: &[T],
    ) -> Vec<Outgoing> {
        schemas::packed::pack(items)
            .into_iter()
            .map(|payload| Outgoing {
                topic: topic.to_string(),
                key: key.to_string(),
                payload: Some(payload),
                partition: Some(partition),
            })
            .collect()
    }
}

/// Produces every record, then waits for all acknowledgements; returns each
/// record's (partition, offset) in input order. Enqueueing first and awaiting
/// after lets librdkafka batch them into few requests.
pub async fn produce_all(
    producer: &rdkafka::producer::FutureProducer,
    records: &[Outgoing],
) -> Result<Vec<(i32, i64)>, ConnectorError> {
    use rdkafka::producer::FutureRecord;
    let mut pending = Vec::with_capacity(records.len());
    for r in records {
        loop {
            let mut fr: FutureRecord<'_, String, Vec<u8>> = FutureRecord::to(&r.topic).key(&r.key);
            if let Some(p) = &r.payload {
                fr = fr.payload(p);
            }
            if let Some(p) = r.partition {
                fr = fr.partition(p);
            }
            match producer.send_result(fr) {
                Ok(f) => {
                    pending.push(f);
                    break;
                }
                Err((
                    rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                    _,
                )) => {
                    // Bounded local queue is full: let deliveries drain, then retry.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
    let mut positions = Vec::with_capacity(pending.len());
    for f in futures::future::join_all(pending).await {
        match f {
            Ok(Ok(delivery)) => positions.push((delivery.partition, delivery.offset)),
            Ok(Err((e, _))) => return Err(e.into()),
            Err(_) => return Err(ConnectorError::Config("producer dropped a delivery".into())),
        }
    }
    Ok(positions)
}

/// Aborts a background task when dropped (a role's lag reporter ends with
/// the role).
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Every 5 s: `agentbank_consumer_lag{consumer, partition}` = `topic`'s high
/// watermark minus the next offset `consumer` has done, as `next_offsets`
/// reports it (per partition; `None` skips a round).
pub async fn report_lag<F, Fut>(
    kafka: KafkaConfig,
    topic: String,
    consumer: &'static str,
    mut next_offsets: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<std::collections::BTreeMap<i32, i64>>>,
{
    let Ok(reader) = kafka.reader() else { return };
    let reader = std::sync::Arc::new(reader);
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let Some(next) = next_offsets().await else {
            continue;
        };
        let (r, t) = (reader.clone(), topic.clone());
        let lags = tokio::task::spawn_blocking(move || {
            next.into_iter()
                .map(|(p, n)| {
                    r.fetch_watermarks(&t, p, Duration::from_secs(5))
                        .map(|w| (p, w.1 - n))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await;
        let Ok(Ok(lags)) = lags else { continue };
        for (p, lag) in lags {
            metrics::gauge!("agentbank_consumer_lag", "consumer" => consumer, "partition" => p.to_string())
                .set(lag.max(0) as f64);
        }
    }
}

//! Writes: a command goes to its machine's commands topic
//! (`agentbank.commands` for the agents) on its key's partition,
//! and the handler waits for the processor's reply (matched by correlation id
//! on `agentbank.replies`), then for the sink to pass the reply's events, so
//! the client's next read sees its write.
//!
//! Group commit: one [`Batcher`] per commands partition keeps at most one
//! produce in flight. An idle gateway sends a command at once (no linger);
//! under load, commands arriving while a produce is in flight wait for it and
//! then leave together, packed into one record ([`schemas::packed`]) — the
//! broker's cost is per record and per request, not per byte.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};

use connectors::kafka::{produce_all, KafkaConfig, Outgoing};
use connectors::postgres_sink::watermark::Watermarks;
use schemas::reply::{Outcome, Reply};
use schemas::topics::{MachineKind, Topics};
use schemas::Command;

use axum::http::HeaderMap;
use schemas::ids;
use schemas::reply::RejectCode;
use schemas::CommandPayload;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ApiError;

/// Longest `Idempotency-Key` accepted.
pub const IDEMPOTENCY_KEY_CHARS_MAX: usize = 255;

/// Most writes waiting for a reply at once per gateway; beyond it, 503.
pub const IN_FLIGHT_MAX: usize = 10_000;
/// Most commands one produce carries (they may span several records).
pub const GROUP_MAX: usize = 2_000;

/// A command for a batcher, with whom to tell once it is durable.
type Queued = (Vec<u8>, String, oneshot::Sender<bool>);

/// Sends one commands partition's commands, packed, one produce at a time.
struct Batcher {
    producer: FutureProducer,
    topic: String,
    partition: i32,
    queue: mpsc::UnboundedReceiver<Queued>,
}

impl Batcher {
    async fn run(mut self) {
        while let Some(first) = self.queue.recv().await {
            let mut group = vec![first];
            while group.len() < GROUP_MAX {
                match self.queue.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            let items: Vec<&[u8]> = group.iter().map(|(bytes, _, _)| bytes.as_slice()).collect();
            // Keyed by the first command's key: it hashes to this partition.
            let records = Outgoing::packed(&self.topic, &group[0].1, self.partition, &items);
            metrics::histogram!("agentbank_gateway_commands_per_produce")
                .record(group.len() as f64);
            let ok = match produce_all(&self.producer, &records).await {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(partition = self.partition, error = %e, "command produce failed");
                    false
                }
            };
            for (_, _, done) in group {
                let _ = done.send(ok);
            }
        }
    }
}

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<Reply>>>>;

/// Sends commands and routes their replies back to the waiting request.
#[derive(Clone)]
pub struct CommandBus {
    /// Per machine, one queue per partition of its commands topic (index =
    /// partition).
    batchers: Arc<HashMap<MachineKind, Vec<mpsc::UnboundedSender<Queued>>>>,
    waiters: Waiters,
    watermarks: Watermarks,
    reply_timeout: Duration,
    /// The one replies partition this gateway reads.
    reply_partition: i32,
}

impl CommandBus {
    /// Picks one replies partition, positions a reader at its current end
    /// (before any command is sent, so no reply is missed), then starts it.
    pub fn start(
        kafka: &KafkaConfig,
        topics: Topics,
        watermarks: Watermarks,
        reply_timeout: Duration,
    ) -> Result<Self, ApiError> {
        let consumer = kafka.assigned_consumer()?;
        let partitions = kafka.partition_count(&topics.replies)?;
        // Spread gateways over partitions; two sharing one only read more.
        let reply_partition = (uuid::Uuid::new_v4().as_u128() % partitions.max(1) as u128) as i32;
        let mut tpl = TopicPartitionList::new();
        let (_, high) = consumer
            .fetch_watermarks(&topics.replies, reply_partition, Duration::from_secs(10))
            .map_err(|e| ApiError::Unavailable(format!("broker: {e}")))?;
        tpl.add_partition_offset(&topics.replies, reply_partition, Offset::Offset(high))
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        consumer
            .assign(&tpl)
            .map_err(|e| ApiError::Unavailable(format!("broker: {e}")))?;
        let waiters: Waiters = Arc::default();
        let routed = waiters.clone();
        tokio::spawn(async move {
            loop {
                match consumer.recv().await {
                    Ok(m) => {
                        // A processor packs a batch's replies for one partition.
                        for reply in Reply::decode_all(m.payload().unwrap_or_default()) {
                            match reply {
                                Ok(reply) => {
                                    let waiter = routed
                                        .lock()
                                        .expect("waiters")
                                        .remove(&reply.correlation_id);
                                    if let Some(tx) = waiter {
                                        let _ = tx.send(reply);
                                    }
                                }
                                Err(e) => tracing::warn!(error = %e, "undecodable reply"),
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reply consumer error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        let producer = kafka.producer()?;
        let mut batchers = HashMap::new();
        for machine in [
            MachineKind::Agents,
            MachineKind::Opportunities,
            MachineKind::Pricing,
            MachineKind::Revenue,
            MachineKind::Portfolio,
        ] {
            let topic = topics.commands_of(machine).to_string();
            let partitions = kafka.partition_count(&topic)?;
            let queues = (0..partitions)
                .map(|partition| {
                    let (tx, queue) = mpsc::unbounded_channel();
                    let batcher = Batcher {
                        producer: producer.clone(),
                        topic: topic.clone(),
                        partition,
                        queue,
                    };
                    tokio::spawn(batcher.run());
                    tx
                })
                .collect();
            batchers.insert(machine, queues);
        }
        Ok(CommandBus {
            batchers: Arc::new(batchers),
            waiters,
            watermarks,
            reply_timeout,
            reply_partition,
        })
    }

    /// Sends `command` and returns the processor's outcome once the sink has
    /// written its events. 503 when no reply comes within the timeout.
    pub async fn execute(&self, mut command: Command) -> Result<Outcome, ApiError> {
        let started = Instant::now();
        let correlation_id = schemas::reply::correlation_id(self.reply_partition);
        command.correlation_id = Some(correlation_id.clone());
        // Encoded before a waiter is registered: an error leaves none behind.
        let bytes = command
            .encode_internal()
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        {
            let mut waiters = self.waiters.lock().expect("waiters");
            if waiters.len() >= IN_FLIGHT_MAX {
                return Err(ApiError::Unavailable("Too many requests in flight".into()));
            }
            waiters.insert(correlation_id.clone(), tx);
        }
        let key = command.agent_id.to_string();
        let queues = &self.batchers[&command.payload.machine()];
        let partition = schemas::topics::partition_for(key.as_bytes(), queues.len() as i32);
        let (done, durable) = oneshot::channel();
        let queued = queues[partition as usize].send((bytes, key, done)).is_ok();
        let sent = tokio::time::timeout(self.reply_timeout, durable).await;
        if !queued || !matches!(sent, Ok(Ok(true))) {
            self.waiters
                .lock()
                .expect("waiters")
                .remove(&correlation_id);
            return Err(ApiError::Unavailable(
                "The command could not be queued; retry".into(),
            ));
        }
        let reply = match tokio::time::timeout(self.reply_timeout, rx).await {
            Ok(Ok(reply)) => reply,
            _ => {
                self.waiters
                    .lock()
                    .expect("waiters")
                    .remove(&correlation_id);
                metrics::counter!("agentbank_gateway_reply_timeouts_total").increment(1);
                return Err(ApiError::Unavailable(
                    "The request was accepted but not confirmed in time; retry with the same Idempotency-Key".into(),
                ));
            }
        };
        let remaining = self.reply_timeout.saturating_sub(started.elapsed());
        if !reply.wait_for.is_empty() && !self.watermarks.wait_for(&reply.wait_for, remaining).await
        {
            // The write is durable; only the read model lags. Answer anyway.
            metrics::counter!("agentbank_gateway_sink_lag_timeouts_total").increment(1);
            tracing::warn!(command = %reply.command_id, "sink did not catch up before the reply timeout");
        }
        metrics::histogram!("agentbank_gateway_command_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(reply.outcome)
    }
}

/// The command id: derived from `Idempotency-Key` when given (a retry is then
/// the same command and applies once), random otherwise.
pub fn command_id(headers: &HeaderMap, user_id: Uuid, route: &str) -> Result<Uuid, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(Uuid::new_v4()),
        Some(v) => {
            let key = v
                .to_str()
                .map_err(|_| ApiError::BadRequest("Idempotency-Key must be ASCII".into()))?;
            if key.is_empty() || key.len() > IDEMPOTENCY_KEY_CHARS_MAX {
                return Err(ApiError::BadRequest(format!(
                    "Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_CHARS_MAX} characters"
                )));
            }
            Ok(ids::from_idempotency_key(user_id, route, key))
        }
    }
}

/// A command from `caller`, stamped now (the processors' clock).
pub fn command(id: Uuid, agent_id: Uuid, caller: &Caller, payload: CommandPayload) -> Command {
    Command {
        id,
        agent_id,
        user_id: caller.user_id,
        correlation_id: None,
        timestamp_ms: chrono::Utc::now().timestamp_millis(),
        payload,
    }
}

pub fn rejected(code: RejectCode, message: String) -> ApiError {
    match code {
        RejectCode::NotFound => ApiError::NotFound(message),
        RejectCode::Invalid => ApiError::BadRequest(message),
        RejectCode::Conflict => ApiError::Conflict(message),
    }
}

/// The error for an outcome the route did not expect: a rejection as such,
/// anything else is a bug (500, logged).
pub fn unexpected(outcome: Outcome) -> ApiError {
    match outcome {
        Outcome::Rejected { code, message } => rejected(code, message),
        other => ApiError::Internal(format!("unexpected processor answer {other:?}")),
    }
}

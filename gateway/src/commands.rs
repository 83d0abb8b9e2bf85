//! Writes: a command goes to `agentbank.commands` keyed by its agent, and the
//! handler waits for the processor's reply (matched by correlation id on
//! `agentbank.replies`), then for the sink to pass the reply's events, so the
//! client's next read sees its write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;

use connectors::kafka::{produce_all, KafkaConfig, Outgoing};
use connectors::postgres_sink::watermark::Watermarks;
use schemas::reply::{Outcome, Reply};
use schemas::topics::Topics;
use schemas::Command;

use crate::error::ApiError;

/// Most writes waiting for a reply at once per gateway; beyond it, 503.
pub const IN_FLIGHT_MAX: usize = 10_000;

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<Reply>>>>;

/// Sends commands and routes their replies back to the waiting request.
#[derive(Clone)]
pub struct CommandBus {
    producer: FutureProducer,
    topics: Topics,
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
                    Ok(m) => match Reply::decode(m.payload().unwrap_or_default()) {
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
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "reply consumer error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(CommandBus {
            producer: kafka.producer()?,
            topics,
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
        let (tx, rx) = oneshot::channel();
        {
            let mut waiters = self.waiters.lock().expect("waiters");
            if waiters.len() >= IN_FLIGHT_MAX {
                return Err(ApiError::Unavailable("Too many requests in flight".into()));
            }
            waiters.insert(correlation_id.clone(), tx);
        }
        let record = Outgoing {
            topic: self.topics.commands.clone(),
            key: command.agent_id.to_string(),
            payload: Some(
                command
                    .encode()
                    .map_err(|e| ApiError::Internal(e.to_string()))?,
            ),
            partition: None,
        };
        let sent =
            tokio::time::timeout(self.reply_timeout, produce_all(&self.producer, &[record])).await;
        if !matches!(sent, Ok(Ok(_))) {
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

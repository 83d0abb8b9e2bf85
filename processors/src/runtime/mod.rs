//! The runtime: drives the agent state machine from the commands topic with
//! exactly-once *effects* and no broker transactions (see [`checkpoint`]).
//!
//! One loop per processor instance, per batch of up to [`BATCH_MAX`] commands:
//! 1. apply each command to its agent (pure), collecting events and replies;
//! 2. produce the events and wait for their acks (their offsets let the
//!    gateway wait for the sink: read-your-writes);
//! 3. produce the replies, the changed agents' checkpoint records and the
//!    *previous* batch's partition markers (its records were acknowledged in
//!    that batch's step 3, so its markers are now safe), wait; commit the
//!    group offsets the markers cover. When idle, pending markers are flushed.
//!
//! Two produce rounds per batch instead of three: measured, the third round
//! cost a third of the batch time on Tansu.
//!
//! A crash anywhere repeats at most the unfinished batch, with the same ids.
//! Rebalance callbacks only record what changed; the loop acts on them between
//! batches, so a partition is never handed over mid-batch.

pub mod checkpoint;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;
use uuid::Uuid;

use connectors::kafka::{produce_all, KafkaConfig, Outgoing};
use schemas::reply::Reply;
use schemas::topics::Topics;
use schemas::{ids, Command, CommandPayload};

use crate::agents::{self, AgentState};
use crate::ProcessorError;
use checkpoint::{AgentRecord, Epoch, Marker};

/// Most commands applied per batch (one produce round and one checkpoint).
pub const BATCH_MAX: usize = 1_000;
/// How long a restore may take to read one changelog partition.
pub const RESTORE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the loop waits for input before flushing markers and checking
/// for rebalances.
pub const IDLE_TICK: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    pub kafka: KafkaConfig,
    pub topics: Topics,
    pub group_id: String,
    pub assignment: Assignment,
    /// The savings rate history interest accrues by.
    pub interest_rates: schemas::interest::RateSchedule,
}

/// How an instance learns which partitions it owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignment {
    /// Instance `index` of `count` owns the partitions `p % count == index`
    /// and resumes them at once after a restart (a StatefulSet's ordinal).
    /// The default: Tansu 0.6's group coordinator can keep a killed member as
    /// leader forever during churn (see README), so we do not depend on it.
    Static { index: u32, count: u32 },
    /// The consumer group assigns and rebalances partitions (Apache Kafka,
    /// Redpanda). Handover happens between batches; checkpoints are fenced.
    Group,
}

/// Liveness a co-located gateway can report in `/health`.
#[derive(Debug, Default)]
pub struct ProcessorStatus {
    pub batches: AtomicU64,
    pub commands: AtomicU64,
    pub partitions: AtomicU64,
}

/// Publishes how many partitions this instance owns (for `/health` and the
/// `agentbank_processor_partitions_owned` gauge: 0 on every instance means
/// nobody is applying commands).
fn report_owned(status: &ProcessorStatus, owned: usize) {
    status.partitions.store(owned as u64, Ordering::Relaxed);
    metrics::gauge!("agentbank_processor_partitions_owned").set(owned as f64);
}

/// What the rebalance callbacks saw since the loop last looked.
#[derive(Default)]
struct RebalanceLog {
    assigned: Vec<i32>,
    revoked: Vec<i32>,
}

struct Context {
    log: Mutex<RebalanceLog>,
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut log = self.log.lock().expect("rebalance log");
        match rebalance {
            Rebalance::Assign(tpl) => log
                .assigned
                .extend(tpl.elements().iter().map(|e| e.partition())),
            Rebalance::Revoke(tpl) => log
                .revoked
                .extend(tpl.elements().iter().map(|e| e.partition())),
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

/// Markers (partition → next offset) whose records are acknowledged but which
/// are not written yet; they ride along with the next batch's checkpoint.
type PendingMarkers = BTreeMap<i32, i64>;

/// One owned partition: its agents and where its input continues.
struct Partition {
    epoch: Epoch,
    next_offset: i64,
    agents: HashMap<Uuid, (Option<AgentState>, i64)>,
    /// The first message after restore has been checked against next_offset.
    positioned: bool,
}

/// Runs a processor until `shutdown` turns true; the batch in hand completes.
pub async fn run(
    config: ProcessorConfig,
    status: Arc<ProcessorStatus>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ProcessorError> {
    let context = Context {
        log: Mutex::new(RebalanceLog::default()),
    };
    let consumer = config.kafka.group_consumer(&config.group_id, context)?;
    let producer = config.kafka.producer()?;
    let mut owned: BTreeMap<i32, Partition> = BTreeMap::new();
    let mut pending = PendingMarkers::new();
    // Tails our changelog partitions for claims by a newer owner (see `step_down`).
    let fence = config.kafka.assigned_consumer()?;
    match config.assignment {
        Assignment::Group => consumer.subscribe(&[&config.topics.commands])?,
        Assignment::Static { index, count } => {
            let partitions = config.kafka.partition_count(&config.topics.commands)?;
            let mut tpl = TopicPartitionList::new();
            for p in (0..partitions).filter(|p| *p as u32 % count.max(1) == index) {
                let mut partition = claim(&config, &producer, p).await?;
                partition.positioned = true; // assigned at the checkpoint's offset
                tracing::info!(
                    partition = p,
                    epoch = partition.epoch.number,
                    agents = partition.agents.len(),
                    next_offset = partition.next_offset,
                    "partition restored"
                );
                tpl.add_partition_offset(
                    &config.topics.commands,
                    p,
                    Offset::Offset(partition.next_offset),
                )?;
                owned.insert(p, partition);
            }
            consumer.assign(&tpl)?;
            watch_claims(&config, &fence, &owned)?;
            report_owned(&status, owned.len());
        }
    }
    tracing::info!(group = %config.group_id, topic = %config.topics.commands, assignment = ?config.assignment,
        partitions = owned.len(), "processor started");

    loop {
        let first = tokio::select! {
            _ = shutdown.changed() => break,
            m = consumer.recv() => m.map(|m| m.detach()),
            // When idle: flush pending markers, act on rebalances.
            _ = tokio::time::sleep(IDLE_TICK) => {
                flush_markers(&config, &consumer, &producer, &owned, &mut pending).await?;
                sync_assignment(&config, &consumer, &fence, &producer, &mut owned, &mut pending, &status).await?;
                step_down(&config, &consumer, &fence, &mut owned, &mut pending, &status)?;
                continue;
            }
        }?;
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX {
            match consumer.recv().now_or_never() {
                Some(Ok(m)) => batch.push(m.detach()),
                Some(Err(e)) => return Err(e.into()),
                None => break,
            }
        }
        sync_assignment(
            &config,
            &consumer,
            &fence,
            &producer,
            &mut owned,
            &mut pending,
            &status,
        )
        .await?;
        step_down(
            &config,
            &consumer,
            &fence,
            &mut owned,
            &mut pending,
            &status,
        )?;
        process_batch(
            &config,
            &consumer,
            &producer,
            &mut owned,
            &mut pending,
            batch,
            &status,
        )
        .await?;
        if *shutdown.borrow() {
            break;
        }
    }
    flush_markers(&config, &consumer, &producer, &owned, &mut pending).await?;
    tracing::info!("processor stopped");
    Ok(())
}

/// Drops revoked partitions and restores newly assigned ones.
async fn sync_assignment(
    config: &ProcessorConfig,
    consumer: &rdkafka::consumer::StreamConsumer<Context>,
    fence: &rdkafka::consumer::StreamConsumer,
    producer: &FutureProducer,
    owned: &mut BTreeMap<i32, Partition>,
    pending: &mut PendingMarkers,
    status: &ProcessorStatus,
) -> Result<(), ProcessorError> {
    let (assigned, revoked) = {
        let mut log = consumer.context().log.lock().expect("rebalance log");
        (
            std::mem::take(&mut log.assigned),
            std::mem::take(&mut log.revoked),
        )
    };
    if !revoked.is_empty() {
        // Hand over with the markers written: the next owner replays less.
        flush_markers(config, consumer, producer, owned, pending).await?;
    }
    let changed = !revoked.is_empty() || !assigned.is_empty();
    for p in revoked {
        if owned.remove(&p).is_some() {
            tracing::info!(partition = p, "partition revoked");
        }
    }
    for p in assigned {
        let started = Instant::now();
        let partition = claim(config, producer, p).await?;
        tracing::info!(
            partition = p,
            epoch = partition.epoch.number,
            agents = partition.agents.len(),
            next_offset = partition.next_offset,
            ms = started.elapsed().as_millis() as u64,
            "partition restored"
        );
        metrics::histogram!("agentbank_processor_restore_seconds")
            .record(started.elapsed().as_secs_f64());
        owned.insert(p, partition);
    }
    if changed {
        watch_claims(config, fence, owned)?;
    }
    report_owned(status, owned.len());
    Ok(())
}

/// Points the fence reader at the current end of our changelog partitions:
/// anything written there from now on by someone else is a newer claim or a
/// stale owner's record.
fn watch_claims(
    config: &ProcessorConfig,
    fence: &rdkafka::consumer::StreamConsumer,
    owned: &BTreeMap<i32, Partition>,
) -> Result<(), ProcessorError> {
    let mut tpl = TopicPartitionList::new();
    for p in owned.keys() {
        let (_, high) =
            fence.fetch_watermarks(&config.topics.state, *p, Duration::from_secs(10))?;
        tpl.add_partition_offset(&config.topics.state, *p, Offset::Offset(high))?;
    }
    fence.assign(&tpl)?;
    Ok(())
}

/// Gives up every partition a newer owner has claimed: a zombie (a paused or
/// partitioned instance whose successor already started) stops applying
/// within one idle tick. Its last outputs were identical to the successor's
/// (determinism), and its records never replace the successor's (epochs).
fn step_down(
    config: &ProcessorConfig,
    consumer: &rdkafka::consumer::StreamConsumer<Context>,
    fence: &rdkafka::consumer::StreamConsumer,
    owned: &mut BTreeMap<i32, Partition>,
    pending: &mut PendingMarkers,
    status: &ProcessorStatus,
) -> Result<(), ProcessorError> {
    let mut lost = vec![];
    while let Some(Ok(m)) = fence.recv().now_or_never() {
        let key = String::from_utf8_lossy(m.key().unwrap_or_default());
        if let (Some(claim), Some(part)) =
            (checkpoint::marker_owner(&key), owned.get(&m.partition()))
        {
            if part.epoch.superseded_by(claim) {
                lost.push(m.partition());
            }
        }
    }
    if lost.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for p in &lost {
        if owned.remove(p).is_some() {
            tracing::warn!(
                partition = p,
                "a newer owner claimed this partition; stepping down"
            );
            metrics::counter!("agentbank_processor_step_downs_total").increment(1);
            tpl.add_partition(&config.topics.commands, *p);
        }
        pending.remove(p);
    }
    consumer.pause(&tpl)?;
    report_owned(status, owned.len());
    Ok(())
}

/// Reads partition `p` of the changelog and takes a new epoch, announced by a
/// claim marker (which the previous owner's fence watcher sees).
///
/// Nothing is deleted: an earlier owner may still be alive and writing under
/// its own keys, and a tombstone landing after such a write would delete a
/// record that one of its markers vouches for — restore would then trust a
/// marker whose backing record is gone and skip commands (a lost update, seen
/// in `tests/crash_recovery.rs`). Safe collection of old epochs' keys needs
/// the old owner to declare it has stopped; until then the changelog keeps one
/// record per agent per epoch that touched it.
async fn claim(
    config: &ProcessorConfig,
    producer: &FutureProducer,
    p: i32,
) -> Result<Partition, ProcessorError> {
    let records = read_partition(config.kafka.clone(), config.topics.state.clone(), p).await?;
    let restored = checkpoint::restore(records)?;
    let epoch = Epoch {
        number: restored.max_epoch + 1,
        nonce: rand_nonce(),
    };
    produce_all(
        producer,
        &[marker_record(
            &config.topics,
            p,
            epoch,
            restored.next_offset,
        )],
    )
    .await?;
    Ok(Partition {
        epoch,
        next_offset: restored.next_offset,
        agents: restored
            .agents
            .into_iter()
            .map(|(id, (s, o))| (id, (Some(s), o)))
            .collect(),
        positioned: false,
    })
}

fn rand_nonce() -> u32 {
    // Uniqueness, not secrecy: the low bits of a v4 UUID are random enough.
    Uuid::new_v4().as_u128() as u32
}

/// Reads one changelog partition from its start to its current end.
async fn read_partition(
    kafka: KafkaConfig,
    topic: String,
    p: i32,
) -> Result<Vec<(String, Option<Vec<u8>>)>, ProcessorError> {
    tokio::task::spawn_blocking(move || {
        let reader = kafka.reader()?;
        let (low, high) = reader.fetch_watermarks(&topic, p, Duration::from_secs(10))?;
        let mut records = Vec::new();
        if high <= low {
            return Ok(records);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
        reader.assign(&tpl)?;
        let deadline = Instant::now() + RESTORE_TIMEOUT;
        loop {
            if Instant::now() > deadline {
                return Err(ProcessorError::Checkpoint(format!(
                    "restore of {topic}/{p} timed out"
                )));
            }
            let Some(m) = reader.poll(Duration::from_millis(100)) else {
                continue;
            };
            let m = m?;
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            records.push((key, m.payload().map(<[u8]>::to_vec)));
            if m.offset() + 1 >= high {
                return Ok(records);
            }
        }
    })
    .await
    .map_err(|e| ProcessorError::Checkpoint(format!("restore task: {e}")))?
}

fn agent_record(
    topics: &Topics,
    p: i32,
    epoch: Epoch,
    state: &AgentState,
    last_offset: i64,
) -> Outgoing {
    let record = AgentRecord {
        epoch: epoch.number,
        last_offset,
        state: state.clone(),
    };
    Outgoing {
        topic: topics.state.clone(),
        key: epoch.agent_key(state.view.agent_id),
        payload: Some(serde_json::to_vec(&record).expect("state serializes")),
        partition: Some(p),
    }
}

fn marker_record(topics: &Topics, p: i32, epoch: Epoch, next_offset: i64) -> Outgoing {
    let marker = Marker {
        epoch: epoch.number,
        next_offset,
    };
    Outgoing {
        topic: topics.state.clone(),
        key: epoch.marker_key(),
        payload: Some(serde_json::to_vec(&marker).expect("marker serializes")),
        partition: Some(p),
    }
}

fn marker_records(
    topics: &Topics,
    owned: &BTreeMap<i32, Partition>,
    pending: &PendingMarkers,
) -> Vec<Outgoing> {
    pending
        .iter()
        .filter_map(|(p, next)| {
            owned
                .get(p)
                .map(|part| marker_record(topics, *p, part.epoch, *next))
        })
        .collect()
}

/// Tells the group how far the markers reach (a hint for where to fetch from;
/// the checkpoint, not this, is what a restart trusts).
fn commit_offsets(
    config: &ProcessorConfig,
    consumer: &rdkafka::consumer::StreamConsumer<Context>,
    markers: &PendingMarkers,
) -> Result<(), ProcessorError> {
    if markers.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for (p, next) in markers {
        tpl.add_partition_offset(&config.topics.commands, *p, Offset::Offset(*next))?;
    }
    if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
        tracing::debug!(error = %e, "offset commit failed; the checkpoint still holds");
    }
    Ok(())
}

/// Writes the pending markers now (idle, shutdown, handover).
async fn flush_markers(
    config: &ProcessorConfig,
    consumer: &rdkafka::consumer::StreamConsumer<Context>,
    producer: &FutureProducer,
    owned: &BTreeMap<i32, Partition>,
    pending: &mut PendingMarkers,
) -> Result<(), ProcessorError> {
    if pending.is_empty() {
        return Ok(());
    }
    produce_all(producer, &marker_records(&config.topics, owned, pending)).await?;
    commit_offsets(config, consumer, pending)?;
    pending.clear();
    Ok(())
}

/// Queues `produced` for the events topic, keyed by agent, and counts the
/// business events among them (payments by outcome, volume by currency).
fn push_events(
    out: &mut Vec<Outgoing>,
    topics: &Topics,
    produced: &[schemas::Event],
) -> Result<(), ProcessorError> {
    for e in produced {
        count_business(&e.payload);
        out.push(Outgoing {
            topic: topics.events.clone(),
            key: e.agent_id.to_string(),
            payload: Some(e.encode()?),
            partition: None,
        });
    }
    Ok(())
}

fn count_business(p: &schemas::EventPayload) {
    use schemas::EventPayload as P;
    let (outcome, change) = match p {
        P::PaymentConfirmed(c) => ("settled", c),
        P::PaymentFailed(c) => ("failed", c),
        P::PaymentDeclined(c) => ("declined", c),
        P::FundsDeposited(d) => {
            metrics::counter!("agentbank_deposits_total", "currency" => d.currency.clone())
                .increment(1);
            return;
        }
        _ => return,
    };
    let currency = change.payment.currency.clone();
    metrics::counter!("agentbank_payments_total", "outcome" => outcome, "currency" => currency.clone())
        .increment(1);
    if outcome == "settled" {
        // Micro-units: counters are integers, amounts have 6 places.
        let micros = (change.payment.amount * rust_decimal::Decimal::from(1_000_000))
            .trunc()
            .try_into()
            .unwrap_or(0u64);
        metrics::counter!("agentbank_payment_volume_micros_total", "currency" => currency)
            .increment(micros);
    }
}

/// Applies one batch and makes its effects durable (steps 1–3 above).
async fn process_batch(
    config: &ProcessorConfig,
    consumer: &rdkafka::consumer::StreamConsumer<Context>,
    producer: &FutureProducer,
    owned: &mut BTreeMap<i32, Partition>,
    pending: &mut PendingMarkers,
    batch: Vec<OwnedMessage>,
    status: &ProcessorStatus,
) -> Result<(), ProcessorError> {
    let started = Instant::now();
    let topics = &config.topics;
    let mut events: Vec<Outgoing> = Vec::new();
    // Per reply: the reply and the index range of its events in `events`.
    let mut replies: Vec<(Reply, std::ops::Range<usize>)> = Vec::new();
    let mut changed: BTreeMap<(i32, Uuid), ()> = BTreeMap::new();
    let mut touched: BTreeMap<i32, i64> = BTreeMap::new();
    let mut seek_to: BTreeMap<i32, i64> = BTreeMap::new();
    let mut applied = 0u64;
    let mut saga_steps = 0u64;

    for m in &batch {
        let (p, offset) = (m.partition(), m.offset());
        let Some(part) = owned.get_mut(&p) else {
            continue;
        }; // revoked mid-batch
        if seek_to.contains_key(&p) || offset < part.next_offset {
            continue; // already checkpointed (redelivery after a restart)
        }
        if offset > part.next_offset && !part.positioned {
            // The group's committed offset is ahead of our checkpoint: go back.
            seek_to.insert(p, part.next_offset);
            continue;
        }
        part.positioned = true;
        part.next_offset = offset + 1;
        touched.insert(p, offset + 1);
        let command = match Command::decode(m.payload().unwrap_or_default()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(partition = p, offset, error = %e, "undecodable command skipped");
                metrics::counter!("agentbank_processor_undecodable_total").increment(1);
                continue;
            }
        };
        if let CommandPayload::AccrueInterest(_) = &command.payload {
            // A tick: every agent of the partition with savings accrues, each
            // once (its checkpoint may already reflect this offset).
            for (agent, slot) in part.agents.iter_mut() {
                let has_savings = slot.0.as_ref().is_some_and(|s| !s.savings.is_empty());
                if !has_savings || slot.1 >= offset {
                    continue;
                }
                let at = agents::Position {
                    partition: p,
                    offset,
                };
                let result =
                    agents::apply(&mut slot.0, &command, at, &config.interest_rates, |i| {
                        ids::derived_for(&topics.commands, p, offset, *agent, i)
                    });
                slot.1 = offset;
                changed.insert((p, *agent), ());
                push_events(&mut events, topics, &result.events)?;
            }
            applied += 1;
            continue;
        }
        let slot = part.agents.entry(command.agent_id).or_insert((None, -1));
        if slot.1 >= offset {
            continue; // this agent's checkpoint already reflects the command
        }
        let at = agents::Position {
            partition: p,
            offset,
        };
        let result = agents::apply(&mut slot.0, &command, at, &config.interest_rates, |i| {
            ids::derived(&topics.commands, p, offset, i)
        });
        applied += 1;
        if slot.0.is_some() {
            slot.1 = offset;
            changed.insert((p, command.agent_id), ());
        } else {
            part.agents.remove(&command.agent_id);
        }
        let first = events.len();
        push_events(&mut events, topics, &result.events)?;
        let last_event = events.len();
        // Saga steps travel with the events: both must be acknowledged before
        // the checkpoint that says this command was applied.
        for c in &result.commands {
            events.push(Outgoing {
                topic: topics.commands.clone(),
                key: c.agent_id.to_string(),
                payload: Some(c.encode()?),
                partition: None,
            });
        }
        saga_steps += result.commands.len() as u64;
        // So do on-chain transfer requests: a checkpoint never covers a
        // command whose transfer was not asked for.
        for r in &result.settlements {
            events.push(Outgoing {
                topic: topics.settlement_requests.clone(),
                key: r.agent_id.to_string(),
                payload: Some(r.encode()?),
                partition: None,
            });
        }
        if let (Some(correlation_id), Some(outcome)) =
            (command.correlation_id.clone(), result.reply)
        {
            let reply = Reply {
                correlation_id,
                command_id: command.id,
                outcome,
                wait_for: vec![],
            };
            replies.push((reply, first..last_event));
        }
    }

    for (p, offset) in &seek_to {
        tracing::warn!(partition = p, offset, "seeking back to the checkpoint");
        consumer.seek(
            &topics.commands,
            *p,
            Offset::Offset(*offset),
            Duration::from_secs(10),
        )?;
    }

    metrics::histogram!("agentbank_processor_apply_seconds")
        .record(started.elapsed().as_secs_f64());

    // 2. events (and saga steps) first: their offsets tell the gateway what
    // the sink must pass.
    let positions = produce_all(producer, &events).await?;

    // 3. replies and checkpoint records.
    let mut out = Vec::with_capacity(replies.len() + changed.len());
    for (mut reply, range) in replies {
        reply.wait_for = positions[range].to_vec();
        out.push(Outgoing {
            topic: topics.replies.clone(),
            key: reply.correlation_id.clone(),
            payload: Some(reply.encode()),
            partition: schemas::reply::reply_partition(&reply.correlation_id),
        });
    }
    for (p, agent) in changed.keys() {
        let part = &owned[p];
        if let Some((Some(state), last)) = part.agents.get(agent) {
            out.push(agent_record(topics, *p, part.epoch, state, *last));
        }
    }
    // The previous batch's markers: their records were acknowledged already.
    out.extend(marker_records(topics, owned, pending));
    let checkpoint = Instant::now();
    produce_all(producer, &out).await?;
    commit_offsets(config, consumer, pending)?;
    metrics::histogram!("agentbank_processor_checkpoint_seconds")
        .record(checkpoint.elapsed().as_secs_f64());
    // This batch's records are acknowledged now: its markers may follow.
    *pending = touched;

    status.batches.fetch_add(1, Ordering::Relaxed);
    status.commands.fetch_add(applied, Ordering::Relaxed);
    metrics::counter!("agentbank_processor_commands_total").increment(applied);
    metrics::counter!("agentbank_processor_events_total")
        .increment(events.len() as u64 - saga_steps);
    metrics::counter!("agentbank_processor_saga_steps_total").increment(saga_steps);
    metrics::histogram!("agentbank_processor_batch_size").record(batch.len() as f64);
    metrics::histogram!("agentbank_processor_batch_seconds")
        .record(started.elapsed().as_secs_f64());
    Ok(())
}

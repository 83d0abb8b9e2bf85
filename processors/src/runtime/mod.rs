//! The runtime: drives any keyed [`Machine`] from the commands topic with
//! exactly-once *effects* and no broker transactions (see [`checkpoint`]).
//! The agent bank is one machine; every later one plugs in here.
//!
//! One loop per processor instance, per batch of up to [`BATCH_MAX`] records
//! (a record may carry many packed commands):
//! 1. apply each command to its key's state ([`plan`], pure), collecting
//!    events, saga steps and replies;
//! 2. produce the events (packed, one record per partition of the events
//!    log), the saga steps (packed, one record per destination partition)
//!    and transfer requests, and wait for their acks (the events' offsets
//!    let the gateway wait for the sink: read-your-writes);
//!    The markers the last checkpoint earned (its states are acknowledged)
//!    go in this round too, so they land before the next checkpoint begins;
//!    then the group offsets they cover are committed.
//! 3. produce the replies (packed, one record per gateway partition) and, when
//!    a checkpoint is due ([`CHECKPOINT_EVERY`]), the states changed since the
//!    last one; wait. When idle, everything unsaved is flushed.
//!
//! Two produce rounds per batch instead of three: measured, the third round
//! cost a third of the batch time on Tansu.
//!
//! A crash anywhere repeats at most the unfinished batch, with the same ids.
//! Rebalance callbacks only record what changed; the loop acts on them between
//! batches, so a partition is never handed over mid-batch.

pub mod checkpoint;
pub mod machine;
pub mod plan;
#[cfg(test)]
mod plan_tests;

use std::collections::{BTreeMap, BTreeSet};
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

use crate::ProcessorError;
use checkpoint::{Epoch, Marker, StateRecord};
pub use machine::Machine;
use plan::{Input, Output, Shard};

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
    /// The commands topic it runs on (the gauge's label), set at start.
    pub topic: std::sync::OnceLock<String>,
}

/// Publishes how many partitions this instance owns (for `/health` and the
/// `agentbank_processor_partitions_owned{topic}` gauge: 0 on every instance
/// means nobody is applying that machine's commands).
fn report_owned(status: &ProcessorStatus, owned: usize) {
    status.partitions.store(owned as u64, Ordering::Relaxed);
    let topic = status.topic.get().cloned().unwrap_or_default();
    metrics::gauge!("agentbank_processor_partitions_owned", "topic" => topic).set(owned as f64);
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

/// Markers: partition → next input offset.
type PendingMarkers = BTreeMap<i32, i64>;

/// How often changed states are checkpointed under load. A crash replays at
/// most about this much input (with the same ids); between checkpoints a
/// hot key is written once however many commands it took.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// Checkpoint sooner once this many keys changed (bounds a checkpoint).
pub const CHECKPOINT_KEYS_MAX: usize = 10_000;

/// What the next checkpoint must cover, and markers that may be written.
///
/// The rules (see `checkpoint`): a checkpoint is every key changed since the
/// last one, at a batch boundary, numbered; its marker (`next_offset`, the
/// number) is written only once its records are acknowledged, and before
/// the next checkpoint begins. So `reached` becomes `markers` only after a
/// checkpoint of `dirty` is acknowledged, and no checkpoint is cut while
/// markers are pending.
struct Unsaved {
    /// Keys changed since the last checkpoint.
    dirty: BTreeSet<(i32, Uuid)>,
    /// Per partition, the next input offset the dirty states reach.
    reached: PendingMarkers,
    /// Markers whose records are acknowledged but not written yet.
    markers: PendingMarkers,
    /// The number of the last checkpoint cut (the pending markers').
    seq: u64,
    last_checkpoint: Instant,
}

impl Unsaved {
    fn new() -> Self {
        Unsaved {
            dirty: BTreeSet::new(),
            reached: PendingMarkers::new(),
            markers: PendingMarkers::new(),
            seq: 0,
            last_checkpoint: Instant::now(),
        }
    }

    fn due(&self) -> bool {
        !self.reached.is_empty()
            && self.markers.is_empty()
            && (self.last_checkpoint.elapsed() >= CHECKPOINT_EVERY
                || self.dirty.len() >= CHECKPOINT_KEYS_MAX)
    }

    /// The states of `dirty`, numbered as the next checkpoint, each in the
    /// slot its last record is not in.
    fn checkpoint<S: machine::State>(
        &mut self,
        topics: &Topics,
        owned: &mut Owned<S>,
    ) -> Result<Vec<Outgoing>, ProcessorError> {
        debug_assert!(
            self.markers.is_empty(),
            "the last checkpoint is vouched for first"
        );
        self.seq += 1;
        let mut out = Vec::with_capacity(self.dirty.len());
        for (p, key) in &self.dirty {
            let Some(part) = owned.get_mut(p) else {
                continue; // no longer ours
            };
            let Some((Some(state), last)) = part.states.get(key) else {
                continue;
            };
            let at = (part.epoch, part.slots.next(*key), self.seq);
            out.push(state_record(topics, *p, at, *key, state, *last)?);
        }
        Ok(out)
    }

    /// The checkpoint from [`Unsaved::checkpoint`] is acknowledged: what it
    /// saved may be vouched for now.
    fn saved(&mut self) {
        self.dirty.clear();
        self.markers = std::mem::take(&mut self.reached);
        self.last_checkpoint = Instant::now();
    }

    /// The markers the last checkpoint earned, to write.
    fn marker_records<S>(&self, topics: &Topics, owned: &Owned<S>) -> Vec<Outgoing> {
        marker_records(topics, owned, &self.markers, self.seq)
    }

    /// Drops a partition this instance no longer owns.
    fn forget(&mut self, p: i32) {
        self.dirty.retain(|(q, _)| *q != p);
        self.reached.remove(&p);
        self.markers.remove(&p);
    }
}

/// Owned partitions with their states.
type Owned<S> = BTreeMap<i32, Shard<S>>;

/// What every batch runs with.
struct Setup<'a, M> {
    config: &'a ProcessorConfig,
    machine: &'a M,
    /// Partitions of the commands topic (saga steps are packed per partition).
    partitions: i32,
}

/// Runs `machine` until `shutdown` turns true; the batch in hand completes.
pub async fn run<M: Machine>(
    config: ProcessorConfig,
    machine: Arc<M>,
    status: Arc<ProcessorStatus>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ProcessorError> {
    let context = Context {
        log: Mutex::new(RebalanceLog::default()),
    };
    let _ = status.topic.set(config.topics.commands.clone());
    let consumer = config.kafka.group_consumer(&config.group_id, context)?;
    let producer = config.kafka.producer()?;
    let mut owned: Owned<M::State> = BTreeMap::new();
    let mut pending = Unsaved::new();
    // Tails our changelog partitions for claims by a newer owner (see `step_down`).
    let fence = config.kafka.watcher()?;
    // Saga steps are packed per destination partition, computed as the
    // producers' partitioner would (a topic's partition count is fixed).
    let partitions = config.kafka.partition_count(&config.topics.commands)?;
    match config.assignment {
        Assignment::Group => consumer.subscribe(&[&config.topics.commands])?,
        Assignment::Static { index, count } => {
            let mut tpl = TopicPartitionList::new();
            for p in (0..partitions).filter(|p| *p as u32 % count.max(1) == index) {
                let mut partition = claim(&config, &producer, p).await?;
                partition.positioned = true; // assigned at the checkpoint's offset
                tracing::info!(
                    partition = p,
                    epoch = partition.epoch.number,
                    keys = partition.states.len(),
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
            // When idle: checkpoint what is unsaved, act on rebalances.
            _ = tokio::time::sleep(IDLE_TICK) => {
                flush(&config, &consumer, &producer, &mut owned, &mut pending).await?;
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
        let setup = Setup {
            config: &config,
            machine: machine.as_ref(),
            partitions,
        };
        process_batch(
            setup,
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
    flush(&config, &consumer, &producer, &mut owned, &mut pending).await?;
    tracing::info!("processor stopped");
    Ok(())
}

/// Drops revoked partitions and restores newly assigned ones.
async fn sync_assignment<S: machine::State>(
    config: &ProcessorConfig,
    consumer: &rdkafka::consumer::StreamConsumer<Context>,
    fence: &rdkafka::consumer::StreamConsumer,
    producer: &FutureProducer,
    owned: &mut Owned<S>,
    pending: &mut Unsaved,
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
        // Hand over with a checkpoint written: the next owner replays less.
        flush(config, consumer, producer, owned, pending).await?;
    }
    let changed = !revoked.is_empty() || !assigned.is_empty();
    for p in revoked {
        pending.forget(p);
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
            keys = partition.states.len(),
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
fn watch_claims<S>(
    config: &ProcessorConfig,
    fence: &rdkafka::consumer::StreamConsumer,
    owned: &Owned<S>,
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
fn step_down<S>(
    config: &ProcessorConfig,
    consumer: &rdkafka::consumer::StreamConsumer<Context>,
    fence: &rdkafka::consumer::StreamConsumer,
    owned: &mut Owned<S>,
    pending: &mut Unsaved,
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
        pending.forget(*p);
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
async fn claim<S: machine::State>(
    config: &ProcessorConfig,
    producer: &FutureProducer,
    p: i32,
) -> Result<Shard<S>, ProcessorError> {
    let records = read_partition(config.kafka.clone(), config.topics.state.clone(), p).await?;
    let restored = checkpoint::restore::<S, _>(records)?;
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
            (restored.next_offset, 0),
        )],
    )
    .await?;
    Ok(Shard::new(epoch, restored.next_offset, restored.states))
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

/// `key`'s state as record of checkpoint `seq`, in `slot`.
fn state_record<S: machine::State>(
    topics: &Topics,
    p: i32,
    (epoch, slot, seq): (Epoch, u8, u64),
    key: Uuid,
    state: &S,
    (last_offset, last_sub, last_step): checkpoint::Reflects,
) -> Result<Outgoing, ProcessorError> {
    let record = StateRecord {
        epoch: epoch.number,
        last_offset,
        last_sub,
        last_step,
        seq: Some(seq),
        state,
    };
    let payload = serde_json::to_vec(&record)
        .map_err(|e| ProcessorError::Checkpoint(format!("state of {key}: {e}")))?;
    Ok(Outgoing {
        topic: topics.state.clone(),
        key: epoch.state_key(key, slot),
        payload: Some(payload),
        partition: Some(p),
    })
}

/// The marker of partition `p`: below `next_offset` everything is in this
/// owner's checkpoints up to `seq`.
fn marker_record(
    topics: &Topics,
    p: i32,
    epoch: Epoch,
    (next_offset, seq): (i64, u64),
) -> Outgoing {
    let marker = Marker {
        epoch: epoch.number,
        next_offset,
        seq: Some(seq),
    };
    Outgoing {
        topic: topics.state.clone(),
        key: epoch.marker_key(),
        payload: Some(serde_json::to_vec(&marker).expect("marker serializes")),
        partition: Some(p),
    }
}

fn marker_records<S>(
    topics: &Topics,
    owned: &Owned<S>,
    pending: &PendingMarkers,
    seq: u64,
) -> Vec<Outgoing> {
    pending
        .iter()
        .filter_map(|(p, next)| {
            owned
                .get(p)
                .map(|part| marker_record(topics, *p, part.epoch, (*next, seq)))
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

/// Checkpoints everything unsaved and writes its markers now (idle,
/// shutdown, handover): pending markers, then states, then their markers.
async fn flush<S: machine::State>(
    config: &ProcessorConfig,
    consumer: &rdkafka::consumer::StreamConsumer<Context>,
    producer: &FutureProducer,
    owned: &mut Owned<S>,
    pending: &mut Unsaved,
) -> Result<(), ProcessorError> {
    write_markers(config, consumer, producer, owned, pending).await?;
    if !pending.reached.is_empty() {
        let round = Instant::now();
        produce_all(producer, &pending.checkpoint(&config.topics, owned)?).await?;
        pending.saved();
        metrics::histogram!("agentbank_processor_checkpoint_seconds")
            .record(round.elapsed().as_secs_f64());
        write_markers(config, consumer, producer, owned, pending).await?;
    }
    Ok(())
}

/// Writes the pending markers and commits the offsets they cover.
async fn write_markers<S>(
    config: &ProcessorConfig,
    consumer: &rdkafka::consumer::StreamConsumer<Context>,
    producer: &FutureProducer,
    owned: &Owned<S>,
    pending: &mut Unsaved,
) -> Result<(), ProcessorError> {
    if pending.markers.is_empty() {
        return Ok(());
    }
    produce_all(producer, &pending.marker_records(&config.topics, owned)).await?;
    markers_written(config, consumer, pending)
}

/// The pending markers are acknowledged: commits the offsets they cover and
/// forgets them (a checkpoint may be cut again).
fn markers_written(
    config: &ProcessorConfig,
    consumer: &rdkafka::consumer::StreamConsumer<Context>,
    pending: &mut Unsaved,
) -> Result<(), ProcessorError> {
    commit_offsets(config, consumer, &pending.markers)?;
    pending.markers.clear();
    Ok(())
}

/// The records that carry a batch's outputs, and for each output the index
/// of the record a reply waiting on it must see the sink pass (replies point
/// at events only: other outputs' entries are `None`). Events are packed per
/// partition of the events log (the publisher copies them to the public
/// topic, one per record, off this path); saga steps per destination
/// partition; transfer requests and executions get a record each. As few
/// records and produce requests as the broker allows.
fn output_records<M: Machine>(
    machine: &M,
    topics: &Topics,
    partitions: i32,
    outputs: &[Output],
) -> Result<(Vec<Outgoing>, Vec<Option<usize>>), ProcessorError> {
    let mut records = Vec::with_capacity(outputs.len());
    // Per partition: the first item's key and the encoded items.
    let mut events: BTreeMap<i32, (String, Vec<Vec<u8>>)> = BTreeMap::new();
    let mut sagas: BTreeMap<i32, (String, Vec<Vec<u8>>)> = BTreeMap::new();
    let mut event_partition = Vec::with_capacity(outputs.len());
    let pack = |to: &mut BTreeMap<i32, (String, Vec<Vec<u8>>)>, key: Uuid, item: Vec<u8>| {
        let key = key.to_string();
        let q = schemas::topics::partition_for(key.as_bytes(), partitions);
        to.entry(q).or_insert_with(|| (key, vec![])).1.push(item);
        q
    };
    for output in outputs {
        let (topic, key, payload) = match output {
            Output::Event(e) => {
                machine.observe(e);
                let item = schemas::packed::keyed(e.agent_id, &e.encode()?);
                event_partition.push(Some(pack(&mut events, e.agent_id, item)));
                continue;
            }
            Output::Command(c) => {
                pack(&mut sagas, c.agent_id, c.encode_internal()?);
                event_partition.push(None);
                continue;
            }
            Output::Settlement(r) => (&topics.settlement_requests, r.agent_id, r.encode()?),
            Output::Execution(x) => (&topics.executions, x.opportunity_id, x.encode()?),
        };
        event_partition.push(None);
        records.push(Outgoing {
            topic: topic.clone(),
            key: key.to_string(),
            payload: Some(payload),
            partition: None,
        });
    }
    // A reply waits for the last events record of each partition it has
    // events on: the sink passes a partition's records in order.
    let mut last_record: BTreeMap<i32, usize> = BTreeMap::new();
    for (q, (key, items)) in events {
        records.extend(Outgoing::packed(&topics.events_log, &key, q, &items));
        last_record.insert(q, records.len() - 1);
    }
    for (q, (key, items)) in sagas {
        records.extend(Outgoing::packed(&topics.commands, &key, q, &items));
    }
    let record_of = event_partition
        .into_iter()
        .map(|q| q.map(|q| last_record[&q]))
        .collect();
    Ok((records, record_of))
}

/// The replies of a batch, with their events' positions filled in: packed
/// per reply partition (each gateway reads one), one record per reply whose
/// correlation id names no partition.
fn reply_records(topics: &Topics, replies: Vec<Reply>) -> Vec<Outgoing> {
    let mut packed: BTreeMap<i32, Vec<Vec<u8>>> = BTreeMap::new();
    let mut records = vec![];
    for reply in replies {
        match schemas::reply::reply_partition(&reply.correlation_id) {
            Some(p) => packed.entry(p).or_default().push(reply.encode()),
            None => records.push(Outgoing {
                topic: topics.replies.clone(),
                key: reply.correlation_id.clone(),
                payload: Some(reply.encode()),
                partition: None,
            }),
        }
    }
    for (p, items) in packed {
        records.extend(Outgoing::packed(&topics.replies, &p.to_string(), p, &items));
    }
    records
}

/// Applies one batch and makes its effects durable (steps 1–3 above).
async fn process_batch<M: Machine>(
    Setup {
        config,
        machine,
        partitions,
    }: Setup<'_, M>,
    consumer: &rdkafka::consumer::StreamConsumer<Context>,
    producer: &FutureProducer,
    owned: &mut Owned<M::State>,
    pending: &mut Unsaved,
    batch: Vec<OwnedMessage>,
    status: &ProcessorStatus,
) -> Result<(), ProcessorError> {
    let started = Instant::now();
    let topics = &config.topics;
    let inputs = batch.iter().map(|m| Input {
        partition: m.partition(),
        offset: m.offset(),
        record_ms: m.timestamp().to_millis(),
        payload: m.payload().unwrap_or_default(),
    });
    let topic = plan::Topic {
        name: &topics.commands,
        partitions,
    };
    let plan = plan::plan(machine, topic, owned, inputs);
    let (events, saga_steps) = (plan.events(), plan.saga_steps());
    metrics::counter!("agentbank_processor_undecodable_total").increment(plan.undecodable);

    for (p, offset) in &plan.seek_to {
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

    // 2. events, saga steps and transfer requests first: the events' offsets
    // tell the gateway what the sink must pass. The last checkpoint's
    // markers ride along: it is acknowledged, and they must land before the
    // next checkpoint begins.
    let (mut records, record_of) = output_records(machine, topics, partitions, &plan.outputs)?;
    records.extend(pending.marker_records(topics, owned));
    let positions = produce_all(producer, &records).await?;
    debug_assert_eq!(positions.len(), records.len(), "every output acknowledged");
    markers_written(config, consumer, pending)?;

    // 3. replies, and a checkpoint when one is due.
    debug_assert!(
        plan.touched
            .iter()
            .all(|(p, next)| pending.reached.get(p).is_none_or(|before| next > before)),
        "input offsets only grow"
    );
    pending.dirty.extend(plan.changed.iter().copied());
    pending.reached.extend(&plan.touched);
    let replies = plan
        .replies
        .into_iter()
        .map(|(mut reply, events)| {
            let records: BTreeSet<usize> = events
                .map(|i| record_of[i].expect("a reply's range holds events only"))
                .collect();
            reply.wait_for = records.into_iter().map(|r| positions[r]).collect();
            reply
        })
        .collect();
    let mut out = reply_records(topics, replies);
    // The states of everything applied so far (its outputs are acknowledged,
    // above).
    let due = pending.due();
    if due {
        out.extend(pending.checkpoint(topics, owned)?);
    }
    let round = Instant::now();
    produce_all(producer, &out).await?;
    if due {
        pending.saved();
        metrics::histogram!("agentbank_processor_checkpoint_seconds")
            .record(round.elapsed().as_secs_f64());
    }

    status.batches.fetch_add(1, Ordering::Relaxed);
    status.commands.fetch_add(plan.applied, Ordering::Relaxed);
    metrics::counter!("agentbank_processor_commands_total").increment(plan.applied);
    metrics::counter!("agentbank_processor_events_total").increment(events as u64);
    metrics::counter!("agentbank_processor_saga_steps_total").increment(saga_steps as u64);
    metrics::histogram!("agentbank_processor_batch_size").record(batch.len() as f64);
    metrics::histogram!("agentbank_processor_batch_seconds")
        .record(started.elapsed().as_secs_f64());
    Ok(())
}

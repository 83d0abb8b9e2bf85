//! Batch planning, pure: given the states of the owned partitions and a batch
//! of input records, apply every command with the machine and say what must
//! be produced, answered and checkpointed. No broker, no clock — the runtime
//! (`mod.rs`) does the I/O around it, and the tests drive it directly.
//!
//! The rules it keeps:
//! - a partition's input is applied in offset order, each offset once: an
//!   offset below the partition's `next_offset` is a redelivery and skipped;
//!   a key whose checkpoint already reflects an offset skips it too;
//! - a jump ahead of `next_offset` before the partition was positioned means
//!   the group's committed offset is ahead of the checkpoint: seek back;
//! - every reply points into this batch's outputs (its events), so the
//!   gateway can wait for the sink to pass them;
//! - a saga step whose key lives on the same partition is applied at once,
//!   in the same batch, right after the command that caused it (before the
//!   next input): a payment between two agents of one partition is one
//!   hop, not three. Its key then reflects (offset, item, n) — the n-th
//!   step of that input's chain — so a replay skips it exactly when the
//!   checkpoint has it. This is safe because checkpoints are cut at batch
//!   boundaries and restored only whole (see `checkpoint`): a restored
//!   sender that reflects a payment comes with a receiver that reflects
//!   its credit.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Range;

use uuid::Uuid;

use schemas::reply::Reply;
use schemas::revenue::workers::ExecutionRequest;
use schemas::settlement::SettlementRequest;
use schemas::{Command, Event};

use super::checkpoint::{Epoch, Reflects, NOTHING};
use super::machine::{Ids, Machine, Position, Route};

/// One owned partition: the owner's epoch, its states and where its input
/// continues.
#[derive(Debug)]
pub struct Shard<S> {
    /// Under which epoch this instance owns the partition.
    pub epoch: Epoch,
    /// The first input offset not applied yet.
    pub next_offset: i64,
    /// Per key: the state (`None` while a command for an unknown key is
    /// being decided) and the last input position it reflects.
    pub states: HashMap<Uuid, (Option<S>, Reflects)>,
    /// The first input after restore has been checked against `next_offset`.
    pub positioned: bool,
    /// Per key, the changelog slot its last record went to under this epoch.
    pub slots: Slots,
}

/// Which of its two changelog slots each key's last record went to (see
/// `checkpoint`): a key's next record never goes where its last one is,
/// which stays the valid one until the new one is vouched for.
#[derive(Debug, Default)]
pub struct Slots(HashMap<Uuid, u8>);

impl Slots {
    /// The slot for `key`'s next record, remembered as its last.
    pub fn next(&mut self, key: Uuid) -> u8 {
        let slot = self.0.get(&key).map_or(0, |s| 1 - s);
        self.0.insert(key, slot);
        slot
    }
}

impl<S> Shard<S> {
    pub fn new(epoch: Epoch, next_offset: i64, states: HashMap<Uuid, (S, Reflects)>) -> Self {
        Shard {
            epoch,
            next_offset,
            states: states
                .into_iter()
                .map(|(k, (s, o))| (k, (Some(s), o)))
                .collect(),
            positioned: false,
            slots: Slots::default(),
        }
    }
}

/// One input record as read.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp (ms), when it has one.
    pub record_ms: Option<i64>,
    pub payload: &'a [u8],
}

/// A record to produce before the checkpoint may cover its input.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Event(Event),
    /// A saga step for another key.
    Command(Command),
    Settlement(SettlementRequest),
    /// Work for a vertical agent's pool.
    Execution(ExecutionRequest),
}

/// What a batch decided.
#[derive(Debug, Default)]
pub struct Plan {
    /// Produced (and acknowledged) before anything else.
    pub outputs: Vec<Output>,
    /// Each reply with the range of its events in `outputs`; the positions
    /// of those events become the reply's `wait_for`.
    pub replies: Vec<(Reply, Range<usize>)>,
    /// Keys whose state changed, to checkpoint.
    pub changed: BTreeSet<(i32, Uuid)>,
    /// Per partition, the next input offset once this batch is durable.
    pub touched: BTreeMap<i32, i64>,
    /// Partitions to seek back to their checkpoint.
    pub seek_to: BTreeMap<i32, i64>,
    /// Commands applied (a broadcast counts once).
    pub applied: u64,
    /// Records that did not decode (skipped, counted).
    pub undecodable: u64,
}

impl Plan {
    /// Saga steps among the outputs.
    pub fn saga_steps(&self) -> usize {
        self.outputs
            .iter()
            .filter(|o| matches!(o, Output::Command(_)))
            .count()
    }

    /// Events among the outputs.
    pub fn events(&self) -> usize {
        self.outputs
            .iter()
            .filter(|o| matches!(o, Output::Event(_)))
            .count()
    }
}

/// The input topic, as derived ids name it, and its partition count (which
/// partition a saga step's key lives on).
#[derive(Debug, Clone, Copy)]
pub struct Topic<'a> {
    pub name: &'a str,
    pub partitions: i32,
}

/// Applies `batch` to `shards` (partitions not in `shards` are skipped: they
/// were revoked mid-batch).
pub fn plan<'a, M: Machine>(
    machine: &M,
    topic: Topic<'_>,
    shards: &mut BTreeMap<i32, Shard<M::State>>,
    batch: impl IntoIterator<Item = Input<'a>>,
) -> Plan {
    let mut plan = Plan::default();
    for input in batch {
        let (p, offset) = (input.partition, input.offset);
        let Some(shard) = shards.get_mut(&p) else {
            continue;
        };
        if plan.seek_to.contains_key(&p) || offset < shard.next_offset {
            continue; // already checkpointed (redelivery after a restart)
        }
        if offset > shard.next_offset && !shard.positioned {
            plan.seek_to.insert(p, shard.next_offset);
            continue;
        }
        shard.positioned = true;
        shard.next_offset = offset + 1;
        plan.touched.insert(p, offset + 1);
        // A record is applied whole, item by item, within this batch.
        for (sub, command) in Command::decode_all(input.payload).into_iter().enumerate() {
            let at = Position {
                partition: p,
                offset,
                sub: sub as u32,
            };
            match command {
                Ok(command) => {
                    let at = (at, input.record_ms);
                    apply_chain(machine, topic, shard, &mut plan, command, at)
                }
                Err(e) => {
                    tracing::error!(partition = p, offset, sub, error = %e, "undecodable command skipped");
                    plan.undecodable += 1;
                }
            }
        }
    }
    debug_assert!(
        plan.replies
            .iter()
            .all(|(_, r)| r.end <= plan.outputs.len()),
        "a reply points outside the batch's outputs"
    );
    plan
}

/// Applies one command read at `at` and then, in order, every saga step of
/// its chain whose key lives on this partition; steps for other partitions
/// become outputs. The chain's events come first in `plan.outputs`, its
/// other outputs after them, so a reply covers the events of the whole
/// chain so far (the caller reads both sides of a payment once answered).
fn apply_chain<M: Machine>(
    machine: &M,
    topic: Topic<'_>,
    shard: &mut Shard<M::State>,
    plan: &mut Plan,
    command: Command,
    (at, record_ms): (Position, Option<i64>),
) {
    let first_event = plan.outputs.len();
    let mut others = vec![];
    let mut chain = VecDeque::from([command]);
    let mut step = 0;
    while let Some(command) = chain.pop_front() {
        let applying = Applying {
            machine,
            topic: topic.name,
            at,
            step,
            record_ms,
        };
        for c in applying.apply(shard, plan, &command, (first_event, &mut others)) {
            if partition_of(&c, topic.partitions) == at.partition {
                chain.push_back(c);
            } else {
                others.push(Output::Command(c));
            }
        }
        step += 1;
    }
    plan.outputs.extend(others);
}

/// The partition a saga step's key lives on, as the producers' partitioner
/// places it.
fn partition_of(command: &Command, partitions: i32) -> i32 {
    schemas::topics::partition_for(command.agent_id.to_string().as_bytes(), partitions)
}

/// One command of a chain, where it applies.
struct Applying<'a, M> {
    machine: &'a M,
    topic: &'a str,
    /// The chain's input.
    at: Position,
    /// 0 for the input, n for its n-th step applied in place.
    step: u32,
    record_ms: Option<i64>,
}

impl<M: Machine> Applying<'_, M> {
    /// Applies `command` to the shard; returns the saga steps it emitted
    /// (for the caller to route). Events go to `plan.outputs`, transfer
    /// requests and executions to `others`; a reply covers the events from
    /// `first_event`.
    fn apply(
        &self,
        shard: &mut Shard<M::State>,
        plan: &mut Plan,
        command: &Command,
        (first_event, others): (usize, &mut Vec<Output>),
    ) -> Vec<Command> {
        let Applying {
            machine,
            topic,
            at,
            step: n,
            record_ms,
        } = *self;
        let (p, here) = (at.partition, (at.offset, at.sub, n));
        let ids = |key| {
            Ids::new(topic, at, key)
                .at_record_time(record_ms)
                .at_step(n)
        };
        match machine.route(command) {
            Route::Broadcast => {
                plan.applied += 1;
                for (key, slot) in shard.states.iter_mut() {
                    let wanted = slot.0.as_ref().is_some_and(|s| machine.wants_broadcast(s));
                    if !wanted || slot.1 >= here {
                        continue; // not concerned, or its checkpoint has it
                    }
                    let step = machine.apply(&mut slot.0, command, &ids(Some(*key)));
                    slot.1 = here;
                    plan.changed.insert((p, *key));
                    plan.outputs
                        .extend(step.events.into_iter().map(Output::Event));
                }
                vec![]
            }
            Route::Key(key) => {
                let slot = shard.states.entry(key).or_insert((None, NOTHING));
                if slot.1 >= here {
                    return vec![]; // this key's checkpoint already reflects the command
                }
                plan.applied += 1;
                let step = machine.apply(&mut slot.0, command, &ids(None));
                if slot.0.is_some() {
                    slot.1 = here;
                    plan.changed.insert((p, key));
                } else {
                    shard.states.remove(&key);
                }
                plan.outputs
                    .extend(step.events.into_iter().map(Output::Event));
                let events = first_event..plan.outputs.len();
                // Transfer requests and executions travel with the events:
                // all must be acknowledged before a checkpoint covers this
                // command, or a crash could lose them.
                others.extend(step.settlements.into_iter().map(Output::Settlement));
                others.extend(step.executions.into_iter().map(Output::Execution));
                if let (Some(correlation_id), Some(outcome)) =
                    (command.correlation_id.clone(), step.reply)
                {
                    let reply = Reply {
                        correlation_id,
                        command_id: command.id,
                        outcome,
                        wait_for: vec![],
                    };
                    plan.replies.push((reply, events));
                }
                step.commands
            }
        }
    }
}

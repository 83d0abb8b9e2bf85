//! The keyed-machine contract: what a stateful part of the product implements
//! so that the one generic runtime can drive it with exactly-once effects.
//!
//! A machine owns one kind of state per key (an agent, later a tenant or a
//! product) and decides commands against it: `apply(state, command, ids) ->
//! Step`. It does no I/O, reads no clock (time is the command's timestamp)
//! and draws randomness only from [`Ids::rng`], which is seeded by the
//! command's position — so replaying the commands topic reproduces every
//! output, id for id. Claims, epochs, checkpoints, restore, fencing and
//! metrics are the runtime's; a new machine never copies them.

use std::fmt::Debug;

use rand::SeedableRng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use schemas::reply::Outcome;
use schemas::revenue::workers::ExecutionRequest;
use schemas::settlement::SettlementRequest;
use schemas::{ids, Command, Event};

/// Where a command sits on the commands topic: its record and, in a packed
/// record, its item index (`sub`, 0 for a single-command record). Saga
/// commands an input emits carry it as their origin, which is how receivers
/// apply each one once. Ordered as the log is: by offset, then item.
///
/// A saga step applied in place (its key on the same partition, see
/// `plan`) sees the position of the input that began its chain, so one
/// chain must not send two origin-deduplicated steps to the same key (none
/// does: a payment credits once, a funding credits once, a withdrawal lands
/// once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
    pub sub: u32,
}

/// Which state a command addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The state of one key.
    Key(Uuid),
    /// Every state of the partition that [`Machine::wants_broadcast`] (a tick).
    Broadcast,
}

/// Derives a command's output ids, and seeds its randomness, from the
/// command's position: the same input always yields the same ids and draws.
#[derive(Debug, Clone)]
pub struct Ids<'a> {
    topic: &'a str,
    at: Position,
    /// Set when one input fans out over many keys (a broadcast).
    key: Option<Uuid>,
    /// The input record's timestamp (ms), as the log stores it.
    record_ms: Option<i64>,
    /// 0 for the input itself; n for the n-th saga step its chain applied in
    /// the same batch (a step whose key lives on the same partition).
    step: u32,
}

impl<'a> Ids<'a> {
    pub fn new(topic: &'a str, at: Position, key: Option<Uuid>) -> Self {
        Ids {
            topic,
            at,
            key,
            record_ms: None,
            step: 0,
        }
    }

    /// For the `step`-th saga step of this input's chain, applied in place.
    pub fn at_step(mut self, step: u32) -> Self {
        self.step = step;
        self
    }

    /// With the input record's timestamp.
    pub fn at_record_time(mut self, record_ms: Option<i64>) -> Self {
        self.record_ms = record_ms;
        self
    }

    /// When the input record was written, by the log's own timestamp — the
    /// same on every replay, unlike a clock. For a saga step the runtime
    /// produced, it is when the step was produced.
    pub fn record_ms(&self) -> Option<i64> {
        self.record_ms
    }

    /// Where the command was read.
    pub fn position(&self) -> Position {
        self.at
    }

    /// The `index`-th output id.
    pub fn id(&self, index: u32) -> Uuid {
        let at = self.at;
        if self.step > 0 {
            let input = (at.partition, at.offset, at.sub);
            return ids::derived_step(self.topic, input, self.step, self.key, index);
        }
        ids::derived_at(self.topic, at.partition, at.offset, at.sub, self.key, index)
    }

    /// A random generator seeded by the position (and key): the only
    /// randomness a machine may use. `StdRng`'s algorithm is fixed by the
    /// lockfile's `rand` version; a change of it is a replay-visible change.
    pub fn rng(&self) -> rand::rngs::StdRng {
        let seed = self.id(u32::MAX);
        let mut bytes = [0u8; 32];
        bytes[..16].copy_from_slice(seed.as_bytes());
        bytes[16..].copy_from_slice(self.id(u32::MAX - 1).as_bytes());
        rand::rngs::StdRng::from_seed(bytes)
    }
}

/// What one command caused.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Step {
    /// Domain events for the public topic, in order.
    pub events: Vec<Event>,
    /// Commands for other keys (saga steps), routed by their key.
    pub commands: Vec<Command>,
    /// On-chain transfers for the settlement service.
    pub settlements: Vec<SettlementRequest>,
    /// Opportunity executions for the vertical agents' pools.
    pub executions: Vec<ExecutionRequest>,
    /// The caller's answer, when this step is the one it waits for.
    pub reply: Option<Outcome>,
}

impl Step {
    /// Only an answer for the caller.
    pub fn reply(outcome: Outcome) -> Step {
        Step {
            reply: Some(outcome),
            ..Step::default()
        }
    }

    /// Only a refusal for the caller: nothing happened.
    pub fn rejected(code: schemas::reply::RejectCode, message: &str) -> Step {
        Step::reply(Outcome::Rejected {
            code,
            message: message.into(),
        })
    }
}

/// What a machine's per-key state must be: checkpointed as JSON, moved
/// between tasks.
pub trait State: Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static {}

impl<T: Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static> State for T {}

/// A keyed state machine the runtime can drive.
pub trait Machine: Send + Sync + 'static {
    /// One key's state, as checkpointed to the changelog (JSON).
    type State: State;

    /// Which state `command` addresses.
    fn route(&self, command: &Command) -> Route;

    /// Decides `command` against `state` (`None`: the key has no state yet;
    /// setting it to `None` forgets the key). Pure.
    fn apply(&self, state: &mut Option<Self::State>, command: &Command, ids: &Ids<'_>) -> Step;

    /// Whether a broadcast command concerns this state (e.g. only agents with
    /// savings accrue interest). All of them, by default.
    fn wants_broadcast(&self, _state: &Self::State) -> bool {
        true
    }

    /// Counts an event the runtime is about to produce (business metrics).
    fn observe(&self, _event: &Event) {}
}

//! Checkpoints on the compacted changelog (`agentbank.state`), and restoring
//! them, for any machine's state. Pure: [`restore`] takes the records of one
//! changelog partition in log order and rebuilds the partition's states; the
//! runtime does the I/O.
//!
//! The protocol, and why it is safe without broker transactions:
//! - Every key's record carries the input offset it reflects (`last_offset`);
//!   replay skips a command whose offset a key already reflects.
//! - A *marker* (`next_offset`) is written only after the key records of its
//!   checkpoint were acknowledged, so every command below a marker is
//!   reflected in some key record. Replay starts at the highest marker.
//! - Each owner of a partition writes under its own *epoch* (a key suffix), so
//!   records of a stale owner never replace a newer owner's under compaction.
//!   Because processing is deterministic, a stale owner's records are still
//!   correct states; restore keeps, per agent, the one with the highest
//!   `last_offset`.
//! - Nothing is ever deleted by another owner (see `runtime::claim` for the
//!   lost update that deleting caused): a marker's records stay, and the
//!   changelog holds up to two records per key per epoch that touched it.
//! - Checkpoints are restored only whole. A checkpoint is every state changed
//!   since the last one, cut at a batch boundary, numbered (`seq`) within its
//!   owner; its marker carries that number and is written once its records
//!   are acknowledged and before the next checkpoint begins. Restore ignores
//!   an owner's records numbered above its highest marker — a checkpoint a
//!   crash interrupted half-written — so every key comes back as of one cut.
//!   This is what lets a batch apply a saga step for another key of the same
//!   partition in place (see `plan`): sender and receiver are saved together
//!   or not at all. Each key alternates between two slots (changelog keys),
//!   so under compaction a half-written record never replaces the last whole
//!   one.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ProcessorError;

/// The last input position a key's state reflects: (offset, item, step of
/// that input's chain applied in place — 0 for the input itself).
pub type Reflects = (i64, u32, u32);
/// What a key that has seen no input reflects.
pub const NOTHING: Reflects = (-1, 0, 0);

/// Key prefix of markers; state keys start with a UUID, so they never clash.
pub const MARKER_PREFIX: &str = "__checkpoint__";

/// One key's state as of item `last_sub` of record `last_offset` on the
/// commands partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateRecord<S> {
    pub epoch: u64,
    pub last_offset: i64,
    /// The item within a packed record (absent before packing: 0).
    #[serde(default)]
    pub last_sub: u32,
    /// The step of that item's chain (absent before in-place steps: 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_step: u32,
    /// The checkpoint it belongs to, numbered within its owner (absent
    /// before whole checkpoints: always valid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub state: S,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Everything below `next_offset` on the commands partition is checkpointed,
/// by the owner's checkpoints up to number `seq`, all acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub epoch: u64,
    pub next_offset: i64,
    /// The last whole checkpoint (absent before numbering: all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// A partition owner's identity: its epoch and a nonce so two owners that
/// happen to pick the same epoch still never share a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch {
    pub number: u64,
    pub nonce: u32,
}

impl Epoch {
    /// The changelog key of `key`'s state in `slot` (0 or 1).
    pub fn state_key(&self, key: Uuid, slot: u8) -> String {
        format!("{key}@{}.{:08x}.{slot}", self.number, self.nonce)
    }

    pub fn marker_key(&self) -> String {
        format!("{MARKER_PREFIX}@{}.{:08x}", self.number, self.nonce)
    }
}

/// The owner identity in a marker key, if `key` is a marker's.
pub fn marker_owner(key: &str) -> Option<Epoch> {
    owner_of(key.strip_prefix(MARKER_PREFIX)?)
}

/// The owner identity after a changelog key's `@` (a state key may end in
/// its slot).
fn owner_of(key: &str) -> Option<Epoch> {
    let (_, suffix) = key.rsplit_once('@')?;
    let mut parts = suffix.split('.');
    Some(Epoch {
        number: parts.next()?.parse().ok()?,
        nonce: u32::from_str_radix(parts.next()?, 16).ok()?,
    })
}

impl Epoch {
    /// Whether `other` claimed after us: the higher (epoch, nonce) owns the
    /// partition, so of two owners exactly one steps down.
    pub fn superseded_by(&self, other: Epoch) -> bool {
        (other.number, other.nonce) > (self.number, self.nonce)
    }
}

fn epoch_of(key: &str) -> Option<u64> {
    owner_of(key).map(|o| o.number)
}

/// The machine key a state record's changelog key names.
fn state_key_of(key: &str) -> Option<Uuid> {
    let (id, _) = key.split_once('@')?;
    Uuid::parse_str(id).ok()
}

/// A partition's state rebuilt from its changelog.
#[derive(Debug)]
pub struct Restored<S> {
    /// Per key: the state and the last input position it reflects.
    pub states: HashMap<Uuid, (S, Reflects)>,
    /// The first commands offset not covered by a checkpoint.
    pub next_offset: i64,
    /// The highest epoch seen; a new owner takes a higher one.
    pub max_epoch: u64,
}

/// Rebuilds a partition from its changelog records, in log order.
pub fn restore<S, I>(records: I) -> Result<Restored<S>, ProcessorError>
where
    S: DeserializeOwned,
    I: IntoIterator<Item = (String, Option<Vec<u8>>)>,
{
    let mut latest: HashMap<String, Vec<u8>> = HashMap::new();
    let mut max_epoch = 0;
    for (key, value) in records {
        if let Some(e) = epoch_of(&key) {
            max_epoch = max_epoch.max(e);
        }
        match value {
            Some(v) => latest.insert(key, v),
            None => latest.remove(&key),
        };
    }
    let mut out = Restored {
        states: HashMap::new(),
        next_offset: 0,
        max_epoch,
    };
    // Per owner, the last checkpoint its markers say is whole.
    let mut whole: HashMap<(u64, u32), u64> = HashMap::new();
    for (key, value) in latest.iter().filter(|(k, _)| k.starts_with(MARKER_PREFIX)) {
        let m: Marker = serde_json::from_slice(value)
            .map_err(|e| ProcessorError::Checkpoint(format!("marker {key}: {e}")))?;
        out.next_offset = out.next_offset.max(m.next_offset);
        if let Some(owner) = marker_owner(key) {
            let seq = whole.entry((owner.number, owner.nonce)).or_default();
            *seq = (*seq).max(m.seq.unwrap_or(u64::MAX));
        }
    }
    for (key, value) in latest.iter().filter(|(k, _)| !k.starts_with(MARKER_PREFIX)) {
        let r: StateRecord<S> = serde_json::from_slice(value)
            .map_err(|e| ProcessorError::Checkpoint(format!("record {key}: {e}")))?;
        let id = state_key_of(key)
            .ok_or_else(|| ProcessorError::Checkpoint(format!("record key {key}")))?;
        let owner = owner_of(key).map(|o| (o.number, o.nonce));
        let is_whole = r.seq.is_none_or(|seq| {
            owner
                .and_then(|o| whole.get(&o))
                .is_some_and(|last| seq <= *last)
        });
        if !is_whole {
            continue; // part of a checkpoint a crash interrupted
        }
        let reflects = (r.last_offset, r.last_sub, r.last_step);
        let newer = out.states.get(&id).is_none_or(|(_, last)| reflects > *last);
        if newer {
            out.states.insert(id, (r.state, reflects));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::AgentState;
    use rust_decimal::Decimal;
    use schemas::reply::AgentView;

    fn state(agent: Uuid, balance: i64) -> AgentState {
        let mut s = AgentState::new(AgentView {
            policies: Default::default(),
            agent_id: agent,
            user_id: Uuid::nil(),
            name: "a".into(),
            description: String::new(),
            wallet_address: None,
            currency: "USDC".into(),
            rules: Default::default(),
            tags: vec![],
            status: "active".into(),
            created_ms: 0,
            balance: Decimal::from(balance),
        });
        s.version = balance;
        s
    }

    fn rec(epoch: Epoch, agent: Uuid, last: i64, balance: i64) -> (String, Option<Vec<u8>>) {
        let r = StateRecord {
            epoch: epoch.number,
            last_offset: last,
            last_sub: 0,
            last_step: 0,
            seq: None,
            state: state(agent, balance),
        };
        (
            epoch.state_key(agent, 0),
            Some(serde_json::to_vec(&r).unwrap()),
        )
    }

    fn marker(epoch: Epoch, next: i64) -> (String, Option<Vec<u8>>) {
        let m = Marker {
            epoch: epoch.number,
            next_offset: next,
            seq: None,
        };
        (epoch.marker_key(), Some(serde_json::to_vec(&m).unwrap()))
    }

    #[test]
    fn markers_name_their_owner_and_newer_owners_win() {
        let e = Epoch {
            number: 3,
            nonce: 0xab,
        };
        assert_eq!(marker_owner(&e.marker_key()), Some(e));
        assert_eq!(marker_owner(&e.state_key(Uuid::nil(), 1)), None);
        assert!(e.superseded_by(Epoch {
            number: 4,
            nonce: 0
        }));
        assert!(e.superseded_by(Epoch {
            number: 3,
            nonce: 0xac
        }));
        assert!(!e.superseded_by(e));
        assert!(!e.superseded_by(Epoch {
            number: 2,
            nonce: u32::MAX
        }));
    }

    #[test]
    fn records_of_the_first_checkpoint_format_still_restore() {
        // Written by the first release: the dedupe window held whole outcomes.
        let agent = "1d70cd30-d69e-4ddc-9cb5-2a79e61f4cfd";
        let view = format!(
            r#"{{"agent_id":"{agent}","user_id":"{agent}","name":"a","description":"","wallet_address":null,
            "currency":"USDC","rules":{{"daily_limit":null,"transaction_limit":"100","require_approval_for_all":false,
            "require_approval_above_amount":null}},"tags":[],"status":"active","created_ms":1,"balance":"6.1"}}"#
        );
        let record = format!(
            r#"{{"epoch":1,"last_offset":3,"state":{{"view":{view},"version":3,"recent":[
            ["0c0a3d5e-7b2a-4f5e-9a55-6a9d3c1b2a11",{{"Agent":{view}}}],
            ["0c0a3d5e-7b2a-4f5e-9a55-6a9d3c1b2a12",{{"Rejected":{{"code":"Invalid","message":"Invalid deposit amount"}}}}]]}}}}"#
        );
        let r: Restored<AgentState> = restore(vec![(
            format!("{agent}@1.ff4048a6"),
            Some(record.into_bytes()),
        )])
        .unwrap();
        let (state, last) = &r.states[&Uuid::parse_str(agent).unwrap()];
        assert_eq!(*last, (3, 0, 0));
        assert_eq!(state.view.balance, Decimal::new(61, 1));
        assert_eq!(state.recent.len(), 2);
        assert_eq!(
            state.recent[0].1,
            crate::agents::Answer::Balance(Decimal::new(61, 1))
        );
    }

    #[test]
    fn empty_changelog_starts_at_zero() {
        let r = restore::<AgentState, _>(vec![]).unwrap();
        assert_eq!((r.next_offset, r.max_epoch, r.states.len()), (0, 0, 0));
    }

    #[test]
    fn latest_record_and_highest_marker_win() {
        let e1 = Epoch {
            number: 1,
            nonce: 7,
        };
        let a = Uuid::from_u128(1);
        let r: Restored<AgentState> = restore(vec![
            rec(e1, a, 3, 10),
            marker(e1, 4),
            rec(e1, a, 9, 20),
            marker(e1, 10),
        ])
        .unwrap();
        assert_eq!(r.next_offset, 10);
        assert_eq!(r.states[&a].1, (9, 0, 0));
        assert_eq!(r.states[&a].0.view.balance, Decimal::from(20));
    }

    #[test]
    fn a_stale_owner_never_rolls_an_agent_back() {
        // B took over at epoch 2 and checkpointed agent a at offset 20; then
        // the stale owner A (epoch 1) wrote a at offset 12. A's key differs, so
        // compaction keeps both; restore keeps the one reflecting more input.
        let (ea, eb) = (
            Epoch {
                number: 1,
                nonce: 1,
            },
            Epoch {
                number: 2,
                nonce: 2,
            },
        );
        let a = Uuid::from_u128(1);
        let r: Restored<AgentState> = restore(vec![
            rec(ea, a, 5, 1),
            marker(eb, 6),
            rec(eb, a, 20, 3),
            marker(eb, 21),
            rec(ea, a, 12, 2),
        ])
        .unwrap();
        assert_eq!(r.states[&a].1, (20, 0, 0));
        assert_eq!(r.max_epoch, 2);
        assert_eq!(r.next_offset, 21);
    }

    #[test]
    fn tombstones_remove_keys_and_records_without_marker_still_count() {
        let (e1, e2) = (
            Epoch {
                number: 1,
                nonce: 1,
            },
            Epoch {
                number: 2,
                nonce: 1,
            },
        );
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut log = vec![
            rec(e1, a, 1, 1),
            marker(e1, 2),
            rec(e2, a, 1, 1),
            marker(e2, 2),
        ];
        log.push((e1.state_key(a, 0), None));
        log.push((e1.marker_key(), None));
        // A batch whose marker never made it: b's record counts, the marker stays at 2.
        log.push(rec(e2, b, 5, 9));
        let r: Restored<AgentState> = restore(log).unwrap();
        assert_eq!(r.next_offset, 2);
        assert_eq!(r.states.len(), 2);
        assert_eq!(r.states[&b].1, (5, 0, 0));
    }

    fn numbered(
        epoch: Epoch,
        agent: Uuid,
        (last, step): (i64, u32),
        (seq, slot): (u64, u8),
        balance: i64,
    ) -> (String, Option<Vec<u8>>) {
        let r = StateRecord {
            epoch: epoch.number,
            last_offset: last,
            last_sub: 0,
            last_step: step,
            seq: Some(seq),
            state: state(agent, balance),
        };
        (
            epoch.state_key(agent, slot),
            Some(serde_json::to_vec(&r).unwrap()),
        )
    }

    fn marker_of(epoch: Epoch, next: i64, seq: u64) -> (String, Option<Vec<u8>>) {
        let m = Marker {
            epoch: epoch.number,
            next_offset: next,
            seq: Some(seq),
        };
        (epoch.marker_key(), Some(serde_json::to_vec(&m).unwrap()))
    }

    #[test]
    fn a_half_written_checkpoint_is_ignored_whole() {
        // Checkpoint 1 (a paid b in place at offset 4, step 1) is whole;
        // checkpoint 2 (offset 7) reached the log for a only, in the other
        // slot, before the crash. Restore must bring both back as of
        // checkpoint 1 — a at 7 with b at 4 would lose b's credit on replay.
        let e = Epoch {
            number: 1,
            nonce: 9,
        };
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let log = vec![
            marker_of(e, 0, 0),
            numbered(e, a, (4, 0), (1, 0), 6),
            numbered(e, b, (4, 1), (1, 0), 4),
            marker_of(e, 5, 1),
            numbered(e, a, (7, 0), (2, 1), 3),
        ];
        let r: Restored<AgentState> = restore(log.clone()).unwrap();
        assert_eq!(r.next_offset, 5);
        assert_eq!(r.states[&a].1, (4, 0, 0));
        assert_eq!(r.states[&a].0.view.balance, Decimal::from(6));
        assert_eq!(r.states[&b].1, (4, 0, 1));

        // Once its marker lands, checkpoint 2 counts.
        let mut whole = log;
        whole.push(marker_of(e, 8, 2));
        let r: Restored<AgentState> = restore(whole).unwrap();
        assert_eq!((r.next_offset, r.states[&a].1), (8, (7, 0, 0)));

        // Records of an owner with no marker at all never count.
        let lone = Epoch {
            number: 2,
            nonce: 1,
        };
        let r: Restored<AgentState> = restore(vec![numbered(lone, a, (9, 0), (1, 0), 1)]).unwrap();
        assert!(r.states.is_empty());
        assert_eq!(r.max_epoch, 2);
    }
}

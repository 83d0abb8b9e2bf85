//! Vertical agents: the worker pools that carry out opportunity executions.
//! Executing an opportunity writes an [`ExecutionRequest`] to the internal
//! `agentbank.executions` topic; each vertical's pool reads it and completes
//! the opportunity with a `CompleteOpportunity` command (idempotent in the
//! opportunities machine, so a request worked twice completes once). This
//! module owns the request's wire form, which pool a vertical belongs to,
//! the agents' ids, the control actions and their bounds.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::revenue::opportunity::CompleteOpportunity;
use crate::{Command, CommandPayload, SchemaError};

/// Partitions of the executions topic — its own count, not the deployment's
/// (`AGENTBANK_PARTITIONS`), because it bounds a pool's replicas: instance
/// `i` of `n` reads the partitions `p` with `p % n == i`.
pub const EXECUTION_PARTITIONS: i32 = 8;

/// Most worker instances of one vertical (one partition each at most).
pub const REPLICAS_MAX: i32 = EXECUTION_PARTITIONS;

/// The pool that takes executions of verticals no pool is configured for.
pub const GENERAL: &str = "general";

/// Verticals with their own pool unless `AGENTBANK_VERTICALS` says otherwise.
pub const DEFAULT_VERTICALS: [&str; 4] = ["saas", "fintech", "ecommerce", "healthcare"];

/// Longest `parameters.reason` of a control action.
pub const REASON_CHARS_MAX: usize = 200;

/// Wire version of [`ExecutionRequest`] records (first byte).
const EXECUTION_V1: u8 = 1;

/// One execution to carry out; key = the opportunity id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionRequest {
    #[serde(with = "crate::ids::uuid_text")]
    pub opportunity_id: Uuid,
    #[serde(with = "crate::ids::uuid_text")]
    pub tenant_id: Uuid,
    /// The opportunity's vertical as its creator wrote it.
    pub vertical: String,
    /// When execution started: the completion must name it (a stale
    /// completion of an earlier execution is ignored by the machine).
    pub started_ms: i64,
}

impl ExecutionRequest {
    /// A version byte, then JSON (an internal topic: small and rare).
    pub fn encode(&self) -> Result<Vec<u8>, SchemaError> {
        let mut bytes = vec![EXECUTION_V1];
        serde_json::to_writer(&mut bytes, self)?;
        Ok(bytes)
    }

    /// The command that completes this execution, for the opportunities
    /// machine. Its id is derived from the request, so working a request
    /// twice sends the same command twice (and the machine applies it once).
    pub fn completion(&self, timestamp_ms: i64) -> Command {
        let name = format!("complete:{}", self.started_ms);
        Command {
            id: Uuid::new_v5(&self.opportunity_id, name.as_bytes()),
            agent_id: self.opportunity_id,
            user_id: self.tenant_id,
            correlation_id: None,
            timestamp_ms,
            payload: CommandPayload::CompleteOpportunity(CompleteOpportunity {
                opportunity_id: self.opportunity_id,
                started_ms: self.started_ms,
            }),
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, SchemaError> {
        match bytes.split_first() {
            Some((&EXECUTION_V1, json)) => Ok(serde_json::from_slice(json)?),
            Some((v, _)) => Err(SchemaError::Shape(format!(
                "execution request: unknown version {v}"
            ))),
            None => Err(SchemaError::Shape("execution request: empty".into())),
        }
    }
}

/// The configured vertical pools: named verticals and [`GENERAL`] last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verticals(Vec<String>);

impl Verticals {
    /// From a comma-separated list (`AGENTBANK_VERTICALS`); names are
    /// lower-case `[a-z0-9_-]`, 1–40 characters; `general` is always added.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut names: Vec<String> = vec![];
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let ok = name.len() <= 40
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if !ok {
                return Err(format!(
                    "AGENTBANK_VERTICALS: {name:?} is not a vertical name ([a-z0-9_-], at most 40)"
                ));
            }
            if name != GENERAL && !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
        names.push(GENERAL.to_string());
        Ok(Verticals(names))
    }

    /// Every pool, `general` last.
    pub fn names(&self) -> &[String] {
        &self.0
    }

    /// The named verticals (without `general`).
    pub fn named(&self) -> &[String] {
        &self.0[..self.0.len() - 1]
    }

    /// The pool that carries out executions of `vertical` (case-insensitive).
    pub fn pool_of(&self, vertical: &str) -> &str {
        let v = vertical.trim().to_ascii_lowercase();
        self.named()
            .iter()
            .find(|n| **n == v)
            .map_or(GENERAL, String::as_str)
    }

    /// The pool named by an agent id (`agent_saas`), if configured.
    pub fn by_agent_id(&self, id: &str) -> Option<&str> {
        let name = id.strip_prefix("agent_")?;
        self.0.iter().find(|n| *n == name).map(String::as_str)
    }
}

impl Default for Verticals {
    fn default() -> Self {
        Verticals::parse(&DEFAULT_VERTICALS.join(",")).expect("valid defaults")
    }
}

/// A vertical agent's id in the API.
pub fn agent_id(pool: &str) -> String {
    format!("agent_{pool}")
}

/// `POST /v1/agents/{id}/control`'s actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Scale,
    Pause,
    Resume,
    Restart,
}

impl Action {
    pub const ALL: [Action; 4] = [
        Action::Scale,
        Action::Pause,
        Action::Resume,
        Action::Restart,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Scale => "scale",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Restart => "restart",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// The instance of `replicas` that reads `partition` (round robin).
pub fn instance_of(partition: i32, replicas: i32) -> i32 {
    partition % replicas.max(1)
}

/// The partitions instance `index` of `replicas` reads.
pub fn partitions_of(index: i32, replicas: i32) -> Vec<i32> {
    (0..EXECUTION_PARTITIONS)
        .filter(|p| instance_of(*p, replicas) == index)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_unknown_versions_are_refused() {
        let r = ExecutionRequest {
            opportunity_id: Uuid::new_v4(),
            tenant_id: Uuid::new_v4(),
            vertical: "SaaS".into(),
            started_ms: 1_700_000_000_000,
        };
        let bytes = r.encode().unwrap();
        assert_eq!(ExecutionRequest::decode(&bytes).unwrap(), r);
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert!(ExecutionRequest::decode(&v2).is_err());
        assert!(ExecutionRequest::decode(&[]).is_err());
        assert!(ExecutionRequest::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn verticals_route_unknown_names_to_general() {
        let v = Verticals::parse("saas, fintech,saas,general").unwrap();
        assert_eq!(v.names(), ["saas", "fintech", "general"]);
        assert_eq!(v.pool_of("SaaS "), "saas");
        assert_eq!(v.pool_of("biotech"), GENERAL);
        assert_eq!(v.by_agent_id("agent_fintech"), Some("fintech"));
        assert_eq!(v.by_agent_id("agent_general"), Some("general"));
        assert_eq!(v.by_agent_id("agent_biotech"), None);
        assert_eq!(v.by_agent_id("fintech"), None);
        assert!(Verticals::parse("Saas").is_err());
        assert!(Verticals::parse(&"x".repeat(41)).is_err());
        assert_eq!(Verticals::parse("").unwrap().names(), ["general"]);
    }

    #[test]
    fn every_partition_has_exactly_one_instance_at_every_scale() {
        for replicas in 1..=REPLICAS_MAX {
            let mut seen: Vec<i32> = (0..replicas)
                .flat_map(|i| partitions_of(i, replicas))
                .collect();
            seen.sort();
            assert_eq!(seen, (0..EXECUTION_PARTITIONS).collect::<Vec<_>>());
            assert!((0..replicas).all(|i| !partitions_of(i, replicas).is_empty()));
        }
    }
}

//! Topic names, defined once. A prefix (empty by default) lets several
//! deployments or test runs share one broker without seeing each other.

/// The topics of one deployment. Build with [`Topics::with_prefix`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Commands from the gateway and from sagas; key = agent id.
    pub commands: String,
    /// Domain events, the public stream: one Avro event per record; key =
    /// agent id. Written by the publisher from `events_log`.
    pub events: String,
    /// The same events as the processors write them: internal, packed per
    /// batch and partition of the agent id, each item the agent id's 16
    /// bytes then the Avro event ([`crate::packed::keyed`]). The sink and
    /// the publisher read it; replies wait for the sink on its positions.
    pub events_log: String,
    /// Command results for the gateway; key = correlation id.
    pub replies: String,
    /// Processor checkpoints (compacted); key = `<agent id>@<epoch>`.
    pub state: String,
    /// Webhook deliveries that exhausted their retries; key = endpoint id,
    /// value = the envelope JSON.
    pub webhooks_dead_letter: String,
    /// On-chain transfers asked for by agents' processors; key = agent id.
    pub settlement_requests: String,
    /// What became of them (confirmed or failed); key = agent id.
    pub settlement_results: String,
    /// The opportunities machine's commands; key = opportunity id.
    pub opportunity_commands: String,
    /// Its checkpoints (compacted), as `state` is for the agents.
    pub opportunity_state: String,
    /// The pricing machine's commands; key = the tenant's product key.
    pub pricing_commands: String,
    pub pricing_state: String,
    /// The revenue ledger's commands; key = the tenant's ledger key.
    pub revenue_commands: String,
    pub revenue_state: String,
    /// The portfolio machine's commands; key = the tenant's portfolio key.
    pub portfolio_commands: String,
    pub portfolio_state: String,
    /// Opportunity executions for the vertical agents' worker pools; key =
    /// opportunity id. Internal; its partition count is fixed
    /// ([`crate::revenue::workers::EXECUTION_PARTITIONS`]), not the deployment's.
    pub executions: String,
}

/// Which keyed machine a command is for: each has its own commands and
/// state topics; all share the events and replies topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MachineKind {
    Agents,
    Opportunities,
    Pricing,
    Revenue,
    Portfolio,
}

impl Topics {
    pub fn with_prefix(prefix: &str) -> Self {
        Topics {
            commands: format!("{prefix}agentbank.commands"),
            events: format!("{prefix}agentbank.events"),
            events_log: format!("{prefix}agentbank.events.log"),
            replies: format!("{prefix}agentbank.replies"),
            state: format!("{prefix}agentbank.state"),
            webhooks_dead_letter: format!("{prefix}agentbank.webhooks.dead-letter"),
            settlement_requests: format!("{prefix}agentbank.settlement.requests"),
            settlement_results: format!("{prefix}agentbank.settlement.results"),
            opportunity_commands: format!("{prefix}agentbank.opportunities.commands"),
            opportunity_state: format!("{prefix}agentbank.opportunities.state"),
            pricing_commands: format!("{prefix}agentbank.pricing.commands"),
            pricing_state: format!("{prefix}agentbank.pricing.state"),
            revenue_commands: format!("{prefix}agentbank.revenue.commands"),
            revenue_state: format!("{prefix}agentbank.revenue.state"),
            portfolio_commands: format!("{prefix}agentbank.portfolio.commands"),
            portfolio_state: format!("{prefix}agentbank.portfolio.state"),
            executions: format!("{prefix}agentbank.executions"),
        }
    }

    /// The commands topic of `machine`.
    pub fn commands_of(&self, machine: MachineKind) -> &str {
        match machine {
            MachineKind::Agents => &self.commands,
            MachineKind::Opportunities => &self.opportunity_commands,
            MachineKind::Pricing => &self.pricing_commands,
            MachineKind::Revenue => &self.revenue_commands,
            MachineKind::Portfolio => &self.portfolio_commands,
        }
    }

    /// These topics as `machine`'s runtime sees them: its own commands and
    /// state topics in `commands` and `state`.
    pub fn for_machine(&self, machine: MachineKind) -> Topics {
        match machine {
            MachineKind::Agents => self.clone(),
            MachineKind::Opportunities => Topics {
                commands: self.opportunity_commands.clone(),
                state: self.opportunity_state.clone(),
                ..self.clone()
            },
            MachineKind::Pricing => Topics {
                commands: self.pricing_commands.clone(),
                state: self.pricing_state.clone(),
                ..self.clone()
            },
            MachineKind::Revenue => Topics {
                commands: self.revenue_commands.clone(),
                state: self.revenue_state.clone(),
                ..self.clone()
            },
            MachineKind::Portfolio => Topics {
                commands: self.portfolio_commands.clone(),
                state: self.portfolio_state.clone(),
                ..self.clone()
            },
        }
    }

    /// The topics whose partition count is fixed by design, with it.
    pub fn sized(&self) -> [(&str, i32); 1] {
        [(
            &self.executions,
            crate::revenue::workers::EXECUTION_PARTITIONS,
        )]
    }

    /// Every other topic with whether it is compacted. The state topic must have as
    /// many partitions as the commands topic: partition p checkpoints commands p.
    pub fn all(&self) -> [(&str, bool); 16] {
        [
            (&self.portfolio_commands, false),
            (&self.portfolio_state, true),
            (&self.revenue_commands, false),
            (&self.revenue_state, true),
            (&self.pricing_commands, false),
            (&self.pricing_state, true),
            (&self.opportunity_commands, false),
            (&self.opportunity_state, true),
            (&self.commands, false),
            (&self.events, false),
            (&self.events_log, false),
            (&self.replies, false),
            (&self.state, true),
            (&self.webhooks_dead_letter, false),
            (&self.settlement_requests, false),
            (&self.settlement_results, false),
        ]
    }
}

/// The partition a keyed record lands on with `partitions` partitions: Kafka's
/// default partitioner (Java's `murmur2`, also librdkafka's `murmur2_random`
/// for non-empty keys, which our producers set). The pipeline computes it
/// itself to pack records per partition; it must agree with the producers'
/// (`tests/partitioner.rs` checks against librdkafka).
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions.max(1) as u32) as i32
}

/// Kafka's murmur2 (seed 0x9747b28c), as in `org.apache.kafka.common.utils.Utils`.
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() == 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

impl Default for Topics {
    fn default() -> Self {
        Topics::with_prefix("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_applies_to_every_topic() {
        let t = Topics::with_prefix("t1.");
        assert!(t
            .all()
            .iter()
            .all(|(name, _)| name.starts_with("t1.agentbank.")));
        assert_eq!(Topics::default().commands, "agentbank.commands");
    }

    #[test]
    fn murmur2_matches_kafkas_test_vectors() {
        // org.apache.kafka.common.utils.UtilsTest#testMurmur2
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(
                murmur2(key) as i32,
                expected,
                "{}",
                String::from_utf8_lossy(key)
            );
        }
        assert!((0..1000).all(|i| (0..4).contains(&partition_for(format!("{i}").as_bytes(), 4))));
    }
}

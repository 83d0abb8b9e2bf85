//! Topic names, defined once. A prefix (empty by default) lets several
//! deployments or test runs share one broker without seeing each other.

/// The topics of one deployment. Build with [`Topics::with_prefix`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Commands from the gateway and from sagas; key = agent id.
    pub commands: String,
    /// Domain events, the public stream; key = agent id.
    pub events: String,
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
}

impl Topics {
    pub fn with_prefix(prefix: &str) -> Self {
        Topics {
            commands: format!("{prefix}agentbank.commands"),
            events: format!("{prefix}agentbank.events"),
            replies: format!("{prefix}agentbank.replies"),
            state: format!("{prefix}agentbank.state"),
            webhooks_dead_letter: format!("{prefix}agentbank.webhooks.dead-letter"),
            settlement_requests: format!("{prefix}agentbank.settlement.requests"),
            settlement_results: format!("{prefix}agentbank.settlement.results"),
        }
    }

    /// Every topic with whether it is compacted. The state topic must have as
    /// many partitions as the commands topic: partition p checkpoints commands p.
    pub fn all(&self) -> [(&str, bool); 7] {
        [
            (&self.commands, false),
            (&self.events, false),
            (&self.replies, false),
            (&self.state, true),
            (&self.webhooks_dead_letter, false),
            (&self.settlement_requests, false),
            (&self.settlement_results, false),
        ]
    }
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
}

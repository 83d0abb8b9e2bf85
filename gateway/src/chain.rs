//! The gateway's view of the chain, when one is configured: custodial wallet
//! addresses (derived, never stored), balances read from the chain, and the
//! transaction hash of a settlement the settlement service recorded — waited
//! for briefly, so a write's answer can carry a real `txHash`.

use std::time::{Duration, Instant};

use connectors::chain::{Chain, ChainConfig, Wallets};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::ApiError;

/// How long a write waits for its transfer to be signed and recorded.
pub const TX_HASH_WAIT: Duration = Duration::from_secs(5);

pub struct ChainAccess {
    pub chain: Chain,
    pub wallets: Wallets,
}

pub use connectors::read_model::chain::Transfer;

/// The seed's `{success, txHash, message}` for one transfer.
pub fn result_json(t: Option<&Transfer>, done: &str) -> Value {
    match t {
        None => json!({"success": true, "txHash": null,
            "message": format!("{done}; the on-chain transfer is queued")}),
        Some(t) if t.status == "failed" => json!({"success": false, "txHash": t.tx_hash,
            "message": format!("On-chain transfer failed: {}", t.reason)}),
        Some(t) => json!({"success": true, "txHash": t.tx_hash,
            "message": format!("{done} ({})", t.status)}),
    }
}

impl ChainAccess {
    pub fn new(config: ChainConfig) -> Result<Self, ApiError> {
        let wallets =
            Wallets::from_config(&config).map_err(|e| ApiError::Internal(e.to_string()))?;
        let chain = Chain::new(config).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(ChainAccess { chain, wallets })
    }

    pub fn network(&self) -> &str {
        &self.chain.config.network
    }

    /// `walletAddress` of an agent: its custodial address on the network.
    pub fn wallet_json(&self, agent_id: Uuid) -> Value {
        json!({
            "addressId": self.wallets.agent_address(agent_id).to_string(),
            "networkId": self.network(),
            "walletId": schemas::ids::short(schemas::ids::Kind::Agent, agent_id),
        })
    }

    /// The settlement's record once it is decided (confirmed or failed) and
    /// reported to the agent's processor, waiting up to `wait`; else the
    /// record as it then is (`None`: not recorded yet).
    pub async fn outcome(
        &self,
        pool: &PgPool,
        settlement: Uuid,
        wait: Duration,
    ) -> Result<Option<Transfer>, ApiError> {
        let deadline = Instant::now() + wait;
        loop {
            let t = connectors::read_model::chain::transfer(pool, settlement).await?;
            if t.as_ref().is_some_and(|t| t.decided()) || Instant::now() >= deadline {
                return Ok(t);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The settlement's record once it has a transaction hash or a decision,
    /// waiting up to [`TX_HASH_WAIT`]; `None` if it is not there by then.
    pub async fn transfer(
        &self,
        pool: &PgPool,
        settlement: Uuid,
    ) -> Result<Option<Transfer>, ApiError> {
        let deadline = Instant::now() + TX_HASH_WAIT;
        loop {
            let t = connectors::read_model::chain::transfer(pool, settlement).await?;
            if t.as_ref()
                .is_some_and(|t| t.tx_hash.is_some() || t.status == "failed")
                || Instant::now() >= deadline
            {
                return Ok(t);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

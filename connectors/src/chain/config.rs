//! The chain's configuration, read from the environment once. Nothing here is
//! Anvil-specific: point the variables at Base Sepolia (chain id 84532, its
//! USDC address, an HTTPS RPC endpoint) and the same binary settles there.

use std::time::Duration;

use alloy::primitives::Address;

use crate::ConnectorError;

/// Anvil's (and Hardhat's) well-known test mnemonic: its first account is the
/// local chain's funded deployer, our treasury in dev. Never for real money.
pub const DEV_MNEMONIC: &str = "test test test test test test test test test test test junk";

#[derive(Clone)]
pub struct ChainConfig {
    /// `AGENTBANK_CHAIN_RPC_URL`: the EVM JSON-RPC endpoint.
    pub rpc_url: String,
    /// `AGENTBANK_CHAIN_ID`: checked against the node at start.
    pub chain_id: u64,
    /// `AGENTBANK_USDC_ADDRESS`: the ERC-20 the bank's USDC lives in.
    pub token: Address,
    /// `AGENTBANK_USDC_DECIMALS` (6): checked against the contract at start.
    pub token_decimals: u8,
    /// `AGENTBANK_CHAIN_CONFIRMATIONS` (2): blocks (the including one counted)
    /// before a transfer's result is published. Reorgs shallower than this
    /// roll the transfer back to pending, never a published result.
    pub confirmations: u64,
    /// `AGENTBANK_CHAIN_NETWORK`: the network's name in the API
    /// (`walletAddress.networkId`); default from the chain id.
    pub network: String,
    /// `AGENTBANK_CHAIN_POLL_MS` (250): how often pending transfers are checked.
    pub poll: Duration,
    /// `AGENTBANK_CHAIN_FEE_BUMP_MS` (30 000): a transfer not mined this long
    /// after it was signed is signed again with the same nonce and higher fees.
    pub fee_bump_after: Duration,
    /// `AGENTBANK_CHAIN_TOKEN_GAS_LIMIT` (100 000): gas limit of a token transfer.
    pub token_gas_limit: u64,
    /// `AGENTBANK_WALLET_MNEMONIC`: the master secret every custodial key is
    /// derived from. Never logged; `Debug` leaves it out.
    mnemonic: String,
}

impl std::fmt::Debug for ChainConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainConfig")
            .field("rpc_url", &self.rpc_url)
            .field("chain_id", &self.chain_id)
            .field("token", &self.token)
            .field("confirmations", &self.confirmations)
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, ConnectorError> {
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| ConnectorError::Config(format!("{name}: not a number: {v}"))),
    }
}

impl ChainConfig {
    /// `None` when `AGENTBANK_CHAIN_RPC_URL` is unset or empty: the bank then
    /// runs ledger-only (no wallets, no transaction hashes).
    pub fn from_env() -> Result<Option<Self>, ConnectorError> {
        let Some(rpc_url) = var("AGENTBANK_CHAIN_RPC_URL") else {
            return Ok(None);
        };
        let token = var("AGENTBANK_USDC_ADDRESS")
            .ok_or_else(|| {
                ConnectorError::Config(
                    "AGENTBANK_USDC_ADDRESS is required with AGENTBANK_CHAIN_RPC_URL".into(),
                )
            })?
            .parse::<Address>()
            .map_err(|e| ConnectorError::Config(format!("AGENTBANK_USDC_ADDRESS: {e}")))?;
        let chain_id = number("AGENTBANK_CHAIN_ID", 31_337u64)?;
        let mnemonic = match var("AGENTBANK_WALLET_MNEMONIC") {
            Some(m) => m,
            None => {
                tracing::warn!(
                    "AGENTBANK_WALLET_MNEMONIC is not set: using the public test mnemonic; \
                     never do this with real money"
                );
                DEV_MNEMONIC.into()
            }
        };
        let network = var("AGENTBANK_CHAIN_NETWORK").unwrap_or_else(|| {
            match chain_id {
                8453 => "base-mainnet",
                84532 => "base-sepolia",
                _ => "anvil",
            }
            .into()
        });
        Ok(Some(ChainConfig {
            rpc_url,
            chain_id,
            token,
            token_decimals: number("AGENTBANK_USDC_DECIMALS", 6u8)?,
            confirmations: number("AGENTBANK_CHAIN_CONFIRMATIONS", 2u64)?.max(1),
            network,
            poll: Duration::from_millis(number("AGENTBANK_CHAIN_POLL_MS", 250u64)?),
            fee_bump_after: Duration::from_millis(number(
                "AGENTBANK_CHAIN_FEE_BUMP_MS",
                30_000u64,
            )?),
            token_gas_limit: number("AGENTBANK_CHAIN_TOKEN_GAS_LIMIT", 100_000u64)?,
            mnemonic,
        }))
    }

    /// A local chain with the test mnemonic and default timings (tests, tools).
    pub fn local(rpc_url: &str, token: Address, confirmations: u64) -> Self {
        ChainConfig {
            rpc_url: rpc_url.into(),
            chain_id: 31_337,
            token,
            token_decimals: 6,
            confirmations,
            network: "anvil".into(),
            poll: Duration::from_millis(250),
            fee_bump_after: Duration::from_secs(30),
            token_gas_limit: 100_000,
            mnemonic: DEV_MNEMONIC.into(),
        }
    }

    pub(crate) fn mnemonic(&self) -> &str {
        &self.mnemonic
    }
}

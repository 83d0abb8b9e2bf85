//! The chain calls the settlement service and the gateway make, over EVM
//! JSON-RPC with alloy. Every failure becomes a [`ConnectorError::Chain`]
//! that says which call failed against which endpoint.

use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::eips::{BlockId, BlockNumberOrTag};
use alloy::network::TxSignerSync;
use alloy::primitives::{Address, Bytes, TxKind, B256, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::{TransactionInput, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;

use super::plan::Fees;
use super::ChainConfig;
use crate::ConnectorError;

alloy::sol! {
    function transfer(address to, uint256 value) external returns (bool);
    function balanceOf(address owner) external view returns (uint256);
    function decimals() external view returns (uint8);
}

/// The ERC-20 event, in a module of its own: our [`Transfer`] is the
/// transfer we sign.
mod erc20 {
    alloy::sol! {
        event Transfer(address indexed from, address indexed to, uint256 value);
    }
}

/// A token transfer found in a block's logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenTransfer {
    pub tx_hash: B256,
    pub log_index: u64,
    pub block: u64,
    pub from: Address,
    pub to: Address,
    pub units: U256,
}

/// Gas of a plain native-coin transfer.
pub const NATIVE_TRANSFER_GAS: u64 = 21_000;

/// A transfer to sign: the token (`Some`) or the native coin.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    pub token: Option<Address>,
    pub to: Address,
    pub units: U256,
}

/// A signed transaction: its hash and the bytes to broadcast.
#[derive(Debug, Clone)]
pub struct Signed {
    pub hash: B256,
    pub raw: Vec<u8>,
}

/// A receipt, reduced to what settlement needs.
#[derive(Debug, Clone, Copy)]
pub struct Receipt {
    pub block: u64,
    pub block_hash: B256,
    pub success: bool,
}

pub struct Chain {
    provider: RootProvider,
    pub config: ChainConfig,
}

impl Chain {
    pub fn new(config: ChainConfig) -> Result<Self, ConnectorError> {
        let url = config
            .rpc_url
            .parse()
            .map_err(|e| ConnectorError::Config(format!("AGENTBANK_CHAIN_RPC_URL: {e}")))?;
        Ok(Chain {
            provider: RootProvider::new_http(url),
            config,
        })
    }

    fn err(&self, call: &str, e: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::Chain(format!("{call} via {}: {e}", self.config.rpc_url))
    }

    /// Checks that the node is the configured chain and the token is there
    /// with the configured decimals: a wrong or reset chain is named plainly.
    pub async fn check(&self) -> Result<(), ConnectorError> {
        let id = self
            .provider
            .get_chain_id()
            .await
            .map_err(|e| self.err("eth_chainId", e))?;
        if id != self.config.chain_id {
            return Err(ConnectorError::Chain(format!(
                "{} is chain {id}, configured for chain {}",
                self.config.rpc_url, self.config.chain_id
            )));
        }
        let code = self
            .provider
            .get_code_at(self.config.token)
            .await
            .map_err(|e| self.err("eth_getCode", e))?;
        if code.is_empty() {
            return Err(ConnectorError::Chain(format!(
                "no contract at token address {} on chain {id} (was the chain reset without redeploying it?)",
                self.config.token
            )));
        }
        let decimals = self.call(decimalsCall {}.abi_encode()).await?;
        let decimals =
            decimalsCall::abi_decode_returns(&decimals).map_err(|e| self.err("decimals()", e))?;
        if decimals != self.config.token_decimals {
            return Err(ConnectorError::Chain(format!(
                "token {} has {decimals} decimals, configured for {}",
                self.config.token, self.config.token_decimals
            )));
        }
        Ok(())
    }

    async fn call_at(&self, data: Vec<u8>, at: BlockId) -> Result<Bytes, ConnectorError> {
        let request = TransactionRequest {
            to: Some(TxKind::Call(self.config.token)),
            input: TransactionInput::new(data.into()),
            ..Default::default()
        };
        self.provider
            .call(request)
            .block(at)
            .await
            .map_err(|e| self.err("eth_call", e))
    }

    async fn call(&self, data: Vec<u8>) -> Result<Bytes, ConnectorError> {
        self.call_at(data, BlockId::latest()).await
    }

    /// The token balance as of the latest block.
    pub async fn token_balance(&self, owner: Address) -> Result<U256, ConnectorError> {
        self.token_balance_at(owner, BlockId::latest()).await
    }

    /// The token balance at `at`; `BlockId::pending()` counts what the
    /// node's mempool will do to it (transfers sent, not yet included).
    pub async fn token_balance_at(
        &self,
        owner: Address,
        at: BlockId,
    ) -> Result<U256, ConnectorError> {
        let out = self
            .call_at(balanceOfCall { owner }.abi_encode(), at)
            .await?;
        balanceOfCall::abi_decode_returns(&out).map_err(|e| self.err("balanceOf()", e))
    }

    pub async fn native_balance(&self, owner: Address) -> Result<U256, ConnectorError> {
        self.native_balance_at(owner, BlockId::latest()).await
    }

    pub async fn native_balance_at(
        &self,
        owner: Address,
        at: BlockId,
    ) -> Result<U256, ConnectorError> {
        self.provider
            .get_balance(owner)
            .block_id(at)
            .await
            .map_err(|e| self.err("eth_getBalance", e))
    }

    /// Transactions of `owner` included so far (the next nonce the chain expects).
    pub async fn mined_nonce(&self, owner: Address) -> Result<u64, ConnectorError> {
        self.provider
            .get_transaction_count(owner)
            .latest()
            .await
            .map_err(|e| self.err("eth_getTransactionCount", e))
    }

    pub async fn fees(&self) -> Result<Fees, ConnectorError> {
        let f = self
            .provider
            .estimate_eip1559_fees()
            .await
            .map_err(|e| self.err("eth_feeHistory", e))?;
        Ok(Fees {
            max_fee_per_gas: f.max_fee_per_gas,
            max_priority_fee_per_gas: f.max_priority_fee_per_gas,
        })
    }

    pub fn gas_limit(&self, t: &Transfer) -> u64 {
        if t.token.is_some() {
            self.config.token_gas_limit
        } else {
            NATIVE_TRANSFER_GAS
        }
    }

    /// Signs `t` as an EIP-1559 transaction with `nonce` (no I/O).
    pub fn sign(
        &self,
        signer: &PrivateKeySigner,
        nonce: u64,
        t: &Transfer,
        fees: Fees,
    ) -> Result<Signed, ConnectorError> {
        let (to, value, input) = match t.token {
            Some(token) => (
                token,
                U256::ZERO,
                transferCall {
                    to: t.to,
                    value: t.units,
                }
                .abi_encode()
                .into(),
            ),
            None => (t.to, t.units, Bytes::new()),
        };
        let mut tx = TxEip1559 {
            chain_id: self.config.chain_id,
            nonce,
            gas_limit: self.gas_limit(t),
            max_fee_per_gas: fees.max_fee_per_gas,
            max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
            to: TxKind::Call(to),
            value,
            access_list: Default::default(),
            input,
        };
        let signature = signer
            .sign_transaction_sync(&mut tx)
            .map_err(|e| ConnectorError::Chain(format!("signing: {e}")))?;
        let envelope = TxEnvelope::from(tx.into_signed(signature));
        Ok(Signed {
            hash: *envelope.tx_hash(),
            raw: envelope.encoded_2718(),
        })
    }

    /// Broadcasts signed bytes. A node that already has them says so; that
    /// is success. A nonce the chain has passed is reported as
    /// [`SendOutcome::NonceUsed`]: the receipt check decides what it means.
    pub async fn send_raw(&self, raw: &[u8]) -> Result<SendOutcome, ConnectorError> {
        match self.provider.send_raw_transaction(raw).await {
            Ok(_) => Ok(SendOutcome::Sent),
            Err(e) => {
                let text = e.to_string().to_ascii_lowercase();
                if text.contains("already known") || text.contains("already imported") {
                    Ok(SendOutcome::Sent)
                } else if text.contains("nonce too low")
                    || text.contains("nonce has already been used")
                {
                    Ok(SendOutcome::NonceUsed)
                } else {
                    Err(self.err("eth_sendRawTransaction", e))
                }
            }
        }
    }

    pub async fn receipt(&self, hash: B256) -> Result<Option<Receipt>, ConnectorError> {
        let r = self
            .provider
            .get_transaction_receipt(hash)
            .await
            .map_err(|e| self.err("eth_getTransactionReceipt", e))?;
        Ok(r.and_then(|r| {
            Some(Receipt {
                block: r.block_number?,
                block_hash: r.block_hash?,
                success: r.status(),
            })
        }))
    }

    /// The configured token's `Transfer` logs in blocks `from..=to`.
    pub async fn token_transfers(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<TokenTransfer>, ConnectorError> {
        use alloy::sol_types::SolEvent;
        let filter = alloy::rpc::types::Filter::new()
            .address(self.config.token)
            .event_signature(erc20::Transfer::SIGNATURE_HASH)
            .from_block(from)
            .to_block(to);
        let logs = self
            .provider
            .get_logs(&filter)
            .await
            .map_err(|e| self.err("eth_getLogs", e))?;
        Ok(logs
            .iter()
            .filter_map(|log| {
                let decoded = log.log_decode::<erc20::Transfer>().ok()?;
                Some(TokenTransfer {
                    tx_hash: log.transaction_hash?,
                    log_index: log.log_index?,
                    block: log.block_number?,
                    from: decoded.inner.data.from,
                    to: decoded.inner.data.to,
                    units: decoded.inner.data.value,
                })
            })
            .collect())
    }

    pub async fn head(&self) -> Result<u64, ConnectorError> {
        self.provider
            .get_block_number()
            .await
            .map_err(|e| self.err("eth_blockNumber", e))
    }

    /// The canonical block's hash at `number`, if the chain is that long.
    pub async fn block_hash(&self, number: u64) -> Result<Option<B256>, ConnectorError> {
        let block = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Number(number))
            .await
            .map_err(|e| self.err("eth_getBlockByNumber", e))?;
        Ok(block.map(|b| b.header.hash))
    }
}

/// What broadcasting did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    Sent,
    /// The chain is past this nonce: this or another version of it was included.
    NonceUsed,
}

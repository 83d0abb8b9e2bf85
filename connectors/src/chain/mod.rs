//! On-chain settlement: the settlement service and everything it needs to
//! talk to an EVM chain (JSON-RPC through alloy, which does all signing, RLP
//! and ABI work).
//!
//! - [`config`]: chain id, RPC URL, token, confirmations, timings — all
//!   configuration, so the same binary settles on Anvil or Base Sepolia.
//! - [`wallets`]: custodial keys derived from one master mnemonic (BIP-32/44).
//! - [`client`]: the chain calls the service makes, with clear errors.
//! - [`plan`]: the pure decisions (amount units, fee bumps, confirmation
//!   depth, what an intent needs next), unit-tested without a chain.
//! - [`service`]: the settlement service: records each transfer's intent
//!   (with its nonce and signed bytes) in Postgres before broadcasting it,
//!   tracks it to the confirmation depth, and publishes the result.
//! - [`deposits`]: deposits to users' custodial addresses, watched on chain
//!   and credited to their wallets.

pub mod client;
pub mod config;
pub mod deposits;
pub mod plan;
pub mod service;
pub mod wallets;

pub use client::Chain;
pub use config::ChainConfig;
pub use wallets::Wallets;

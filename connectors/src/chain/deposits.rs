//! Deposits to users' custodial addresses: the way money enters a user's
//! wallet from outside when a chain is configured. The watcher reads the
//! token's `Transfer` logs block range by block range, once they are
//! `confirmations` deep, keeps those to a user's custodial address that the
//! bank did not send itself (a withdrawal to the user's wallet lands by its
//! own saga step), and credits each to the user's wallet with a `FundWallet`
//! command.
//!
//! Once, and never lost: a range's deposits and the next block to scan are
//! committed together; a deposit is marked credited only after its command
//! was acknowledged, and its command id is derived from the log (chain, tx
//! hash, log index), so a crash in between re-sends the same command, which
//! the wallet answers as a repeat. The first scan starts at the chain's
//! current head: earlier history is not credited.

use std::collections::{HashMap, HashSet};

use alloy::primitives::Address;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use schemas::command::FundWallet;
use schemas::topics::Topics;
use schemas::{Command, CommandPayload};

use super::client::TokenTransfer;
use super::{plan, Chain, Wallets};
use crate::kafka::{produce_all, Outgoing};
use crate::ConnectorError;

/// Most blocks one scan reads (bounds an `eth_getLogs` call).
pub const SCAN_BLOCKS_MAX: u64 = 2_000;

/// Namespace of deposit command ids (v5 of `chain:tx:log`).
const DEPOSIT_IDS: Uuid = Uuid::from_u128(0x6167_656e_7462_616e_6b2d_6465_706f_7369);

/// The watcher: which custodial address is whose, learned incrementally.
#[derive(Default)]
pub struct Watcher {
    users: HashMap<Address, Uuid>,
    /// Users created at or after this were not loaded yet.
    loaded_from: Option<DateTime<Utc>>,
}

/// Where the bank's pieces a scan uses live.
pub struct Bank<'a> {
    pub chain: &'a Chain,
    pub wallets: &'a Wallets,
    pub pool: &'a PgPool,
    pub producer: &'a rdkafka::producer::FutureProducer,
    pub topics: &'a Topics,
}

impl Watcher {
    /// Scans the next confirmed block range and credits what it found (and
    /// anything found before and not yet credited). Returns how many
    /// deposits were credited.
    pub async fn scan(&mut self, bank: &Bank<'_>) -> Result<usize, ConnectorError> {
        let chain_id = bank.chain.config.chain_id as i64;
        let head = bank.chain.head().await?;
        // A block with the confirmation depth: it and `depth - 1` after it.
        let safe = head.saturating_sub(bank.chain.config.confirmations.saturating_sub(1));
        let next: Option<i64> =
            sqlx::query_scalar("SELECT next_block FROM chain_deposit_scan WHERE chain_id = $1")
                .bind(chain_id)
                .fetch_optional(bank.pool)
                .await?;
        let Some(from) = next.map(|n| n as u64) else {
            sqlx::query(
                "INSERT INTO chain_deposit_scan (chain_id, next_block) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
            )
            .bind(chain_id)
            .bind(safe as i64 + 1)
            .execute(bank.pool)
            .await?;
            tracing::info!(chain_id, from_block = safe + 1, "deposit watcher starting");
            return Ok(0);
        };
        if from <= safe {
            let to = safe.min(from + SCAN_BLOCKS_MAX - 1);
            self.load_users(bank).await?;
            let found = bank.chain.token_transfers(from, to).await?;
            let deposits = self.deposits(bank, found).await?;
            let mut tx = bank.pool.begin().await?;
            for (t, user, amount) in &deposits {
                sqlx::query(
                    "INSERT INTO chain_deposits (chain_id, tx_hash, log_index, user_id, from_address,
                         amount, block_number)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                )
                .bind(chain_id)
                .bind(t.tx_hash.to_string())
                .bind(t.log_index as i64)
                .bind(user)
                .bind(t.from.to_string())
                .bind(amount)
                .bind(t.block as i64)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("UPDATE chain_deposit_scan SET next_block = $2 WHERE chain_id = $1")
                .bind(chain_id)
                .bind(to as i64 + 1)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        self.credit(bank, chain_id).await
    }

    /// Learns the custodial addresses of users created since the last load.
    async fn load_users(&mut self, bank: &Bank<'_>) -> Result<(), ConnectorError> {
        let rows: Vec<(Uuid, DateTime<Utc>)> = sqlx::query_as(
            "SELECT id, created_at FROM users WHERE $1::timestamptz IS NULL OR created_at >= $1
             ORDER BY created_at",
        )
        .bind(self.loaded_from)
        .fetch_all(bank.pool)
        .await?;
        for (user, created) in rows {
            self.users.insert(bank.wallets.user_address(user), user);
            self.loaded_from = Some(created);
        }
        Ok(())
    }

    /// The transfers that are deposits: to a user's custodial address, not
    /// sent by the bank, with an amount the ledger can hold.
    async fn deposits(
        &self,
        bank: &Bank<'_>,
        found: Vec<TokenTransfer>,
    ) -> Result<Vec<(TokenTransfer, Uuid, Decimal)>, ConnectorError> {
        let to_users: Vec<(TokenTransfer, Uuid)> = found
            .into_iter()
            .filter_map(|t| self.users.get(&t.to).map(|u| (t, *u)))
            .collect();
        if to_users.is_empty() {
            return Ok(vec![]);
        }
        let hashes: Vec<String> = to_users
            .iter()
            .map(|(t, _)| t.tx_hash.to_string())
            .collect();
        let ours: HashSet<String> = sqlx::query_scalar(
            "SELECT h FROM chain_transfers, unnest(array_append(replaced_hashes, tx_hash)) AS h
             WHERE chain_id = $1 AND h = ANY($2)",
        )
        .bind(bank.chain.config.chain_id as i64)
        .bind(&hashes)
        .fetch_all(bank.pool)
        .await?
        .into_iter()
        .collect();
        let decimals = bank.chain.config.token_decimals;
        Ok(to_users
            .into_iter()
            .filter(|(t, _)| !ours.contains(&t.tx_hash.to_string()))
            .filter_map(|(t, user)| {
                let amount = plan::from_units(t.units, decimals)
                    .filter(|a| schemas::money::validate_positive(*a, "USDC").is_ok());
                if amount.is_none() {
                    tracing::warn!(tx_hash = %t.tx_hash, units = %t.units,
                        "deposit with an amount the ledger cannot hold: not credited");
                }
                Some((t, user, amount?))
            })
            .collect())
    }

    /// Sends the `FundWallet` of every recorded, uncredited deposit.
    async fn credit(&self, bank: &Bank<'_>, chain_id: i64) -> Result<usize, ConnectorError> {
        let rows: Vec<(String, i64, Uuid, Decimal)> = sqlx::query_as(
            "SELECT tx_hash, log_index, user_id, amount FROM chain_deposits
             WHERE chain_id = $1 AND NOT credited ORDER BY block_number, log_index LIMIT 1000",
        )
        .bind(chain_id)
        .fetch_all(bank.pool)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let now = Utc::now().timestamp_millis();
        let records = rows
            .iter()
            .map(|(tx_hash, log_index, user, amount)| {
                let command = Command {
                    id: Uuid::new_v5(
                        &DEPOSIT_IDS,
                        format!("{chain_id}:{tx_hash}:{log_index}").as_bytes(),
                    ),
                    agent_id: *user,
                    user_id: *user,
                    correlation_id: None,
                    timestamp_ms: now,
                    payload: CommandPayload::FundWallet(FundWallet {
                        amount: *amount,
                        currency: "USDC".into(),
                        memo: format!("on-chain deposit {tx_hash}"),
                    }),
                };
                Ok(Outgoing {
                    topic: bank.topics.commands.clone(),
                    key: user.to_string(),
                    payload: Some(command.encode()?),
                    partition: None,
                })
            })
            .collect::<Result<Vec<_>, ConnectorError>>()?;
        produce_all(bank.producer, &records).await?;
        let hashes: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        let indexes: Vec<i64> = rows.iter().map(|r| r.1).collect();
        sqlx::query(
            "UPDATE chain_deposits SET credited = true
             WHERE chain_id = $1 AND (tx_hash, log_index) IN (SELECT * FROM unnest($2::text[], $3::bigint[]))",
        )
        .bind(chain_id)
        .bind(&hashes)
        .bind(&indexes)
        .execute(bank.pool)
        .await?;
        for (tx_hash, _, user, amount) in &rows {
            tracing::info!(%user, %amount, tx_hash, "on-chain deposit credited to the user's wallet");
        }
        metrics::counter!("agentbank_wallet_chain_deposits_total").increment(rows.len() as u64);
        Ok(rows.len())
    }
}

//! The settlement service: consumes `agentbank.settlement.requests`, sends
//! each transfer on chain at most once, tracks it to the confirmation depth
//! and publishes its result on `agentbank.settlement.results` (and, as a
//! `CompleteSettlement` command, to the agent's processor).
//!
//! Never twice, never lost:
//! - A request's intent — sending wallet, nonce (handed out under a row
//!   lock), signed bytes and hash — is committed to Postgres before the first
//!   broadcast, and the request's offset only after that. A crash before the
//!   commit re-reads the request; after it, the tracker finds the intent.
//! - The tracker reconciles every unreported intent with the chain by its
//!   hashes: broadcast (again) while pending, re-sign with the same nonce and
//!   higher fees when stuck (the chain can include only one version), follow
//!   a reorg below the depth back to pending, and decide once deep enough.
//! - A decision is recorded before it is published and marked reported after;
//!   a crash in between publishes it again (same ids: consumers dedupe).
//! - RPC failures are retried with backoff; a chain whose genesis changed was
//!   reset, and its in-flight transfers fail (their money returns) rather
//!   than wait forever.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use chrono::{DateTime, Utc};
use rdkafka::consumer::Consumer;
use rdkafka::{Message, Offset, TopicPartitionList};
use rust_decimal::Decimal;
use sqlx::PgPool;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use schemas::settlement::{self, asset, wallet, SettlementRequest, SettlementResult};
use schemas::topics::Topics;
use schemas::{Command, CommandPayload};

use super::client::{Chain, SendOutcome, Signed, Transfer};
use super::plan::{self, Fees, Policy, Seen, Step, Tracked};
use super::{ChainConfig, Wallets};
use crate::kafka::{produce_all, KafkaConfig, Outgoing};
use crate::ConnectorError;

/// What a sending wallet lacks for a transfer: why, and (when it is the
/// token) how many units.
struct Shortfall {
    reason: String,
    missing: Option<U256>,
}

/// Where an agent wallet's top-up from the treasury stands.
enum TopUp {
    /// Sent, not yet in a block: the request is taken up again shortly.
    Waiting,
    /// In a block: the agent's transfer can go.
    Landed,
    /// Refused or reverted, with the reason.
    Failed(String),
}

#[derive(Clone)]
pub struct SettlementConfig {
    pub chain: ChainConfig,
    pub kafka: KafkaConfig,
    pub topics: Topics,
}

/// Where a crash can be injected (`AGENTBANK_FAULT`), for the crash tests:
/// the process aborts at that point once per start.
fn fault(point: &str) {
    if std::env::var("AGENTBANK_FAULT").is_ok_and(|f| f == point) {
        tracing::error!(point, "fault injection: aborting the process");
        std::process::abort();
    }
}

/// Exponential backoff for chain and database retries: 200 ms doubling to 10 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(Duration::from_millis(200))
    }

    fn next(&mut self) -> Duration {
        let now = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(10));
        now
    }
}

struct Service {
    chain: Chain,
    wallets: Wallets,
    pool: PgPool,
    producer: rdkafka::producer::FutureProducer,
    topics: Topics,
    policy: Policy,
}

/// What intake records for a request.
enum Intent<'a> {
    Signed {
        nonce: i64,
        signed: &'a Signed,
        fees: Fees,
    },
    Refused(&'a str),
}

/// One recorded transfer, as the tracker reads it.
#[derive(Debug, sqlx::FromRow)]
struct Row {
    id: Uuid,
    agent_id: Uuid,
    user_id: Uuid,
    kind: String,
    asset: String,
    amount: Decimal,
    payment_id: Option<String>,
    from_address: String,
    to_address: String,
    nonce: Option<i64>,
    status: String,
    tx_hash: Option<String>,
    raw_tx: Option<Vec<u8>>,
    max_fee_per_gas: Option<Decimal>,
    priority_fee: Option<Decimal>,
    replaced_hashes: Vec<String>,
    block_number: Option<i64>,
    block_hash: Option<String>,
    reason: String,
    signed_at: Option<DateTime<Utc>>,
    broadcast_at: Option<DateTime<Utc>>,
    requested_at: DateTime<Utc>,
}

const ROW_COLUMNS: &str = "id, agent_id, user_id, kind, asset, amount, payment_id, from_address, \
    to_address, nonce, status, tx_hash, raw_tx, max_fee_per_gas, priority_fee, replaced_hashes, \
    block_number, block_hash, reason, signed_at, broadcast_at, requested_at";

fn since(t: Option<DateTime<Utc>>) -> Option<Duration> {
    t.map(|t| (Utc::now() - t).to_std().unwrap_or_default())
}

fn parse<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, ConnectorError>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| ConnectorError::Chain(format!("stored {what} {text:?}: {e}")))
}

fn wei(d: Option<Decimal>) -> u128 {
    d.and_then(|d| d.to_string().parse().ok())
        .unwrap_or_default()
}

/// Runs the service until `shutdown`.
pub async fn run(
    config: SettlementConfig,
    pool: PgPool,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectorError> {
    let wallets = Wallets::from_config(&config.chain)?;
    let policy = Policy {
        confirmations: config.chain.confirmations,
        fee_bump_after: config.chain.fee_bump_after,
        rebroadcast_every: Duration::from_secs(5),
    };
    let poll = config.chain.poll;
    let service = Arc::new(Service {
        chain: Chain::new(config.chain.clone())?,
        wallets,
        pool,
        producer: config.kafka.producer()?,
        topics: config.topics.clone(),
        policy,
    });
    tracing::info!(chain = ?config.chain, treasury = %service.wallets.treasury().address(),
        "settlement service starting");
    service.wait_for_chain(&mut shutdown).await;
    let wake = Arc::new(Notify::new());
    let tracker = tokio::spawn(track_loop(
        service.clone(),
        wake.clone(),
        poll,
        shutdown.clone(),
    ));
    let watcher = tokio::spawn(deposit_loop(service.clone(), poll * 4, shutdown.clone()));
    // Every requests partition, from the offsets stored in Postgres (no
    // consumer group: one service instance reads them all, and a restart
    // resumes at once instead of waiting for a dead member's session to end).
    let topic = config.topics.settlement_requests.clone();
    // Polled slowly: a transfer waits for blocks (a second or more) anyway,
    // and each fast poll costs the broker CPU the payment path needs.
    let consumer = config.kafka.watcher()?;
    let stored: Vec<(i32, i64)> =
        sqlx::query_as("SELECT partition, next_offset FROM chain_request_offsets WHERE topic = $1")
            .bind(&topic)
            .fetch_all(&service.pool)
            .await?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..config.kafka.partition_count(&topic)? {
        let offset = stored
            .iter()
            .find(|(sp, _)| *sp == p)
            .map_or(Offset::Beginning, |(_, o)| Offset::Offset(*o));
        tpl.add_partition_offset(&topic, p, offset)?;
    }
    consumer.assign(&tpl)?;
    loop {
        let message = tokio::select! {
            _ = shutdown.changed() => break,
            m = consumer.recv() => m?,
        };
        match SettlementRequest::decode(message.payload().unwrap_or_default()) {
            Err(e) => {
                tracing::error!(offset = message.offset(), error = %e, "undecodable settlement request skipped");
                metrics::counter!("agentbank_settlement_undecodable_total").increment(1);
            }
            Ok(request) => {
                let mut backoff = Backoff::new();
                while let Err(e) = service.intake(&request).await {
                    let wait = backoff.next();
                    metrics::counter!("agentbank_settlement_rpc_errors_total").increment(1);
                    tracing::warn!(settlement = %request.id, error = %e, retry_in = ?wait,
                        "could not record the transfer; retrying");
                    tokio::select! {
                        _ = shutdown.changed() => { tracker.abort(); watcher.abort(); return Ok(()); }
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        sqlx::query(
            "INSERT INTO chain_request_offsets (topic, partition, next_offset) VALUES ($1, $2, $3)
             ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
        )
        .bind(&topic)
        .bind(message.partition())
        .bind(message.offset() + 1)
        .execute(&service.pool)
        .await?;
        wake.notify_one();
    }
    tracker.abort();
    watcher.abort();
    Ok(())
}

/// Watches for deposits to users' custodial addresses
/// ([`super::deposits`]), every `every`, with backoff on errors.
async fn deposit_loop(service: Arc<Service>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut watcher = super::deposits::Watcher::default();
    let mut backoff = Backoff::new();
    loop {
        let bank = super::deposits::Bank {
            chain: &service.chain,
            wallets: &service.wallets,
            pool: &service.pool,
            producer: &service.producer,
            topics: &service.topics,
        };
        let wait = match watcher.scan(&bank).await {
            Ok(_) => {
                backoff = Backoff::new();
                every
            }
            Err(e) => {
                let wait = backoff.next();
                metrics::counter!("agentbank_settlement_rpc_errors_total").increment(1);
                tracing::warn!(error = %e, retry_in = ?wait, "deposit watch failed; retrying");
                wait
            }
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn track_loop(
    service: Arc<Service>,
    wake: Arc<Notify>,
    poll: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new();
    let mut genesis_checked = Instant::now();
    loop {
        let result = async {
            if genesis_checked.elapsed() > Duration::from_secs(5) {
                service.check_genesis().await?;
                genesis_checked = Instant::now();
            }
            service.track_all().await
        }
        .await;
        let wait = match result {
            Ok(()) => {
                backoff = Backoff::new();
                poll
            }
            Err(e) => {
                let wait = backoff.next();
                metrics::counter!("agentbank_settlement_rpc_errors_total").increment(1);
                tracing::warn!(error = %e, retry_in = ?wait, "settlement tracking failed; retrying");
                wait
            }
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

impl Service {
    /// Blocks until the chain answers as configured (logging why not, with
    /// backoff), then checks its genesis.
    async fn wait_for_chain(&self, shutdown: &mut watch::Receiver<bool>) {
        let mut backoff = Backoff::new();
        loop {
            let ready = async {
                self.chain.check().await?;
                self.check_genesis().await
            };
            match ready.await {
                Ok(()) => return,
                Err(e) => {
                    let wait = backoff.next();
                    tracing::error!(error = %e, retry_in = ?wait, "chain not usable yet");
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    fn chain_id(&self) -> i64 {
        self.chain.config.chain_id as i64
    }

    /// A changed genesis block means a fresh chain: in-flight transfers
    /// cannot happen there, so they fail (their money returns to the agents)
    /// and wallets' nonces restart from the chain.
    async fn check_genesis(&self) -> Result<(), ConnectorError> {
        let genesis = self
            .chain
            .block_hash(0)
            .await?
            .ok_or_else(|| ConnectorError::Chain("the chain has no block 0".into()))?
            .to_string();
        let known: Option<String> =
            sqlx::query_scalar("SELECT genesis_hash FROM chain_genesis WHERE chain_id = $1")
                .bind(self.chain_id())
                .fetch_optional(&self.pool)
                .await?;
        match known {
            Some(k) if k == genesis => Ok(()),
            None => {
                sqlx::query("INSERT INTO chain_genesis VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(self.chain_id())
                    .bind(&genesis)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
            Some(old) => {
                let mut tx = self.pool.begin().await?;
                let failed = sqlx::query(
                    "UPDATE chain_transfers SET status = 'failed', decided_at = now(),
                            reason = 'the chain was reset before the transfer was confirmed'
                     WHERE chain_id = $1 AND status IN ('signed', 'included')",
                )
                .bind(self.chain_id())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                sqlx::query("DELETE FROM chain_wallets WHERE chain_id = $1")
                    .bind(self.chain_id())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE chain_genesis SET genesis_hash = $2 WHERE chain_id = $1")
                    .bind(self.chain_id())
                    .bind(&genesis)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                tracing::error!(chain_id = self.chain_id(), old_genesis = %old, new_genesis = %genesis,
                    in_flight_failed = failed,
                    "the chain was reset: in-flight transfers fail and nonces restart from the chain");
                metrics::counter!("agentbank_settlement_chain_resets_total").increment(1);
                Ok(())
            }
        }
    }

    fn sender(&self, r: &SettlementRequest) -> PrivateKeySigner {
        if r.from_wallet == wallet::TREASURY {
            self.wallets.treasury().clone()
        } else {
            self.wallets.agent(r.agent_id)
        }
    }

    /// The key that signed a recorded transfer: the treasury's, or its agent's.
    fn signer_of(&self, row: &Row) -> PrivateKeySigner {
        if row.from_address == self.wallets.treasury().address().to_string() {
            self.wallets.treasury().clone()
        } else {
            self.wallets.agent(row.agent_id)
        }
    }

    fn token_of(&self, asset_name: &str) -> Option<Address> {
        (asset_name != asset::ETH).then_some(self.chain.config.token)
    }

    fn decimals_of(&self, asset_name: &str) -> u8 {
        if asset_name == asset::ETH {
            18
        } else {
            self.chain.config.token_decimals
        }
    }

    /// Records a request's intent (or its refusal) once; broadcasts it.
    async fn intake(&self, r: &SettlementRequest) -> Result<(), ConnectorError> {
        let known: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM chain_transfers WHERE id = $1")
                .bind(r.id)
                .fetch_optional(&self.pool)
                .await?;
        if known.is_some() {
            return Ok(()); // a redelivered request
        }
        let signer = self.sender(r);
        let from = signer.address();
        let to = match &r.to_address {
            Some(a) => parse::<Address>(a, "address")?,
            None => self.wallets.agent_address(r.agent_id),
        };
        let decimals = self.decimals_of(&r.asset);
        let transfer = match plan::to_units(r.amount, decimals) {
            Ok(units) => Transfer {
                token: self.token_of(&r.asset),
                to,
                units,
            },
            Err(reason) => return self.refuse(r, from, to, &reason).await,
        };
        let fees = self.chain.fees().await?;
        // An agent's wallet holds less than its ledger balance when other
        // agents paid it on the ledger only: the treasury, custodian of the
        // difference, tops it up first, and the transfer waits for that.
        let topped = self.top_up_state(r).await?;
        let waiting = || {
            Err(ConnectorError::Chain(format!(
                "waiting for the treasury's top-up of wallet {from}"
            )))
        };
        if let Some(TopUp::Waiting) = topped {
            return waiting();
        }
        if let Some(short) = self.lacks_funds(r, from, &transfer, fees).await? {
            let reason = match topped {
                Some(TopUp::Failed(why)) => {
                    format!(
                        "{}; the treasury could not top the wallet up: {why}",
                        short.reason
                    )
                }
                None if self.send_top_up(r, from, &short).await? => return waiting(),
                _ => short.reason,
            };
            return self.refuse(r, from, to, &reason).await;
        }
        let mined = self.chain.mined_nonce(from).await?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO chain_wallets (chain_id, address, next_nonce) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(self.chain_id())
        .bind(from.to_string())
        .bind(mined as i64)
        .execute(&mut *tx)
        .await?;
        let nonce: i64 = sqlx::query_scalar(
            "SELECT next_nonce FROM chain_wallets WHERE chain_id = $1 AND address = $2 FOR UPDATE",
        )
        .bind(self.chain_id())
        .bind(from.to_string())
        .fetch_one(&mut *tx)
        .await?;
        let signed = self.chain.sign(&signer, nonce as u64, &transfer, fees)?;
        let intent = Intent::Signed {
            nonce,
            signed: &signed,
            fees,
        };
        let inserted = self.record(&mut *tx, r, (from, to), intent).await?;
        if inserted == 0 {
            return Ok(()); // another instance recorded it meanwhile; its nonce stands
        }
        sqlx::query(
            "UPDATE chain_wallets SET next_nonce = $3 WHERE chain_id = $1 AND address = $2",
        )
        .bind(self.chain_id())
        .bind(from.to_string())
        .bind(nonce + 1)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(settlement = %r.id, kind = %r.kind, from = %from, to = %to, nonce,
            tx_hash = %signed.hash, amount = %r.amount, asset = %r.asset, "transfer recorded");
        // Broadcast now; if this fails the tracker sends it again.
        if let Err(e) = self.broadcast(r.id, &signed.raw).await {
            tracing::warn!(settlement = %r.id, error = %e, "broadcast failed; the tracker retries");
        }
        fault("settlement-after-broadcast");
        Ok(())
    }

    /// Why the sending wallet cannot pay for this transfer now, counting what
    /// it is already sending; `None` if it can.
    async fn lacks_funds(
        &self,
        r: &SettlementRequest,
        from: Address,
        t: &Transfer,
        fees: Fees,
    ) -> Result<Option<Shortfall>, ConnectorError> {
        // The node's pending state already counts what it has in its
        // mempool; add what was signed but not yet handed to it. (Counting
        // included transfers again against the latest block refused payable
        // ones under load.)
        let sending: Decimal = sqlx::query_scalar(
            "SELECT COALESCE(SUM(amount), 0) FROM chain_transfers
             WHERE chain_id = $1 AND from_address = $2 AND asset = $3
               AND status = 'signed' AND broadcast_at IS NULL",
        )
        .bind(self.chain_id())
        .bind(from.to_string())
        .bind(&r.asset)
        .fetch_one(&self.pool)
        .await?;
        let decimals = self.decimals_of(&r.asset);
        let sending_units = plan::to_units(sending, decimals).unwrap_or(U256::MAX);
        let show = |u: U256| {
            plan::from_units(u, decimals).map_or_else(|| u.to_string(), |d| d.to_string())
        };
        let pending = alloy::eips::BlockId::pending();
        let held = match t.token {
            Some(_) => self.chain.token_balance_at(from, pending).await?,
            None => self.chain.native_balance_at(from, pending).await?,
        };
        let needs = sending_units.saturating_add(t.units);
        if held < needs {
            let reason = format!(
                "insufficient {} balance in wallet {from}: holds {} (after transfers pending on chain), {} more being sent, needs {}",
                r.asset,
                show(held),
                show(sending_units),
                show(t.units)
            );
            let missing = t.token.is_some().then(|| needs - held);
            return Ok(Some(Shortfall { reason, missing }));
        }
        let gas = U256::from(self.chain.gas_limit(t)) * U256::from(fees.max_fee_per_gas);
        let native = self.chain.native_balance_at(from, pending).await?;
        let needed = gas
            + if t.token.is_none() {
                t.units + sending_units
            } else {
                U256::ZERO
            };
        if native < needed {
            let reason = format!(
                "wallet {from} cannot pay for gas: holds {} ETH, needs {} ETH",
                plan::from_units(native, 18).unwrap_or_default(),
                plan::from_units(needed, 18).unwrap_or_default()
            );
            return Ok(Some(Shortfall {
                reason,
                missing: None,
            }));
        }
        Ok(None)
    }

    /// Where the top-up for `r` stands, if one was sent.
    async fn top_up_state(&self, r: &SettlementRequest) -> Result<Option<TopUp>, ConnectorError> {
        if r.from_wallet != wallet::AGENT {
            return Ok(None);
        }
        let id = settlement::settlement_id(r.id, settlement::kind::TOP_UP);
        let known: Option<(String, String)> =
            sqlx::query_as("SELECT status, reason FROM chain_transfers WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(known.map(|(status, reason)| match status.as_str() {
            "included" | "confirmed" => TopUp::Landed,
            "failed" => TopUp::Failed(reason),
            _ => TopUp::Waiting,
        }))
    }

    /// Sends the treasury → agent wallet top-up of the tokens the wallet
    /// lacks for `r` (its id derived from the request's, so once); false
    /// when a top-up cannot help (gas, or the treasury's own transfer).
    async fn send_top_up(
        &self,
        r: &SettlementRequest,
        agent_wallet: Address,
        short: &Shortfall,
    ) -> Result<bool, ConnectorError> {
        let Some(missing) = short.missing.filter(|_| r.from_wallet == wallet::AGENT) else {
            return Ok(false);
        };
        let id = settlement::settlement_id(r.id, settlement::kind::TOP_UP);
        let decimals = self.decimals_of(&r.asset);
        let amount = plan::from_units(missing, decimals)
            .ok_or_else(|| ConnectorError::Chain(format!("top-up of {missing} units too large")))?;
        let request = SettlementRequest {
            id,
            kind: settlement::kind::TOP_UP.into(),
            amount,
            from_wallet: wallet::TREASURY.into(),
            to_address: Some(agent_wallet.to_string()),
            payment_id: None,
            ..r.clone()
        };
        tracing::info!(settlement = %r.id, top_up = %id, wallet = %agent_wallet, %amount,
            "the agent's wallet holds less than its ledger balance: topping it up from the treasury");
        metrics::counter!("agentbank_settlement_top_ups_total").increment(1);
        // The treasury's own request, through the same path (its funds checked).
        Box::pin(self.intake(&request)).await?;
        Ok(true)
    }

    /// Records a request that can never be sent; the tracker publishes it.
    async fn refuse(
        &self,
        r: &SettlementRequest,
        from: Address,
        to: Address,
        reason: &str,
    ) -> Result<(), ConnectorError> {
        tracing::warn!(settlement = %r.id, kind = %r.kind, reason, "transfer refused");
        self.record(&self.pool, r, (from, to), Intent::Refused(reason))
            .await?;
        Ok(())
    }

    /// Inserts a request's row once (by id): signed, with its nonce and
    /// bytes, or refused, with the reason. Returns the rows inserted (0: the
    /// request was recorded before).
    async fn record<'e, E>(
        &self,
        db: E,
        r: &SettlementRequest,
        (from, to): (Address, Address),
        intent: Intent<'_>,
    ) -> Result<u64, ConnectorError>
    where
        E: sqlx::PgExecutor<'e>,
    {
        let (status, reason, nonce, signed, fees) = match intent {
            Intent::Signed {
                nonce,
                signed,
                fees,
            } => ("signed", "", Some(nonce), Some(signed), Some(fees)),
            Intent::Refused(reason) => ("failed", reason, None, None, None),
        };
        let fee = |f: fn(&Fees) -> u128| fees.as_ref().map(|x| Decimal::from(f(x) as u64));
        Ok(sqlx::query(
            "INSERT INTO chain_transfers (id, agent_id, user_id, kind, asset, amount, payment_id,
                 chain_id, from_address, to_address, nonce, status, reason, tx_hash, raw_tx,
                 max_fee_per_gas, priority_fee, requested_at, signed_at, decided_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                 to_timestamp($18 / 1000.0),
                 CASE WHEN $12 = 'signed' THEN now() END,
                 CASE WHEN $12 = 'failed' THEN now() END)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(r.id)
        .bind(r.agent_id)
        .bind(r.user_id)
        .bind(&r.kind)
        .bind(&r.asset)
        .bind(r.amount)
        .bind(&r.payment_id)
        .bind(self.chain_id())
        .bind(from.to_string())
        .bind(to.to_string())
        .bind(nonce)
        .bind(status)
        .bind(reason)
        .bind(signed.map(|s| s.hash.to_string()))
        .bind(signed.map(|s| s.raw.clone()))
        .bind(fee(|f| f.max_fee_per_gas))
        .bind(fee(|f| f.max_priority_fee_per_gas))
        .bind(r.timestamp as f64)
        .execute(db)
        .await?
        .rows_affected())
    }

    async fn broadcast(&self, id: Uuid, raw: &[u8]) -> Result<SendOutcome, ConnectorError> {
        let outcome = self.chain.send_raw(raw).await?;
        sqlx::query("UPDATE chain_transfers SET broadcast_at = now() WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(outcome)
    }

    /// One pass over every unreported transfer, oldest first.
    async fn track_all(&self) -> Result<(), ConnectorError> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {ROW_COLUMNS} FROM chain_transfers WHERE NOT reported
             ORDER BY requested_at, nonce NULLS FIRST LIMIT 1000"
        ))
        .fetch_all(&self.pool)
        .await?;
        metrics::gauge!("agentbank_settlement_unreported").set(rows.len() as f64);
        let head = if rows
            .iter()
            .any(|r| r.status == "signed" || r.status == "included")
        {
            self.chain.head().await?
        } else {
            0
        };
        for row in rows {
            match row.status.as_str() {
                "confirmed" | "failed" => self.publish(&row).await?,
                _ => self.track(&row, head).await?,
            }
        }
        Ok(())
    }

    async fn track(&self, row: &Row, head: u64) -> Result<(), ConnectorError> {
        let nonce = row.nonce.unwrap_or_default() as u64;
        let from: Address = parse(&row.from_address, "address")?;
        // The nonce first, then receipts: a version included in between is
        // then still found, so a nonce taken by someone else is never confused
        // with ours.
        let chain_nonce = self.chain.mined_nonce(from).await?;
        let mut seen = Seen::Pending;
        let mut included_hash = None;
        for h in row.tx_hash.iter().chain(row.replaced_hashes.iter()) {
            let hash: B256 = parse(h, "tx hash")?;
            if let Some(r) = self.chain.receipt(hash).await? {
                seen = Seen::Included {
                    block: r.block,
                    block_hash: r.block_hash,
                    success: r.success,
                };
                included_hash = Some(h.clone());
                break;
            }
        }
        if seen == Seen::Pending && chain_nonce > nonce {
            return self.nonce_taken(row, from, chain_nonce).await;
        }
        let recorded = match (row.block_number, &row.block_hash) {
            (Some(b), Some(h)) => Some((b as u64, parse::<B256>(h, "block hash")?)),
            _ => None,
        };
        let height = match seen {
            Seen::Included { block, .. } => Some(block),
            Seen::Pending => recorded.map(|(b, _)| b),
        };
        let canonical = match height {
            Some(h) => self.chain.block_hash(h).await?,
            None => None,
        };
        let tracked = Tracked {
            included: recorded,
            since_signed: since(row.signed_at).unwrap_or_default(),
            since_broadcast: since(row.broadcast_at),
        };
        match plan::next_step(&tracked, seen, head, canonical, &self.policy) {
            Step::Wait => Ok(()),
            Step::Broadcast => {
                let raw = row.raw_tx.as_deref().unwrap_or_default();
                if self.broadcast(row.id, raw).await? == SendOutcome::NonceUsed {
                    // Included meanwhile (the next pass finds the receipt) or
                    // taken by another transaction (the nonce check decides).
                    tracing::info!(settlement = %row.id, nonce, "node reports the nonce used");
                }
                Ok(())
            }
            Step::BumpFees => self.bump_fees(row, nonce).await,
            Step::Included { block, block_hash } => {
                sqlx::query(
                    "UPDATE chain_transfers SET status = 'included', block_number = $2,
                            block_hash = $3, tx_hash = $4, included_at = now() WHERE id = $1",
                )
                .bind(row.id)
                .bind(block as i64)
                .bind(block_hash.to_string())
                .bind(included_hash)
                .execute(&self.pool)
                .await?;
                Ok(())
            }
            Step::Reorged => {
                tracing::warn!(settlement = %row.id, block = ?row.block_number,
                    "reorg: the transfer's block left the chain before the confirmation depth; pending again");
                metrics::counter!("agentbank_settlement_reorgs_total").increment(1);
                sqlx::query(
                    "UPDATE chain_transfers SET status = 'signed', block_number = NULL,
                            block_hash = NULL, included_at = NULL, broadcast_at = NULL WHERE id = $1",
                )
                .bind(row.id)
                .execute(&self.pool)
                .await?;
                Ok(())
            }
            Step::Final { success, block } => {
                let reason = if success {
                    ""
                } else {
                    "the transfer reverted on chain"
                };
                let status = if success { "confirmed" } else { "failed" };
                sqlx::query(
                    "UPDATE chain_transfers SET status = $2, reason = $3, block_number = $4,
                            tx_hash = COALESCE($5, tx_hash), decided_at = now() WHERE id = $1",
                )
                .bind(row.id)
                .bind(status)
                .bind(reason)
                .bind(block as i64)
                .bind(included_hash)
                .execute(&self.pool)
                .await?;
                fault("settlement-after-decide");
                let decided: Row = sqlx::query_as(&format!(
                    "SELECT {ROW_COLUMNS} FROM chain_transfers WHERE id = $1"
                ))
                .bind(row.id)
                .fetch_one(&self.pool)
                .await?;
                self.publish(&decided).await
            }
        }
    }

    /// Signs the transfer again with its nonce and higher fees; the earlier
    /// version's hash is kept (either may be the one included).
    async fn bump_fees(&self, row: &Row, nonce: u64) -> Result<(), ConnectorError> {
        let old = Fees {
            max_fee_per_gas: wei(row.max_fee_per_gas),
            max_priority_fee_per_gas: wei(row.priority_fee),
        };
        let fees = plan::bumped(old, self.chain.fees().await?);
        let signer = self.signer_of(row);
        let transfer = self.transfer_of(row)?;
        let signed = self.chain.sign(&signer, nonce, &transfer, fees)?;
        sqlx::query(
            "UPDATE chain_transfers SET tx_hash = $2, raw_tx = $3, max_fee_per_gas = $4,
                    priority_fee = $5, replaced_hashes = array_append(replaced_hashes, tx_hash),
                    signed_at = now(), broadcast_at = NULL WHERE id = $1",
        )
        .bind(row.id)
        .bind(signed.hash.to_string())
        .bind(&signed.raw)
        .bind(Decimal::from(fees.max_fee_per_gas as u64))
        .bind(Decimal::from(fees.max_priority_fee_per_gas as u64))
        .execute(&self.pool)
        .await?;
        metrics::counter!("agentbank_settlement_fee_bumps_total").increment(1);
        tracing::warn!(settlement = %row.id, nonce, old_hash = ?row.tx_hash, new_hash = %signed.hash,
            max_fee_per_gas = fees.max_fee_per_gas, "stuck transfer re-signed with higher fees");
        self.broadcast(row.id, &signed.raw).await.map(|_| ())
    }

    fn transfer_of(&self, row: &Row) -> Result<Transfer, ConnectorError> {
        Ok(Transfer {
            token: self.token_of(&row.asset),
            to: parse(&row.to_address, "address")?,
            units: plan::to_units(row.amount, self.decimals_of(&row.asset))
                .map_err(ConnectorError::Chain)?,
        })
    }

    /// The chain passed this transfer's nonce with none of its versions: a
    /// transaction from outside the service used the wallet. Ours can never be
    /// included now, so it is signed again with a fresh nonce.
    async fn nonce_taken(
        &self,
        row: &Row,
        from: Address,
        chain_nonce: u64,
    ) -> Result<(), ConnectorError> {
        let mut tx = self.pool.begin().await?;
        let next: i64 = sqlx::query_scalar(
            "UPDATE chain_wallets SET next_nonce = GREATEST(next_nonce, $3) + 1
             WHERE chain_id = $1 AND address = $2 RETURNING next_nonce - 1",
        )
        .bind(self.chain_id())
        .bind(from.to_string())
        .bind(chain_nonce as i64)
        .fetch_one(&mut *tx)
        .await?;
        let signer = self.signer_of(row);
        let fees = self.chain.fees().await?;
        let signed = self
            .chain
            .sign(&signer, next as u64, &self.transfer_of(row)?, fees)?;
        sqlx::query(
            "UPDATE chain_transfers SET nonce = $2, tx_hash = $3, raw_tx = $4, max_fee_per_gas = $5,
                    priority_fee = $6, replaced_hashes = '{}', signed_at = now(), broadcast_at = NULL
             WHERE id = $1",
        )
        .bind(row.id)
        .bind(next)
        .bind(signed.hash.to_string())
        .bind(&signed.raw)
        .bind(Decimal::from(fees.max_fee_per_gas as u64))
        .bind(Decimal::from(fees.max_priority_fee_per_gas as u64))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::warn!(settlement = %row.id, old_nonce = ?row.nonce, new_nonce = next, wallet = %from,
            "another transaction used the wallet's nonce; re-signed with a fresh one");
        self.broadcast(row.id, &signed.raw).await.map(|_| ())
    }

    /// Publishes a decided transfer (result topic + the agent's command),
    /// then marks it reported.
    async fn publish(&self, row: &Row) -> Result<(), ConnectorError> {
        let result = SettlementResult {
            request_id: row.id,
            agent_id: row.agent_id,
            user_id: row.user_id,
            kind: row.kind.clone(),
            asset: row.asset.clone(),
            amount: row.amount,
            payment_id: row.payment_id.clone(),
            status: if row.status == "confirmed" {
                settlement::status::CONFIRMED
            } else {
                settlement::status::FAILED
            }
            .into(),
            from_address: row.from_address.clone(),
            to_address: row.to_address.clone(),
            tx_hash: row.tx_hash.clone(),
            block_number: row.block_number,
            chain_id: self.chain_id(),
            reason: row.reason.clone(),
            timestamp: Utc::now().timestamp_millis(),
        };
        let command = Command {
            id: Uuid::new_v5(&row.id, b"complete-settlement"),
            agent_id: row.agent_id,
            user_id: row.user_id,
            correlation_id: None,
            timestamp_ms: result.timestamp,
            payload: CommandPayload::CompleteSettlement(result.clone()),
        };
        let records = [
            Outgoing {
                topic: self.topics.settlement_results.clone(),
                key: row.agent_id.to_string(),
                payload: Some(result.encode()?),
                partition: None,
            },
            Outgoing {
                topic: self.topics.commands.clone(),
                key: row.agent_id.to_string(),
                payload: Some(command.encode()?),
                partition: None,
            },
        ];
        produce_all(&self.producer, &records).await?;
        sqlx::query("UPDATE chain_transfers SET reported = true WHERE id = $1")
            .bind(row.id)
            .execute(&self.pool)
            .await?;
        let latency = since(Some(row.requested_at)).unwrap_or_default();
        metrics::histogram!("agentbank_settlement_seconds", "kind" => row.kind.clone())
            .record(latency.as_secs_f64());
        metrics::counter!("agentbank_settlement_transfers_total",
            "kind" => row.kind.clone(), "status" => row.status.clone())
        .increment(1);
        tracing::info!(settlement = %row.id, kind = %row.kind, status = %row.status,
            tx_hash = ?row.tx_hash, reason = %row.reason, "settlement result published");
        Ok(())
    }
}

//! Turns a batch of events into column arrays and writes them with one
//! multi-row statement per table (`UNNEST`), instead of a round trip per row.

use std::collections::HashMap;

use super::time::millis_to_timestamp;
use rust_decimal::Decimal;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use schemas::event::{JournalEntry, PaymentChange, SavingsChange, SavingsPosition};
use schemas::payment::Payment;
use schemas::{Event, EventPayload};

use crate::ConnectorError;

/// Column vectors for one batch.
#[derive(Default)]
pub struct Rows {
    events: EventRows,
    created: Vec<(Uuid, Uuid, schemas::event::AgentCreated, i64)>,
    /// Latest (version, change, ts) of each agent's settings in this batch.
    updated: HashMap<Uuid, (i64, schemas::event::AgentUpdated, i64)>,
    /// Latest (version, policies JSON) per agent whose policies changed.
    policies: HashMap<Uuid, (i64, String)>,
    /// Latest (version, balance, ts) per agent in this batch.
    balances: HashMap<Uuid, (i64, Decimal, i64)>,
    postings: PostingRows,
    transactions: TransactionRows,
    /// Latest (sender version, payment) per payment in this batch.
    payments: HashMap<Uuid, (i64, Uuid, Payment)>,
    /// Latest (agent version, agent, user, position) per position.
    savings: HashMap<Uuid, (i64, Uuid, Uuid, SavingsPosition)>,
    hooks: HookRows,
    /// The revenue platform's projection.
    revenue: super::revenue::RevenueRows,
    ledger: super::ledger::LedgerRows,
    portfolio: super::portfolio::PortfolioRows,
}

/// Per event: what webhook endpoints subscribed to its type would receive.
#[derive(Default)]
struct HookRows {
    event: Vec<Uuid>,
    user: Vec<Uuid>,
    ty: Vec<String>,
    payload: Vec<String>,
}

#[derive(Default)]
struct EventRows {
    id: Vec<Uuid>,
    ty: Vec<String>,
    agent: Vec<Uuid>,
    user: Vec<Uuid>,
    command: Vec<Uuid>,
    version: Vec<i64>,
    at_ms: Vec<i64>,
    partition: Vec<i32>,
    offset: Vec<i64>,
}

#[derive(Default)]
struct PostingRows {
    entry: Vec<String>,
    account: Vec<String>,
    amount: Vec<Decimal>,
    currency: Vec<String>,
    event: Vec<Uuid>,
    agent: Vec<Uuid>,
    at_ms: Vec<i64>,
}

#[derive(Default)]
struct TransactionRows {
    event: Vec<Uuid>,
    agent: Vec<Uuid>,
    user: Vec<Uuid>,
    kind: Vec<String>,
    amount: Vec<Decimal>,
    currency: Vec<String>,
    balance_after: Vec<Decimal>,
    at_ms: Vec<i64>,
}

impl Rows {
    pub fn push(&mut self, e: &Event, partition: i32, offset: i64) {
        let ev = &mut self.events;
        ev.id.push(e.id);
        ev.ty.push(e.payload.type_name().to_string());
        ev.agent.push(e.agent_id);
        ev.user.push(e.user_id);
        ev.command.push(e.command_id);
        ev.version.push(e.agent_version);
        ev.at_ms.push(e.timestamp_ms);
        ev.partition.push(partition);
        ev.offset.push(offset);
        let hooks = &mut self.hooks;
        hooks.event.push(e.id);
        hooks.user.push(e.user_id);
        hooks
            .ty
            .push(crate::webhooks::event_type(&e.payload).to_string());
        hooks.payload.push(crate::webhooks::envelope(e).to_string());
        match &e.payload {
            EventPayload::AgentCreated(c) => {
                self.created
                    .push((e.agent_id, e.user_id, c.clone(), e.timestamp_ms));
                self.set_balance(e.agent_id, e.agent_version, Decimal::ZERO, e.timestamp_ms);
            }
            EventPayload::AgentUpdated(u) => {
                let set = u
                    .changes
                    .iter()
                    .find(|c| c.field == schemas::command::agent_field::POLICIES);
                if let Some(text) = set.and_then(|c| c.to.clone()) {
                    let slot = self
                        .policies
                        .entry(e.agent_id)
                        .or_insert((e.agent_version, text.clone()));
                    if e.agent_version >= slot.0 {
                        *slot = (e.agent_version, text);
                    }
                }
                let slot = self.updated.entry(e.agent_id).or_insert((
                    e.agent_version,
                    u.clone(),
                    e.timestamp_ms,
                ));
                if e.agent_version >= slot.0 {
                    *slot = (e.agent_version, u.clone(), e.timestamp_ms);
                }
            }
            EventPayload::FundsDeposited(d) => self.movement(
                e,
                d.amount,
                &d.currency,
                d.balance_after,
                &d.memo,
                &d.journal,
            ),
            EventPayload::FundsWithdrawn(w) => self.movement(
                e,
                w.amount,
                &w.currency,
                w.balance_after,
                &w.memo,
                &w.journal,
            ),
            EventPayload::SignupBonusGranted(b) => self.postings(e, &b.currency, &b.journal),
            EventPayload::WalletChanged(w) => self.postings(e, &w.currency, &w.journal),
            EventPayload::PaymentConfirmed(c) => {
                self.payment_change(e, c, Some("payment sent"));
                self.set_payment(e, c);
            }
            EventPayload::PaymentReceived(c) => self.payment_change(e, c, Some("payment received")),
            EventPayload::PaymentRegistered(c)
            | EventPayload::PaymentApproved(c)
            | EventPayload::PaymentDeclined(c)
            | EventPayload::PaymentFailed(c) => {
                self.payment_change(e, c, None);
                self.set_payment(e, c);
            }
            EventPayload::SavingsDeposited(c) => self.savings_change(e, c, "savings deposit"),
            EventPayload::InterestAccrued(c) => self.savings_change(e, c, "interest"),
            EventPayload::SavingsWithdrawn(c) => self.savings_change(e, c, "savings withdrawal"),
            EventPayload::OpportunityCreated(c)
            | EventPayload::OpportunityActivated(c)
            | EventPayload::OpportunityExecuted(c) => self.revenue.opportunity(&c.opportunity),
            EventPayload::QuoteIssued(c)
            | EventPayload::QuoteExecuted(c)
            | EventPayload::QuoteExpired(c) => self.revenue.quote(&c.quote),
            // Kept in the events table (and delivered); no projection of its own.
            EventPayload::SystemAlert(_) | EventPayload::RevenueMilestone(_) => {}
            EventPayload::RevenueRecorded(r) => self.ledger.entry(&r.entry),
            EventPayload::RevenueTargetSet(t) => self.ledger.target(e.user_id, e.agent_version, t),
            EventPayload::PositionOpened(p) => self.portfolio.opened(e, &p.position),
            EventPayload::PortfolioRebalanced(r) => self.portfolio.rebalanced(e, r),
            EventPayload::TransferSettled(t) => {
                self.set_balance(e.agent_id, e.agent_version, t.balance_after, e.timestamp_ms);
                if let Some(journal) = &t.journal {
                    self.postings(e, &t.asset, journal);
                    if t.status != schemas::settlement::status::CONFIRMED {
                        let kind = "withdrawal returned";
                        self.transaction(e, kind, t.amount, &t.asset, t.balance_after);
                    }
                }
            }
        }
    }

    /// A savings event: the agent's balance, the postings, a transaction row
    /// (`interest` counts as earned in summaries; moves into and out of the
    /// vault are the agent's own money and count as neither), the position.
    fn savings_change(&mut self, e: &Event, c: &SavingsChange, kind: &str) {
        let p = &c.position;
        self.movement(e, c.amount, &p.currency, c.balance_after, kind, &c.journal);
        let slot = self.savings.entry(p.id()).or_insert((
            e.agent_version,
            e.agent_id,
            e.user_id,
            p.clone(),
        ));
        if e.agent_version >= slot.0 {
            *slot = (e.agent_version, e.agent_id, e.user_id, p.clone());
        }
    }

    /// A payment event on either side: the agent's balance, the postings and,
    /// when money left or reached the agent for good, a transaction row.
    fn payment_change(&mut self, e: &Event, c: &PaymentChange, kind: Option<&str>) {
        let p = &c.payment;
        self.set_balance(e.agent_id, e.agent_version, c.balance_after, e.timestamp_ms);
        if let Some(journal) = &c.journal {
            self.postings(e, &p.currency, journal);
        }
        if let Some(kind) = kind {
            self.transaction(e, kind, p.amount, &p.currency, c.balance_after);
        }
    }

    fn set_payment(&mut self, e: &Event, c: &PaymentChange) {
        let slot = self.payments.entry(c.payment.id()).or_insert((
            e.agent_version,
            e.user_id,
            c.payment.clone(),
        ));
        if e.agent_version >= slot.0 {
            *slot = (e.agent_version, e.user_id, c.payment.clone());
        }
    }

    /// A deposit or withdrawal: the new balance, the journal postings and a
    /// transaction row (`kind` is the event's memo, the amount unsigned).
    fn movement(
        &mut self,
        e: &Event,
        amount: Decimal,
        currency: &str,
        balance_after: Decimal,
        memo: &str,
        journal: &JournalEntry,
    ) {
        self.set_balance(e.agent_id, e.agent_version, balance_after, e.timestamp_ms);
        self.postings(e, currency, journal);
        self.transaction(e, memo, amount, currency, balance_after);
    }

    fn postings(&mut self, e: &Event, currency: &str, journal: &JournalEntry) {
        for p in &journal.postings {
            let pr = &mut self.postings;
            pr.entry.push(journal.entry_id.clone());
            pr.account.push(p.account.clone());
            pr.amount.push(p.amount);
            pr.currency.push(currency.to_string());
            pr.event.push(e.id);
            pr.agent.push(e.agent_id);
            pr.at_ms.push(e.timestamp_ms);
        }
    }

    fn transaction(
        &mut self,
        e: &Event,
        kind: &str,
        amount: Decimal,
        currency: &str,
        balance_after: Decimal,
    ) {
        let t = &mut self.transactions;
        t.event.push(e.id);
        t.agent.push(e.agent_id);
        t.user.push(e.user_id);
        t.kind.push(kind.to_string());
        t.amount.push(amount);
        t.currency.push(currency.to_string());
        t.balance_after.push(balance_after);
        t.at_ms.push(e.timestamp_ms);
    }

    fn set_balance(&mut self, agent: Uuid, version: i64, balance: Decimal, at_ms: i64) {
        let slot = self
            .balances
            .entry(agent)
            .or_insert((version, balance, at_ms));
        if version >= slot.0 {
            *slot = (version, balance, at_ms);
        }
    }

    pub async fn write(self, tx: &mut Transaction<'_, Postgres>) -> Result<(), ConnectorError> {
        let ev = self.events;
        if ev.id.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO events (id, type, agent_id, user_id, command_id, agent_version, occurred_at, topic_partition,
                topic_offset, envelope)
             SELECT id, type, agent_id, user_id, command_id, agent_version, to_timestamp(at_ms / 1000.0), part, off, env
             FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::uuid[], $6::int8[], $7::int8[], $8::int4[],
                $9::int8[], $10::text[]) WITH ORDINALITY
               AS u(id, type, agent_id, user_id, command_id, agent_version, at_ms, part, off, env, n)
             ORDER BY n
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&ev.id).bind(&ev.ty).bind(&ev.agent).bind(&ev.user).bind(&ev.command)
        .bind(&ev.version).bind(&ev.at_ms).bind(&ev.partition).bind(&ev.offset).bind(&self.hooks.payload)
        .execute(&mut **tx)
        .await?;

        for (agent, user, c, at_ms) in &self.created {
            sqlx::query(
                "INSERT INTO agents (id, user_id, name, description, wallet_address, currency, daily_limit,
                    transaction_limit, require_approval_for_all, require_approval_above_amount, tags, status,
                    balance, version, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0, 0, $13, $13)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(agent).bind(user).bind(&c.name).bind(&c.description).bind(&c.wallet_address)
            .bind(&c.currency).bind(c.daily_limit).bind(c.transaction_limit)
            .bind(c.require_approval_for_all).bind(c.require_approval_above_amount)
            .bind(&c.tags).bind(&c.status).bind(millis_to_timestamp(*at_ms))
            .execute(&mut **tx)
            .await?;
        }

        // Settings only forward, by their own version (balance events move `version`).
        for (agent, (version, u, at_ms)) in &self.updated {
            sqlx::query(
                "UPDATE agents SET description = $2, daily_limit = $3, transaction_limit = $4,
                    require_approval_for_all = $5, require_approval_above_amount = $6, tags = $7,
                    status = $8, settings_version = $9, updated_at = GREATEST(updated_at, $10)
                 WHERE id = $1 AND settings_version < $9",
            )
            .bind(agent)
            .bind(&u.description)
            .bind(u.daily_limit)
            .bind(u.transaction_limit)
            .bind(u.require_approval_for_all)
            .bind(u.require_approval_above_amount)
            .bind(&u.tags)
            .bind(&u.status)
            .bind(version)
            .bind(millis_to_timestamp(*at_ms))
            .execute(&mut **tx)
            .await?;
        }

        for (agent, (version, text)) in &self.policies {
            sqlx::query(
                "UPDATE agents SET policies = $2::jsonb, policies_version = $3
                 WHERE id = $1 AND policies_version < $3",
            )
            .bind(agent)
            .bind(text)
            .bind(version)
            .execute(&mut **tx)
            .await?;
        }

        let (mut ids, mut versions, mut balances, mut ats) = (vec![], vec![], vec![], vec![]);
        for (agent, (version, balance, at_ms)) in self.balances {
            ids.push(agent);
            versions.push(version);
            balances.push(balance);
            ats.push(at_ms);
        }
        // Only forward: a replayed (older) event never rolls a balance back.
        sqlx::query(
            "UPDATE agents a SET balance = u.balance, version = u.version, updated_at = to_timestamp(u.at_ms / 1000.0)
             FROM UNNEST($1::uuid[], $2::int8[], $3::numeric[], $4::int8[]) AS u(id, version, balance, at_ms)
             WHERE a.id = u.id AND a.version < u.version",
        )
        .bind(&ids).bind(&versions).bind(&balances).bind(&ats)
        .execute(&mut **tx)
        .await?;

        write_payments(tx, self.payments).await?;
        write_savings(tx, self.savings).await?;
        self.revenue.write(tx).await?;
        self.ledger.write(tx).await?;
        self.portfolio.write(tx).await?;
        // Webhook intake, in the read model's transaction: exactly once.
        let h = self.hooks;
        sqlx::query(
            "INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, payload, status, next_attempt_at, created_at)
             SELECT w.id, u.event_id, u.ty, u.payload, 'pending', now(), now()
             FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[]) WITH ORDINALITY AS u(event_id, usr, ty, payload, n)
             JOIN webhook_endpoints w ON w.user_id = u.usr AND w.active AND (u.ty = ANY(w.events) OR '*' = ANY(w.events))
             ORDER BY u.n
             ON CONFLICT (endpoint_id, event_id) WHERE replay_of IS NULL DO NOTHING",
        )
        .bind(&h.event).bind(&h.user).bind(&h.ty).bind(&h.payload)
        .execute(&mut **tx)
        .await?;

        let p = self.postings;
        if !p.entry.is_empty() {
            sqlx::query(
                "INSERT INTO journal_postings (entry_id, account, amount, currency, event_id, agent_id, occurred_at)
                 SELECT entry_id, account, amount, currency, event_id, agent_id, to_timestamp(at_ms / 1000.0)
                 FROM UNNEST($1::text[], $2::text[], $3::numeric[], $4::text[], $5::uuid[], $6::uuid[], $7::int8[])
                   AS u(entry_id, account, amount, currency, event_id, agent_id, at_ms)
                 ON CONFLICT (entry_id, account) DO NOTHING",
            )
            .bind(&p.entry).bind(&p.account).bind(&p.amount).bind(&p.currency)
            .bind(&p.event).bind(&p.agent).bind(&p.at_ms)
            .execute(&mut **tx)
            .await?;
        }

        let t = self.transactions;
        if !t.event.is_empty() {
            sqlx::query(
                "INSERT INTO transactions (event_id, agent_id, user_id, kind, amount, currency, balance_after, occurred_at)
                 SELECT event_id, agent_id, user_id, kind, amount, currency, balance_after, to_timestamp(at_ms / 1000.0)
                 FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::numeric[], $6::text[], $7::numeric[], $8::int8[])
                   AS u(event_id, agent_id, user_id, kind, amount, currency, balance_after, at_ms)
                 ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(&t.event).bind(&t.agent).bind(&t.user).bind(&t.kind).bind(&t.amount)
            .bind(&t.currency).bind(&t.balance_after).bind(&t.at_ms)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}

/// Column vectors of the payments upsert.
#[derive(Default)]
struct PaymentRows {
    id: Vec<Uuid>,
    sender: Vec<Uuid>,
    receiver: Vec<Uuid>,
    user: Vec<Uuid>,
    name: Vec<String>,
    ty: Vec<String>,
    amount: Vec<Decimal>,
    currency: Vec<String>,
    method: Vec<String>,
    email: Vec<Option<String>>,
    phone: Vec<Option<String>>,
    /// JSON arrays: arrays of arrays do not UNNEST.
    tags: Vec<String>,
    status: Vec<String>,
    approval: Vec<String>,
    required: Vec<bool>,
    created: Vec<i64>,
    decided: Vec<Option<i64>>,
    tx_hash: Vec<Option<String>>,
    receiver_address: Vec<Option<String>>,
    version: Vec<i64>,
}

impl PaymentRows {
    fn push(&mut self, id: Uuid, version: i64, sender_user: Uuid, p: Payment) {
        self.id.push(id);
        self.sender.push(p.sender());
        self.receiver.push(p.receiver());
        self.user.push(sender_user);
        self.tags
            .push(serde_json::to_string(&p.tags).unwrap_or_else(|_| "[]".into()));
        self.name.push(p.name);
        self.ty.push(p.payment_type);
        self.amount.push(p.amount);
        self.currency.push(p.currency);
        self.method.push(p.method);
        self.email.push(p.contact_email);
        self.phone.push(p.contact_phone);
        self.status.push(p.status);
        self.approval.push(p.approval_status);
        self.required.push(p.approval_required);
        self.created.push(p.created_ms);
        self.decided.push(p.decided_ms);
        self.tx_hash.push(p.tx_hash);
        self.receiver_address.push(p.receiver_address);
        self.version.push(version);
    }
}

/// Upserts payments forward only (by the sender agent's version), in one
/// statement per batch.
async fn write_payments(
    tx: &mut Transaction<'_, Postgres>,
    payments: HashMap<Uuid, (i64, Uuid, Payment)>,
) -> Result<(), ConnectorError> {
    if payments.is_empty() {
        return Ok(());
    }
    let mut c = PaymentRows::default();
    for (id, (version, sender_user, p)) in payments {
        c.push(id, version, sender_user, p);
    }
    sqlx::query(
        "INSERT INTO payments (id, sender_agent_id, receiver_agent_id, sender_user_id, name, payment_type,
            amount, currency, method, contact_email, contact_phone, tags, status, approval_status,
            approval_required, created_at, approved_at, tx_hash, version, receiver_address)
         SELECT id, sender, receiver, usr, name, ty, amount, currency, method, email, phone,
            ARRAY(SELECT jsonb_array_elements_text(tags::jsonb)), status, approval, required,
            to_timestamp(created / 1000.0), to_timestamp(decided / 1000.0), tx_hash, version, raddr
         FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::numeric[],
            $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],
            $15::bool[], $16::int8[], $17::int8[], $18::text[], $19::int8[], $20::text[])
           AS u(id, sender, receiver, usr, name, ty, amount, currency, method, email, phone, tags, status,
            approval, required, created, decided, tx_hash, version, raddr)
         ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, approval_status = EXCLUDED.approval_status,
            approved_at = EXCLUDED.approved_at, tx_hash = EXCLUDED.tx_hash, version = EXCLUDED.version
         WHERE payments.version < EXCLUDED.version",
    )
    .bind(&c.id).bind(&c.sender).bind(&c.receiver).bind(&c.user).bind(&c.name).bind(&c.ty)
    .bind(&c.amount).bind(&c.currency).bind(&c.method).bind(&c.email).bind(&c.phone).bind(&c.tags)
    .bind(&c.status).bind(&c.approval).bind(&c.required).bind(&c.created).bind(&c.decided)
    .bind(&c.tx_hash).bind(&c.version).bind(&c.receiver_address)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Upserts savings positions forward only (by the agent's version).
async fn write_savings(
    tx: &mut Transaction<'_, Postgres>,
    savings: HashMap<Uuid, (i64, Uuid, Uuid, SavingsPosition)>,
) -> Result<(), ConnectorError> {
    if savings.is_empty() {
        return Ok(());
    }
    let n = savings.len();
    let (mut id, mut agent, mut user, mut principal, mut currency) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (
        mut invested,
        mut status,
        mut rate_ms,
        mut accrued_to,
        mut posted,
        mut closed,
        mut version,
    ) = (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut rate_pct: Vec<Option<Decimal>> = Vec::with_capacity(n);
    for (key, (v, a, u, p)) in savings {
        id.push(key);
        agent.push(a);
        user.push(u);
        principal.push(p.principal);
        currency.push(p.currency);
        invested.push(p.invested_ms);
        status.push(p.status);
        rate_ms.push(p.rate_ms);
        accrued_to.push(p.accrued_to_ms);
        posted.push(p.interest_posted);
        closed.push(p.closed_ms);
        rate_pct.push(p.rate_pct);
        version.push(v);
    }
    sqlx::query(
        "INSERT INTO savings (id, agent_id, user_id, principal, currency, invested_at, status, rate_ms,
            accrued_to, interest_posted, closed_at, version, rate_pct)
         SELECT id, agent, usr, principal, currency, to_timestamp(invested / 1000.0), status, rate_ms,
            accrued_to, posted, to_timestamp(closed / 1000.0), version, rate_pct
         FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::numeric[], $5::text[], $6::int8[], $7::text[],
            $8::numeric[], $9::int8[], $10::numeric[], $11::int8[], $12::int8[], $13::numeric[])
           AS u(id, agent, usr, principal, currency, invested, status, rate_ms, accrued_to, posted, closed,
            version, rate_pct)
         ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, rate_ms = EXCLUDED.rate_ms,
            accrued_to = EXCLUDED.accrued_to, interest_posted = EXCLUDED.interest_posted,
            closed_at = EXCLUDED.closed_at, version = EXCLUDED.version,
            rate_pct = coalesce(EXCLUDED.rate_pct, savings.rate_pct)
         WHERE savings.version < EXCLUDED.version",
    )
    .bind(&id).bind(&agent).bind(&user).bind(&principal).bind(&currency).bind(&invested)
    .bind(&status).bind(&rate_ms).bind(&accrued_to).bind(&posted).bind(&closed).bind(&version)
    .bind(&rate_pct)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

//! The revenue ledger's projection: each posted entry once (by event id),
//! the daily aggregates moved by exactly the entries that were new to the
//! table — so a replayed event never counts twice — and the tenants'
//! monthly targets, moved only forward by the ledger's version.

use std::collections::{BTreeMap, HashMap, HashSet};

use rust_decimal::Decimal;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use schemas::revenue::analytics::{aggregate, DayKey};
use schemas::revenue::ledger::{LedgerEntry, Movement, RevenueTargetSet};

use super::time::millis_to_timestamp;
use crate::ConnectorError;

/// The ledger's rows of one batch.
#[derive(Default)]
pub struct LedgerRows {
    entries: Vec<LedgerEntry>,
    seen: HashSet<Uuid>,
    /// Latest (version, target) per (tenant, currency).
    targets: HashMap<(Uuid, String), (i64, Decimal)>,
}

impl LedgerRows {
    pub fn entry(&mut self, e: &LedgerEntry) {
        if self.seen.insert(e.event_id) {
            self.entries.push(e.clone());
        }
    }

    pub fn target(&mut self, tenant: Uuid, version: i64, t: &RevenueTargetSet) {
        let slot = self
            .targets
            .entry((tenant, t.currency.clone()))
            .or_insert((version, t.monthly_target));
        if slot.0 <= version {
            *slot = (version, t.monthly_target);
        }
    }

    pub async fn write(self, tx: &mut Transaction<'_, Postgres>) -> Result<(), ConnectorError> {
        write_targets(tx, self.targets).await?;
        if self.entries.is_empty() {
            return Ok(());
        }
        let (mut id, mut tenant, mut seq, mut ty, mut amount, mut currency) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let (mut product, mut customer, mut occurred, mut natural, mut record) =
            (vec![], vec![], vec![], vec![], vec![]);
        for e in &self.entries {
            id.push(e.event_id);
            tenant.push(e.tenant_id);
            seq.push(e.sequence);
            ty.push(e.event_type.clone());
            amount.push(e.amount);
            currency.push(e.currency.clone());
            product.push(e.product_id.clone());
            customer.push(e.customer_id.clone());
            occurred.push(millis_to_timestamp(e.occurred_ms));
            natural.push(e.natural_key.clone());
            record.push(serde_json::to_value(e).map_err(schemas::SchemaError::from)?);
        }
        let fresh: Vec<Uuid> = sqlx::query_scalar(
            "INSERT INTO revenue_entries (event_id, tenant_id, sequence, event_type, amount, currency, product_id,
                customer_id, occurred_at, natural_key, record)
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::int8[], $4::text[], $5::numeric[], $6::text[],
                $7::text[], $8::text[], $9::timestamptz[], $10::text[], $11::jsonb[])
             ON CONFLICT (event_id) DO NOTHING
             RETURNING event_id",
        )
        .bind(&id)
        .bind(&tenant)
        .bind(&seq)
        .bind(&ty)
        .bind(&amount)
        .bind(&currency)
        .bind(&product)
        .bind(&customer)
        .bind(&occurred)
        .bind(&natural)
        .bind(&record)
        .fetch_all(&mut **tx)
        .await?;
        let fresh: HashSet<Uuid> = fresh.into_iter().collect();
        let days = aggregate(self.entries.iter().filter(|e| fresh.contains(&e.event_id)));
        write_days(tx, days).await
    }
}

async fn write_days(
    tx: &mut Transaction<'_, Postgres>,
    days: BTreeMap<DayKey, Movement>,
) -> Result<(), ConnectorError> {
    if days.is_empty() {
        return Ok(());
    }
    let (mut tenants, mut day_column, mut currencies) = (vec![], vec![], vec![]);
    let mut labels: [Vec<String>; 3] = Default::default();
    let mut money: [Vec<Decimal>; 8] = Default::default();
    let mut counts: [Vec<i64>; 3] = Default::default();
    for ((tenant, currency, day, product, vertical, segment), m) in days {
        tenants.push(tenant);
        currencies.push(currency);
        day_column.push(day);
        for (column, v) in labels.iter_mut().zip([product, vertical, segment]) {
            column.push(v);
        }
        for (column, v) in money.iter_mut().zip([
            m.recurring,
            m.one_time,
            m.refunds,
            m.new_mrr,
            m.reactivation_mrr,
            m.expansion,
            m.contraction,
            m.churned_mrr,
        ]) {
            column.push(v);
        }
        for (column, v) in counts.iter_mut().zip([
            m.new_customers,
            m.reactivated_customers,
            m.churned_customers,
        ]) {
            column.push(v);
        }
    }
    sqlx::query(
        "INSERT INTO revenue_daily (tenant_id, currency, day, product_id, vertical, customer_segment,
            recurring, one_time, refunds, new_mrr, reactivation_mrr, expansion, contraction, churned_mrr,
            new_customers, reactivated_customers, churned_customers)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::date[], $4::text[], $5::text[], $6::text[],
            $7::numeric[], $8::numeric[], $9::numeric[], $10::numeric[], $11::numeric[], $12::numeric[],
            $13::numeric[], $14::numeric[], $15::int8[], $16::int8[], $17::int8[])
         ON CONFLICT (tenant_id, currency, day, product_id, vertical, customer_segment) DO UPDATE SET
            recurring = revenue_daily.recurring + EXCLUDED.recurring,
            one_time = revenue_daily.one_time + EXCLUDED.one_time,
            refunds = revenue_daily.refunds + EXCLUDED.refunds,
            new_mrr = revenue_daily.new_mrr + EXCLUDED.new_mrr,
            reactivation_mrr = revenue_daily.reactivation_mrr + EXCLUDED.reactivation_mrr,
            expansion = revenue_daily.expansion + EXCLUDED.expansion,
            contraction = revenue_daily.contraction + EXCLUDED.contraction,
            churned_mrr = revenue_daily.churned_mrr + EXCLUDED.churned_mrr,
            new_customers = revenue_daily.new_customers + EXCLUDED.new_customers,
            reactivated_customers = revenue_daily.reactivated_customers + EXCLUDED.reactivated_customers,
            churned_customers = revenue_daily.churned_customers + EXCLUDED.churned_customers",
    )
    .bind(&tenants)
    .bind(&currencies)
    .bind(&day_column)
    .bind(&labels[0])
    .bind(&labels[1])
    .bind(&labels[2])
    .bind(&money[0])
    .bind(&money[1])
    .bind(&money[2])
    .bind(&money[3])
    .bind(&money[4])
    .bind(&money[5])
    .bind(&money[6])
    .bind(&money[7])
    .bind(&counts[0])
    .bind(&counts[1])
    .bind(&counts[2])
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn write_targets(
    tx: &mut Transaction<'_, Postgres>,
    targets: HashMap<(Uuid, String), (i64, Decimal)>,
) -> Result<(), ConnectorError> {
    if targets.is_empty() {
        return Ok(());
    }
    let (mut tenant, mut currency, mut version, mut target) = (vec![], vec![], vec![], vec![]);
    for ((t, c), (v, m)) in targets {
        tenant.push(t);
        currency.push(c);
        version.push(v);
        target.push(m);
    }
    sqlx::query(
        "INSERT INTO revenue_targets (tenant_id, currency, version, monthly_target)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int8[], $4::numeric[])
         ON CONFLICT (tenant_id, currency) DO UPDATE SET version = EXCLUDED.version,
            monthly_target = EXCLUDED.monthly_target
         WHERE revenue_targets.version < EXCLUDED.version",
    )
    .bind(&tenant)
    .bind(&currency)
    .bind(&version)
    .bind(&target)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

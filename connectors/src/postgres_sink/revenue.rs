//! The revenue platform's projection: opportunities and pricing quotes as of
//! their latest event, written with one multi-row upsert per table and batch
//! that only moves a row forward (by version), so a replayed event never
//! rolls one back.

use std::collections::HashMap;

use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use schemas::revenue::opportunity::Opportunity;
use schemas::revenue::pricing::Quote;

use super::time::millis_to_timestamp;
use crate::ConnectorError;

/// The latest state of each opportunity seen in a batch.
#[derive(Default)]
pub struct RevenueRows {
    opportunities: HashMap<Uuid, Opportunity>,
    quotes: HashMap<Uuid, Quote>,
}

impl RevenueRows {
    pub fn opportunity(&mut self, o: &Opportunity) {
        keep_latest(&mut self.opportunities, o.id, o, |o| o.version);
    }

    pub fn quote(&mut self, q: &Quote) {
        keep_latest(&mut self.quotes, q.quote_id, q, |q| q.version);
    }

    pub async fn write(self, tx: &mut Transaction<'_, Postgres>) -> Result<(), ConnectorError> {
        write_quotes(tx, self.quotes).await?;
        if self.opportunities.is_empty() {
            return Ok(());
        }
        let mut c = Columns::default();
        for o in self.opportunities.into_values() {
            c.id.push(o.id);
            c.tenant.push(o.tenant_id);
            c.name.push(o.name.clone());
            c.vertical.push(o.vertical.clone());
            c.status.push(o.status.clone());
            c.score.push(o.score);
            c.irr.push(o.expected_irr);
            c.payback.push(o.payback_months);
            c.moat.push(o.moat_score);
            c.risk.push(o.risk_score);
            c.scalability.push(o.scalability_score);
            c.created.push(millis_to_timestamp(o.created_ms));
            c.updated.push(millis_to_timestamp(o.updated_ms));
            c.version.push(o.version);
            c.record
                .push(serde_json::to_value(&o).map_err(schemas::SchemaError::from)?);
        }
        sqlx::query(
            "INSERT INTO opportunities (id, tenant_id, name, vertical, status, score, expected_irr, payback_months,
                moat_score, risk_score, scalability_score, created_at, updated_at, version, record)
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::float8[],
                $7::float8[], $8::int8[], $9::float8[], $10::float8[], $11::float8[], $12::timestamptz[],
                $13::timestamptz[], $14::int8[], $15::jsonb[])
             ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, updated_at = EXCLUDED.updated_at,
                version = EXCLUDED.version, record = EXCLUDED.record
             WHERE opportunities.version < EXCLUDED.version",
        )
        .bind(&c.id)
        .bind(&c.tenant)
        .bind(&c.name)
        .bind(&c.vertical)
        .bind(&c.status)
        .bind(&c.score)
        .bind(&c.irr)
        .bind(&c.payback)
        .bind(&c.moat)
        .bind(&c.risk)
        .bind(&c.scalability)
        .bind(&c.created)
        .bind(&c.updated)
        .bind(&c.version)
        .bind(&c.record)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// Keeps `row` for `id` unless the batch already holds a later version.
pub(super) fn keep_latest<T: Clone>(
    rows: &mut HashMap<Uuid, T>,
    id: Uuid,
    row: &T,
    version: fn(&T) -> i64,
) {
    if rows
        .get(&id)
        .is_none_or(|seen| version(seen) < version(row))
    {
        rows.insert(id, row.clone());
    }
}

async fn write_quotes(
    tx: &mut Transaction<'_, Postgres>,
    quotes: HashMap<Uuid, Quote>,
) -> Result<(), ConnectorError> {
    if quotes.is_empty() {
        return Ok(());
    }
    let (mut id, mut tenant, mut key, mut product, mut segment, mut status) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut created, mut expires, mut version, mut record) = (vec![], vec![], vec![], vec![]);
    for q in quotes.into_values() {
        id.push(q.quote_id);
        tenant.push(q.tenant_id);
        key.push(q.product_key);
        product.push(q.product_id.clone());
        segment.push(q.segment_id.clone());
        status.push(q.status.clone());
        created.push(millis_to_timestamp(q.created_ms));
        expires.push(millis_to_timestamp(q.expires_ms));
        version.push(q.version);
        record.push(serde_json::to_value(&q).map_err(schemas::SchemaError::from)?);
    }
    sqlx::query(
        "INSERT INTO quotes (id, tenant_id, product_key, product_id, segment_id, status, created_at, expires_at,
            version, record)
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[],
            $7::timestamptz[], $8::timestamptz[], $9::int8[], $10::jsonb[])
         ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, version = EXCLUDED.version,
            record = EXCLUDED.record
         WHERE quotes.version < EXCLUDED.version",
    )
    .bind(&id)
    .bind(&tenant)
    .bind(&key)
    .bind(&product)
    .bind(&segment)
    .bind(&status)
    .bind(&created)
    .bind(&expires)
    .bind(&version)
    .bind(&record)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(Default)]
struct Columns {
    id: Vec<Uuid>,
    tenant: Vec<Uuid>,
    name: Vec<String>,
    vertical: Vec<String>,
    status: Vec<String>,
    score: Vec<f64>,
    irr: Vec<f64>,
    payback: Vec<i64>,
    moat: Vec<f64>,
    risk: Vec<f64>,
    scalability: Vec<f64>,
    created: Vec<sqlx::types::chrono::DateTime<sqlx::types::chrono::Utc>>,
    updated: Vec<sqlx::types::chrono::DateTime<sqlx::types::chrono::Utc>>,
    version: Vec<i64>,
    record: Vec<serde_json::Value>,
}

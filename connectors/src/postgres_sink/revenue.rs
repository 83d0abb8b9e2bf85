//! The revenue platform's projection: opportunities as of their latest
//! event, written with one multi-row upsert per batch that only moves a row
//! forward (by version), so a replayed event never rolls one back.

use std::collections::HashMap;

use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use schemas::revenue::opportunity::Opportunity;

use super::time::millis_to_timestamp;
use crate::ConnectorError;

/// The latest state of each opportunity seen in a batch.
#[derive(Default)]
pub struct RevenueRows {
    opportunities: HashMap<Uuid, Opportunity>,
}

impl RevenueRows {
    pub fn opportunity(&mut self, o: &Opportunity) {
        let newer = self
            .opportunities
            .get(&o.id)
            .is_none_or(|seen| seen.version < o.version);
        if newer {
            self.opportunities.insert(o.id, o.clone());
        }
    }

    pub async fn write(self, tx: &mut Transaction<'_, Postgres>) -> Result<(), ConnectorError> {
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

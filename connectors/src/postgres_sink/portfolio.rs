//! The portfolio's projection: positions as of their latest event (only
//! forward, by the portfolio's version), each cash flow once (by event and
//! position), each applied rebalance once.

use std::collections::HashMap;

use rust_decimal::Decimal;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use schemas::revenue::portfolio::{PortfolioRebalanced, Position};
use schemas::Event;

use super::time::millis_to_timestamp;
use crate::ConnectorError;

#[derive(Default)]
pub struct PortfolioRows {
    /// Latest (portfolio version, position) per position.
    positions: HashMap<Uuid, (i64, Position)>,
    /// (event, position, tenant, day ms, amount).
    flows: Vec<(Uuid, Uuid, Uuid, i64, Decimal)>,
    rebalances: Vec<(Event, PortfolioRebalanced)>,
}

impl PortfolioRows {
    fn position(&mut self, version: i64, p: &Position) {
        let row = (version, p.clone());
        super::revenue::keep_latest(&mut self.positions, p.opportunity_id, &row, |r| r.0);
    }

    pub fn opened(&mut self, e: &Event, p: &Position) {
        self.position(e.agent_version, p);
        self.flows
            .push((e.id, p.opportunity_id, p.tenant_id, p.opened_ms, p.capital));
    }

    pub fn rebalanced(&mut self, e: &Event, r: &PortfolioRebalanced) {
        for p in &r.positions {
            self.position(e.agent_version, p);
        }
        for t in &r.trades {
            self.flows
                .push((e.id, t.opportunity_id, e.user_id, e.timestamp_ms, t.amount));
        }
        self.rebalances.push((e.clone(), r.clone()));
    }

    pub async fn write(self, tx: &mut Transaction<'_, Postgres>) -> Result<(), ConnectorError> {
        // One multi-row statement per table, as for every table of the sink
        // (a rebalance of 1,000 positions is one round trip, not 2,000).
        if !self.positions.is_empty() {
            let (mut id, mut tenant, mut product, mut capital, mut opened, mut version) =
                (vec![], vec![], vec![], vec![], vec![], vec![]);
            for (v, p) in self.positions.into_values() {
                id.push(p.opportunity_id);
                tenant.push(p.tenant_id);
                product.push(p.product_id);
                capital.push(p.capital);
                opened.push(millis_to_timestamp(p.opened_ms));
                version.push(v);
            }
            sqlx::query(
                "INSERT INTO portfolio_positions (opportunity_id, tenant_id, product_id, capital, opened_at, version)
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::numeric[], $5::timestamptz[], $6::int8[])
                 ON CONFLICT (opportunity_id) DO UPDATE SET capital = EXCLUDED.capital, version = EXCLUDED.version
                 WHERE portfolio_positions.version < EXCLUDED.version",
            )
            .bind(&id)
            .bind(&tenant)
            .bind(&product)
            .bind(&capital)
            .bind(&opened)
            .bind(&version)
            .execute(&mut **tx)
            .await?;
        }
        if !self.flows.is_empty() {
            let (mut event, mut position, mut tenant, mut day, mut amount) =
                (vec![], vec![], vec![], vec![], vec![]);
            for (e, p, t, at_ms, a) in &self.flows {
                event.push(*e);
                position.push(*p);
                tenant.push(*t);
                day.push(millis_to_timestamp(*at_ms).date_naive());
                amount.push(*a);
            }
            sqlx::query(
                "INSERT INTO portfolio_flows (event_id, opportunity_id, tenant_id, day, amount)
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::date[], $5::numeric[])
                 ON CONFLICT DO NOTHING",
            )
            .bind(&event)
            .bind(&position)
            .bind(&tenant)
            .bind(&day)
            .bind(&amount)
            .execute(&mut **tx)
            .await?;
        }
        for (e, r) in &self.rebalances {
            sqlx::query(
                "INSERT INTO portfolio_rebalances (event_id, tenant_id, strategy, reason, applied_at, version, trades)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(e.id)
            .bind(e.user_id)
            .bind(&r.strategy)
            .bind(&r.reason)
            .bind(millis_to_timestamp(e.timestamp_ms))
            .bind(e.agent_version)
            .bind(serde_json::to_value(&r.trades).map_err(schemas::SchemaError::from)?)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}

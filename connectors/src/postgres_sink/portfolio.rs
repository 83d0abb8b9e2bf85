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
        let slot = self
            .positions
            .entry(p.opportunity_id)
            .or_insert((version, p.clone()));
        if slot.0 <= version {
            *slot = (version, p.clone());
        }
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
        for (version, p) in self.positions.values() {
            sqlx::query(
                "INSERT INTO portfolio_positions (opportunity_id, tenant_id, product_id, capital, opened_at, version)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (opportunity_id) DO UPDATE SET capital = EXCLUDED.capital, version = EXCLUDED.version
                 WHERE portfolio_positions.version < EXCLUDED.version",
            )
            .bind(p.opportunity_id)
            .bind(p.tenant_id)
            .bind(&p.product_id)
            .bind(p.capital)
            .bind(millis_to_timestamp(p.opened_ms))
            .bind(version)
            .execute(&mut **tx)
            .await?;
        }
        for (event, position, tenant, at_ms, amount) in &self.flows {
            sqlx::query(
                "INSERT INTO portfolio_flows (event_id, opportunity_id, tenant_id, day, amount)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(event)
            .bind(position)
            .bind(tenant)
            .bind(millis_to_timestamp(*at_ms).date_naive())
            .bind(amount)
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

//! The portfolio as the sink holds it, scoped to its tenant: positions,
//! their cash flows, the portfolio's version, and the USD revenue by day of
//! the products the positions hold (what valuation reads).

use std::collections::HashMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use schemas::revenue::portfolio::{Flow, Position};

use crate::ConnectorError;

/// The tenant's positions, oldest first, and the portfolio's version.
pub async fn positions(
    pool: &PgPool,
    tenant: Uuid,
) -> Result<(Vec<Position>, i64), ConnectorError> {
    let rows: Vec<(Uuid, String, Decimal, chrono::DateTime<chrono::Utc>, i64)> = sqlx::query_as(
        "SELECT opportunity_id, product_id, capital, opened_at, version FROM portfolio_positions
         WHERE tenant_id = $1 ORDER BY opened_at, opportunity_id",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await?;
    let version = rows.iter().map(|r| r.4).max().unwrap_or(0);
    Ok((
        rows.into_iter()
            .map(|(id, product, capital, opened, _)| Position {
                opportunity_id: id,
                tenant_id: tenant,
                product_id: product,
                capital,
                opened_ms: opened.timestamp_millis(),
            })
            .collect(),
        version,
    ))
}

pub async fn flows(pool: &PgPool, tenant: Uuid) -> Result<Vec<Flow>, ConnectorError> {
    let rows: Vec<(Uuid, NaiveDate, Decimal)> = sqlx::query_as(
        "SELECT opportunity_id, day, amount FROM portfolio_flows WHERE tenant_id = $1 ORDER BY day",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(opportunity_id, day, amount)| Flow {
            opportunity_id,
            day,
            amount,
        })
        .collect())
}

/// Net USD revenue per (product, day) from `from` on, for `products`.
pub async fn product_revenue(
    pool: &PgPool,
    tenant: Uuid,
    products: &[String],
    from: NaiveDate,
) -> Result<HashMap<(String, NaiveDate), Decimal>, ConnectorError> {
    let rows: Vec<(String, NaiveDate, Decimal)> = sqlx::query_as(
        "SELECT product_id, day, sum(recurring + one_time - refunds) FROM revenue_daily
         WHERE tenant_id = $1 AND currency = 'USD' AND product_id = ANY($2) AND day >= $3
         GROUP BY product_id, day",
    )
    .bind(tenant)
    .bind(products)
    .bind(from)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(p, d, r)| ((p, d), r)).collect())
}

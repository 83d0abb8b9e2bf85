//! The revenue ledger as the sink holds it, scoped to its tenant: posted
//! entries by id or natural key, the transactions list (keyset pages by
//! sequence, newest first, so pages stay stable while entries arrive), the
//! chain in sequence order for verification, the daily aggregates the
//! analytics read, targets and totals.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use sqlx::types::Json;
use sqlx::PgPool;
use uuid::Uuid;

use schemas::revenue::analytics::{AnalyticsQuery, DailyRow, Opening};
use schemas::revenue::ledger::{LedgerEntry, Movement};

use crate::ConnectorError;

pub async fn by_id(
    pool: &PgPool,
    tenant: Uuid,
    id: Uuid,
) -> Result<Option<LedgerEntry>, ConnectorError> {
    let r: Option<Json<LedgerEntry>> = sqlx::query_scalar(
        "SELECT record FROM revenue_entries WHERE event_id = $1 AND tenant_id = $2",
    )
    .bind(id)
    .bind(tenant)
    .fetch_optional(pool)
    .await?;
    Ok(r.map(|r| r.0))
}

/// The first entry recorded under a natural key.
pub async fn by_natural_key(
    pool: &PgPool,
    tenant: Uuid,
    key: &str,
) -> Result<Option<LedgerEntry>, ConnectorError> {
    let r: Option<Json<LedgerEntry>> = sqlx::query_scalar(
        "SELECT record FROM revenue_entries WHERE tenant_id = $1 AND natural_key = $2
         ORDER BY sequence LIMIT 1",
    )
    .bind(tenant)
    .bind(key)
    .fetch_optional(pool)
    .await?;
    Ok(r.map(|r| r.0))
}

/// Filters of the transactions list; `None` matches all.
#[derive(Debug, Clone, Default)]
pub struct TransactionFilter {
    pub product_id: Option<String>,
    pub customer_id: Option<String>,
    pub event_type: Option<String>,
    /// `occurred_at` from (inclusive) and before (exclusive), ms.
    pub from_ms: Option<i64>,
    pub before_ms: Option<i64>,
}

/// A page of entries below `before_sequence` (newest first), one more than
/// `limit` when there are more, and how many match in all.
pub async fn transactions(
    pool: &PgPool,
    tenant: Uuid,
    f: &TransactionFilter,
    before_sequence: Option<i64>,
    limit: i64,
) -> Result<(Vec<LedgerEntry>, i64), ConnectorError> {
    const WHERE: &str = "tenant_id = $1
        AND ($2::text IS NULL OR product_id = $2) AND ($3::text IS NULL OR customer_id = $3)
        AND ($4::text IS NULL OR event_type = $4)
        AND ($5::int8 IS NULL OR occurred_at >= to_timestamp($5 / 1000.0))
        AND ($6::int8 IS NULL OR occurred_at < to_timestamp($6 / 1000.0))";
    let page_sql = format!(
        "SELECT record FROM revenue_entries WHERE {WHERE} AND ($7::int8 IS NULL OR sequence < $7)
         ORDER BY sequence DESC LIMIT $8"
    );
    let count_sql = format!("SELECT count(*) FROM revenue_entries WHERE {WHERE}");
    let page: Vec<Json<LedgerEntry>> = filtered(sqlx::query_scalar(&page_sql), tenant, f)
        .bind(before_sequence)
        .bind(limit + 1)
        .fetch_all(pool)
        .await?;
    let total: i64 = filtered(sqlx::query_scalar(&count_sql), tenant, f)
        .fetch_one(pool)
        .await?;
    Ok((page.into_iter().map(|r| r.0).collect(), total))
}

/// Binds the tenant and the filter as `$1`…`$6`.
fn filtered<'q, O>(
    q: sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    tenant: Uuid,
    f: &'q TransactionFilter,
) -> sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    q.bind(tenant)
        .bind(&f.product_id)
        .bind(&f.customer_id)
        .bind(&f.event_type)
        .bind(f.from_ms)
        .bind(f.before_ms)
}

/// Up to `limit` entries of the chain after `after_sequence`, in order.
pub async fn chain_after(
    pool: &PgPool,
    tenant: Uuid,
    after_sequence: i64,
    limit: i64,
) -> Result<Vec<LedgerEntry>, ConnectorError> {
    let rows: Vec<Json<LedgerEntry>> = sqlx::query_scalar(
        "SELECT record FROM revenue_entries WHERE tenant_id = $1 AND sequence > $2
         ORDER BY sequence LIMIT $3",
    )
    .bind(tenant)
    .bind(after_sequence)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

type DailyTuple = (
    NaiveDate,
    String,
    String,
    String,
    Decimal,
    Decimal,
    Decimal,
    i64,
    i64,
    i64,
    Decimal,
    Decimal,
    Decimal,
    Decimal,
    Decimal,
);

const DAILY_COLUMNS: &str = "recurring, one_time, refunds, new_customers, reactivated_customers,
    churned_customers, new_mrr, reactivation_mrr, expansion, contraction, churned_mrr";

fn daily_row(t: &DailyTuple) -> DailyRow {
    DailyRow {
        day: t.0,
        product_id: t.1.clone(),
        vertical: t.2.clone(),
        customer_segment: t.3.clone(),
        movement: movement(t),
    }
}

fn movement(t: &DailyTuple) -> Movement {
    Movement {
        recurring: t.4,
        one_time: t.5,
        refunds: t.6,
        new_customers: t.7,
        reactivated_customers: t.8,
        churned_customers: t.9,
        new_mrr: t.10,
        reactivation_mrr: t.11,
        expansion: t.12,
        contraction: t.13,
        churned_mrr: t.14,
    }
}

/// The daily aggregate rows of the query's range, and the opening figures
/// (everything before it summed; the previous equal range's revenue).
pub async fn analytics_rows(
    pool: &PgPool,
    tenant: Uuid,
    q: &AnalyticsQuery,
) -> Result<(Vec<DailyRow>, Opening), ConnectorError> {
    let rows: Vec<DailyTuple> = sqlx::query_as(&format!(
        "SELECT day, product_id, vertical, customer_segment, {DAILY_COLUMNS} FROM revenue_daily
         WHERE tenant_id = $1 AND currency = $2 AND day BETWEEN $3 AND $4"
    ))
    .bind(tenant)
    .bind(&q.currency)
    .bind(q.start)
    .bind(q.end)
    .fetch_all(pool)
    .await?;
    let (prev_start, prev_end) = q.previous_range();
    let opening: (Option<Decimal>, Option<i64>, Option<Decimal>) = sqlx::query_as(
        "SELECT
            sum(new_mrr + reactivation_mrr + expansion - contraction - churned_mrr) FILTER (WHERE day < $3),
            (sum(new_customers + reactivated_customers - churned_customers) FILTER (WHERE day < $3))::int8,
            sum(recurring + one_time - refunds) FILTER (WHERE day BETWEEN $4 AND $5)
         FROM revenue_daily WHERE tenant_id = $1 AND currency = $2 AND day < $3",
    )
    .bind(tenant)
    .bind(&q.currency)
    .bind(q.start)
    .bind(prev_start)
    .bind(prev_end)
    .fetch_one(pool)
    .await?;
    Ok((
        rows.iter().map(daily_row).collect(),
        Opening {
            mrr: opening.0.unwrap_or_default(),
            subscribers: opening.1.unwrap_or_default(),
            previous_revenue: opening.2.unwrap_or_default(),
        },
    ))
}

/// Every daily aggregate row of a tenant in `currency` (replay checks).
pub async fn all_daily(
    pool: &PgPool,
    tenant: Uuid,
    currency: &str,
) -> Result<Vec<DailyRow>, ConnectorError> {
    let rows: Vec<DailyTuple> = sqlx::query_as(&format!(
        "SELECT day, product_id, vertical, customer_segment, {DAILY_COLUMNS} FROM revenue_daily
         WHERE tenant_id = $1 AND currency = $2 ORDER BY day, product_id, vertical, customer_segment"
    ))
    .bind(tenant)
    .bind(currency)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(daily_row).collect())
}

/// A tenant's monthly targets by currency.
pub async fn targets(
    pool: &PgPool,
    tenant: Uuid,
) -> Result<Vec<(String, Decimal)>, ConnectorError> {
    Ok(sqlx::query_as(
        "SELECT currency, monthly_target FROM revenue_targets
         WHERE tenant_id = $1 AND monthly_target > 0 ORDER BY currency",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await?)
}

/// A tenant's net revenue of all time in `currency` (the SSE `revenue_total`).
pub async fn total(pool: &PgPool, tenant: Uuid, currency: &str) -> Result<Decimal, ConnectorError> {
    let total: Option<Decimal> = sqlx::query_scalar(
        "SELECT sum(recurring + one_time - refunds) FROM revenue_daily
         WHERE tenant_id = $1 AND currency = $2",
    )
    .bind(tenant)
    .bind(currency)
    .fetch_one(pool)
    .await?;
    Ok(total.unwrap_or_default())
}

//! Revenue analytics computed from daily aggregates (never from raw
//! events): the rows the sink keeps per tenant, currency, day, product,
//! vertical and customer segment, each the sum of the [`Movement`]s the
//! revenue machine posted. Pure: the read model fetches the rows, this
//! shapes `GET /v1/revenue/analytics`. Every figure's definition is in
//! `docs/revenue.md`.

use chrono::{Datelike, Days, Months, NaiveDate};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;

use super::ledger::{LedgerEntry, Movement};

/// Longest range one query may span (days).
pub const RANGE_DAYS_MAX: i64 = 1_100;
/// Most `time_series` points one answer may hold.
pub const POINTS_MAX: usize = 10_000;

/// A daily aggregate's key: tenant, currency, day (UTC), product, vertical,
/// customer segment.
pub type DayKey = (uuid::Uuid, String, NaiveDate, String, String, String);

/// The UTC day of a time in ms: the day an entry counts on.
pub fn day_of(ms: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .date_naive()
}

/// Entries summed into daily aggregates (what the sink keeps).
pub fn aggregate<'a>(
    entries: impl IntoIterator<Item = &'a LedgerEntry>,
) -> BTreeMap<DayKey, Movement> {
    let mut days: BTreeMap<DayKey, Movement> = BTreeMap::new();
    for e in entries {
        let key = (
            e.tenant_id,
            e.currency.clone(),
            day_of(e.occurred_ms),
            e.product_id.clone(),
            e.vertical.clone(),
            e.customer_segment.clone(),
        );
        days.entry(key).or_default().add(&e.movement);
    }
    days
}

/// One tenant's rows in one currency, in key order.
pub fn rows_of(
    days: &BTreeMap<DayKey, Movement>,
    tenant: uuid::Uuid,
    currency: &str,
) -> Vec<DailyRow> {
    days.iter()
        .filter(|(k, _)| k.0 == tenant && k.1 == currency)
        .map(|(k, m)| DailyRow {
            day: k.2,
            product_id: k.3.clone(),
            vertical: k.4.clone(),
            customer_segment: k.5.clone(),
            movement: m.clone(),
        })
        .collect()
}

/// One daily aggregate row.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyRow {
    pub day: NaiveDate,
    pub product_id: String,
    pub vertical: String,
    pub customer_segment: String,
    pub movement: Movement,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Day,
    Week,
    Month,
}

impl Granularity {
    pub fn parse(text: &str) -> Option<Granularity> {
        match text {
            "day" => Some(Granularity::Day),
            "week" => Some(Granularity::Week),
            "month" => Some(Granularity::Month),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Day => "day",
            Granularity::Week => "week",
            Granularity::Month => "month",
        }
    }

    /// The first day of the period holding `d`: the day, its ISO week's
    /// Monday, or the first of its month.
    pub fn period_of(self, d: NaiveDate) -> NaiveDate {
        match self {
            Granularity::Day => d,
            Granularity::Week => d - Days::new(u64::from(d.weekday().num_days_from_monday())),
            Granularity::Month => d.with_day(1).unwrap_or(d),
        }
    }

    fn next(self, period: NaiveDate) -> NaiveDate {
        match self {
            Granularity::Day => period + Days::new(1),
            Granularity::Week => period + Days::new(7),
            Granularity::Month => period + Months::new(1),
        }
    }

    /// Every period from the one holding `start` to the one holding `end`.
    pub fn periods(self, start: NaiveDate, end: NaiveDate) -> Vec<NaiveDate> {
        let mut out = vec![];
        let mut p = self.period_of(start);
        while p <= end {
            out.push(p);
            p = self.next(p);
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Product,
    Vertical,
    CustomerSegment,
}

impl GroupBy {
    pub fn parse(text: &str) -> Option<GroupBy> {
        match text {
            "product" => Some(GroupBy::Product),
            "vertical" => Some(GroupBy::Vertical),
            "customer_segment" => Some(GroupBy::CustomerSegment),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Product => "product",
            GroupBy::Vertical => "vertical",
            GroupBy::CustomerSegment => "customer_segment",
        }
    }

    pub fn of(self, row: &DailyRow) -> &str {
        match self {
            GroupBy::Product => &row.product_id,
            GroupBy::Vertical => &row.vertical,
            GroupBy::CustomerSegment => &row.customer_segment,
        }
    }
}

/// What an analytics answer covers.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyticsQuery {
    pub currency: String,
    /// Inclusive, UTC days.
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub granularity: Granularity,
    pub group_by: Option<GroupBy>,
}

impl AnalyticsQuery {
    /// Days in the range.
    pub fn days(&self) -> i64 {
        (self.end - self.start).num_days() + 1
    }

    /// The equally long range just before (for `growth_rate`).
    pub fn previous_range(&self) -> (NaiveDate, NaiveDate) {
        let len = self.days() as u64;
        (self.start - Days::new(len), self.start - Days::new(1))
    }
}

/// Everything before the range, summed: the opening monthly recurring
/// revenue and subscribers, and the previous range's revenue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Opening {
    pub mrr: Decimal,
    pub subscribers: i64,
    pub previous_revenue: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnalyticsView {
    pub currency: String,
    pub start_date: String,
    pub end_date: String,
    pub granularity: String,
    pub group_by: Option<String>,
    pub summary: Summary,
    pub time_series: Vec<SeriesPoint>,
    pub breakdown: Breakdown,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Summary {
    #[serde(serialize_with = "super::json_number")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub total_revenue: Decimal,
    #[serde(serialize_with = "super::json_number")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub recurring_revenue: Decimal,
    #[serde(serialize_with = "super::json_number")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub one_time_revenue: Decimal,
    #[serde(serialize_with = "super::json_number")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub refunds: Decimal,
    /// Null when the previous range had no revenue.
    pub growth_rate: Option<f64>,
    /// Null when no one subscribed at the start.
    pub churn_rate: Option<f64>,
    /// Null when there was no recurring revenue at the start.
    pub net_revenue_retention: Option<f64>,
    #[serde(serialize_with = "super::json_number")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub mrr_start: Decimal,
    #[serde(serialize_with = "super::json_number")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub mrr_end: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeriesPoint {
    /// The period's first day.
    pub date: String,
    /// The group (with `group_by`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(serialize_with = "super::json_number")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub revenue: Decimal,
    pub new_customers: i64,
    pub churned_customers: i64,
    #[serde(serialize_with = "super::json_number")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub expansion_revenue: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Breakdown {
    pub by_product: Vec<Share>,
    pub by_vertical: Vec<Share>,
    pub by_customer_segment: Vec<Share>,
}

/// One group's share of the range's revenue. `product_id`, `vertical` or
/// `customer_segment` names the group.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Share {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vertical: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_segment: Option<String>,
    #[serde(serialize_with = "super::json_number")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub revenue: Decimal,
    /// Of the range's total revenue (0 when that is not positive).
    pub percentage: f64,
}

/// `a / b` as a ratio rounded to 4 places; `None` when `b` is not positive.
pub fn ratio(a: Decimal, b: Decimal) -> Option<f64> {
    if b <= Decimal::ZERO {
        return None;
    }
    (a / b).round_dp(4).to_f64().map(|r| r + 0.0)
}

fn shares(rows: &[DailyRow], by: GroupBy, total: Decimal) -> Vec<Share> {
    let mut sums: BTreeMap<&str, Decimal> = BTreeMap::new();
    for r in rows {
        *sums.entry(by.of(r)).or_default() += r.movement.revenue();
    }
    let mut out: Vec<Share> = sums
        .into_iter()
        .map(|(name, revenue)| Share {
            product_id: (by == GroupBy::Product).then(|| name.to_string()),
            vertical: (by == GroupBy::Vertical).then(|| name.to_string()),
            customer_segment: (by == GroupBy::CustomerSegment).then(|| name.to_string()),
            revenue,
            percentage: ratio(revenue, total).unwrap_or(0.0),
        })
        .collect();
    // Largest first; ties by name (the map's order, kept by a stable sort).
    out.sort_by_key(|s| std::cmp::Reverse(s.revenue));
    out
}

/// Error: the answer would exceed [`POINTS_MAX`] points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooManyPoints(pub usize);

/// The analytics answer for `q` from the rows inside its range.
pub fn compute(
    q: &AnalyticsQuery,
    opening: &Opening,
    rows: &[DailyRow],
) -> Result<AnalyticsView, TooManyPoints> {
    let rows: Vec<&DailyRow> = rows
        .iter()
        .filter(|r| r.day >= q.start && r.day <= q.end)
        .collect();
    let mut total = Movement::default();
    for r in &rows {
        total.add(&r.movement);
    }
    let periods = q.granularity.periods(q.start, q.end);
    let groups: Vec<Option<String>> = match q.group_by {
        None => vec![None],
        Some(by) => {
            let names: std::collections::BTreeSet<&str> = rows.iter().map(|r| by.of(r)).collect();
            names.into_iter().map(|n| Some(n.to_string())).collect()
        }
    };
    let points = periods.len() * groups.len();
    if points > POINTS_MAX {
        return Err(TooManyPoints(points));
    }
    let mut cells: BTreeMap<(NaiveDate, Option<&str>), Movement> = BTreeMap::new();
    for r in &rows {
        let group = q.group_by.map(|by| by.of(r));
        cells
            .entry((q.granularity.period_of(r.day), group))
            .or_default()
            .add(&r.movement);
    }
    let mut time_series = Vec::with_capacity(points);
    for p in &periods {
        for g in &groups {
            let m = cells.get(&(*p, g.as_deref())).cloned().unwrap_or_default();
            time_series.push(SeriesPoint {
                date: p.format("%Y-%m-%d").to_string(),
                group: g.clone(),
                revenue: m.revenue(),
                new_customers: m.new_customers,
                churned_customers: m.churned_customers,
                expansion_revenue: m.expansion,
            });
        }
    }
    let revenue = total.revenue();
    let owned: Vec<DailyRow> = rows.into_iter().cloned().collect();
    let mrr_end = opening.mrr + total.mrr_change();
    Ok(AnalyticsView {
        currency: q.currency.clone(),
        start_date: q.start.format("%Y-%m-%d").to_string(),
        end_date: q.end.format("%Y-%m-%d").to_string(),
        granularity: q.granularity.as_str().into(),
        group_by: q.group_by.map(|g| g.as_str().to_string()),
        summary: Summary {
            total_revenue: revenue,
            recurring_revenue: total.recurring,
            one_time_revenue: total.one_time,
            refunds: total.refunds,
            growth_rate: ratio(
                revenue - opening.previous_revenue,
                opening.previous_revenue.abs(),
            ),
            churn_rate: ratio(
                Decimal::from(total.churned_customers),
                Decimal::from(opening.subscribers),
            ),
            net_revenue_retention: ratio(
                opening.mrr + total.expansion - total.contraction - total.churned_mrr,
                opening.mrr,
            ),
            mrr_start: opening.mrr,
            mrr_end,
        },
        time_series,
        breakdown: Breakdown {
            by_product: shares(&owned, GroupBy::Product, revenue),
            by_vertical: shares(&owned, GroupBy::Vertical, revenue),
            by_customer_segment: shares(&owned, GroupBy::CustomerSegment, revenue),
        },
    })
}

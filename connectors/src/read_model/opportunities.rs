//! Opportunity queries: one by id, lists with typed filters, multi-key sorts
//! and pages, the active count. Every query is scoped to a tenant and built
//! with bound parameters; field names come only from [`Field`], never from
//! request text.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use schemas::revenue::opportunity::{status, Opportunity};

use crate::ConnectorError;

/// A field lists may filter and sort on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Name,
    Vertical,
    Status,
    Score,
    ExpectedIrr,
    PaybackMonths,
    MoatScore,
    RiskScore,
    ScalabilityScore,
    CreatedAt,
    UpdatedAt,
}

/// What kind of value a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    Number,
    Time,
}

impl Field {
    pub const ALL: [Field; 11] = [
        Field::Name,
        Field::Vertical,
        Field::Status,
        Field::Score,
        Field::ExpectedIrr,
        Field::PaybackMonths,
        Field::MoatScore,
        Field::RiskScore,
        Field::ScalabilityScore,
        Field::CreatedAt,
        Field::UpdatedAt,
    ];

    /// The API's name, which is also the column's.
    pub fn name(self) -> &'static str {
        match self {
            Field::Name => "name",
            Field::Vertical => "vertical",
            Field::Status => "status",
            Field::Score => "score",
            Field::ExpectedIrr => "expected_irr",
            Field::PaybackMonths => "payback_months",
            Field::MoatScore => "moat_score",
            Field::RiskScore => "risk_score",
            Field::ScalabilityScore => "scalability_score",
            Field::CreatedAt => "created_at",
            Field::UpdatedAt => "updated_at",
        }
    }

    pub fn parse(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    pub fn kind(self) -> FieldKind {
        match self {
            Field::Name | Field::Vertical | Field::Status => FieldKind::Text,
            Field::CreatedAt | Field::UpdatedAt => FieldKind::Time,
            _ => FieldKind::Number,
        }
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
}

impl Op {
    pub const NAMES: [&'static str; 7] = ["eq", "ne", "gt", "gte", "lt", "lte", "in"];

    pub fn parse(name: &str) -> Option<Op> {
        Some(match name {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            "in" => Op::In,
            _ => return None,
        })
    }

    fn sql(self) -> &'static str {
        match self {
            Op::Eq => " = ",
            Op::Ne => " <> ",
            Op::Gt => " > ",
            Op::Gte => " >= ",
            Op::Lt => " < ",
            Op::Lte => " <= ",
            Op::In => " = ANY(",
        }
    }
}

/// A filter's operand, typed by its field.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Text(Vec<String>),
    Number(Vec<f64>),
    Time(Vec<DateTime<Utc>>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub field: Field,
    pub op: Op,
    /// One value, or several for [`Op::In`].
    pub operand: Operand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    pub field: Field,
    pub descending: bool,
}

/// A page of a tenant's opportunities.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub tenant: Uuid,
    pub filters: Vec<Filter>,
    pub sort: Vec<SortKey>,
    /// 1-based.
    pub page: i64,
    pub per_page: i64,
}

fn push_where(qb: &mut QueryBuilder<'_, Postgres>, q: &ListQuery) {
    qb.push(" WHERE tenant_id = ").push_bind(q.tenant);
    for f in &q.filters {
        qb.push(" AND ").push(f.field.name()).push(f.op.sql());
        let many = f.op == Op::In;
        match &f.operand {
            Operand::Text(v) if many => qb.push_bind(v.clone()),
            Operand::Number(v) if many => qb.push_bind(v.clone()),
            Operand::Time(v) if many => qb.push_bind(v.clone()),
            Operand::Text(v) => qb.push_bind(v.first().cloned().unwrap_or_default()),
            Operand::Number(v) => qb.push_bind(v.first().copied().unwrap_or_default()),
            Operand::Time(v) => qb.push_bind(v.first().copied().unwrap_or_default()),
        };
        if many {
            qb.push(")");
        }
    }
}

/// One page and the total count of matches. Sorted by the keys given, then
/// by creation and id, so pages are stable.
pub async fn list(pool: &PgPool, q: &ListQuery) -> Result<(Vec<Opportunity>, i64), ConnectorError> {
    let mut count = QueryBuilder::new("SELECT count(*) FROM opportunities");
    push_where(&mut count, q);
    let total: i64 = count.build_query_scalar().fetch_one(pool).await?;
    let mut rows = QueryBuilder::new("SELECT record FROM opportunities");
    push_where(&mut rows, q);
    rows.push(" ORDER BY ");
    for k in &q.sort {
        rows.push(k.field.name())
            .push(if k.descending { " DESC, " } else { " ASC, " });
    }
    rows.push("created_at ASC, id ASC LIMIT ")
        .push_bind(q.per_page)
        .push(" OFFSET ")
        .push_bind((q.page - 1).saturating_mul(q.per_page));
    let records: Vec<sqlx::types::Json<Opportunity>> =
        rows.build_query_scalar().fetch_all(pool).await?;
    Ok((records.into_iter().map(|r| r.0).collect(), total))
}

/// One of the tenant's opportunities.
pub async fn get(
    pool: &PgPool,
    tenant: Uuid,
    id: Uuid,
) -> Result<Option<Opportunity>, ConnectorError> {
    let record: Option<sqlx::types::Json<Opportunity>> =
        sqlx::query_scalar("SELECT record FROM opportunities WHERE id = $1 AND tenant_id = $2")
            .bind(id)
            .bind(tenant)
            .fetch_optional(pool)
            .await?;
    Ok(record.map(|r| r.0))
}

/// How many of the tenant's opportunities are executing.
pub async fn active_count(pool: &PgPool, tenant: Uuid) -> Result<i64, ConnectorError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM opportunities WHERE tenant_id = $1 AND status = $2",
    )
    .bind(tenant)
    .bind(status::ACTIVE)
    .fetch_one(pool)
    .await?)
}

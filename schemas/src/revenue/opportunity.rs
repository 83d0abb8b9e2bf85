//! Opportunities: what a client submits ([`OpportunitySpec`]), the scored
//! record the opportunities machine keeps and publishes ([`Opportunity`]),
//! and their status vocabulary. Shapes in `avro/event.avsc` and
//! `avro/command.avsc`; the scoring model is the machine's
//! (`processors::opportunities::scoring`, documented in `docs/revenue.md`).
//!
//! Market figures are money (`Decimal`, as strings on the wire); scores and
//! rates are estimates (`f64`, rounded to 4 places by the model).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::rfc3339;

/// `status`: pending (scored, not executed) → active (executing) → completed.
pub mod status {
    pub const PENDING: &str = "pending";
    pub const ACTIVE: &str = "active";
    pub const COMPLETED: &str = "completed";
    pub const ALL: [&str; 3] = [PENDING, ACTIVE, COMPLETED];
}

/// `technical_requirements.complexity`, easiest first.
pub const COMPLEXITIES: [&str; 4] = ["low", "medium", "high", "very_high"];

/// The market as the client describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarketData {
    /// Total addressable market, USD a year.
    #[serde(with = "rust_decimal::serde::str")]
    pub total_market_size: Decimal,
    /// Yearly market growth (0.30 = 30 %).
    pub growth_rate: f64,
    /// Competitors in the market.
    pub competition_count: i64,
}

/// What building it takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TechnicalRequirements {
    /// One of [`COMPLEXITIES`].
    pub complexity: String,
    /// Days to market.
    pub time_to_market: i64,
    pub required_expertise: Vec<String>,
}

/// `POST /v1/opportunities`: validated by the gateway, scored by the machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpportunitySpec {
    pub name: String,
    pub vertical: String,
    pub market_data: MarketData,
    pub technical_requirements: TechnicalRequirements,
    pub target_customers: Vec<String>,
    pub pricing_model: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpportunityMetadata {
    #[serde(with = "rust_decimal::serde::str")]
    pub market_size: Decimal,
    /// low / medium / high, from the competitor count.
    pub competition_level: String,
    pub technical_complexity: String,
    pub target_customers: Vec<String>,
    pub pricing_model: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EconomicAnalysis {
    #[serde(with = "rust_decimal::serde::str")]
    pub total_addressable_market: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub serviceable_addressable_market: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub serviceable_obtainable_market: Decimal,
    pub market_growth_rate: f64,
    /// Months a lead lasts before competitors catch up.
    pub competitive_advantage_period: i64,
    /// What the execution plan costs, USD.
    #[serde(with = "rust_decimal::serde::str")]
    pub execution_cost: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Resources {
    pub developers: i64,
    pub designers: i64,
    pub marketing: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Phase {
    pub name: String,
    pub duration_days: i64,
    pub resources_required: Resources,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Artifact {
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
}

/// An execution: started by `execute`, completed by the machine's own
/// follow-up command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    pub started_ms: i64,
    pub completed_ms: Option<i64>,
    /// From the execute request to completion, as the log's record times say.
    pub execution_time_ms: Option<i64>,
    /// `success` once completed.
    pub result: Option<String>,
    pub artifacts: Vec<Artifact>,
}

/// A scored opportunity: the machine's state per key, the payload of its
/// events, the read model's row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opportunity {
    #[serde(with = "crate::ids::uuid_text")]
    pub id: Uuid,
    /// The tenant (user, or its sandbox) that owns it.
    #[serde(with = "crate::ids::uuid_text")]
    pub tenant_id: Uuid,
    pub name: String,
    pub vertical: String,
    pub status: String,
    pub score: f64,
    pub expected_irr: f64,
    pub payback_months: i64,
    pub moat_score: f64,
    pub risk_score: f64,
    pub scalability_score: f64,
    pub metadata: OpportunityMetadata,
    pub economic_analysis: EconomicAnalysis,
    pub execution_plan: Vec<Phase>,
    pub market_data: MarketData,
    pub technical_requirements: TechnicalRequirements,
    pub execution: Option<Execution>,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// +1 per event of this opportunity.
    pub version: i64,
}

/// `CreateOpportunity`: the spec to score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateOpportunity {
    pub spec: OpportunitySpec,
}

/// `ExecuteOpportunity`: start executing (idempotent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecuteOpportunity {
    #[serde(with = "crate::ids::uuid_text")]
    pub opportunity_id: Uuid,
}

/// `CompleteOpportunity`: the machine's follow-up that finishes an execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompleteOpportunity {
    #[serde(with = "crate::ids::uuid_text")]
    pub opportunity_id: Uuid,
    pub started_ms: i64,
}

/// The revenue API's opportunity (`GET /v1/opportunities/{id}`, the seed's
/// shape): short ids, RFC 3339 times, market figures as exact JSON numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OpportunityView {
    /// `opp_…`
    pub id: String,
    pub name: String,
    pub vertical: String,
    /// Overall attractiveness in [0, 1].
    pub score: f64,
    /// Internal rate of return of the five-year model.
    pub expected_irr: f64,
    pub payback_months: i64,
    pub moat_score: f64,
    pub risk_score: f64,
    pub scalability_score: f64,
    /// pending, active or completed.
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    pub metadata: MetadataView,
    pub economic_analysis: EconomicView,
    pub execution_plan: PlanView,
    pub execution: Option<ExecutionView>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetadataView {
    #[serde(serialize_with = "super::json_number")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub market_size: Decimal,
    pub competition_level: String,
    pub technical_complexity: String,
    pub target_customers: Vec<String>,
    pub pricing_model: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EconomicView {
    #[serde(serialize_with = "super::json_number")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub total_addressable_market: Decimal,
    #[serde(serialize_with = "super::json_number")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub serviceable_addressable_market: Decimal,
    #[serde(serialize_with = "super::json_number")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub serviceable_obtainable_market: Decimal,
    pub market_growth_rate: f64,
    /// Months.
    pub competitive_advantage_period: i64,
    #[serde(serialize_with = "super::json_number")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub execution_cost: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanView {
    pub phases: Vec<Phase>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutionView {
    pub started_at: String,
    pub completed_at: Option<String>,
    pub execution_time_ms: Option<i64>,
    /// `success` once completed.
    pub result: Option<String>,
    pub artifacts: Vec<Artifact>,
}

/// `opportunity.executed`'s data (the seed's).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutedView {
    pub opportunity_id: String,
    pub execution_time_ms: Option<i64>,
    pub result: Option<String>,
    pub artifacts: Vec<Artifact>,
}

impl Opportunity {
    pub fn view(&self) -> OpportunityView {
        use crate::ids::{short, Kind};
        let m = &self.metadata;
        let e = &self.economic_analysis;
        OpportunityView {
            id: short(Kind::Opportunity, self.id),
            name: self.name.clone(),
            vertical: self.vertical.clone(),
            score: self.score,
            expected_irr: self.expected_irr,
            payback_months: self.payback_months,
            moat_score: self.moat_score,
            risk_score: self.risk_score,
            scalability_score: self.scalability_score,
            status: self.status.clone(),
            created_at: rfc3339(self.created_ms),
            updated_at: rfc3339(self.updated_ms),
            metadata: MetadataView {
                market_size: m.market_size,
                competition_level: m.competition_level.clone(),
                technical_complexity: m.technical_complexity.clone(),
                target_customers: m.target_customers.clone(),
                pricing_model: m.pricing_model.clone(),
            },
            economic_analysis: EconomicView {
                total_addressable_market: e.total_addressable_market,
                serviceable_addressable_market: e.serviceable_addressable_market,
                serviceable_obtainable_market: e.serviceable_obtainable_market,
                market_growth_rate: e.market_growth_rate,
                competitive_advantage_period: e.competitive_advantage_period,
                execution_cost: e.execution_cost,
            },
            execution_plan: PlanView {
                phases: self.execution_plan.clone(),
            },
            execution: self.execution.as_ref().map(|x| ExecutionView {
                started_at: rfc3339(x.started_ms),
                completed_at: x.completed_ms.map(rfc3339),
                execution_time_ms: x.execution_time_ms,
                result: x.result.clone(),
                artifacts: x.artifacts.clone(),
            }),
        }
    }

    pub fn execution_view(&self) -> ExecutedView {
        let x = self.execution.as_ref();
        ExecutedView {
            opportunity_id: crate::ids::short(crate::ids::Kind::Opportunity, self.id),
            execution_time_ms: x.and_then(|x| x.execution_time_ms),
            result: x.and_then(|x| x.result.clone()),
            artifacts: x.map(|x| x.artifacts.clone()).unwrap_or_default(),
        }
    }
}

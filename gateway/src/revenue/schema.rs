//! The revenue API's documented types: request bodies (parsed field by
//! field by the handlers, for precise errors; documented here and checked
//! against the parsers in `openapi`'s tests), answers and the common error
//! answers. The opportunity views themselves are `schemas::revenue::*View`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use schemas::revenue::opportunity::OpportunityView;

/// The error envelope of every revenue route.
#[derive(Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// VALIDATION_ERROR, UNAUTHORIZED, FORBIDDEN, RESOURCE_NOT_FOUND,
    /// CONFLICT, RATE_LIMIT_EXCEEDED, INTERNAL_ERROR, SERVICE_UNAVAILABLE, …
    pub code: String,
    pub message: String,
    /// E.g. `{resource_type, resource_id}` or `{field, allowed}`.
    pub details: serde_json::Map<String, serde_json::Value>,
    /// Equal to the response's `X-Request-Id`.
    pub request_id: String,
    pub timestamp: String,
}

/// The error answers every revenue route may give.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum CommonErrors {
    #[response(status = 400, description = "Invalid input")]
    Invalid(ErrorEnvelope),
    #[response(status = 401, description = "Missing or invalid credentials")]
    Unauthorized(ErrorEnvelope),
    #[response(status = 403, description = "Not allowed for these credentials")]
    Forbidden(ErrorEnvelope),
    #[response(status = 413, description = "Body over 64 KiB")]
    TooLarge(ErrorEnvelope),
    #[response(status = 415, description = "Body is not application/json")]
    NotJson(ErrorEnvelope),
    #[response(status = 429, description = "Rate limit exceeded (Retry-After)")]
    RateLimited(ErrorEnvelope),
    #[response(status = 503, description = "Temporarily unavailable")]
    Unavailable(ErrorEnvelope),
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct MarketDataInput {
    /// USD a year, 0 to 1e18.
    #[schema(minimum = 0)]
    pub total_market_size: Option<f64>,
    #[schema(minimum = -1, maximum = 10)]
    pub growth_rate: Option<f64>,
    #[schema(minimum = 0, maximum = 100000)]
    pub competition_count: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct TechnicalRequirementsInput {
    /// low, medium, high or very_high.
    pub complexity: Option<String>,
    /// Days, 1 to 3650.
    #[schema(minimum = 1, maximum = 3650)]
    pub time_to_market: Option<i64>,
    #[schema(max_items = 20)]
    pub required_expertise: Option<Vec<String>>,
}

/// `POST /v1/opportunities`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct CreateOpportunityRequest {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[schema(min_length = 1, max_length = 50)]
    pub vertical: String,
    pub market_data: Option<MarketDataInput>,
    pub technical_requirements: Option<TechnicalRequirementsInput>,
    #[schema(max_items = 20)]
    pub target_customers: Option<Vec<String>>,
    #[schema(max_length = 50)]
    pub pricing_model: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Pagination {
    pub page: i64,
    pub per_page: i64,
    pub total: i64,
    pub pages: i64,
    pub prev_page: Option<i64>,
    pub next_page: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct OpportunityList {
    pub opportunities: Vec<OpportunityView>,
    pub pagination: Pagination,
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct BatchOperation {
    /// GET or POST.
    pub method: String,
    /// `/opportunities`, `/opportunities/{id}` or `/opportunities/{id}/execute`.
    pub path: String,
    pub body: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct BatchRequest {
    #[schema(min_items = 1, max_items = 100)]
    pub operations: Vec<BatchOperation>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchResult {
    pub status: u16,
    /// The operation's answer: an opportunity or an error envelope.
    pub body: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchResponse {
    pub results: Vec<BatchResult>,
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// `bearer`.
    pub token_type: String,
    /// Seconds.
    pub expires_in: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    pub tenant_id: String,
    pub user_id: String,
    pub agent_id: Option<String>,
    /// live or test.
    pub mode: String,
    /// api_key, bearer or service_token.
    pub auth_method: String,
    /// free, basic, pro or enterprise.
    pub tier: String,
}

#[derive(Serialize, ToSchema)]
pub struct SandboxKey {
    /// `test_sk_…`, shown once.
    pub api_key: String,
    pub mode: String,
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct SetTierRequest {
    /// free, basic, pro or enterprise.
    pub tier: String,
}

#[derive(Serialize, ToSchema)]
pub struct TierSet {
    pub user_id: String,
    pub tier: String,
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct QuoteContext {
    /// 0 to 1 (default 0.5); its third picks the posterior.
    #[schema(minimum = 0, maximum = 1)]
    pub user_value_score: Option<f64>,
    /// Named figures, e.g. `{"api_calls_30d": 15000}` (≤ 20), kept with the quote.
    pub usage_history: Option<serde_json::Map<String, serde_json::Value>>,
    /// Named positive prices, e.g. `{"competitor_a": 99.00}` (1 to 20): their
    /// median is the reference price.
    pub competitor_pricing: serde_json::Map<String, serde_json::Value>,
}

/// `POST /v1/monetizer/quote`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct QuoteRequest {
    #[schema(min_length = 1, max_length = 100)]
    pub product_id: String,
    #[schema(min_length = 1, max_length = 100)]
    pub segment_id: String,
    pub context: QuoteContext,
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct QuoteAdjustments {
    /// 0 to 90.
    #[schema(minimum = 0, maximum = 90)]
    pub discount_percentage: Option<f64>,
    #[schema(max_length = 100)]
    pub reason: Option<String>,
}

/// `POST /v1/monetizer/execute`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct ExecuteQuoteRequest {
    pub quote_id: String,
    pub adjustments: Option<QuoteAdjustments>,
}

/// `POST /v1/revenue/events`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct RevenueEventRequest {
    /// payment_received, refund, subscription_started, subscription_renewed,
    /// subscription_upgraded, subscription_downgraded, subscription_cancelled.
    pub event_type: String,
    /// At most the currency's decimals; positive (0 only to cancel).
    #[schema(minimum = 0, maximum = 1000000000000_i64)]
    pub amount: f64,
    /// ISO 4217 with minor units, e.g. USD, EUR, JPY.
    #[schema(min_length = 3, max_length = 3)]
    pub currency: String,
    #[schema(min_length = 1, max_length = 100)]
    pub product_id: String,
    #[schema(min_length = 1, max_length = 100)]
    pub customer_id: String,
    /// Letters, digits, `_` (general): names the revenue account.
    #[schema(max_length = 50)]
    pub vertical: Option<String>,
    /// Letters, digits, `_` (default).
    #[schema(max_length = 50)]
    pub customer_segment: Option<String>,
    /// RFC 3339, not in the future (now).
    pub occurred_at: Option<String>,
    /// Up to 4 KiB; `invoice_id` is the natural key (with `event_type`).
    #[schema(value_type = Object)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `PUT /v1/revenue/targets`, and its answer.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TargetRequest {
    pub currency: String,
    /// 0 clears the target.
    #[schema(minimum = 0)]
    pub monthly_target: f64,
}

#[derive(Serialize, ToSchema)]
pub struct Targets {
    pub targets: Vec<TargetRequest>,
}

#[derive(Serialize, ToSchema)]
pub struct CursorPagination {
    /// Pass as `cursor` for the next page; null on the last.
    pub cursor: Option<String>,
    pub has_more: bool,
    pub total_count: i64,
}

/// `GET /v1/revenue/transactions`.
#[derive(Serialize, ToSchema)]
pub struct TransactionPage {
    pub data: Vec<schemas::revenue::ledger::TransactionView>,
    pub pagination: CursorPagination,
}

/// `GET /v1/revenue/ledger/verify`.
#[derive(Serialize, ToSchema)]
pub struct Verification {
    pub valid: bool,
    pub entries_checked: i64,
    /// The last verified entry's hash.
    pub head_hash: String,
    pub first_invalid_sequence: Option<i64>,
    pub reason: Option<String>,
}

/// `POST /v1/opportunities/{id}/execute` (optional body).
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct ExecuteOpportunityRequest {
    /// Capital put into the position, USD (the plan's execution cost).
    #[schema(minimum = 0)]
    pub allocation: Option<f64>,
    /// The product whose revenue values the position (the opportunity's id).
    #[schema(max_length = 100)]
    pub product_id: Option<String>,
    /// RFC 3339, not in the future (now).
    pub opened_at: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct RebalanceConstraints {
    #[schema(minimum = 0, maximum = 1)]
    pub max_position_size: Option<f64>,
    #[schema(minimum = 0, maximum = 1)]
    pub min_position_size: Option<f64>,
    /// Annualised volatility at most.
    #[schema(minimum = 0, maximum = 100)]
    pub target_risk: Option<f64>,
    /// ½ Σ |target − current weight| at most.
    #[schema(minimum = 0, maximum = 1)]
    pub turnover_limit: Option<f64>,
}

/// `POST /v1/portfolio/rebalance`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct RebalanceRequest {
    /// risk_parity, equal_weight or min_variance.
    pub strategy: String,
    pub constraints: Option<RebalanceConstraints>,
    /// Solve and answer without applying.
    pub dry_run: Option<bool>,
    #[schema(max_length = 200)]
    pub reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RebalancePosition {
    pub opportunity_id: String,
    pub current_weight: f64,
    pub target_weight: f64,
    pub trade_amount: f64,
    pub risk_contribution_before: f64,
    pub risk_contribution_after: f64,
}

#[derive(Serialize, ToSchema)]
pub struct RebalanceAnswer {
    pub strategy: String,
    pub dry_run: bool,
    pub applied: bool,
    pub portfolio_value: f64,
    pub turnover: f64,
    pub volatility_before: f64,
    pub volatility_after: f64,
    pub solve_ms: f64,
    pub positions: Vec<RebalancePosition>,
}

#[derive(Serialize, ToSchema)]
pub struct SeriesOut {
    pub values: Vec<f64>,
    pub flows: Vec<f64>,
    /// Null on a position's first day held.
    pub returns: Vec<Option<f64>>,
}

#[derive(Serialize, ToSchema)]
pub struct PositionSeries {
    pub opportunity_id: String,
    pub product_id: String,
    pub capital: f64,
    pub values: Vec<f64>,
    pub flows: Vec<f64>,
    pub returns: Vec<Option<f64>>,
}

/// `GET /v1/portfolio/history`.
#[derive(Serialize, ToSchema)]
pub struct PortfolioHistory {
    pub currency: String,
    pub risk_free_rate: f64,
    pub dates: Vec<String>,
    pub portfolio: SeriesOut,
    pub positions: Vec<PositionSeries>,
}

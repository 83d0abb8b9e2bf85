//! Pricing quotes: what a quote request carries, the quote the pricing
//! machine issues and later closes (executed: a conversion; expired: none),
//! and the revenue API's view of it. Shapes in `avro/command.avsc` and
//! `avro/event.avsc`; the model is `processors::pricing::model`.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::rfc3339;

/// `status`: open → executed | expired.
pub mod status {
    pub const OPEN: &str = "open";
    pub const EXECUTED: &str = "executed";
    pub const EXPIRED: &str = "expired";
}

/// The pricing machine's key of a tenant's product.
pub fn product_key(tenant: Uuid, product_id: &str) -> Uuid {
    Uuid::new_v5(&tenant, format!("product:{product_id}").as_bytes())
}

/// One competitor's price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompetitorPrice {
    pub name: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub price: Decimal,
}

/// One usage figure (`usage_history`), kept with the quote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageFigure {
    pub name: String,
    pub value: f64,
}

/// `RequestQuote` (key: the product): the command's id is the quote's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestQuote {
    pub product_id: String,
    pub segment_id: String,
    pub user_value_score: f64,
    pub competitor_prices: Vec<CompetitorPrice>,
    pub usage_history: Vec<UsageFigure>,
    /// How long the quote may be executed.
    pub ttl_ms: i64,
}

/// `ExecuteQuote`: the customer converted, at the quote's price less a
/// discount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecuteQuote {
    #[serde(with = "crate::ids::uuid_text")]
    pub quote_id: Uuid,
    #[serde(with = "rust_decimal::serde::str")]
    pub discount_percentage: Decimal,
    pub reason: String,
}

/// `ExpireQuotes`: a tick; every open quote that expired by `through` is
/// closed as a non-conversion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpireQuotes {
    pub through: i64,
}

/// A quote as the pricing machine holds and publishes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quote {
    #[serde(with = "crate::ids::uuid_text")]
    pub quote_id: Uuid,
    #[serde(with = "crate::ids::uuid_text")]
    pub tenant_id: Uuid,
    /// The machine's key for (tenant, product).
    #[serde(with = "crate::ids::uuid_text")]
    pub product_key: Uuid,
    pub product_id: String,
    pub segment_id: String,
    /// The model's arm (index of the price multiplier) and context bucket.
    pub arm: i64,
    pub value_bucket: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub reference_price: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub recommended_price: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub lower: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub upper: Decimal,
    pub expected_conversion: f64,
    #[serde(with = "rust_decimal::serde::str")]
    pub expected_ltv: Decimal,
    pub price_elasticity: f64,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub status: String,
    #[serde(with = "rust_decimal::serde::str_option")]
    pub final_price: Option<Decimal>,
    #[serde(with = "rust_decimal::serde::str_option")]
    pub discount_percentage: Option<Decimal>,
    pub reason: Option<String>,
    pub closed_ms: Option<i64>,
    /// +1 per event of this quote.
    pub version: i64,
}

/// `system.alert`: something a tenant's operators should look at, e.g. a
/// product's quoted prices dispersing (the model still exploring widely, or
/// a market that moved).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemAlert {
    pub severity: String,
    pub component: String,
    pub message: String,
    pub product_id: Option<String>,
    pub variance: Option<f64>,
}

impl SystemAlert {
    /// The seed's `data`: `{severity, component, message, details{…}}`.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "severity": self.severity,
            "component": self.component,
            "message": self.message,
            "details": {"product_id": self.product_id, "variance": self.variance},
        })
    }
}

/// A quote event's payload: the quote after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuoteChange {
    pub quote: Box<Quote>,
}

/// The revenue API's quote (`/v1/monetizer/quote`, the seed's shape, with
/// its status and outcome).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuoteView {
    /// `quote_…`
    pub quote_id: String,
    pub product_id: String,
    pub segment_id: String,
    #[serde(serialize_with = "super::json_number")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub recommended_price: Decimal,
    pub confidence_interval: ConfidenceInterval,
    /// `contextual_thompson`.
    pub pricing_method: String,
    pub optimization_metrics: OptimizationMetrics,
    pub expires_at: String,
    /// open, executed or expired.
    pub status: String,
    #[serde(serialize_with = "super::json_number_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>))]
    pub final_price: Option<Decimal>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfidenceInterval {
    #[serde(serialize_with = "super::json_number")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub lower: Decimal,
    #[serde(serialize_with = "super::json_number")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub upper: Decimal,
    pub confidence: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OptimizationMetrics {
    pub expected_conversion: f64,
    #[serde(serialize_with = "super::json_number")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub expected_ltv: Decimal,
    pub price_elasticity: f64,
}

impl Quote {
    pub fn view(&self) -> QuoteView {
        QuoteView {
            quote_id: crate::ids::short(crate::ids::Kind::Quote, self.quote_id),
            product_id: self.product_id.clone(),
            segment_id: self.segment_id.clone(),
            recommended_price: self.recommended_price,
            confidence_interval: ConfidenceInterval {
                lower: self.lower,
                upper: self.upper,
                confidence: 0.95,
            },
            pricing_method: "contextual_thompson".into(),
            optimization_metrics: OptimizationMetrics {
                expected_conversion: self.expected_conversion,
                expected_ltv: self.expected_ltv,
                price_elasticity: self.price_elasticity,
            },
            expires_at: rfc3339(self.expires_ms),
            status: self.status.clone(),
            final_price: self.final_price,
        }
    }
}

//! `/v1/monetizer`: quotes by contextual Thompson sampling (the pricing
//! machine, keyed by the tenant's product), their execution (a conversion),
//! and reading one back. A quote not executed by its `expires_at` is closed
//! as a non-conversion by the machine's expiry tick. Sandbox test ids work on
//! `execute` and `GET /v1/monetizer/quotes/{id}`.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use connectors::read_model::quotes;
use schemas::ids::{self, Kind};
use schemas::reply::{Outcome, RejectCode};
use schemas::revenue::pricing::{
    product_key, status, CompetitorPrice, ExecuteQuote, Quote, RequestQuote, UsageFigure,
};
use schemas::CommandPayload;

use crate::auth::Caller;
use crate::body::JsonObject;
use crate::commands::{command, command_id, unexpected};
use crate::error::ApiError;
use crate::revenue::fields::{invalid, Fields, LIST_ITEMS_MAX};
use crate::revenue::sandbox::{self, TestId};
#[allow(unused_imports)] // named by the OpenAPI attributes
use crate::revenue::schema::{CommonErrors, ErrorEnvelope, ExecuteQuoteRequest, QuoteRequest};
use crate::AppState;
#[allow(unused_imports)]
use schemas::revenue::pricing::QuoteView;

/// Longest product or segment id.
pub const ID_CHARS_MAX: usize = 100;
/// Largest competitor price accepted.
pub const PRICE_MAX: i64 = 1_000_000_000;
/// The largest discount an execution may give (%).
pub const DISCOUNT_MAX: i64 = 90;

/// Validates a quote request's body.
pub fn parse_request(body: &Map<String, Value>, ttl_ms: i64) -> Result<RequestQuote, ApiError> {
    let f = Fields::root(body);
    f.only(&["product_id", "segment_id", "context"])?;
    let product_id = f
        .text("product_id", ID_CHARS_MAX)?
        .ok_or_else(|| invalid("product_id", "product_id is required"))?;
    let segment_id = f
        .text("segment_id", ID_CHARS_MAX)?
        .ok_or_else(|| invalid("segment_id", "segment_id is required"))?;
    let c = f
        .object("context")?
        .ok_or_else(|| invalid("context", "context with competitor_pricing is required"))?;
    c.only(&["user_value_score", "usage_history", "competitor_pricing"])?;
    let user_value_score = c.rate("user_value_score", 0.0, 1.0)?.unwrap_or(0.5);
    let named = |key: &'static str| -> Result<Vec<(String, Value)>, ApiError> {
        match c.get(key) {
            None => Ok(vec![]),
            Some(Value::Object(m)) if m.len() <= LIST_ITEMS_MAX => {
                Ok(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            }
            Some(_) => Err(invalid(
                &format!("context.{key}"),
                format!(
                    "context.{key} must be an object of at most {LIST_ITEMS_MAX} named numbers"
                ),
            )),
        }
    };
    let mut competitor_prices = vec![];
    for (name, value) in named("competitor_pricing")? {
        let mut one = Map::new();
        one.insert(name.clone(), value);
        let prices = Fields {
            map: &one,
            path: "context.competitor_pricing",
        };
        let path = prices.name(&name);
        let price = prices
            .decimal(&name, PRICE_MAX)?
            .filter(|p| {
                *p > Decimal::ZERO
                    && name.chars().count() <= ID_CHARS_MAX
                    && !name.chars().any(char::is_control)
            })
            .ok_or_else(|| invalid(&path, format!("{path} must be a positive price")))?;
        competitor_prices.push(CompetitorPrice { name, price });
    }
    if competitor_prices.is_empty() {
        return Err(invalid(
            "context.competitor_pricing",
            "context.competitor_pricing needs at least one price: quotes are priced relative to the market",
        ));
    }
    let mut usage_history = vec![];
    for (name, value) in named("usage_history")? {
        let path = format!("context.usage_history.{name}");
        let v = value
            .as_f64()
            .filter(|v| {
                v.is_finite()
                    && name.chars().count() <= ID_CHARS_MAX
                    && !name.chars().any(char::is_control)
            })
            .ok_or_else(|| invalid(&path, format!("{path} must be a number")))?;
        usage_history.push(UsageFigure { name, value: v });
    }
    Ok(RequestQuote {
        product_id,
        segment_id,
        user_value_score,
        competitor_prices,
        usage_history,
        ttl_ms,
    })
}

fn view(outcome: Outcome) -> Result<Value, ApiError> {
    match outcome {
        Outcome::Quote(q) => Ok(json!(q.view())),
        Outcome::Rejected {
            code: RejectCode::Invalid,
            message,
        } => Err(invalid("context", message)),
        other => Err(unexpected(other)),
    }
}

/// `POST /v1/monetizer/quote`.
#[utoipa::path(post, path = "/monetizer/quote", tag = "monetizer",
    request_body = QuoteRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key answer the same quote")),
    responses((status = 200, description = "A quote", body = QuoteView), CommonErrors))]
pub async fn quote(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    caller.require_user_key()?;
    let ttl_ms = i64::try_from(state.config.quote_ttl.as_millis()).unwrap_or(i64::MAX);
    let request = parse_request(&body.0, ttl_ms)?;
    let id = command_id(&headers, caller.user_id, "monetizer/quote")?;
    let key = product_key(caller.user_id, &request.product_id);
    let payload = CommandPayload::RequestQuote(Box::new(request));
    match state
        .bus
        .execute(command(id, key, &caller, payload))
        .await?
    {
        // A retried request for a quote closed since: read back.
        Outcome::Done => Ok(Json(json!(read_back(&state, &caller, id).await?.view()))),
        other => Ok(Json(view(other)?)),
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::ResourceNotFound {
        resource_type: "quote",
        resource_id: id.chars().take(ids::ID_TEXT_MAX).collect(),
    }
}

/// A sandbox test quote's canned answer.
fn test_quote(id: &str, outcome: TestId, executing: bool) -> Value {
    let state = match outcome {
        TestId::Success if executing => status::EXECUTED,
        TestId::Success => status::OPEN,
        TestId::Fail => status::EXPIRED,
    };
    json!({
        "quote_id": id, "product_id": "prod_test", "segment_id": "seg_test",
        "recommended_price": 79.00,
        "confidence_interval": {"lower": 69.00, "upper": 89.00, "confidence": 0.95},
        "pricing_method": "contextual_thompson",
        "optimization_metrics": {"expected_conversion": 0.15, "expected_ltv": 2400.00, "price_elasticity": -1.2},
        "expires_at": "2099-01-01T00:00:00.000Z",
        "status": state,
        "final_price": (state == status::EXECUTED).then_some(79.00),
        "test": true,
        "error": (outcome == TestId::Fail).then_some("Simulated failure for test id: the quote expired"),
    })
}

async fn read_back(state: &AppState, caller: &Caller, id: Uuid) -> Result<Quote, ApiError> {
    quotes::get(&state.pool, caller.user_id, id)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("quote {id} answered but not in the read model")))
}

async fn find(state: &AppState, caller: &Caller, id: &str) -> Result<Quote, ApiError> {
    let uuid = ids::parse(Kind::Quote, id).map_err(|_| not_found(id))?;
    quotes::get(&state.pool, caller.user_id, uuid)
        .await?
        .ok_or_else(|| not_found(id))
}

/// `GET /v1/monetizer/quotes/{id}`.
#[utoipa::path(get, path = "/monetizer/quotes/{id}", tag = "monetizer",
    params(("id" = String, Path, description = "`quote_…` (sandbox: test ids)")),
    responses((status = 200, description = "The quote", body = QuoteView), CommonErrors,
              (status = 404, description = "No such quote of the caller's", body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if let Some(test) = sandbox::test_id(&caller, &id) {
        return Ok(Json(test_quote(&id, test?, false)));
    }
    Ok(Json(json!(find(&state, &caller, &id).await?.view())))
}

/// `POST /v1/monetizer/execute {quote_id, adjustments{discount_percentage, reason}}`:
/// the customer took the quote (a conversion), at its price less the
/// discount (0–90 %). Repeating it answers the same; an expired quote is a 400.
#[utoipa::path(post, path = "/monetizer/execute", tag = "monetizer",
    request_body = ExecuteQuoteRequest,
    responses((status = 200, description = "The executed quote", body = QuoteView), CommonErrors,
              (status = 404, description = "No such quote of the caller's", body = ErrorEnvelope)))]
pub async fn execute(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    caller.require_user_key()?;
    let f = Fields::root(&body.0);
    f.only(&["quote_id", "adjustments"])?;
    let id = f
        .text("quote_id", ids::ID_TEXT_MAX)?
        .ok_or_else(|| invalid("quote_id", "quote_id is required"))?;
    let (discount, reason) = match f.object("adjustments")? {
        None => (Decimal::ZERO, String::new()),
        Some(a) => {
            a.only(&["discount_percentage", "reason"])?;
            (
                a.decimal("discount_percentage", DISCOUNT_MAX)?
                    .unwrap_or_default(),
                a.text("reason", 100)?.unwrap_or_default(),
            )
        }
    };
    if let Some(test) = sandbox::test_id(&caller, &id) {
        return match test? {
            TestId::Success => Ok(Json(test_quote(&id, TestId::Success, true))),
            TestId::Fail => Ok(Json(test_quote(&id, TestId::Fail, true))),
        };
    }
    let found = find(&state, &caller, &id).await?;
    if found.status == status::EXECUTED {
        return Ok(Json(json!(found.view()))); // executed before: the same answer
    }
    let payload = CommandPayload::ExecuteQuote(ExecuteQuote {
        quote_id: found.quote_id,
        discount_percentage: discount,
        reason,
    });
    // Idempotent by the quote's state: a repeat answers the executed quote.
    let outcome = state
        .bus
        .execute(command(Uuid::new_v4(), found.product_key, &caller, payload))
        .await?;
    match outcome {
        Outcome::Rejected {
            code: RejectCode::NotFound,
            ..
        } => Err(not_found(&id)),
        Outcome::Rejected {
            code: RejectCode::Invalid,
            message,
        } => Err(ApiError::Validation {
            message,
            details: json!({"field": "quote_id", "expires_at": found.view().expires_at}),
        }),
        Outcome::Done => Ok(Json(json!(read_back(&state, &caller, found.quote_id)
            .await?
            .view()))),
        other => Ok(Json(view(other)?)),
    }
}

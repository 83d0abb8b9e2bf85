//! `/v1/revenue`: recording revenue events into the tenant's ledger (the
//! revenue machine posts them), the transactions list, analytics from the
//! daily aggregates, the hash chain's verification and monthly targets.
//! Events are idempotent by `Idempotency-Key` and by their natural key
//! (`event_type` + `metadata.invoice_id`).

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use base64::Engine;
use chrono::{Datelike, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use connectors::read_model::revenue::{self as model, TransactionFilter};
use schemas::money::iso_4217_scale;
use schemas::reply::{Outcome, RejectCode};
use schemas::revenue::analytics::{self, AnalyticsQuery, Granularity, GroupBy, RANGE_DAYS_MAX};
use schemas::revenue::ledger::{
    ChainVerifier, LedgerEntry, RecordRevenue, RevenueKind, SetRevenueTarget,
};
use schemas::revenue::ledger_key;
use schemas::CommandPayload;

use crate::auth::Caller;
use crate::body::JsonObject;
use crate::commands::{command, command_id, unexpected};
use crate::error::ApiError;
use crate::revenue::fields::{invalid, Fields, LABEL_CHARS_MAX};
use crate::revenue::sandbox::{self, TestId};
#[allow(unused_imports)] // named by the OpenAPI attributes
use crate::revenue::schema::{
    CommonErrors, ErrorEnvelope, RevenueEventRequest, TargetRequest, Targets, TransactionPage,
    Verification,
};
use crate::AppState;
#[allow(unused_imports)]
use schemas::revenue::analytics::AnalyticsView;
#[allow(unused_imports)]
use schemas::revenue::ledger::RecordedView;

/// Longest product or customer id.
pub const ID_CHARS_MAX: usize = 100;
/// Largest amount of one event.
pub const AMOUNT_MAX: i64 = 1_000_000_000_000;
/// Largest `metadata`, as compact JSON.
pub const METADATA_BYTES_MAX: usize = 4_096;
/// Clock skew allowed for `occurred_at` in the future.
pub const FUTURE_SKEW_MS: i64 = 60_000;
/// The earliest `occurred_at` (2000-01-01T00:00:00Z).
pub const OCCURRED_MIN_MS: i64 = 946_684_800_000;
/// Page size of the transactions list: default and most.
pub const PAGE_DEFAULT: i64 = 50;
pub const PAGE_MAX: i64 = 100;
/// Entries read per round while verifying a chain.
const VERIFY_PAGE: i64 = 2_000;

/// The body fields of `POST /v1/revenue/events`.
pub const EVENT_FIELDS: [&str; 9] = [
    "event_type",
    "amount",
    "currency",
    "product_id",
    "customer_id",
    "vertical",
    "customer_segment",
    "occurred_at",
    "metadata",
];

fn currency(f: &Fields<'_>) -> Result<String, ApiError> {
    let code = f
        .text("currency", 3)?
        .ok_or_else(|| invalid("currency", "currency is required (ISO 4217, e.g. USD)"))?
        .to_ascii_uppercase();
    iso_4217_scale(&code).ok_or_else(|| {
        invalid(
            "currency",
            format!("{code} is not an ISO 4217 currency with minor units"),
        )
    })?;
    Ok(code)
}

/// A label used in account names: lowercase letters, digits and `_`.
fn label(f: &Fields<'_>, key: &str, default: &str) -> Result<String, ApiError> {
    let Some(v) = f.text(key, LABEL_CHARS_MAX)? else {
        return Ok(default.into());
    };
    let v = v.to_ascii_lowercase();
    if !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(invalid(
            key,
            format!("{key} may hold only letters, digits and _"),
        ));
    }
    Ok(v)
}

/// Reads `occurred_at`: RFC 3339, not before 2000, not in the future.
fn occurred(f: &Fields<'_>, now_ms: i64) -> Result<i64, ApiError> {
    let Some(text) = f.text("occurred_at", 40)? else {
        return Ok(now_ms);
    };
    let at = chrono::DateTime::parse_from_rfc3339(&text)
        .map_err(|_| {
            invalid(
                "occurred_at",
                "occurred_at must be RFC 3339, e.g. 2026-06-12T10:35:00Z",
            )
        })?
        .timestamp_millis();
    if at > now_ms + FUTURE_SKEW_MS {
        return Err(invalid(
            "occurred_at",
            "occurred_at must not be in the future",
        ));
    }
    if at < OCCURRED_MIN_MS {
        return Err(invalid(
            "occurred_at",
            "occurred_at must be in 2000 or later",
        ));
    }
    Ok(at)
}

/// Validates a revenue event's body.
pub fn parse_event(body: &Map<String, Value>, now_ms: i64) -> Result<RecordRevenue, ApiError> {
    let f = Fields::root(body);
    f.only(&EVENT_FIELDS)?;
    let kinds: Vec<&str> = RevenueKind::ALL.iter().map(|k| k.as_str()).collect();
    let kind = f
        .text("event_type", 40)?
        .and_then(|t| RevenueKind::parse(&t))
        .ok_or_else(|| ApiError::Validation {
            message: format!("event_type must be one of {}", kinds.join(", ")),
            details: json!({"field": "event_type", "allowed": kinds}),
        })?;
    let currency = currency(&f)?;
    let amount = f
        .decimal("amount", AMOUNT_MAX)?
        .ok_or_else(|| invalid("amount", "amount is required"))?;
    let scale = iso_4217_scale(&currency).unwrap_or(0);
    if amount.normalize().scale() > scale {
        return Err(invalid(
            "amount",
            format!("amount has more decimal places than {currency} allows ({scale})"),
        ));
    }
    if amount.is_zero() && kind != RevenueKind::SubscriptionCancelled {
        return Err(invalid(
            "amount",
            "amount must be positive (zero only for subscription_cancelled)",
        ));
    }
    let id = |key: &str| -> Result<String, ApiError> {
        f.text(key, ID_CHARS_MAX)?
            .ok_or_else(|| invalid(key, format!("{key} is required")))
    };
    let (product_id, customer_id) = (id("product_id")?, id("customer_id")?);
    let (metadata, invoice) = match f.object("metadata")? {
        None => ("{}".to_string(), None),
        Some(m) => {
            let invoice = m.text("invoice_id", ID_CHARS_MAX)?;
            let text = Value::Object(m.map.clone()).to_string();
            if text.len() > METADATA_BYTES_MAX || !crate::body::storable(&text) {
                return Err(invalid(
                    "metadata",
                    format!("metadata must be at most {METADATA_BYTES_MAX} bytes of JSON"),
                ));
            }
            (text, invoice)
        }
    };
    Ok(RecordRevenue {
        event_type: kind.as_str().into(),
        amount: amount.normalize().round_dp(scale),
        currency,
        product_id,
        customer_id,
        vertical: label(&f, "vertical", "general")?,
        customer_segment: label(&f, "customer_segment", "default")?,
        occurred_ms: occurred(&f, now_ms)?,
        natural_key: invoice.map(|i| format!("{}:{i}", kind.as_str())),
        metadata,
    })
}

/// An entry recorded before (a repeat): read from the read model, which
/// may trail the ledger by a moment when the first request is in flight.
async fn recorded_before(
    state: &AppState,
    tenant: Uuid,
    id: Uuid,
    natural_key: Option<&str>,
) -> Result<LedgerEntry, ApiError> {
    for _ in 0..50 {
        if let Some(e) = model::by_id(&state.pool, tenant, id).await? {
            return Ok(e);
        }
        if let Some(k) = natural_key {
            if let Some(e) = model::by_natural_key(&state.pool, tenant, k).await? {
                return Ok(e);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(ApiError::Internal(format!(
        "revenue event {id} answered as recorded but not in the read model"
    )))
}

fn recorded(e: &LedgerEntry) -> (StatusCode, Json<Value>) {
    (StatusCode::CREATED, Json(json!(e.recorded_view())))
}

/// `POST /v1/revenue/events`.
#[utoipa::path(post, path = "/revenue/events", tag = "revenue",
    request_body = RevenueEventRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key record once and answer the same")),
    responses((status = 201, description = "Recorded (or recorded before: the same answer)", body = RecordedView), CommonErrors))]
pub async fn record(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_user_key()?;
    let request = parse_event(&body.0, Utc::now().timestamp_millis())?;
    if let Some(test) = sandbox::test_id(&caller, &request.customer_id) {
        if test? == TestId::Fail {
            return Err(ApiError::Validation {
                message: "Simulated failure for test id: the event was refused; nothing recorded"
                    .into(),
                details: json!({"field": "customer_id", "test": true}),
            });
        }
    }
    let tenant = caller.user_id;
    if let Some(k) = &request.natural_key {
        if let Some(e) = model::by_natural_key(&state.pool, tenant, k).await? {
            return Ok(recorded(&e));
        }
    }
    let id = command_id(&headers, tenant, "revenue/events")?;
    let natural_key = request.natural_key.clone();
    let payload = CommandPayload::RecordRevenue(Box::new(request));
    match state
        .bus
        .execute(command(id, ledger_key(tenant), &caller, payload))
        .await?
    {
        Outcome::RevenueEntry(e) => Ok(recorded(&e)),
        Outcome::Done => Ok(recorded(
            &recorded_before(&state, tenant, id, natural_key.as_deref()).await?,
        )),
        Outcome::Rejected {
            code: RejectCode::Invalid,
            message,
        } => Err(invalid("amount", message)),
        other => Err(unexpected(other)),
    }
}

/// A page position: the last sequence shown, as opaque base64url JSON.
fn cursor_of(sequence: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json!({ "seq": sequence }).to_string())
}

fn parse_cursor(text: &str) -> Option<i64> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Value>(&bytes).ok()?["seq"]
        .as_i64()
        .filter(|s| *s > 0)
}

/// A date of the API: `YYYY-MM-DD` from 2000 to 2100.
fn date(field: &str, text: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .filter(|d| (2000..=2100).contains(&d.year()))
        .ok_or_else(|| {
            invalid(
                field,
                format!("{field} must be a date from 2000 to 2100, YYYY-MM-DD"),
            )
        })
}

fn day_start_ms(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_millis())
        .unwrap_or_default()
}

/// The query parameters as a map, refusing unknown and repeated ones.
fn params<'a>(
    given: &'a [(String, String)],
    allowed: &[&str],
) -> Result<std::collections::HashMap<&'a str, &'a str>, ApiError> {
    let mut out = std::collections::HashMap::new();
    for (k, v) in given {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::Validation {
                message: format!("Unknown query parameter {k}"),
                details: json!({"field": k.chars().take(64).collect::<String>(), "allowed": allowed}),
            });
        }
        if v.chars().count() > 200 || v.chars().any(char::is_control) {
            return Err(invalid(k, format!("{k} must be at most 200 characters")));
        }
        if out.insert(k.as_str(), v.as_str()).is_some() {
            return Err(invalid(k, format!("{k} is given twice")));
        }
    }
    Ok(out)
}

/// `GET /v1/revenue/transactions`: newest first, cursor pages.
#[utoipa::path(get, path = "/revenue/transactions", tag = "revenue",
    params(
        ("cursor" = Option<String>, Query, description = "From the previous page's `pagination.cursor`"),
        ("limit" = Option<i64>, Query, description = "1 to 100 (50)"),
        ("product_id" = Option<String>, Query), ("customer_id" = Option<String>, Query),
        ("event_type" = Option<String>, Query),
        ("start_date" = Option<String>, Query, description = "YYYY-MM-DD, of occurred_at (UTC), inclusive"),
        ("end_date" = Option<String>, Query, description = "YYYY-MM-DD, inclusive"),
    ),
    responses((status = 200, description = "A page", body = TransactionPage), CommonErrors))]
pub async fn transactions(
    State(state): State<AppState>,
    caller: Caller,
    Query(given): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let p = params(
        &given,
        &[
            "cursor",
            "limit",
            "product_id",
            "customer_id",
            "event_type",
            "start_date",
            "end_date",
        ],
    )?;
    let limit = match p.get("limit") {
        None => PAGE_DEFAULT,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=PAGE_MAX).contains(l))
            .ok_or_else(|| invalid("limit", format!("limit must be 1 to {PAGE_MAX}")))?,
    };
    let before = match p.get("cursor") {
        None => None,
        Some(c) => Some(
            parse_cursor(c).ok_or_else(|| invalid("cursor", "cursor is not one this API gave"))?,
        ),
    };
    if let Some(t) = p.get("event_type") {
        RevenueKind::parse(t).ok_or_else(|| invalid("event_type", "unknown event_type"))?;
    }
    let start = p
        .get("start_date")
        .map(|d| date("start_date", d))
        .transpose()?;
    let end = p.get("end_date").map(|d| date("end_date", d)).transpose()?;
    if let (Some(s), Some(e)) = (start, end) {
        if s > e {
            return Err(invalid("start_date", "start_date is after end_date"));
        }
    }
    let filter = TransactionFilter {
        product_id: p.get("product_id").map(|s| s.to_string()),
        customer_id: p.get("customer_id").map(|s| s.to_string()),
        event_type: p.get("event_type").map(|s| s.to_string()),
        from_ms: start.map(day_start_ms),
        before_ms: end.and_then(|e| e.succ_opt()).map(day_start_ms),
    };
    let (mut rows, total) =
        model::transactions(&state.pool, caller.user_id, &filter, before, limit).await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = has_more
        .then(|| rows.last().map(|e| cursor_of(e.sequence)))
        .flatten();
    Ok(Json(json!({
        "data": rows.iter().map(|e| e.transaction_view()).collect::<Vec<_>>(),
        "pagination": {"cursor": next, "has_more": has_more, "total_count": total},
    })))
}

/// `GET /v1/revenue/analytics`.
#[utoipa::path(get, path = "/revenue/analytics", tag = "revenue",
    params(
        ("start_date" = Option<String>, Query, description = "YYYY-MM-DD (30 days before end_date)"),
        ("end_date" = Option<String>, Query, description = "YYYY-MM-DD (today, UTC)"),
        ("granularity" = Option<String>, Query, description = "day, week or month (day)"),
        ("group_by" = Option<String>, Query, description = "product, vertical or customer_segment"),
        ("currency" = Option<String>, Query, description = "ISO 4217 (USD); no conversion between currencies"),
    ),
    responses((status = 200, description = "Analytics", body = AnalyticsView), CommonErrors))]
pub async fn analytics(
    State(state): State<AppState>,
    caller: Caller,
    Query(given): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let p = params(
        &given,
        &[
            "start_date",
            "end_date",
            "granularity",
            "group_by",
            "currency",
        ],
    )?;
    let end = match p.get("end_date") {
        Some(d) => date("end_date", d)?,
        None => Utc::now().date_naive(),
    };
    let start = match p.get("start_date") {
        Some(d) => date("start_date", d)?,
        None => end - chrono::Days::new(29),
    };
    if start > end {
        return Err(invalid("start_date", "start_date is after end_date"));
    }
    if (end - start).num_days() + 1 > RANGE_DAYS_MAX {
        return Err(invalid(
            "start_date",
            format!("the range may span at most {RANGE_DAYS_MAX} days"),
        ));
    }
    let granularity = match p.get("granularity") {
        None => Granularity::Day,
        Some(g) => Granularity::parse(g)
            .ok_or_else(|| invalid("granularity", "granularity must be day, week or month"))?,
    };
    let group_by = p
        .get("group_by")
        .map(|g| {
            GroupBy::parse(g).ok_or_else(|| {
                invalid(
                    "group_by",
                    "group_by must be product, vertical or customer_segment",
                )
            })
        })
        .transpose()?;
    let currency = p
        .get("currency")
        .copied()
        .unwrap_or("USD")
        .to_ascii_uppercase();
    if iso_4217_scale(&currency).is_none() {
        return Err(invalid(
            "currency",
            format!("{currency} is not an ISO 4217 currency"),
        ));
    }
    let q = AnalyticsQuery {
        currency,
        start,
        end,
        granularity,
        group_by,
    };
    let (rows, opening) = model::analytics_rows(&state.pool, caller.user_id, &q).await?;
    let view = analytics::compute(&q, &opening, &rows).map_err(|e| {
        invalid(
            "granularity",
            format!(
                "{} points is more than {}: use a coarser granularity or a shorter range",
                e.0,
                analytics::POINTS_MAX
            ),
        )
    })?;
    Ok(Json(json!(view)))
}

/// `GET /v1/revenue/ledger/verify`: recomputes the tenant's hash chain from
/// the first entry.
#[utoipa::path(get, path = "/revenue/ledger/verify", tag = "revenue",
    responses((status = 200, description = "The chain's verification", body = Verification), CommonErrors))]
pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let mut v = ChainVerifier::default();
    let mut after = 0;
    loop {
        let page = model::chain_after(&state.pool, caller.user_id, after, VERIFY_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.sequence;
        for e in &page {
            if let Err(b) = v.push(e) {
                return Ok(Json(json!({
                    "valid": false,
                    "entries_checked": v.checked(),
                    "head_hash": v.head(),
                    "first_invalid_sequence": b.sequence,
                    "reason": b.reason,
                })));
            }
        }
        if (page.len() as i64) < VERIFY_PAGE {
            break;
        }
    }
    Ok(Json(json!({
        "valid": true,
        "entries_checked": v.checked(),
        "head_hash": v.head(),
        "first_invalid_sequence": null,
        "reason": null,
    })))
}

fn target_view(currency: &str, target: Decimal) -> Value {
    json!({"currency": currency, "monthly_target": schemas::money::json_number(target)})
}

/// `PUT /v1/revenue/targets {currency, monthly_target}` (0 clears it).
#[utoipa::path(put, path = "/revenue/targets", tag = "revenue",
    request_body = TargetRequest,
    responses((status = 200, description = "The target as set", body = TargetRequest), CommonErrors))]
pub async fn set_target(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    caller.require_user_key()?;
    let f = Fields::root(&body.0);
    f.only(&["currency", "monthly_target"])?;
    let currency = currency(&f)?;
    let target = f
        .decimal("monthly_target", AMOUNT_MAX)?
        .ok_or_else(|| invalid("monthly_target", "monthly_target is required"))?
        .normalize();
    let payload = CommandPayload::SetRevenueTarget(SetRevenueTarget {
        currency: currency.clone(),
        monthly_target: target,
    });
    match state
        .bus
        .execute(command(
            Uuid::new_v4(),
            ledger_key(caller.user_id),
            &caller,
            payload,
        ))
        .await?
    {
        Outcome::Done => Ok(Json(target_view(&currency, target))),
        other => Err(unexpected(other)),
    }
}

/// `GET /v1/revenue/targets`.
#[utoipa::path(get, path = "/revenue/targets", tag = "revenue",
    responses((status = 200, description = "The tenant's monthly targets", body = Targets), CommonErrors))]
pub async fn targets(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let rows = model::targets(&state.pool, caller.user_id).await?;
    Ok(Json(json!({
        "targets": rows.iter().map(|(c, t)| target_view(c, *t)).collect::<Vec<_>>(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_780_000_000_000;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn seed_body() -> Value {
        json!({"event_type": "payment_received", "amount": 79.00, "currency": "usd",
               "product_id": "prod_456def", "customer_id": "cust_123abc",
               "metadata": {"payment_method": "stripe", "invoice_id": "inv_789def"}})
    }

    #[test]
    fn the_seeds_event_parses_with_defaults_and_a_natural_key() {
        let r = parse_event(&body(seed_body()), NOW).unwrap();
        assert_eq!(r.currency, "USD");
        assert_eq!(r.amount, Decimal::from(79));
        assert_eq!(r.vertical, "general");
        assert_eq!(r.occurred_ms, NOW);
        assert_eq!(
            r.natural_key.as_deref(),
            Some("payment_received:inv_789def")
        );
    }

    #[test]
    fn bad_events_name_their_field() {
        let cases = [
            ("event_type", json!("bonus")),
            ("amount", json!(1.001)),
            ("amount", json!(-5)),
            ("amount", json!(0)),
            ("currency", json!("XAU")),
            ("currency", json!("dollars")),
            ("occurred_at", json!("2999-01-01T00:00:00Z")),
            ("occurred_at", json!("1999-12-31T23:59:59Z")),
            ("occurred_at", json!("yesterday")),
            ("vertical", json!("saas/fintech")),
            ("customer_id", json!("")),
            ("nonsense", json!(1)),
        ];
        for (field, value) in cases {
            let mut b = body(seed_body());
            b.insert(field.into(), value.clone());
            match parse_event(&b, NOW) {
                Err(ApiError::Validation { details, .. }) => {
                    assert_eq!(details["field"], field, "{field}={value}")
                }
                other => panic!("{field}={value}: {other:?}"),
            }
        }
        let mut jpy = body(seed_body());
        jpy.insert("currency".into(), json!("JPY"));
        jpy.insert("amount".into(), json!(79.5));
        assert!(parse_event(&jpy, NOW).is_err(), "the yen has no minor unit");
        jpy.insert("amount".into(), json!(7900));
        assert_eq!(parse_event(&jpy, NOW).unwrap().amount, Decimal::from(7900));
    }

    #[test]
    fn cursors_round_trip_and_refuse_forgeries() {
        assert_eq!(parse_cursor(&cursor_of(123_456)), Some(123_456));
        assert_eq!(parse_cursor("eyJpZCI6MTIzNDU2fQ"), None); // {"id":…}
        assert_eq!(parse_cursor("not base64 !"), None);
        assert_eq!(parse_cursor(&cursor_of(-1)), None);
    }
}

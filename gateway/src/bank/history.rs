//! An agent's history over HTTP: `GET /agents/{id}/transactions` (one list
//! of every movement of its money, newest first, by cursor, with kind and
//! date filters) and `POST /agents/{id}/transactions/export` (the same rows
//! as CSV, XLSX or PDF).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use connectors::read_model::history::{self, HistoryQuery, HistoryRow, KINDS};
use schemas::ids::{self, Kind};
use schemas::money;

use crate::auth::Caller;
use crate::bank::agents::{PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX};
use crate::bank::reports::{date_range, document, Format, EXPORT_ROWS_MAX};
use crate::body::JsonObject;
use crate::body::Query;
use crate::error::ApiError;
use crate::AppState;

/// The exported columns.
const COLUMNS: [&str; 6] = [
    "id",
    "occurredat",
    "kind",
    "amount",
    "currency",
    "balanceafter",
];
const PRINTED: [usize; 6] = [0, 1, 2, 3, 4, 5];

#[derive(Deserialize)]
pub struct HistoryParams {
    /// Comma-separated kinds (see `KINDS`).
    kind: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

/// The caller's agent `id` (another user's does not exist for them).
async fn agent_of(state: &AppState, caller: &Caller, id: &str) -> Result<Uuid, ApiError> {
    let not_found = || ApiError::NotFound("Agent not found".into());
    let agent = ids::parse(Kind::Agent, id).map_err(|_| not_found())?;
    let owner = connectors::read_model::agents::owner(&state.pool, agent).await?;
    if !caller.may_act_for(agent) || owner != Some(caller.user_id) {
        return Err(not_found());
    }
    Ok(agent)
}

fn kinds(text: Option<&str>) -> Result<Vec<String>, ApiError> {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return Ok(vec![]);
    };
    text.split(',')
        .take(KINDS.len() + 1)
        .map(|k| {
            let k = k.trim().replace('_', " ");
            KINDS
                .contains(&k.as_str())
                .then_some(k.clone())
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("Unknown kind '{k}'; kinds: {}", KINDS.join(", ")))
                })
        })
        .collect()
}

/// The cursor of the row a page ended at: its time (ms) and event id.
fn cursor_of(r: &HistoryRow) -> String {
    format!(
        "{}_{}",
        r.occurred_at.timestamp_millis(),
        r.event_id.simple()
    )
}

fn parse_cursor(text: &str) -> Result<(chrono::DateTime<chrono::Utc>, Uuid), ApiError> {
    let bad = || ApiError::BadRequest("Invalid cursor".into());
    let (ms, id) = text.split_once('_').ok_or_else(bad)?;
    let at = ms
        .parse::<i64>()
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .ok_or_else(bad)?;
    Ok((at, Uuid::parse_str(id).map_err(|_| bad())?))
}

fn row_json(r: &HistoryRow) -> Value {
    json!({
        "id": ids::short(Kind::Event, r.event_id),
        "kind": r.kind,
        "amount": money::display(r.amount),
        "currency": r.currency,
        "balanceAfter": money::display(r.balance_after),
        "occurredAt": r.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

/// `GET /agents/{id}/transactions?kind=&start_date=&end_date=&cursor=&limit=`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(p): Query<HistoryParams>,
) -> Result<Json<Value>, ApiError> {
    let agent = agent_of(&state, &caller, &id).await?;
    let limit = match p.limit.as_deref() {
        None => PAGE_LIMIT_DEFAULT,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=PAGE_LIMIT_MAX).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "limit must be an integer from 1 to {PAGE_LIMIT_MAX}"
                ))
            })?,
    };
    let (start, end) = date_range(p.start_date.as_deref(), p.end_date.as_deref())?;
    let after = match p.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) if c.len() <= 80 => Some(parse_cursor(c)?),
        Some(_) => return Err(ApiError::BadRequest("Invalid cursor".into())),
        None => None,
    };
    let q = HistoryQuery {
        user: caller.user_id,
        agent,
        kinds: kinds(p.kind.as_deref())?,
        start,
        end,
        after,
        limit: limit + 1,
    };
    let mut rows = history::page(&state.pool, &q).await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    Ok(Json(json!({
        "agentId": ids::short(Kind::Agent, agent),
        "transactions": rows.iter().map(row_json).collect::<Vec<_>>(),
        "hasMore": has_more,
        "nextCursor": if has_more { rows.last().map(cursor_of) } else { None },
    })))
}

/// `POST /agents/{id}/transactions/export {format, dateRange{start?, end?}, kind?}`:
/// oldest first, at most 10,000 rows.
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let agent = agent_of(&state, &caller, &id).await?;
    let format = body
        .opt_str("format", 10)?
        .and_then(|f| Format::parse(&f))
        .ok_or_else(|| {
            ApiError::BadRequest(
                "Invalid export format. Supported formats are: csv, xlsx, pdf".into(),
            )
        })?;
    let range = |name: &str| -> Result<Option<String>, ApiError> {
        match body.0.get("dateRange").and_then(|r| r.get(name)) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::BadRequest("Invalid date range format".into())),
        }
    };
    let (start, end) = date_range(range("start")?.as_deref(), range("end")?.as_deref())?;
    let q = HistoryQuery {
        user: caller.user_id,
        agent,
        kinds: kinds(body.opt_str("kind", 200)?.as_deref())?,
        start,
        end,
        after: None,
        limit: EXPORT_ROWS_MAX + 1,
    };
    let mut rows = history::page(&state.pool, &q).await?;
    if rows.len() as i64 > EXPORT_ROWS_MAX {
        return Err(ApiError::BadRequest(format!(
            "The export would exceed {EXPORT_ROWS_MAX} transactions; use a narrower date range"
        )));
    }
    rows.reverse();
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                ids::short(Kind::Event, r.event_id),
                r.occurred_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                r.kind.clone(),
                money::display(r.amount),
                r.currency.clone(),
                money::display(r.balance_after),
            ]
        })
        .collect();
    let bytes = match format {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(vec![]);
            let fail = |e: csv::Error| ApiError::Internal(format!("csv: {e}"));
            w.write_record(COLUMNS).map_err(fail)?;
            for r in &table {
                w.write_record(r).map_err(fail)?;
            }
            w.into_inner()
                .map_err(|e| ApiError::Internal(format!("csv: {e}")))?
        }
        _ => document(format, "Transactions", &COLUMNS, &PRINTED, table).await?,
    };
    metrics::counter!("agentbank_exports_total", "format" => format.extension()).increment(1);
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"transactions.{}\"",
                    format.extension()
                ),
            ),
        ],
        Body::from(bytes),
    )
        .into_response())
}

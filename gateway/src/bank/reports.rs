//! Reports from the read model: the transaction summary, the user's wallet
//! balance (from the ledger) and payment exports as CSV (streamed), XLSX and
//! PDF (built off the async runtime, bounded by [`EXPORT_ROWS_MAX`]).

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use schemas::event::accounts;
use schemas::ids::{self, Kind};
use schemas::money;

use crate::auth::Caller;
use crate::body::{number, JsonObject, Query};
use crate::error::ApiError;
use crate::AppState;
use connectors::read_model::ledger;
use connectors::read_model::payments::{self, ExportRange, PaymentRow};

/// The documented maximum export size.
pub const EXPORT_ROWS_MAX: i64 = 10_000;

/// An ISO 8601 instant, or a date (its start, or with `end_of_day` its last
/// instant: date ranges are inclusive).
/// An optional start and end.
pub type DateRange = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// An optional `[start, end]` from query text (ISO 8601 instants, or plain
/// dates: the start's beginning, the end's whole day); 400 when unreadable
/// or reversed.
pub fn date_range(start: Option<&str>, end: Option<&str>) -> Result<DateRange, ApiError> {
    let bad =
        || ApiError::BadRequest("Invalid date range: use ISO 8601 dates, start before end".into());
    let read = |t: Option<&str>, end_of_day: bool| -> Result<Option<DateTime<Utc>>, ApiError> {
        match t.map(str::trim).filter(|t| !t.is_empty()) {
            None => Ok(None),
            Some(t) if t.len() <= 40 => parse_instant(t, end_of_day).map(Some).ok_or_else(bad),
            Some(_) => Err(bad()),
        }
    };
    let (s, e) = (read(start, false)?, read(end, true)?);
    if let (Some(s), Some(e)) = (s, e) {
        if s > e {
            return Err(bad());
        }
    }
    Ok((s, e))
}

fn parse_instant(text: &str, end_of_day: bool) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Some(t.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()?;
    let t = if end_of_day {
        date.and_hms_milli_opt(23, 59, 59, 999)?
    } else {
        date.and_hms_opt(0, 0, 0)?
    };
    Some(t.and_utc())
}

#[derive(Deserialize)]
pub struct SummaryQuery {
    start_date: Option<String>,
    end_date: Option<String>,
}

/// The documented error shape of the summary and the calculator:
/// `{"success": false, "error": …}`.
pub(crate) fn summary_error(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"success": false, "error": message})),
    )
        .into_response()
}

/// `GET /transactions/summary` — earned (deposits, payments received,
/// interest) and spent (withdrawals, payments sent) over all the caller's
/// agents in `[start_date, end_date]`.
pub async fn summary(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<SummaryQuery>,
) -> Result<Response, ApiError> {
    let (Some(start), Some(end)) = (q.start_date.as_deref(), q.end_date.as_deref()) else {
        return Ok(summary_error("start_date and end_date are required"));
    };
    let (Some(start), Some(end)) = (parse_instant(start, false), parse_instant(end, true)) else {
        return Ok(summary_error(
            "Invalid date format. Use ISO format (e.g., 2023-05-01T00:00:00Z)",
        ));
    };
    if start > end {
        return Ok(summary_error("start_date must not be after end_date"));
    }
    let (earned, spent, count) =
        ledger::summary(&state.pool, caller.user_id, caller.agent_id, start, end).await?;
    let iso = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    Ok(Json(json!({
        "totalEarned": number(earned),
        "totalSpent": number(spent),
        "transactionCount": count,
        "startDate": iso(start),
        "endDate": iso(end),
    }))
    .into_response())
}

/// `GET /user/wallet-balance` — the user's wallet as the ledger holds it
/// (`source: "ledger"`), in either mode: the figure agents are funded from.
/// With a chain, also the user's custodial address there and what it holds
/// on chain (`onChain`: USDC first, then ETH — the seed's fallback).
pub async fn wallet_balance(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let balance =
        ledger::account_balance(&state.pool, &accounts::user_wallet(caller.user_id)).await?;
    let mut out = json!({
        "success": true,
        "balance": money::display(balance),
        "asset": "USDC",
        "source": "ledger",
    });
    let Some(chain) = &state.chain else {
        out["message"] = json!("Balance of the user's wallet in the agentbank ledger (on-chain settlement is not enabled)");
        return Ok(Json(out));
    };
    let address = chain.wallets.user_address(caller.user_id);
    let decimals = chain.chain.config.token_decimals;
    let read = async {
        let usdc = chain.chain.token_balance(address).await?;
        if !usdc.is_zero() {
            return Ok::<_, connectors::ConnectorError>(Some((usdc, decimals, "USDC")));
        }
        let eth = chain.chain.native_balance(address).await?;
        Ok((!eth.is_zero()).then_some((eth, 18, "ETH")))
    };
    out["address"] = json!(address.to_string());
    out["networkId"] = json!(chain.network());
    out["onChain"] = match read.await {
        Ok(Some((units, decimals, asset))) => json!({
            "balance": connectors::chain::plan::from_units(units, decimals)
                .map_or_else(|| units.to_string(), money::display),
            "asset": asset,
        }),
        Ok(None) => json!({"balance": "0.00", "asset": "USDC"}),
        Err(e) => {
            tracing::warn!(error = %e, "wallet balance: chain unreadable");
            json!({"balance": null, "message": "All balance fetching methods failed"})
        }
    };
    Ok(Json(out))
}

/// Export formats and their HTTP shape.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Csv,
    Xlsx,
    Pdf,
}

impl Format {
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "xlsx" => Some(Format::Xlsx),
            "pdf" => Some(Format::Pdf),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Format::Pdf => "application/pdf",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
            Format::Pdf => "pdf",
        }
    }
}

/// The exported columns, in order; every format shows the same ones.
pub const EXPORT_COLUMNS: [&str; 12] = [
    "id",
    "createdat",
    "name",
    "type",
    "direction",
    "senderagentid",
    "receiveragentid",
    "amount",
    "currency",
    "method",
    "status",
    "approvalstatus",
];

fn export_row(r: &PaymentRow) -> [String; 12] {
    let p = r.payment();
    let short = |s: &str| {
        uuid::Uuid::parse_str(s).map_or_else(|_| s.to_string(), |u| ids::short(Kind::Agent, u))
    };
    [
        ids::short(Kind::Payee, p.id()),
        chrono::DateTime::from_timestamp_millis(p.created_ms)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        p.name.clone(),
        p.payment_type.clone(),
        r.direction().to_string(),
        short(&p.sender_agent_id),
        short(&p.receiver_agent_id),
        money::display(p.amount),
        p.currency.clone(),
        p.method.clone(),
        p.status.clone(),
        p.approval_status.clone(),
    ]
}

/// `POST /payments/export` — `{format, dateRange: {start, end}}`, oldest first.
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonObject,
) -> Result<Response, ApiError> {
    const BAD_FORMAT: &str = "Invalid export format. Supported formats are: csv, xlsx, pdf";
    const BAD_RANGE: &str = "Invalid date range format";
    let format = body
        .opt_str("format", 10)
        .ok()
        .flatten()
        .and_then(|f| Format::parse(&f))
        .ok_or_else(|| ApiError::BadRequest(BAD_FORMAT.into()))?;
    let (start, end) = match body.0.get("dateRange") {
        None | Some(Value::Null) => (None, None),
        Some(Value::Object(range)) => {
            let bound = |name: &str, end: bool| -> Result<Option<DateTime<Utc>>, ApiError> {
                match range.get(name) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) if s.len() <= 40 => parse_instant(s, end)
                        .map(Some)
                        .ok_or_else(|| ApiError::BadRequest(BAD_RANGE.into())),
                    Some(_) => Err(ApiError::BadRequest(BAD_RANGE.into())),
                }
            };
            (bound("start", false)?, bound("end", true)?)
        }
        Some(_) => return Err(ApiError::BadRequest(BAD_RANGE.into())),
    };
    if let (Some(s), Some(e)) = (start, end) {
        if s > e {
            return Err(ApiError::BadRequest(BAD_RANGE.into()));
        }
    }
    let range = ExportRange {
        user: caller.user_id,
        agent: caller.agent_id,
        start,
        end,
        max: EXPORT_ROWS_MAX,
    };
    let too_many = || {
        ApiError::BadRequest(format!(
            "The export would exceed {EXPORT_ROWS_MAX} payments; use a narrower date range"
        ))
    };
    let body = match format {
        Format::Csv => {
            // Streamed: the bound is checked before the first byte goes out.
            if payments::export_count(&state.pool, range).await? > EXPORT_ROWS_MAX {
                return Err(too_many());
            }
            csv_stream(payments::export_stream(state.pool.clone(), range))
        }
        Format::Xlsx | Format::Pdf => {
            // At most one row past the bound is read (the query's LIMIT).
            let rows = payments::export_rows(&state.pool, range).await?;
            if rows.len() as i64 > EXPORT_ROWS_MAX {
                return Err(too_many());
            }
            let rows: Vec<[String; 12]> = rows.iter().map(export_row).collect();
            Body::from(document(format, "Payments", &EXPORT_COLUMNS, &PDF_COLUMNS, rows).await?)
        }
    };
    metrics::counter!("agentbank_exports_total", "format" => format.extension()).increment(1);
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"payments.{}\"", format.extension()),
            ),
        ],
        body,
    )
        .into_response())
}

/// Streams the CSV row by row as Postgres returns them: memory stays flat
/// however large the export.
fn csv_stream(
    mut rows: tokio::sync::mpsc::Receiver<Result<PaymentRow, connectors::ConnectorError>>,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(16);
    tokio::spawn(async move {
        let line = |fields: &[&str]| -> Vec<u8> {
            let mut w = csv::Writer::from_writer(vec![]);
            // Writing to a Vec cannot fail.
            let _ = w.write_record(fields);
            w.into_inner().unwrap_or_default()
        };
        if tx.send(Ok(line(&EXPORT_COLUMNS))).await.is_err() {
            return;
        }
        while let Some(row) = rows.recv().await {
            let chunk = match row {
                Ok(r) => {
                    let fields = export_row(&r);
                    Ok(line(&fields.each_ref().map(String::as_str)))
                }
                Err(e) => {
                    tracing::error!(error = %e, "csv export failed mid-stream");
                    Err(std::io::Error::other("export failed"))
                }
            };
            let failed = chunk.is_err();
            if tx.send(chunk).await.is_err() || failed {
                return;
            }
        }
    });
    Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }))
}

/// The payment columns a PDF line shows (a page is narrower than a sheet).
const PDF_COLUMNS: [usize; 8] = [0, 1, 2, 4, 7, 8, 10, 11];

/// An XLSX or PDF document of `rows` under `columns`, built off the async
/// workers (the PDF prints the `printed` columns).
pub async fn document<R: AsRef<[String]> + Send + 'static>(
    format: Format,
    sheet: &'static str,
    columns: &'static [&'static str],
    printed: &'static [usize],
    rows: Vec<R>,
) -> Result<Vec<u8>, ApiError> {
    tokio::task::spawn_blocking(move || match format {
        Format::Xlsx => xlsx(sheet, columns, &rows),
        _ => Ok(pdf(columns, printed, &rows)),
    })
    .await
    .map_err(|e| ApiError::Internal(format!("export task: {e}")))?
}

/// A workbook with the rows (bold header, frozen, filtered) and a summary
/// sheet. Amounts are written as exact decimal text.
fn xlsx<R: AsRef<[String]>>(
    sheet_name: &str,
    columns: &[&str],
    rows: &[R],
) -> Result<Vec<u8>, ApiError> {
    use rust_xlsxwriter::{Format as Cell, Workbook};
    let fail = |e: rust_xlsxwriter::XlsxError| ApiError::Internal(format!("xlsx: {e}"));
    let mut book = Workbook::new();
    let bold = Cell::new().set_bold();
    let sheet = book.add_worksheet().set_name(sheet_name).map_err(fail)?;
    for (c, name) in columns.iter().enumerate() {
        sheet
            .write_string_with_format(0, c as u16, *name, &bold)
            .map_err(fail)?;
    }
    for (r, row) in rows.iter().enumerate() {
        for (c, value) in row.as_ref().iter().enumerate() {
            sheet
                .write_string(r as u32 + 1, c as u16, value)
                .map_err(fail)?;
        }
    }
    sheet.set_freeze_panes(1, 0).map_err(fail)?;
    sheet
        .autofilter(0, 0, rows.len() as u32, columns.len() as u16 - 1)
        .map_err(fail)?;
    sheet.set_column_width(0, 30).map_err(fail)?;
    let summary = book.add_worksheet().set_name("Summary").map_err(fail)?;
    summary
        .write_string_with_format(0, 0, "rows", &bold)
        .map_err(fail)?;
    summary
        .write_number(0, 1, rows.len() as f64)
        .map_err(fail)?;
    summary
        .write_string_with_format(1, 0, "generated", &bold)
        .map_err(fail)?;
    summary
        .write_string(
            1,
            1,
            Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
        .map_err(fail)?;
    book.save_to_buffer().map_err(fail)
}

/// A4 pages of Helvetica text, one row per line. Text outside Latin-1 is
/// shown as `?` (the standard fonts' WinAnsi encoding).
fn pdf<R: AsRef<[String]>>(columns: &[&str], printed: &[usize], rows: &[R]) -> Vec<u8> {
    use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str};
    const LINES_PER_PAGE: usize = 60;
    let encode = |s: &str| -> Vec<u8> {
        s.chars()
            .map(|c| {
                if (' '..='~').contains(&c) {
                    c as u8
                } else {
                    b'?'
                }
            })
            .collect()
    };
    let header: Vec<String> = printed.iter().map(|i| columns[*i].to_string()).collect();
    let mut lines = vec![header.join(" | ")];
    lines.extend(rows.iter().map(|r| {
        printed
            .iter()
            .map(|i| r.as_ref()[*i].chars().take(32).collect::<String>())
            .collect::<Vec<_>>()
            .join(" | ")
    }));
    let pages: Vec<&[String]> = lines.chunks(LINES_PER_PAGE).collect();
    let (catalog, tree, font) = (Ref::new(1), Ref::new(2), Ref::new(3));
    let page_ref = |i: usize| Ref::new(4 + 2 * i as i32);
    let content_ref = |i: usize| Ref::new(5 + 2 * i as i32);
    let mut doc = Pdf::new();
    doc.catalog(catalog).pages(tree);
    doc.pages(tree)
        .kids((0..pages.len()).map(page_ref))
        .count(pages.len() as i32);
    doc.type1_font(font)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    for (i, page_lines) in pages.iter().enumerate() {
        let mut page = doc.page(page_ref(i));
        page.media_box(Rect::new(0.0, 0.0, 842.0, 595.0)); // A4 landscape
        page.parent(tree);
        page.contents(content_ref(i));
        page.resources().fonts().pair(Name(b"F1"), font);
        page.finish();
        let mut content = Content::new();
        content.begin_text();
        content.set_font(Name(b"F1"), 7.0);
        content.set_leading(9.0);
        content.next_line(24.0, 570.0);
        for line in page_lines.iter() {
            content.show(Str(&encode(line)));
            content.next_line_using_leading();
        }
        content.end_text();
        doc.stream(content_ref(i), &content.finish());
    }
    doc.finish()
}

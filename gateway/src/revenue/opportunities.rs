//! `/v1/opportunities`: create (scored by the opportunities machine), get,
//! list (filters, multi-key sort, sparse fields, pages), execute, and
//! `/v1/batch/opportunities`. Writes are commands to the opportunities
//! machine; reads come from the read model
//! (`connectors::read_model::opportunities`). In the sandbox, the test ids
//! `test_success_*`, `test_fail_*` and `test_error_{status}_*` answer as
//! `docs/revenue.md` says.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use connectors::read_model::opportunities::{
    self as model, Field, FieldKind, Filter, ListQuery, Op, Operand, SortKey,
};
use schemas::ids::{self, Kind};
use schemas::reply::Outcome;
use schemas::revenue::opportunity::{
    status, CreateOpportunity, ExecuteOpportunity, MarketData, OpportunitySpec,
    TechnicalRequirements, COMPLEXITIES,
};
use schemas::CommandPayload;

use crate::auth::Caller;
use crate::body::JsonObject;
use crate::commands::{command, command_id, unexpected};
use crate::error::{ApiError, RequestId};
use crate::revenue::fields::{invalid, Fields, LABEL_CHARS_MAX};
use crate::revenue::sandbox::{self, TestId};
#[allow(unused_imports)] // named by the OpenAPI attributes
use crate::revenue::schema::{
    BatchRequest, BatchResponse, CommonErrors, CreateOpportunityRequest, ErrorEnvelope,
    ExecuteOpportunityRequest, OpportunityList,
};
use crate::AppState;
#[allow(unused_imports)]
use schemas::revenue::opportunity::OpportunityView;

pub const NAME_CHARS_MAX: usize = 100;
pub const PER_PAGE_DEFAULT: i64 = 20;
pub const PER_PAGE_MAX: i64 = 100;
pub const PAGE_MAX: i64 = 1_000_000;
pub const SORT_KEYS_MAX: usize = 5;
pub const IN_VALUES_MAX: usize = 50;
pub const QUERY_PARAMS_MAX: usize = 50;
pub const BATCH_OPERATIONS_MAX: usize = 100;
/// Largest market size accepted, USD a year.
pub const MARKET_SIZE_MAX: i64 = 1_000_000_000_000_000;
pub const TIME_TO_MARKET_DAYS_MAX: i64 = 3_650;
pub const COMPETITORS_MAX: i64 = 100_000;

/// The create body's fields.
pub const CREATE_FIELDS: [&str; 6] = [
    "name",
    "vertical",
    "market_data",
    "technical_requirements",
    "target_customers",
    "pricing_model",
];

/// Top-level fields of the opportunity view (`fields=` picks among them).
pub const VIEW_FIELDS: [&str; 16] = [
    "id",
    "name",
    "vertical",
    "score",
    "expected_irr",
    "payback_months",
    "moat_score",
    "risk_score",
    "scalability_score",
    "status",
    "created_at",
    "updated_at",
    "metadata",
    "economic_analysis",
    "execution_plan",
    "execution",
];

/// Validates a create body into the spec the machine scores. Absent market
/// data counts as none (size 0, no growth, no competitors); absent technical
/// requirements as medium complexity, 180 days, no named expertise.
pub fn parse_spec(body: &Map<String, Value>) -> Result<OpportunitySpec, ApiError> {
    let f = Fields::root(body);
    f.only(&[
        "name",
        "vertical",
        "market_data",
        "technical_requirements",
        "target_customers",
        "pricing_model",
    ])?;
    let name = f
        .text("name", NAME_CHARS_MAX)?
        .ok_or_else(|| invalid("name", "name is required"))?;
    let vertical = f
        .text("vertical", LABEL_CHARS_MAX)?
        .ok_or_else(|| invalid("vertical", "vertical is required"))?
        .to_ascii_lowercase();
    let market_data = match f.object("market_data")? {
        None => MarketData {
            total_market_size: Decimal::ZERO,
            growth_rate: 0.0,
            competition_count: 0,
        },
        Some(m) => {
            m.only(&["total_market_size", "growth_rate", "competition_count"])?;
            MarketData {
                total_market_size: m
                    .decimal("total_market_size", MARKET_SIZE_MAX)?
                    .unwrap_or_default(),
                growth_rate: m.rate("growth_rate", -1.0, 10.0)?.unwrap_or(0.0),
                competition_count: m.int("competition_count", 0, COMPETITORS_MAX)?.unwrap_or(0),
            }
        }
    };
    let technical_requirements = match f.object("technical_requirements")? {
        None => TechnicalRequirements {
            complexity: "medium".into(),
            time_to_market: 180,
            required_expertise: vec![],
        },
        Some(t) => {
            t.only(&["complexity", "time_to_market", "required_expertise"])?;
            let complexity = t
                .text("complexity", LABEL_CHARS_MAX)?
                .unwrap_or_else(|| "medium".into());
            if !COMPLEXITIES.contains(&complexity.as_str()) {
                return Err(ApiError::Validation {
                    message: format!(
                        "technical_requirements.complexity must be one of {}",
                        COMPLEXITIES.join(", ")
                    ),
                    details: json!({"field": "technical_requirements.complexity", "allowed": COMPLEXITIES}),
                });
            }
            TechnicalRequirements {
                complexity,
                time_to_market: t
                    .int("time_to_market", 1, TIME_TO_MARKET_DAYS_MAX)?
                    .unwrap_or(180),
                required_expertise: t.texts("required_expertise")?,
            }
        }
    };
    Ok(OpportunitySpec {
        name,
        vertical,
        market_data,
        technical_requirements,
        target_customers: f.texts("target_customers")?,
        pricing_model: f
            .text("pricing_model", LABEL_CHARS_MAX)?
            .unwrap_or_else(|| "subscription".into()),
    })
}

/// What a sandbox test id answers, if `id` is one.
fn test_id(caller: &Caller, id: &str, executing: bool) -> Option<Result<Value, ApiError>> {
    let outcome = match sandbox::test_id(caller, id)? {
        Ok(outcome) => outcome,
        Err(e) => return Some(Err(e)),
    };
    let (state, result) = match outcome {
        TestId::Success if executing => (status::COMPLETED, "success"),
        TestId::Success => (status::PENDING, "success"),
        TestId::Fail => ("failed", "failure"),
    };
    Some(Ok(json!({
        "id": id,
        "name": "Sandbox test opportunity",
        "vertical": "saas",
        "score": 0.87, "expected_irr": 0.45, "payback_months": 8,
        "moat_score": 0.75, "risk_score": 0.22, "scalability_score": 0.91,
        "status": state,
        "test": true,
        "execution": (executing || result == "failure").then(|| json!({
            "result": result,
            "execution_time_ms": 0,
            "error": (result == "failure").then_some("Simulated failure for test id"),
            "artifacts": [],
        })),
    })))
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    ids::parse(Kind::Opportunity, id).map_err(|_| ApiError::ResourceNotFound {
        resource_type: "opportunity",
        resource_id: id.chars().take(ids::ID_TEXT_MAX).collect(),
    })
}

fn opportunity(outcome: Outcome) -> Result<Value, ApiError> {
    match outcome {
        Outcome::Opportunity(o) => Ok(json!(o.view())),
        other => Err(unexpected(other)),
    }
}

/// Creates and scores an opportunity; `id` is the command's (idempotency).
pub async fn create_one(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    body: &Map<String, Value>,
) -> Result<Value, ApiError> {
    caller.require_user_key()?;
    let spec = parse_spec(body)?;
    let key = Uuid::new_v5(&id, b"opportunity");
    let payload = CommandPayload::CreateOpportunity(Box::new(CreateOpportunity { spec }));
    opportunity(state.bus.execute(command(id, key, caller, payload)).await?)
}

pub async fn get_one(state: &AppState, caller: &Caller, id: &str) -> Result<Value, ApiError> {
    if let Some(answer) = test_id(caller, id, false) {
        return answer;
    }
    let key = parse_id(id)?;
    model::get(&state.pool, caller.user_id, key)
        .await?
        .map(|o| json!(o.view()))
        .ok_or_else(|| ApiError::ResourceNotFound {
            resource_type: "opportunity",
            resource_id: id.to_string(),
        })
}

/// Executes an opportunity and opens its position in the portfolio
/// (`allocation`: see `portfolio::parse_allocation`).
pub async fn execute_one(
    state: &AppState,
    caller: &Caller,
    id: &str,
    allocation: &crate::revenue::portfolio::Allocation,
) -> Result<Value, ApiError> {
    caller.require_user_key()?;
    if let Some(answer) = test_id(caller, id, true) {
        return answer;
    }
    let key = parse_id(id)?;
    // Executing is idempotent by state, so the id need not repeat.
    let payload = CommandPayload::ExecuteOpportunity(ExecuteOpportunity {
        opportunity_id: key,
    });
    let outcome = state
        .bus
        .execute(command(Uuid::new_v4(), key, caller, payload))
        .await?;
    match outcome {
        Outcome::Rejected {
            code: schemas::reply::RejectCode::NotFound,
            ..
        } => Err(ApiError::ResourceNotFound {
            resource_type: "opportunity",
            resource_id: id.to_string(),
        }),
        Outcome::Opportunity(o) => {
            crate::revenue::portfolio::open_position(state, caller, &o, allocation).await?;
            Ok(json!(o.view()))
        }
        other => Err(unexpected(other)),
    }
}

/// `POST /v1/opportunities` → 201.
#[utoipa::path(post, path = "/opportunities", tag = "opportunities",
    request_body = CreateOpportunityRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key create one opportunity")),
    responses(
        (status = 201, description = "Created and scored", body = OpportunityView),
        CommonErrors,
        (status = 409, description = "The key was used for another opportunity", body = ErrorEnvelope),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = command_id(&headers, caller.user_id, "opportunities/create")?;
    Ok((
        StatusCode::CREATED,
        Json(create_one(&state, &caller, id, &body.0).await?),
    ))
}

/// `GET /v1/opportunities/{id}`.
#[utoipa::path(get, path = "/opportunities/{id}", tag = "opportunities",
    params(("id" = String, Path, description = "`opp_…` (sandbox: test ids)")),
    responses(
        (status = 200, description = "The opportunity", body = OpportunityView),
        CommonErrors,
        (status = 404, description = "No such opportunity of the caller's", body = ErrorEnvelope),
    ))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(get_one(&state, &caller, &id).await?))
}

/// `POST /v1/opportunities/{id}/execute`.
#[utoipa::path(post, path = "/opportunities/{id}/execute", tag = "opportunities",
    params(("id" = String, Path, description = "`opp_…` (sandbox: test ids)")),
    request_body(content = Option<ExecuteOpportunityRequest>, description = "Optional: the position it opens"),
    responses(
        (status = 200, description = "Executing (active), or as it is when executed before", body = OpportunityView),
        CommonErrors,
        (status = 404, description = "No such opportunity of the caller's", body = ErrorEnvelope),
    ))]
pub async fn execute(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: crate::body::MaybeJsonObject,
) -> Result<Json<Value>, ApiError> {
    let allocation = crate::revenue::portfolio::parse_allocation(body.0.as_ref())?;
    Ok(Json(execute_one(&state, &caller, &id, &allocation).await?))
}

fn operand(field: Field, op: Op, text: &str, param: &str) -> Result<Operand, ApiError> {
    let values: Vec<&str> = if op == Op::In {
        text.split(',').map(str::trim).collect()
    } else {
        vec![text.trim()]
    };
    if values.is_empty()
        || values.len() > IN_VALUES_MAX
        || values.iter().any(|v| {
            v.is_empty() || v.chars().count() > NAME_CHARS_MAX || v.chars().any(char::is_control)
        })
    {
        return Err(invalid(param, format!("{param}: 1 to {IN_VALUES_MAX} non-empty values of at most {NAME_CHARS_MAX} characters")));
    }
    Ok(match field.kind() {
        FieldKind::Text => Operand::Text(values.iter().map(|v| v.to_string()).collect()),
        FieldKind::Number => Operand::Number(
            values
                .iter()
                .map(|v| v.parse::<f64>().ok().filter(|x| x.is_finite()))
                .collect::<Option<_>>()
                .ok_or_else(|| invalid(param, format!("{param} must be a number")))?,
        ),
        FieldKind::Time => Operand::Time(
            values
                .iter()
                .map(|v| {
                    chrono::DateTime::parse_from_rfc3339(v)
                        .ok()
                        .map(|t| t.with_timezone(&chrono::Utc))
                })
                .collect::<Option<_>>()
                .ok_or_else(|| invalid(param, format!("{param} must be an RFC 3339 time")))?,
        ),
    })
}

fn unknown_field(param: &str, name: &str) -> ApiError {
    ApiError::Validation {
        message: format!("Unknown field '{name}' in {param}"),
        details: json!({"parameter": param, "field": name, "allowed": Field::ALL.map(Field::name)}),
    }
}

/// A list request: the query and the sparse fieldset.
pub struct ListRequest {
    pub query: ListQuery,
    pub fields: Option<Vec<String>>,
}

/// Parses `GET /v1/opportunities`' parameters.
pub fn parse_list(tenant: Uuid, params: &[(String, String)]) -> Result<ListRequest, ApiError> {
    if params.len() > QUERY_PARAMS_MAX {
        return Err(invalid(
            "query",
            format!("At most {QUERY_PARAMS_MAX} query parameters"),
        ));
    }
    let mut q = ListQuery {
        tenant,
        filters: vec![],
        sort: vec![],
        page: 1,
        per_page: PER_PAGE_DEFAULT,
    };
    let mut fields = None;
    let int = |name: &str, v: &str, lo: i64, hi: i64| {
        v.trim()
            .parse::<i64>()
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| {
                invalid(
                    name,
                    format!("{name} must be a whole number from {lo} to {hi}"),
                )
            })
    };
    for (name, value) in params {
        match name.as_str() {
            "page" => q.page = int("page", value, 1, PAGE_MAX)?,
            "per_page" => q.per_page = int("per_page", value, 1, PER_PAGE_MAX)?,
            "status" => q.filters.push(Filter {
                field: Field::Status,
                op: Op::Eq,
                operand: operand(Field::Status, Op::Eq, value, name)?,
            }),
            "vertical" => q.filters.push(Filter {
                field: Field::Vertical,
                op: Op::Eq,
                operand: operand(Field::Vertical, Op::Eq, &value.to_ascii_lowercase(), name)?,
            }),
            "min_score" => q.filters.push(Filter {
                field: Field::Score,
                op: Op::Gte,
                operand: operand(Field::Score, Op::Gte, value, name)?,
            }),
            "sort" => {
                let keys: Vec<&str> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .collect();
                if keys.is_empty() || keys.len() > SORT_KEYS_MAX {
                    return Err(invalid(
                        "sort",
                        format!("sort takes 1 to {SORT_KEYS_MAX} fields"),
                    ));
                }
                for k in keys {
                    let (descending, field) = match k.strip_prefix('-') {
                        Some(f) => (true, f),
                        None => (false, k),
                    };
                    let field = Field::parse(field).ok_or_else(|| unknown_field("sort", field))?;
                    q.sort.push(SortKey { field, descending });
                }
            }
            "fields" => {
                let list: Vec<String> = value
                    .split(',')
                    .map(|f| f.trim().to_string())
                    .filter(|f| !f.is_empty())
                    .collect();
                if let Some(bad) = list.iter().find(|f| !VIEW_FIELDS.contains(&f.as_str())) {
                    return Err(ApiError::Validation {
                        message: format!("Unknown field '{bad}' in fields"),
                        details: json!({"parameter": "fields", "field": bad, "allowed": VIEW_FIELDS}),
                    });
                }
                if list.is_empty() {
                    return Err(invalid("fields", "fields names at least one field"));
                }
                fields = Some(list);
            }
            other => {
                let Some(inner) = other.strip_prefix("filter[") else {
                    return Err(ApiError::Validation {
                        message: format!("Unknown query parameter '{other}'"),
                        details: json!({"parameter": other}),
                    });
                };
                // filter[field] or filter[field][op]
                let (field, op) = match inner.split_once("][") {
                    Some((f, rest)) => (f, rest.strip_suffix(']')),
                    None => (inner.strip_suffix(']').unwrap_or(""), Some("eq")),
                };
                let field = Field::parse(field).ok_or_else(|| unknown_field(other, field))?;
                let op = op.and_then(Op::parse).ok_or_else(|| ApiError::Validation {
                    message: format!("Unknown operator in '{other}'"),
                    details: json!({"parameter": other, "allowed": Op::NAMES}),
                })?;
                let operand = operand(field, op, value, other)?;
                q.filters.push(Filter { field, op, operand });
            }
        }
    }
    for f in &q.filters {
        if let (Field::Status, Operand::Text(v)) = (f.field, &f.operand) {
            if let Some(bad) = v.iter().find(|s| !status::ALL.contains(&s.as_str())) {
                return Err(ApiError::Validation {
                    message: format!("Unknown status '{bad}'"),
                    details: json!({"field": "status", "allowed": status::ALL}),
                });
            }
        }
    }
    Ok(ListRequest { query: q, fields })
}

/// `GET /v1/opportunities`.
#[utoipa::path(get, path = "/opportunities", tag = "opportunities",
    params(
        ("status" = Option<String>, Query, description = "pending, active or completed"),
        ("min_score" = Option<f64>, Query, description = "score ≥ this"),
        ("vertical" = Option<String>, Query),
        ("page" = Option<i64>, Query, minimum = 1, description = "1-based, default 1"),
        ("per_page" = Option<i64>, Query, minimum = 1, maximum = 100, description = "default 20"),
        ("sort" = Option<String>, Query, description = "e.g. `-score,created_at` (up to 5 keys, `-` descending)"),
        ("fields" = Option<String>, Query, description = "e.g. `id,name,score`"),
        ("filter" = Option<Object>, Query, style = DeepObject, explode,
            description = "`filter[field]=v` or `filter[field][eq|ne|gt|gte|lt|lte|in]=v` (`in`: comma list)"),
    ),
    responses(
        (status = 200, description = "A page", body = OpportunityList),
        CommonErrors,
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let request = parse_list(caller.user_id, &params)?;
    let q = &request.query;
    let (rows, total) = model::list(&state.pool, q).await?;
    let pages = (total + q.per_page - 1) / q.per_page;
    let items: Vec<Value> = rows
        .iter()
        .map(|o| {
            let mut v = json!(o.view());
            if let (Some(fields), Some(map)) = (&request.fields, v.as_object_mut()) {
                map.retain(|k, _| fields.contains(k));
            }
            v
        })
        .collect();
    Ok(Json(json!({
        "opportunities": items,
        "pagination": {
            "page": q.page,
            "per_page": q.per_page,
            "total": total,
            "pages": pages,
            "prev_page": (q.page > 1).then(|| (q.page - 1).min(pages.max(1))),
            "next_page": (q.page < pages).then_some(q.page + 1),
        },
    })))
}

/// One batch operation's answer.
async fn run_operation(
    state: &AppState,
    caller: &Caller,
    op: &Value,
) -> Result<(StatusCode, Value), ApiError> {
    let map = op
        .as_object()
        .ok_or_else(|| invalid("operations", "each operation is an object"))?;
    let f = Fields {
        map,
        path: "operation",
    };
    f.only(&["method", "path", "body"])?;
    let method = f
        .text("method", 10)?
        .unwrap_or_default()
        .to_ascii_uppercase();
    let path = f
        .text("path", 200)?
        .ok_or_else(|| invalid("operation.path", "operation.path is required"))?;
    let segments: Vec<&str> = path
        .trim_start_matches("/v1")
        .trim_matches('/')
        .split('/')
        .collect();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["opportunities"]) => {
            let empty = Map::new();
            let body = match map.get("body") {
                Some(Value::Object(b)) => b,
                None | Some(Value::Null) => &empty,
                Some(_) => {
                    return Err(invalid(
                        "operation.body",
                        "operation.body must be an object",
                    ))
                }
            };
            Ok((
                StatusCode::CREATED,
                create_one(state, caller, Uuid::new_v4(), body).await?,
            ))
        }
        ("GET", ["opportunities", id]) => Ok((StatusCode::OK, get_one(state, caller, id).await?)),
        ("POST", ["opportunities", id, "execute"]) => {
            let allocation = crate::revenue::portfolio::parse_allocation(None)?;
            Ok((
                StatusCode::OK,
                execute_one(state, caller, id, &allocation).await?,
            ))
        }
        _ => Err(ApiError::Validation {
            message: format!("Unsupported operation {method} {path}"),
            details: json!({"supported": ["POST /opportunities", "GET /opportunities/{id}", "POST /opportunities/{id}/execute"]}),
        }),
    }
}

/// `POST /v1/batch/opportunities {operations: [{method, path, body}]}`: up to
/// [`BATCH_OPERATIONS_MAX`] operations, run concurrently, each answered with
/// its own status and body in order; one failing does not fail the others.
#[utoipa::path(post, path = "/batch/opportunities", tag = "opportunities",
    request_body = BatchRequest,
    responses(
        (status = 200, description = "One result per operation, in order", body = BatchResponse),
        CommonErrors,
    ))]
pub async fn batch(
    State(state): State<AppState>,
    caller: Caller,
    Extension(request_id): Extension<RequestId>,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    Fields::root(&body.0).only(&["operations"])?;
    let ops = match body.0.get("operations") {
        Some(Value::Array(ops)) if !ops.is_empty() && ops.len() <= BATCH_OPERATIONS_MAX => ops,
        _ => {
            return Err(invalid(
                "operations",
                format!("operations must be an array of 1 to {BATCH_OPERATIONS_MAX} operations"),
            ))
        }
    };
    let answers =
        futures::future::join_all(ops.iter().map(|op| run_operation(&state, &caller, op))).await;
    let results: Vec<Value> = answers
        .into_iter()
        .map(|answer| match answer {
            Ok((status, body)) => json!({"status": status.as_u16(), "body": body}),
            Err(e) => json!({"status": e.status().as_u16(), "body": e.envelope(&request_id.0)}),
        })
        .collect();
    Ok(Json(json!({ "results": results })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn field_of(e: ApiError) -> Value {
        e.details()["field"].clone()
    }

    #[test]
    fn list_parameters_parse_into_typed_filters() {
        let t = Uuid::nil();
        let r = parse_list(
            t,
            &params(&[
                ("filter[score][gte]", "0.8"),
                ("filter[vertical][in]", "saas, fintech"),
                ("filter[status]", "active"),
                ("sort", "-score,created_at"),
                ("fields", "id,name"),
                ("per_page", "50"),
            ]),
        )
        .unwrap();
        assert_eq!(r.query.filters.len(), 3);
        assert_eq!(r.query.filters[0].operand, Operand::Number(vec![0.8]));
        assert_eq!(
            r.query.filters[1].operand,
            Operand::Text(vec!["saas".into(), "fintech".into()])
        );
        assert_eq!(r.query.filters[2].op, Op::Eq);
        assert!(r.query.sort[0].descending && !r.query.sort[1].descending);
        assert_eq!((r.query.page, r.query.per_page), (1, 50));
        assert_eq!(r.fields.unwrap(), vec!["id", "name"]);
        for bad in [
            ("filter[colour]", "x"),
            ("filter[score][approx]", "1"),
            ("filter[score][gt]", "NaN"),
            ("filter[created_at][lt]", "yesterday"),
            ("sort", "-colour"),
            ("fields", "secret"),
            ("status", "paused"),
            ("per_page", "101"),
            ("page", "0"),
            ("colour", "red"),
            ("vertical", "sa\u{0}as"),
            ("filter[name][in]", "a,b\u{7}"),
        ] {
            assert!(parse_list(t, &params(&[bad])).is_err(), "{bad:?}");
        }
        let many = vec![("page".to_string(), "1".to_string()); QUERY_PARAMS_MAX + 1];
        assert!(parse_list(t, &many).is_err());
    }

    #[test]
    fn create_bodies_are_checked_field_by_field() {
        let body = |v: Value| v.as_object().unwrap().clone();
        let spec = parse_spec(&body(json!({"name": " Gateway ", "vertical": "FinTech",
            "market_data": {"total_market_size": 1.5e10, "growth_rate": 0.3, "competition_count": 15}})))
        .unwrap();
        assert_eq!(
            (spec.name.as_str(), spec.vertical.as_str()),
            ("Gateway", "fintech")
        );
        assert_eq!(
            spec.market_data.total_market_size,
            Decimal::from(15_000_000_000i64)
        );
        assert_eq!(spec.technical_requirements.complexity, "medium");
        let cases = [
            (json!({"vertical": "saas"}), "name"),
            (
                json!({"name": "x", "vertical": "saas", "colour": 1}),
                "colour",
            ),
            (
                json!({"name": "x", "vertical": "saas", "market_data": {"growth_rate": 99}}),
                "market_data.growth_rate",
            ),
            (
                json!({"name": "x", "vertical": "saas", "market_data": {"total_market_size": -1}}),
                "market_data.total_market_size",
            ),
            (
                json!({"name": "x", "vertical": "saas", "market_data": {"competition_count": 1.5}}),
                "market_data.competition_count",
            ),
            (
                json!({"name": "x", "vertical": "saas", "technical_requirements": {"complexity": "easy"}}),
                "technical_requirements.complexity",
            ),
            (json!({"name": "x".repeat(101), "vertical": "saas"}), "name"),
            (json!({"name": "nul\u{0}", "vertical": "saas"}), "name"),
            (
                json!({"name": "x", "vertical": "saas", "pricing_model": "a\nb"}),
                "pricing_model",
            ),
            (
                json!({"name": "x", "vertical": "saas", "target_customers": vec!["a"; 21]}),
                "target_customers",
            ),
        ];
        for (input, field) in cases {
            assert_eq!(
                field_of(parse_spec(&body(input.clone())).unwrap_err()),
                json!(field),
                "{input}"
            );
        }
    }
}

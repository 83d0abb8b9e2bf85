//! `/v1/agents`: the vertical agents — the worker pools that carry out
//! opportunity executions (`connectors::workers`). `GET` lists each pool
//! with what runs (from the workers' reports), its task figures (from the
//! caller's opportunities; over all tenants for an operator's service
//! token) and the last control action. `POST /v1/agents/{id}/control`
//! (service token with scope `operate`: a pool is shared by every tenant)
//! records a scale, pause, resume or restart, which the workers role
//! applies within a second. Distinct from the bank's `/agents/…` routes.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use connectors::read_model::workers::{
    self as model, ActionRecord, Desired, StatusRow, TaskCounts,
};
use schemas::revenue::workers::{agent_id, Action, Verticals, REASON_CHARS_MAX, REPLICAS_MAX};

use crate::auth::service::{self, Scope};
use crate::auth::Caller;
use crate::body::JsonObject;
use crate::error::ApiError;
use crate::revenue::fields::{invalid, Fields};
#[allow(unused_imports)] // named by the OpenAPI attributes
use crate::revenue::schema::{CommonErrors, ErrorEnvelope};
use crate::AppState;

/// `GET /v1/agents`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentList {
    pub agents: Vec<VerticalAgent>,
}

/// One vertical agent (the seed's shape, with its replicas, queue and last
/// control action added).
#[derive(Debug, Serialize, ToSchema)]
pub struct VerticalAgent {
    /// `agent_{vertical}`
    pub id: String,
    /// Always `vertical_agent`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub vertical: String,
    /// active, scaling, restarting, pausing, paused or unavailable (no
    /// workers process reporting).
    pub status: &'static str,
    /// Running instances ÷ wanted × success rate; 0 when paused or unavailable.
    pub health_score: f64,
    pub metrics: TaskMetrics,
    pub resources: AgentResources,
    pub replicas: AgentReplicas,
    pub queue: AgentQueue,
    pub last_control: Option<ControlRecord>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskMetrics {
    /// Executions this agent completed.
    pub tasks_completed: i64,
    /// Completed with result `success` ÷ completed (1 before any task).
    pub success_rate: f64,
    /// Mean execution time, execute call to completion (ms).
    pub average_latency_ms: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentResources {
    /// The workers process's CPU as a share of the machine's cores.
    pub cpu_usage: f64,
    /// The workers process's resident memory as a share of the machine's.
    pub memory_usage: f64,
    /// Executions in hand right now.
    pub concurrent_tasks: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentReplicas {
    /// What operators asked for (0 while paused).
    pub desired: i32,
    /// Instances running now.
    pub running: i32,
    pub max: i32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentQueue {
    /// Executions started and not completed yet (of the figures' scope).
    pub pending_tasks: i64,
    /// Records of `agentbank.executions` this pool has not read yet.
    pub lag: i64,
}

/// A recorded control action.
#[derive(Debug, Serialize, ToSchema)]
pub struct ControlRecord {
    pub id: i64,
    pub action: String,
    pub replicas: Option<i32>,
    pub reason: Option<String>,
    /// The service token's name.
    pub requested_by: String,
    pub requested_at: String,
}

/// `POST /v1/agents/{agent_id}/control`'s body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ControlRequest {
    /// scale, pause, resume or restart.
    pub action: String,
    pub parameters: Option<ControlParameters>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ControlParameters {
    /// Worker instances (1 to 8); required by `scale`.
    pub replicas: Option<i32>,
    #[schema(max_length = 200)]
    pub reason: Option<String>,
}

/// The control route's answer: the action as recorded and the agent.
#[derive(Debug, Serialize, ToSchema)]
pub struct ControlAnswer {
    pub accepted: bool,
    pub control: ControlRecord,
    pub agent: VerticalAgent,
}

fn record_view(r: ActionRecord) -> ControlRecord {
    ControlRecord {
        id: r.id,
        action: r.action,
        replicas: r.replicas,
        reason: r.reason,
        requested_by: r.requested_by,
        requested_at: r
            .requested_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }
}

/// The task figures of each pool, from the per-vertical counts.
fn per_pool(verticals: &Verticals, counts: Vec<TaskCounts>) -> BTreeMap<String, TaskCounts> {
    let mut pools: BTreeMap<String, TaskCounts> = BTreeMap::new();
    for c in counts {
        let name = verticals.pool_of(&c.vertical).to_string();
        let t = pools.entry(name.clone()).or_insert(TaskCounts {
            vertical: name,
            completed: 0,
            succeeded: 0,
            time_ms_sum: 0,
            pending: 0,
        });
        t.completed += c.completed;
        t.succeeded += c.succeeded;
        t.time_ms_sum += c.time_ms_sum;
        t.pending += c.pending;
    }
    pools
}

/// One agent from its desired state, the processes' reports and its figures.
fn view(
    d: &Desired,
    reports: &[&StatusRow],
    tasks: Option<&TaskCounts>,
    last: Option<ActionRecord>,
) -> VerticalAgent {
    let running: i32 = reports.iter().map(|r| r.running).sum();
    let in_hand: i64 = reports.iter().map(|r| r.concurrent_tasks as i64).sum();
    let lag = reports.iter().map(|r| r.lag).max().unwrap_or(0);
    let oldest_generation = reports.iter().map(|r| r.generation).min();
    let desired = if d.paused { 0 } else { d.replicas };
    let status = if reports.is_empty() {
        "unavailable"
    } else if d.paused {
        if running == 0 {
            "paused"
        } else {
            "pausing"
        }
    } else if oldest_generation.is_some_and(|g| g < d.generation) {
        "restarting"
    } else if running != desired {
        "scaling"
    } else {
        "active"
    };
    let completed = tasks.map_or(0, |t| t.completed);
    let success_rate = match tasks {
        Some(t) if t.completed > 0 => t.succeeded as f64 / t.completed as f64,
        _ => 1.0,
    };
    let health = match status {
        "unavailable" | "paused" | "pausing" => 0.0,
        _ => (running as f64 / desired.max(1) as f64).min(1.0) * success_rate,
    };
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    VerticalAgent {
        id: agent_id(&d.pool),
        kind: "vertical_agent",
        vertical: d.pool.clone(),
        status,
        health_score: round(health),
        metrics: TaskMetrics {
            tasks_completed: completed,
            success_rate: round(success_rate),
            average_latency_ms: tasks
                .filter(|t| t.completed > 0)
                .map_or(0, |t| t.time_ms_sum / t.completed),
        },
        resources: AgentResources {
            cpu_usage: round(reports.iter().map(|r| r.cpu_usage).fold(0.0, f64::max)),
            memory_usage: round(reports.iter().map(|r| r.memory_usage).fold(0.0, f64::max)),
            concurrent_tasks: in_hand,
        },
        replicas: AgentReplicas {
            desired,
            running,
            max: REPLICAS_MAX,
        },
        queue: AgentQueue {
            pending_tasks: tasks.map_or(0, |t| t.pending),
            lag,
        },
        last_control: last.map(record_view),
    }
}

/// Every pool's view; task figures of `tenant`, or of all tenants.
async fn agents(state: &AppState, tenant: Option<Uuid>) -> Result<Vec<VerticalAgent>, ApiError> {
    let verticals = &state.config.verticals;
    let desired = model::desired(&state.pool, verticals.names()).await?;
    let reports = model::statuses(&state.pool).await?;
    let tasks = per_pool(verticals, model::task_counts(&state.pool, tenant).await?);
    let mut last: BTreeMap<String, ActionRecord> = model::last_actions(&state.pool)
        .await?
        .into_iter()
        .map(|a| (a.pool.clone(), a))
        .collect();
    Ok(desired
        .iter()
        .map(|d| {
            let mine: Vec<&StatusRow> = reports.iter().filter(|r| r.pool == d.pool).collect();
            view(d, &mine, tasks.get(&d.pool), last.remove(&d.pool))
        })
        .collect())
}

/// `GET /v1/agents`.
#[utoipa::path(get, path = "/agents", tag = "agents",
    responses((status = 200, description = "The vertical agents", body = AgentList), CommonErrors))]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Result<Caller, ApiError>,
) -> Result<Json<AgentList>, ApiError> {
    let tenant =
        if headers.contains_key("x-service-token") && headers.get("x-on-behalf-of").is_none() {
            service::require(
                &state.identity.services,
                &headers,
                Scope::Operate,
                "see every tenant's agents",
            )?;
            None
        } else {
            Some(caller?.user_id)
        };
    Ok(Json(AgentList {
        agents: agents(&state, tenant).await?,
    }))
}

/// A control body: the action, `replicas` (for `scale` only, required
/// there) and the reason.
pub fn parse_control(
    body: &serde_json::Map<String, serde_json::Value>,
) -> Result<(Action, Option<i32>, Option<String>), ApiError> {
    let f = Fields::root(body);
    f.only(&["action", "parameters"])?;
    let allowed = Action::ALL.map(Action::as_str);
    let text = f.text("action", 20)?.ok_or_else(|| {
        invalid(
            "action",
            format!("action is required: one of {}", allowed.join(", ")),
        )
    })?;
    let action = Action::parse(&text).ok_or_else(|| {
        invalid(
            "action",
            format!("action must be one of {}", allowed.join(", ")),
        )
    })?;
    let (replicas, reason) = match f.object("parameters")? {
        None => (None, None),
        Some(p) => {
            p.only(&["replicas", "reason"])?;
            let replicas = p.int("replicas", 1, REPLICAS_MAX as i64)?.map(|r| r as i32);
            (replicas, p.text("reason", REASON_CHARS_MAX)?)
        }
    };
    let replicas = match (action, replicas) {
        (Action::Scale, None) => {
            return Err(invalid(
                "parameters.replicas",
                format!("scale needs parameters.replicas, from 1 to {REPLICAS_MAX}"),
            ))
        }
        (Action::Scale, r) => r,
        (_, Some(_)) => {
            return Err(invalid(
                "parameters.replicas",
                format!(
                    "parameters.replicas applies to scale only, not {}",
                    action.as_str()
                ),
            ))
        }
        (_, None) => None,
    };
    Ok((action, replicas, reason))
}

/// `POST /v1/agents/{agent_id}/control`.
#[utoipa::path(post, path = "/agents/{agent_id}/control", tag = "agents", request_body = ControlRequest,
    security(("service_token" = [])),
    params(("agent_id" = String, Path, description = "agent_{vertical}, as GET /v1/agents lists")),
    responses((status = 200, description = "Recorded; applied by the workers within a second", body = ControlAnswer),
              (status = 404, description = "No such agent", body = ErrorEnvelope), CommonErrors))]
pub async fn control(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Json<ControlAnswer>, ApiError> {
    let service = service::require(
        &state.identity.services,
        &headers,
        Scope::Operate,
        "control vertical agents",
    )?;
    let verticals = &state.config.verticals;
    let name = verticals
        .by_agent_id(&id)
        .ok_or_else(|| ApiError::ResourceNotFound {
            resource_type: "agent",
            resource_id: id.chars().take(60).collect(),
        })?
        .to_string();
    let (action, replicas, reason) = parse_control(&body.0)?;
    let (desired, record) = model::control(
        &state.pool,
        &name,
        action,
        replicas,
        reason.as_deref(),
        &service.name,
    )
    .await?;
    tracing::info!(agent = %agent_id(&name), action = action.as_str(), ?replicas,
        reason = reason.as_deref().unwrap_or(""), by = %service.name, "vertical agent control");
    metrics::counter!("agentbank_vertical_controls_total", "pool" => name.clone(),
        "action" => action.as_str())
    .increment(1);
    let reports = model::statuses(&state.pool).await?;
    let mine: Vec<&StatusRow> = reports.iter().filter(|r| r.pool == name).collect();
    let tasks = per_pool(verticals, model::task_counts(&state.pool, None).await?);
    let last = model::last_actions(&state.pool)
        .await?
        .into_iter()
        .find(|a| a.pool == name);
    Ok(Json(ControlAnswer {
        accepted: true,
        agent: view(&desired, &mine, tasks.get(&name), last),
        control: record_view(record),
    }))
}

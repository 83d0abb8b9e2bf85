//! The vertical agents' control plane in Postgres: what operators asked
//! for (replicas, paused, restart generation) with the audit of every
//! action, what each workers process reports it runs, how far each pool has
//! read the executions topic, and the task figures counted from a tenant's
//! opportunities. Shared by the gateway's `/v1/agents` routes and the
//! workers role (`crate::workers`).

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use schemas::revenue::opportunity::status;
use schemas::revenue::workers::Action;

use crate::ConnectorError;

/// A report older than this belongs to a process that is gone.
pub const HEARTBEAT_FRESH_SECS: i64 = 5;

/// What operators asked of one pool.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Desired {
    pub pool: String,
    pub replicas: i32,
    pub paused: bool,
    pub generation: i64,
    pub updated_at: DateTime<Utc>,
}

/// One recorded control action.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ActionRecord {
    pub id: i64,
    pub pool: String,
    pub action: String,
    pub replicas: Option<i32>,
    pub reason: Option<String>,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
}

/// What one workers process runs of one pool.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StatusRow {
    pub pool: String,
    pub process: String,
    pub running: i32,
    pub generation: i64,
    pub concurrent_tasks: i32,
    pub cpu_usage: f64,
    pub memory_usage: f64,
    pub lag: i64,
}

/// A tenant's executions of one vertical (as its opportunities spell it).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TaskCounts {
    pub vertical: String,
    pub completed: i64,
    pub succeeded: i64,
    /// Sum of the completed executions' times (ms), for averaging per pool.
    pub time_ms_sum: i64,
    /// Executing now (waiting for or held by a worker).
    pub pending: i64,
}

const DESIRED: &str = "SELECT pool, replicas, paused, generation, updated_at FROM vertical_agents";

/// The pools' desired states, creating a default row (one replica,
/// running) for any pool that has none.
pub async fn desired(pool: &PgPool, names: &[String]) -> Result<Vec<Desired>, ConnectorError> {
    sqlx::query(
        "INSERT INTO vertical_agents (pool, replicas) SELECT unnest($1::text[]), 1 \
         ON CONFLICT (pool) DO NOTHING",
    )
    .bind(names)
    .execute(pool)
    .await?;
    Ok(
        sqlx::query_as::<_, Desired>(&format!("{DESIRED} WHERE pool = ANY($1) ORDER BY pool"))
            .bind(names)
            .fetch_all(pool)
            .await?,
    )
}

/// Applies a control action to `name` and records it, in one transaction.
/// `replicas` is the new count for `scale` (already checked against the
/// bounds). Answers the new desired state and the action's record.
pub async fn control(
    pool: &PgPool,
    name: &str,
    action: Action,
    replicas: Option<i32>,
    reason: Option<&str>,
    requested_by: &str,
) -> Result<(Desired, ActionRecord), ConnectorError> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO vertical_agents (pool, replicas) VALUES ($1, 1) ON CONFLICT (pool) DO NOTHING",
    )
    .bind(name)
    .execute(&mut *tx)
    .await?;
    let change = match action {
        Action::Scale => "replicas = $2",
        Action::Pause => "paused = true",
        Action::Resume => "paused = false",
        Action::Restart => "generation = generation + 1",
    };
    let desired = sqlx::query_as::<_, Desired>(&format!(
        "UPDATE vertical_agents SET {change}, updated_at = now() WHERE pool = $1 \
         RETURNING pool, replicas, paused, generation, updated_at"
    ))
    .bind(name)
    .bind(replicas.unwrap_or(1))
    .fetch_one(&mut *tx)
    .await?;
    let record = sqlx::query_as::<_, ActionRecord>(
        "INSERT INTO vertical_agent_actions (pool, action, replicas, reason, requested_by) \
         VALUES ($1, $2, $3, $4, $5) \
         RETURNING id, pool, action, replicas, reason, requested_by, requested_at",
    )
    .bind(name)
    .bind(action.as_str())
    .bind(replicas)
    .bind(reason)
    .bind(requested_by)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((desired, record))
}

/// The latest action of each pool.
pub async fn last_actions(pool: &PgPool) -> Result<Vec<ActionRecord>, ConnectorError> {
    Ok(sqlx::query_as::<_, ActionRecord>(
        "SELECT DISTINCT ON (pool) id, pool, action, replicas, reason, requested_by, requested_at \
         FROM vertical_agent_actions ORDER BY pool, id DESC",
    )
    .fetch_all(pool)
    .await?)
}

/// Records what this process runs now (one row per pool).
pub async fn report(pool: &PgPool, rows: &[StatusRow]) -> Result<(), ConnectorError> {
    let col = |f: fn(&StatusRow) -> String| rows.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO vertical_agent_status (pool, process, running, generation, concurrent_tasks, \
         cpu_usage, memory_usage, lag, heartbeat_at) \
         SELECT pool, process, running, generation, concurrent_tasks, cpu_usage, memory_usage, lag, now() \
         FROM UNNEST($1::text[], $2::text[], $3::int[], $4::bigint[], $5::int[], $6::float8[], \
         $7::float8[], $8::bigint[]) \
         AS r(pool, process, running, generation, concurrent_tasks, cpu_usage, memory_usage, lag) \
         ON CONFLICT (pool, process) DO UPDATE SET running = EXCLUDED.running, \
         generation = EXCLUDED.generation, concurrent_tasks = EXCLUDED.concurrent_tasks, \
         cpu_usage = EXCLUDED.cpu_usage, memory_usage = EXCLUDED.memory_usage, lag = EXCLUDED.lag, \
         heartbeat_at = EXCLUDED.heartbeat_at",
    )
    .bind(col(|r| r.pool.clone()))
    .bind(col(|r| r.process.clone()))
    .bind(rows.iter().map(|r| r.running).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.generation).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.concurrent_tasks).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.cpu_usage).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.memory_usage).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.lag).collect::<Vec<_>>())
    .execute(pool)
    .await?;
    Ok(())
}

/// What live workers processes report (fresh heartbeats only).
pub async fn statuses(pool: &PgPool) -> Result<Vec<StatusRow>, ConnectorError> {
    Ok(sqlx::query_as::<_, StatusRow>(
        "SELECT pool, process, running, generation, concurrent_tasks, cpu_usage, memory_usage, lag \
         FROM vertical_agent_status WHERE heartbeat_at > now() - make_interval(secs => $1) \
         ORDER BY pool, process",
    )
    .bind(HEARTBEAT_FRESH_SECS as f64)
    .fetch_all(pool)
    .await?)
}

/// Where `name` has read `topic` to: (partition, next offset).
pub async fn offsets(
    pool: &PgPool,
    topic: &str,
    name: &str,
) -> Result<Vec<(i32, i64)>, ConnectorError> {
    Ok(sqlx::query_as(
        "SELECT partition, next_offset FROM vertical_agent_offsets WHERE topic = $1 AND pool = $2",
    )
    .bind(topic)
    .bind(name)
    .fetch_all(pool)
    .await?)
}

/// Moves `name`'s offsets forward (never back: two instances of an old and
/// a new generation may overlap for a moment).
pub async fn save_offsets(
    pool: &PgPool,
    topic: &str,
    name: &str,
    next: &[(i32, i64)],
) -> Result<(), ConnectorError> {
    if next.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO vertical_agent_offsets (topic, pool, partition, next_offset) \
         SELECT $1, $2, p, o FROM UNNEST($3::int[], $4::bigint[]) AS r(p, o) \
         ON CONFLICT (topic, pool, partition) DO UPDATE \
         SET next_offset = GREATEST(vertical_agent_offsets.next_offset, EXCLUDED.next_offset)",
    )
    .bind(topic)
    .bind(name)
    .bind(next.iter().map(|(p, _)| *p).collect::<Vec<_>>())
    .bind(next.iter().map(|(_, o)| *o).collect::<Vec<_>>())
    .execute(pool)
    .await?;
    Ok(())
}

/// Executions per vertical as spelled (lower-cased, trimmed): the tenant's,
/// or every tenant's (`None`, for operators).
pub async fn task_counts(
    pool: &PgPool,
    tenant: Option<Uuid>,
) -> Result<Vec<TaskCounts>, ConnectorError> {
    Ok(sqlx::query_as::<_, TaskCounts>(
        "SELECT lower(btrim(vertical)) AS vertical, \
         count(*) FILTER (WHERE status = $2) AS completed, \
         count(*) FILTER (WHERE status = $2 AND record->'execution'->>'result' = 'success') AS succeeded, \
         coalesce(sum((record->'execution'->>'execution_time_ms')::bigint) FILTER (WHERE status = $2), 0)::bigint AS time_ms_sum, \
         count(*) FILTER (WHERE status = $3) AS pending \
         FROM opportunities WHERE ($1::uuid IS NULL OR tenant_id = $1) AND status IN ($2, $3) GROUP BY 1",
    )
    .bind(tenant)
    .bind(status::COMPLETED)
    .bind(status::ACTIVE)
    .fetch_all(pool)
    .await?)
}

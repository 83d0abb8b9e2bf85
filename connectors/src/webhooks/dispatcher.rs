//! The dispatcher loop: claims due deliveries (the oldest pending one per
//! endpoint, never an endpoint already in flight), posts each in its own
//! task with a timeout, and records the outcome.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use crate::kafka::{produce_all, KafkaConfig, Outgoing};
use crate::secrets::SecretBox;
use crate::ConnectorError;

use super::{check_url, signature_headers, DISABLE_AFTER_DEAD};

#[derive(Clone, Debug)]
pub struct DispatcherConfig {
    /// Wait before attempt n+1 after attempt n failed; its length is the
    /// number of retries.
    pub schedule: Vec<Duration>,
    /// One attempt's whole time budget.
    pub timeout: Duration,
    /// Requests in flight across all endpoints.
    pub concurrency: usize,
    /// Deliver to loopback/private addresses (tests, local receivers).
    pub allow_private: bool,
    pub secrets: SecretBox,
    /// Dead deliveries go here too (`agentbank.webhooks.dead-letter`).
    pub kafka: KafkaConfig,
    pub dead_letter_topic: String,
}

#[derive(sqlx::FromRow)]
struct Due {
    id: Uuid,
    endpoint_id: Uuid,
    payload: String,
    attempts: i32,
    url: String,
    secret_sealed: String,
}

/// What one attempt came to.
enum Attempt {
    Delivered(u16),
    Failed(Option<u16>, String),
}

/// Runs until shutdown: whenever the sink commits (at least every 100 ms)
/// claims what is due and starts it.
pub async fn run(
    config: DispatcherConfig,
    pool: PgPool,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectorError> {
    let http = reqwest::Client::builder()
        .timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ConnectorError::Config(format!("http client: {e}")))?;
    let producer = config.kafka.producer()?;
    let in_flight: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
    let config = Arc::new(config);
    let mut commits = crate::postgres_sink::CommitFollower::new(&pool).await;
    tracing::info!("webhook dispatcher started");
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let busy: Vec<Uuid> = in_flight.lock().unwrap().iter().copied().collect();
        let room = config.concurrency.saturating_sub(busy.len()) as i64;
        let due: Vec<Due> = if room == 0 {
            vec![]
        } else {
            sqlx::query_as(
                "SELECT d.id, d.endpoint_id, d.payload, d.attempts, e.url, e.secret_sealed
                 FROM (SELECT DISTINCT ON (endpoint_id) id, endpoint_id, payload, attempts, next_attempt_at
                       FROM webhook_deliveries WHERE status = 'pending'
                       ORDER BY endpoint_id, seq) d
                 JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.active
                 WHERE d.next_attempt_at <= now() AND NOT (d.endpoint_id = ANY($1))
                 LIMIT $2",
            )
            .bind(&busy)
            .bind(room)
            .fetch_all(&pool)
            .await?
        };
        for d in due {
            in_flight.lock().unwrap().insert(d.endpoint_id);
            let (http, pool, config, in_flight, producer) = (
                http.clone(),
                pool.clone(),
                config.clone(),
                in_flight.clone(),
                producer.clone(),
            );
            tokio::spawn(async move {
                let endpoint = d.endpoint_id;
                // The endpoint's worker: deliver, then straight on to its next
                // due delivery, until none is due (or a retry waits).
                let mut next = Some(d);
                while let Some(d) = next.take() {
                    let started = Instant::now();
                    let attempt = attempt(&http, &config, &d).await;
                    metrics::histogram!("agentbank_webhook_attempt_seconds")
                        .record(started.elapsed().as_secs_f64());
                    let delivered = matches!(attempt, Attempt::Delivered(_));
                    if let Err(e) = record(&pool, &config, &producer, &d, attempt).await {
                        tracing::warn!(delivery = %d.id, error = %e, "recording a webhook attempt failed; it will be retried");
                        break;
                    }
                    if delivered {
                        next = next_due(&pool, endpoint).await.ok().flatten();
                    }
                }
                in_flight.lock().unwrap().remove(&endpoint);
            });
        }
        // Wake when the sink commits (new deliveries), or after 100 ms for
        // retries coming due.
        tokio::select! {
            _ = commits.wait(Duration::from_millis(100)) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// The endpoint's oldest pending delivery, if it is due.
async fn next_due(pool: &PgPool, endpoint: Uuid) -> Result<Option<Due>, ConnectorError> {
    Ok(sqlx::query_as(
        "SELECT d.id, d.endpoint_id, d.payload, d.attempts, e.url, e.secret_sealed
         FROM (SELECT id, endpoint_id, payload, attempts, next_attempt_at FROM webhook_deliveries
               WHERE endpoint_id = $1 AND status = 'pending' ORDER BY seq LIMIT 1) d
         JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.active
         WHERE d.next_attempt_at <= now()",
    )
    .bind(endpoint)
    .fetch_optional(pool)
    .await?)
}

async fn attempt(http: &reqwest::Client, config: &DispatcherConfig, d: &Due) -> Attempt {
    if let Err(e) = check_url(&d.url, config.allow_private).await {
        return Attempt::Failed(None, e);
    }
    let secret = match config.secrets.open(&d.secret_sealed) {
        Ok(s) => s,
        Err(e) => return Attempt::Failed(None, e.to_string()),
    };
    let t = chrono::Utc::now().timestamp();
    let msg_id = format!("msg_{}", d.id.simple());
    let mut req = http
        .post(&d.url)
        .header("content-type", "application/json")
        .header("user-agent", "agentbank-webhooks/1");
    for (name, value) in signature_headers(&secret, &msg_id, t, &d.payload) {
        req = req.header(name, value);
    }
    metrics::counter!("agentbank_webhook_attempts_total").increment(1);
    match req.body(d.payload.clone()).send().await {
        Ok(r) if r.status().is_success() => Attempt::Delivered(r.status().as_u16()),
        Ok(r) => Attempt::Failed(Some(r.status().as_u16()), format!("HTTP {}", r.status())),
        Err(e) if e.is_timeout() => Attempt::Failed(None, "timed out".into()),
        Err(e) => Attempt::Failed(None, format!("{e}")),
    }
}

async fn record(
    pool: &PgPool,
    config: &DispatcherConfig,
    producer: &rdkafka::producer::FutureProducer,
    d: &Due,
    outcome: Attempt,
) -> Result<(), ConnectorError> {
    let attempts = d.attempts + 1;
    match outcome {
        Attempt::Delivered(status) => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "UPDATE webhook_deliveries SET status = 'succeeded', attempts = $2, last_status = $3,
                    last_error = NULL, delivered_at = now() WHERE id = $1",
            )
            .bind(d.id)
            .bind(attempts)
            .bind(i32::from(status))
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE webhook_endpoints SET consecutive_failures = 0 WHERE id = $1")
                .bind(d.endpoint_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Attempt::Failed(status, error) => {
            metrics::counter!("agentbank_webhook_failures_total").increment(1);
            let next = config.schedule.get(d.attempts as usize).copied();
            let Some(wait) = next else {
                return dead(pool, config, producer, d, attempts, status, &error).await;
            };
            // ±10% jitter, so endpoints failing together do not retry together.
            let jittered = wait.mul_f64(rand::thread_rng().gen_range(0.9..=1.1));
            sqlx::query(
                "UPDATE webhook_deliveries SET attempts = $2, last_status = $3, last_error = $4,
                    next_attempt_at = now() + make_interval(secs => $5) WHERE id = $1",
            )
            .bind(d.id)
            .bind(attempts)
            .bind(status.map(i32::from))
            .bind(&error)
            .bind(jittered.as_secs_f64())
            .execute(pool)
            .await?;
        }
    }
    Ok(())
}

/// Past the schedule: dead, on the dead-letter topic, and counted against
/// the endpoint (disabled at [`DISABLE_AFTER_DEAD`] in a row).
async fn dead(
    pool: &PgPool,
    config: &DispatcherConfig,
    producer: &rdkafka::producer::FutureProducer,
    d: &Due,
    attempts: i32,
    status: Option<u16>,
    error: &str,
) -> Result<(), ConnectorError> {
    produce_all(
        producer,
        &[Outgoing {
            topic: config.dead_letter_topic.clone(),
            key: d.endpoint_id.to_string(),
            payload: Some(d.payload.clone().into_bytes()),
            partition: None,
        }],
    )
    .await?;
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE webhook_deliveries SET status = 'dead', attempts = $2, last_status = $3, last_error = $4
         WHERE id = $1",
    )
    .bind(d.id)
    .bind(attempts)
    .bind(status.map(i32::from))
    .bind(error)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + 1,
            active = consecutive_failures + 1 < $2,
            disabled_reason = CASE WHEN consecutive_failures + 1 >= $2
                THEN 'disabled after ' || $2 || ' dead deliveries in a row' ELSE disabled_reason END,
            updated_at = now()
         WHERE id = $1",
    )
    .bind(d.endpoint_id)
    .bind(DISABLE_AFTER_DEAD)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    metrics::counter!("agentbank_webhook_dead_total").increment(1);
    tracing::warn!(delivery = %d.id, endpoint = %d.endpoint_id, attempts, "webhook delivery dead");
    Ok(())
}

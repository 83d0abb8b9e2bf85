//! The gateway: agentbank's HTTP API (axum).
//!
//! - [`auth`]: `x-api-key` authentication, key minting, password hashing.
//! - [`body`]: bounded, exact JSON body parsing (amounts never via `f64`).
//! - [`commands`]: writes as Kafka commands, replies by correlation id,
//!   read-your-writes by waiting on the sink's watermark.
//! - [`error`]: the one error type and its `{"error": "..."}` responses.
//! - [`feed`]: the live event feed behind WebSocket `/v1/events`.
//! - [`rate_limit`]: per-key budgets (100/min, 5,000/day) and their headers.
//! - [`routes`]: the handlers, mounted at `/` and at `/v1`.

pub mod auth;
pub mod body;
pub mod cache;
pub mod chain;
pub mod commands;
pub mod error;
pub mod feed;
pub mod rate_limit;
pub mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tokio::sync::watch;

use connectors::kafka::KafkaConfig;
use connectors::postgres_sink::watermark::Watermarks;
use schemas::topics::Topics;

pub use error::ApiError;

/// The gateway's settings, read once at start-up.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub http_addr: SocketAddr,
    pub kafka: KafkaConfig,
    pub topics: Topics,
    /// How long a write waits for its reply (and the sink) before 503.
    pub reply_timeout: Duration,
    /// Shown as `walletAddress.networkId` until on-chain settlement exists.
    pub network_id: String,
    /// Requests per API key per minute and per day.
    pub rate_limit_per_minute: u32,
    pub rate_limit_per_day: u32,
    /// The savings vault's rate history.
    pub interest_rates: schemas::interest::RateSchedule,
    /// Seals webhook secrets at rest.
    pub secrets: connectors::secrets::SecretBox,
    /// Accept webhook URLs on loopback/private addresses (local receivers).
    pub webhooks_allow_private: bool,
    /// SSE `/v1/metrics/stream`: how often metrics and heartbeats go out.
    pub sse_metrics_every: Duration,
    pub sse_heartbeat: Duration,
    /// The chain to settle on; `None`: ledger only (no wallets, no hashes).
    pub chain: Option<connectors::chain::ChainConfig>,
}

/// A co-located processor's state for `/health`: ready once it owns its
/// partitions (restores done), with details to show.
pub struct ProcessorHealth {
    pub ready: bool,
    pub detail: serde_json::Value,
}

/// Reports a co-located processor's liveness for `/health`.
pub type ProcessorProbe = Arc<dyn Fn() -> ProcessorHealth + Send + Sync>;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub bus: commands::CommandBus,
    pub config: Arc<GatewayConfig>,
    pub metrics: Option<PrometheusHandle>,
    pub processor_probe: Option<ProcessorProbe>,
    pub limits: Arc<rate_limit::RateLimits>,
    pub feed: Arc<feed::Feed>,
    pub chain: Option<Arc<chain::ChainAccess>>,
    /// Verified keys and agents' owners: no Postgres reads on the write path.
    pub caches: Arc<cache::Caches>,
}

/// The API routes, without prefix.
fn api() -> Router<AppState> {
    Router::new()
        .route("/users", post(routes::users::sign_up))
        .route("/agents/create", post(routes::agents::create))
        .route("/agents/deposit", post(routes::agents::deposit))
        .route("/agents/withdraw", post(routes::agents::withdraw))
        .route("/agentsWith/{id}", get(routes::agents::get_one))
        .route("/agents/{id}", get(routes::agents::list_for_user))
        .route("/payments/register", post(routes::payments::register))
        .route("/payments/setApprove", post(routes::payments::approve))
        .route("/payments/setDecline", post(routes::payments::decline))
        .route("/payments/export", post(routes::reports::export))
        .route("/payments/{id}", get(routes::payments::get_one))
        .route("/user/payments", get(routes::payments::list_for_user))
        .route("/user/wallet-balance", get(routes::reports::wallet_balance))
        .route("/transactions/summary", get(routes::reports::summary))
        .route("/savings/deposit", post(routes::savings::deposit))
        .route("/savings/withdraw", post(routes::savings::withdraw))
        .route("/savings/dashboard", get(routes::savings::dashboard))
        .route(
            "/savings/myinvestments",
            get(routes::savings::my_investments),
        )
        .route("/savings/{agentId}", get(routes::savings::for_agent))
        .route(
            "/investment/interest-rate",
            get(routes::investment::interest_rate),
        )
        .route(
            "/investment/calculator",
            post(routes::investment::calculator),
        )
        .route("/health", get(routes::health::health))
        .route("/events", get(routes::events::upgrade))
        .route("/metrics/stream", get(routes::metrics_stream::stream))
        .merge(routes::webhooks::router())
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(api())
        .nest("/v1", api())
        .route("/metrics", get(routes::health::metrics))
        .fallback(|| async { ApiError::NotFound("Not found".into()) })
        .method_not_allowed_fallback(|| async {
            (
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                axum::Json(serde_json::json!({"error": "Method not allowed"})),
            )
        })
        .layer(DefaultBodyLimit::max(body::BODY_BYTES_MAX))
        .layer(middleware::from_fn(rate_limit::headers))
        .layer(middleware::from_fn(record_http))
        .with_state(state)
}

/// Request count and latency per route and status (the route template, not
/// the raw path, so ids do not explode the label set).
async fn record_http(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("agentbank_http_requests_total", &labels).increment(1);
    metrics::histogram!("agentbank_http_request_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Starts the reply reader and the sink watermark, then serves until `shutdown`.
pub async fn serve(
    config: GatewayConfig,
    pool: PgPool,
    metrics: Option<PrometheusHandle>,
    processor_probe: Option<ProcessorProbe>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ApiError> {
    let watermarks = Watermarks::follow(pool.clone(), config.topics.events.clone()).await?;
    let bus = commands::CommandBus::start(
        &config.kafka,
        config.topics.clone(),
        watermarks,
        config.reply_timeout,
    )?;
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .map_err(|e| ApiError::Internal(format!("binding {}: {e}", config.http_addr)))?;
    tracing::info!(addr = %config.http_addr, "gateway listening");
    let limits = Arc::new(rate_limit::RateLimits::new(
        config.rate_limit_per_minute,
        config.rate_limit_per_day,
    ));
    let idle = limits.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(rate_limit::FORGET_IDLE_EVERY);
        loop {
            tick.tick().await;
            idle.forget_idle();
        }
    });
    let feed = feed::Feed::start(pool.clone()).await?;
    let chain = match config.chain.clone() {
        Some(c) => Some(Arc::new(chain::ChainAccess::new(c)?)),
        None => None,
    };
    let state = AppState {
        feed,
        chain,
        pool,
        bus,
        config: Arc::new(config),
        metrics,
        processor_probe,
        limits,
        caches: Arc::default(),
    };
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
}

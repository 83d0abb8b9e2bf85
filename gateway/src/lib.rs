//! The gateway: agentbank's HTTP API (axum).
//!
//! - [`auth`]: `x-api-key` authentication, key minting, password hashing.
//! - [`body`]: bounded, exact JSON body parsing (amounts never via `f64`).
//! - [`bounds`]: connections, header and request time, requests in flight
//!   per credential — what one client may hold.
//! - [`commands`]: writes as Kafka commands, replies by correlation id,
//!   read-your-writes by waiting on the sink's watermark.
//! - [`error`]: the one error type and its `{"error": "..."}` responses.
//! - [`feed`]: the live event feed behind WebSocket `/v1/events`.
//! - [`rate_limit`]: per-key budgets (100/min, 5,000/day) and their headers.
//! - [`bank`]: the agent bank's handlers, mounted at `/` and at `/v1`.
//! - [`revenue`]: the revenue platform's handlers, under `/v1`.
//! - [`health`]: `/health` and `/metrics`.

pub mod a2a;
pub mod auth;
pub mod bank;
pub mod body;
pub mod bounds;
pub mod cache;
pub mod chain;
pub mod commands;
pub mod dashboard;
pub mod error;
pub mod feed;
pub mod health;
pub mod mcp;
pub mod rate_limit;
pub mod revenue;
pub mod sessions;
pub mod tenant;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
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
    /// How long an on-chain withdrawal waits for its outcome before 202.
    pub settlement_wait: Duration,
    /// Most one test funding may add to a user's wallet; zero: route off.
    pub wallet_test_funding_max: rust_decimal::Decimal,
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
    /// Access-token signing keys and lifetimes.
    pub jwt: auth::jwt::JwtConfig,
    /// Configured service tokens (digests only).
    pub service_tokens: auth::service::ServiceTokens,
    /// The tier of users without one set (`AGENTBANK_DEFAULT_TIER`).
    pub default_tier: rate_limit::Tier,
    /// What one client may hold: connections, header and request time,
    /// requests in flight per credential.
    pub bounds: bounds::Bounds,
    /// The annual risk-free rate of the portfolio's Sharpe ratio
    /// (`AGENTBANK_RISK_FREE_RATE`).
    pub risk_free_rate: f64,
    /// The vertical agents' pools (`AGENTBANK_VERTICALS`).
    pub verticals: schemas::revenue::workers::Verticals,
    /// How long a pricing quote may be executed (`AGENTBANK_QUOTE_TTL_MS`).
    pub quote_ttl: Duration,
    /// WebSocket sessions per user and per gateway.
    pub ws_sessions_per_user: usize,
    pub ws_sessions_max: usize,
    /// SSE metric streams per user and per gateway.
    pub sse_streams_per_user: usize,
    pub sse_streams_max: usize,
}

/// What verifies credentials other than API keys.
pub struct Identity {
    pub jwt: auth::jwt::Jwt,
    pub services: auth::service::ServiceTokens,
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
    pub identity: Arc<Identity>,
    /// The revenue routes' per-tier limits.
    pub tier_limits: Arc<rate_limit::TierLimits>,
    /// Open WebSocket sessions and SSE streams.
    pub ws_sessions: Arc<sessions::SessionLimits>,
    pub sse_streams: Arc<sessions::SessionLimits>,
}

impl AppState {
    /// A user's tier (the default when none is set); `None`: no such user.
    pub async fn tier_of(&self, user_id: uuid::Uuid) -> Result<Option<rate_limit::Tier>, ApiError> {
        if let Some(t) = self.caches.tiers.get(&user_id) {
            return Ok(t);
        }
        let tier = connectors::read_model::identity::user_tier(&self.pool, user_id)
            .await?
            .map(|t| {
                t.as_deref()
                    .and_then(rate_limit::Tier::parse)
                    .unwrap_or(self.config.default_tier)
            });
        self.caches.tiers.put(user_id, tier);
        Ok(tier)
    }
}

/// The API routes, without prefix.
fn api() -> Router<AppState> {
    Router::new()
        .route("/users", post(bank::users::sign_up))
        .route("/agents/create", post(bank::agents::create))
        .route("/agents/deposit", post(bank::agents::deposit))
        .route("/agents/withdraw", post(bank::agents::withdraw))
        .route("/agents/update", post(bank::lifecycle::update_agent))
        .route("/agents/{id}/transactions", get(bank::history::list))
        .route(
            "/agents/{id}/transactions/export",
            post(bank::history::export),
        )
        .route("/agents/pause", post(bank::lifecycle::pause))
        .route("/agents/resume", post(bank::lifecycle::resume))
        .route("/agents/deactivate", post(bank::lifecycle::deactivate))
        .route(
            "/agents/keys/regenerate",
            post(bank::lifecycle::regenerate_key),
        )
        .route("/agents/keys/revoke", post(bank::lifecycle::revoke_keys))
        .route("/agentsWith/{id}", get(bank::agents::get_one))
        .route("/agents/{id}", get(bank::agents::list_for_user))
        .route("/payments/register", post(bank::payments::register))
        .route("/payments/setApprove", post(bank::payments::approve))
        .route("/payments/setDecline", post(bank::payments::decline))
        .route("/payments/export", post(bank::reports::export))
        .route("/payments/{id}", get(bank::payments::get_one))
        .route("/settlements/{id}", get(bank::agents::settlement))
        .route("/user/payments", get(bank::payments::list_for_user))
        .route("/user/wallet-balance", get(bank::reports::wallet_balance))
        .route("/user/wallet/fund", post(bank::users::fund_wallet))
        .route("/transactions/summary", get(bank::reports::summary))
        .route("/savings/deposit", post(bank::savings::deposit))
        .route("/savings/withdraw", post(bank::savings::withdraw))
        .route("/savings/dashboard", get(bank::savings::dashboard))
        .route("/savings/myinvestments", get(bank::savings::my_investments))
        .route("/savings/{agentId}", get(bank::savings::for_agent))
        .route(
            "/investment/interest-rate",
            get(bank::investment::interest_rate),
        )
        .route("/investment/calculator", post(bank::investment::calculator))
        .route("/health", get(health::health))
        .route("/events", get(revenue::events::upgrade))
        .route("/metrics/stream", get(revenue::metrics_stream::stream))
        .layer(middleware::from_fn(bounds::guard))
        .merge(revenue::webhooks::router())
}

/// The revenue platform's routes (API v1 only): the envelope for errors,
/// tier limits.
fn revenue_api() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(auth::routes::login))
        .route("/auth/refresh", post(auth::routes::refresh))
        .route("/auth/logout", post(auth::routes::logout))
        .route("/auth/me", get(auth::routes::me))
        .route("/sandbox/keys", post(auth::routes::sandbox_key))
        .route("/keys", get(auth::keys::list).post(auth::keys::create))
        .route("/keys/{key_id}", axum::routing::delete(auth::keys::revoke))
        .route("/keys/{key_id}/rotate", post(auth::keys::rotate))
        .route("/admin/users/{user_id}/tier", put(auth::routes::set_tier))
        .route(
            "/opportunities",
            post(revenue::opportunities::create).get(revenue::opportunities::list),
        )
        .route("/opportunities/{id}", get(revenue::opportunities::get))
        .route(
            "/opportunities/{id}/execute",
            post(revenue::opportunities::execute),
        )
        .route("/batch/opportunities", post(revenue::opportunities::batch))
        .route("/monetizer/quote", post(revenue::pricing::quote))
        .route("/monetizer/execute", post(revenue::pricing::execute))
        .route("/monetizer/quotes/{id}", get(revenue::pricing::get))
        .route("/agents", get(revenue::agents::list))
        .route("/agents/{agent_id}/control", post(revenue::agents::control))
        .route("/portfolio/status", get(revenue::portfolio::status))
        .route("/portfolio/history", get(revenue::portfolio::history))
        .route("/portfolio/rebalance", post(revenue::portfolio::rebalance))
        .route("/revenue/events", post(revenue::ledger::record))
        .route("/revenue/transactions", get(revenue::ledger::transactions))
        .route("/revenue/analytics", get(revenue::ledger::analytics))
        .route("/revenue/ledger/verify", get(revenue::ledger::verify))
        .route(
            "/revenue/targets",
            get(revenue::ledger::targets).put(revenue::ledger::set_target),
        )
        .route("/openapi.json", get(revenue::openapi::document))
        .layer(middleware::from_fn(bounds::guard))
        .layer(middleware::from_fn(error::envelope))
        .layer(axum::Extension(auth::Product::Revenue))
}

pub fn router(state: AppState) -> Router {
    let rest = rest_router(state.clone());
    // MCP over Streamable HTTP: its tools call the REST routes above in
    // process, with the caller's key; only a valid key reaches it.
    let mcp = Router::new()
        .route_service("/mcp", mcp::http_service(rest.clone()))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key))
        .with_state(state.clone());
    // A2A: the Agent Card (public) and the JSON-RPC binding, the same way.
    let backend: Arc<dyn mcp::Backend> = Arc::new(mcp::InProcess(rest.clone()));
    let a2a = Router::new()
        .route("/a2a", post(a2a::rpc))
        .route_layer(middleware::from_fn_with_state(state, require_key))
        .with_state(backend)
        .route("/.well-known/agent-card.json", get(a2a::agent_card))
        .route("/dashboard", get(dashboard::page));
    rest.merge(mcp).merge(a2a)
}

/// `/mcp` and `/a2a` are for holders of a valid key: the same check as
/// every route (their tools then act with it).
async fn require_key(_caller: auth::Caller, req: Request, next: Next) -> Response {
    next.run(req).await
}

fn rest_router(state: AppState) -> Router {
    Router::new()
        .merge(api())
        .nest("/v1", api().merge(revenue_api()))
        .route("/metrics", get(health::metrics))
        .fallback(|| async { ApiError::NotFound("Not found".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::Status {
                status: 405,
                message: "Method not allowed".into(),
            }
        })
        .layer(DefaultBodyLimit::max(body::BODY_BYTES_MAX))
        .layer(axum::Extension(state.config.bounds))
        .layer(axum::Extension(Arc::new(std::sync::Mutex::new(
            bounds::InFlight::default(),
        ))))
        .layer(middleware::from_fn(rate_limit::headers))
        .layer(middleware::from_fn(record_http))
        .layer(middleware::from_fn(error::request_id))
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
    shutdown: watch::Receiver<bool>,
) -> Result<(), ApiError> {
    let watermarks = Watermarks::follow(pool.clone(), config.topics.events_log.clone()).await?;
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
    let tier_limits = Arc::new(rate_limit::TierLimits::default());
    let (idle, idle_tiers) = (limits.clone(), tier_limits.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(rate_limit::FORGET_IDLE_EVERY);
        loop {
            tick.tick().await;
            idle.forget_idle();
            idle_tiers.forget_idle();
        }
    });
    let identity = Arc::new(Identity {
        jwt: auth::jwt::Jwt::new(config.jwt.clone()),
        services: config.service_tokens.clone(),
    });
    let feed = feed::Feed::start(pool.clone()).await?;
    let chain = match config.chain.clone() {
        Some(c) => Some(Arc::new(chain::ChainAccess::new(c)?)),
        None => None,
    };
    let ws_sessions =
        sessions::SessionLimits::new("ws", config.ws_sessions_per_user, config.ws_sessions_max);
    let sse_streams =
        sessions::SessionLimits::new("sse", config.sse_streams_per_user, config.sse_streams_max);
    let caches: Arc<cache::Caches> = Arc::default();
    let (revocations, mut stop) = (
        cache::follow_revocations(pool.clone(), caches.clone()),
        shutdown.clone(),
    );
    tokio::spawn(async move {
        tokio::select! {
            _ = revocations => {}
            _ = stop.changed() => {}
        }
    });
    let state = AppState {
        feed,
        chain,
        pool,
        bus,
        config: Arc::new(config),
        metrics,
        processor_probe,
        limits,
        caches,
        identity,
        tier_limits,
        ws_sessions,
        sse_streams,
    };
    let limits = state.config.bounds;
    bounds::serve(listener, router(state), limits, shutdown).await
}

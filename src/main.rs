//! `agentbank`: one binary, one subcommand per role.
//!
//! `dev` runs every role in one process against the local stack
//! (`deploy/local/up`); `gateway`, `processor`, `sink` run one role each;
//! `migrate` applies the Postgres migrations; `topics` creates the topics.
//! Configuration comes from flags or the environment, read once here.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio::sync::watch;

use connectors::kafka::KafkaConfig;
use gateway::{GatewayConfig, ProcessorHealth, ProcessorProbe};
use processors::agents::AgentMachine;
use processors::runtime::{Assignment, ProcessorConfig, ProcessorStatus};
use schemas::interest::RateSchedule;
use schemas::revenue::workers::Verticals;
use schemas::topics::MachineKind;
use schemas::topics::Topics;

/// mimalloc: the system allocator was 28% of agentbank's CPU at the payment
/// peak (`load-tests/README.md`, perf); the baseline server uses it too, so
/// the comparison stays even.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "agentbank",
    version,
    about = "A bank and revenue platform for AI agents, on Kafka"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    role: Role,
}

#[derive(Args, Clone)]
struct Common {
    /// The savings vault's annual rate (%) with its history: `4.5`, or
    /// `2026-01-01T00:00:00Z=4.5,2026-12-01T00:00:00Z=5` — each change
    /// applies from its time on, never before (`schemas::interest`).
    #[arg(long, env = "AGENTBANK_INTEREST_RATES", default_value = "4.5", global = true,
          value_parser = |s: &str| RateSchedule::parse(s).map_err(|e| e.to_string()))]
    interest_rates: RateSchedule,
    /// Seals webhook secrets at rest: 64 hex digits. Unset: a development
    /// key, with a warning — set your own anywhere but a laptop.
    #[arg(
        long,
        env = "AGENTBANK_SECRETS_KEY",
        global = true,
        hide_env_values = true
    )]
    secrets_key: Option<String>,
    /// Deliver webhooks to loopback/private addresses (local receivers, tests).
    #[arg(
        long,
        env = "AGENTBANK_WEBHOOKS_ALLOW_PRIVATE",
        default_value_t = false,
        global = true
    )]
    webhooks_allow_private: bool,
    /// Waits before each webhook retry, in ms, comma-separated (default: 0,
    /// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h).
    #[arg(
        long,
        env = "AGENTBANK_WEBHOOK_SCHEDULE_MS",
        value_delimiter = ',',
        global = true
    )]
    webhook_schedule_ms: Vec<u64>,
    /// One webhook attempt's time budget (ms).
    #[arg(
        long,
        env = "AGENTBANK_WEBHOOK_TIMEOUT_MS",
        default_value_t = 10_000,
        global = true
    )]
    webhook_timeout_ms: u64,
    /// How often the scheduler ticks interest onto every partition (ms).
    #[arg(
        long,
        env = "AGENTBANK_ACCRUAL_INTERVAL_MS",
        default_value_t = 60_000,
        global = true
    )]
    accrual_interval_ms: u64,
    /// How often unexecuted quotes are checked for expiry (each is closed
    /// as a non-conversion within about this long of its expiry).
    #[arg(
        long,
        env = "AGENTBANK_QUOTE_EXPIRY_TICK_MS",
        default_value_t = 1_000,
        global = true
    )]
    quote_expiry_tick_ms: u64,
    /// Price dispersion (std / mean of a product's last 50 quotes) above
    /// which a `system.alert` goes out.
    #[arg(long, env = "AGENTBANK_PRICE_DISPERSION_ALERT", default_value_t = processors::pricing::DEFAULT_DISPERSION_ALERT, global = true)]
    price_dispersion_alert: f64,
    /// Verticals with their own vertical agent (worker pool); executions of
    /// any other vertical go to `general`.
    #[arg(
        long,
        env = "AGENTBANK_VERTICALS",
        default_value = "saas,fintech,ecommerce,healthcare",
        global = true
    )]
    verticals: String,
    /// Kafka bootstrap servers (Nisshi locally; any Kafka-protocol broker).
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    bootstrap_servers: String,
    /// Postgres for the read model.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/agentbank",
        global = true
    )]
    database_url: String,
    /// Prefix of every topic and consumer group (isolates deployments sharing a broker).
    #[arg(
        long,
        env = "AGENTBANK_TOPIC_PREFIX",
        default_value = "",
        global = true
    )]
    topic_prefix: String,
    /// Where a processor or sink serves Prometheus `/metrics` (the gateway
    /// and `dev` serve it on the HTTP address).
    #[arg(long, env = "AGENTBANK_METRICS_ADDR", global = true)]
    metrics_addr: Option<SocketAddr>,
    /// Partitions of topics created by `topics`/`dev`. One by default: on
    /// the one-broker local stack every partition of every machine costs
    /// the broker storage queries per fetch wait even when idle, and with
    /// five machines that polling took most of a core of Tansu's (payments,
    /// hot set: 1 partition 188/s, 2 partitions 75–88/s;
    /// load-tests/README.md). The tests use 4
    /// for cross-partition coverage; production sets more (deploy/k8s).
    #[arg(long, env = "AGENTBANK_PARTITIONS", default_value_t = 1, global = true)]
    partitions: i32,
    /// How long a consumer on the payment path waits in one fetch (ms).
    #[arg(long, env = "AGENTBANK_FETCH_WAIT_MS", default_value_t = connectors::kafka::DEFAULT_FETCH_WAIT_MS, global = true)]
    fetch_wait_ms: u32,
    /// The same for the revenue machines' commands (opportunities, pricing,
    /// revenue ledger, portfolio). Every partition a consumer owns costs
    /// the broker storage queries per wait even when idle, so a box
    /// that serves little revenue traffic can let them poll less often.
    #[arg(long, env = "AGENTBANK_REVENUE_FETCH_WAIT_MS", default_value_t = connectors::kafka::DEFAULT_REVENUE_FETCH_WAIT_MS, global = true)]
    revenue_fetch_wait_ms: u32,
    /// What the sink reads: `log` (the processors' packed events log, the
    /// default) or `public` (the public events topic: to rebuild a read
    /// model from the start after the log's retention has passed).
    #[arg(long, env = "AGENTBANK_SINK_SOURCE", default_value = "log", value_parser = ["log", "public"], global = true)]
    sink_source: String,
    #[arg(
        long,
        env = "AGENTBANK_REPLICATION_FACTOR",
        default_value_t = 1,
        global = true
    )]
    replication_factor: i32,
    /// Processor partition ownership: `static` (instance i of n owns p % n == i)
    /// or `group` (the broker's consumer group assigns and rebalances).
    #[arg(
        long,
        env = "AGENTBANK_PROCESSOR_ASSIGNMENT",
        default_value = "static",
        global = true
    )]
    assignment: String,
    /// This processor's index among `instance_count` (static assignment).
    #[arg(
        long,
        env = "AGENTBANK_INSTANCE_INDEX",
        default_value_t = 0,
        global = true
    )]
    instance_index: u32,
    #[arg(
        long,
        env = "AGENTBANK_INSTANCE_COUNT",
        default_value_t = 1,
        global = true
    )]
    instance_count: u32,
}

#[derive(Subcommand)]
enum Role {
    /// Every role in one process (creates topics and migrates first).
    Dev(HttpArgs),
    /// An MCP server on stdin/stdout for desktop clients: its tools call
    /// the gateway at `--url` with the key in AGENTBANK_API_KEY.
    Mcp(McpArgs),
    /// The HTTP API.
    Gateway(HttpArgs),
    /// The agent processor (scale out by running more: one consumer group).
    Processor,
    /// The Postgres sink.
    Sink,
    /// Copies the packed events log to the public events topic (one Avro
    /// event per record). One instance: it owns every partition.
    Publisher,
    /// The webhook dispatcher (delivers what the sink queued).
    Dispatcher,
    /// The settlement service: sends agents' on-chain transfers
    /// (needs AGENTBANK_CHAIN_RPC_URL and AGENTBANK_USDC_ADDRESS).
    Settlement,
    /// The vertical agents: worker pools that carry out opportunity
    /// executions (`GET /v1/agents`, `POST /v1/agents/{id}/control`).
    Workers,
    /// Applies the Postgres migrations and exits.
    Migrate,
    /// Creates the topics and exits.
    Topics,
}

#[derive(Args, Clone)]
struct McpArgs {
    /// The gateway's base URL.
    #[arg(long, env = "AGENTBANK_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The agent's or user's API key the tools act with (never logged).
    #[arg(long, env = "AGENTBANK_API_KEY", hide_env_values = true)]
    api_key: String,
}

#[derive(Args, Clone)]
struct HttpArgs {
    #[arg(long, env = "AGENTBANK_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// How long a write waits for its reply before 503.
    #[arg(long, env = "AGENTBANK_REPLY_TIMEOUT_MS", default_value_t = 10_000)]
    reply_timeout_ms: u64,
    /// How long an on-chain withdrawal waits for its transfer's outcome
    /// (confirmed or failed) before answering 202 with a status to poll.
    #[arg(long, env = "AGENTBANK_SETTLEMENT_WAIT_MS", default_value_t = 15_000)]
    settlement_wait_ms: u64,
    #[arg(long, env = "AGENTBANK_NETWORK_ID", default_value = "ledger")]
    network_id: String,
    /// Most one `POST /user/wallet/fund` may add to a user's wallet (the
    /// documented test-funding route); 0 turns the route off (production).
    #[arg(
        long,
        env = "AGENTBANK_WALLET_TEST_FUNDING_MAX",
        default_value = "10000"
    )]
    wallet_test_funding_max: rust_decimal::Decimal,
    /// Requests per API key per minute (the Mage docs' limit).
    #[arg(long, env = "AGENTBANK_RATE_LIMIT_PER_MINUTE", default_value_t = 100)]
    rate_limit_per_minute: u32,
    /// Requests per API key per day (the Mage docs' limit).
    #[arg(long, env = "AGENTBANK_RATE_LIMIT_PER_DAY", default_value_t = 5_000)]
    rate_limit_per_day: u32,
    /// SSE `/v1/metrics/stream`: metrics every this many ms.
    #[arg(long, env = "AGENTBANK_SSE_METRICS_MS", default_value_t = 5_000)]
    sse_metrics_ms: u64,
    /// SSE `/v1/metrics/stream`: a heartbeat every this many ms.
    #[arg(long, env = "AGENTBANK_SSE_HEARTBEAT_MS", default_value_t = 30_000)]
    sse_heartbeat_ms: u64,
    /// Access-token signing keys, `kid:hexsecret[,…]`; the first signs, all
    /// verify (rotation). Unset: a development key (logged as such).
    #[arg(long, env = "AGENTBANK_JWT_KEYS", hide_env_values = true)]
    jwt_keys: Option<String>,
    #[arg(long, env = "AGENTBANK_JWT_ISSUER", default_value = "agentbank")]
    jwt_issuer: String,
    #[arg(long, env = "AGENTBANK_JWT_AUDIENCE", default_value = "agentbank-api")]
    jwt_audience: String,
    /// Access-token lifetime, seconds.
    #[arg(long, env = "AGENTBANK_ACCESS_TOKEN_TTL_S", default_value_t = 3_600)]
    access_token_ttl_s: u64,
    /// Refresh-token lifetime, seconds (30 days).
    #[arg(
        long,
        env = "AGENTBANK_REFRESH_TOKEN_TTL_S",
        default_value_t = 2_592_000
    )]
    refresh_token_ttl_s: u64,
    /// Service tokens, `name:scope[+scope]:<sha256 hex of the token>[,…]`.
    #[arg(
        long,
        env = "AGENTBANK_SERVICE_TOKENS",
        default_value = "",
        hide_env_values = true
    )]
    service_tokens: String,
    /// Open WebSocket sessions per user and per gateway.
    #[arg(long, env = "AGENTBANK_WS_SESSIONS_PER_USER", default_value_t = 10)]
    ws_sessions_per_user: usize,
    #[arg(long, env = "AGENTBANK_WS_SESSIONS_MAX", default_value_t = 10_000)]
    ws_sessions_max: usize,
    /// Open SSE metric streams per user and per gateway.
    #[arg(long, env = "AGENTBANK_SSE_STREAMS_PER_USER", default_value_t = 5)]
    sse_streams_per_user: usize,
    #[arg(long, env = "AGENTBANK_SSE_STREAMS_MAX", default_value_t = 5_000)]
    sse_streams_max: usize,
    /// Open connections per gateway; the one beyond gets a 503 and is closed.
    #[arg(long, env = "AGENTBANK_CONNECTIONS_MAX", default_value_t = 10_000)]
    connections_max: usize,
    /// Time a client has to send a request's headers (ms).
    #[arg(
        long,
        env = "AGENTBANK_HEADER_READ_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    header_read_timeout_ms: u64,
    /// Time a request may take, its body read included (ms); 503 beyond.
    #[arg(long, env = "AGENTBANK_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    request_timeout_ms: u64,
    /// Requests one credential may have in flight; 429 beyond.
    #[arg(long, env = "AGENTBANK_IN_FLIGHT_PER_KEY", default_value_t = 1_024)]
    in_flight_per_key: usize,
    /// The annual risk-free rate of the portfolio's Sharpe ratio.
    #[arg(long, env = "AGENTBANK_RISK_FREE_RATE", default_value_t = 0.04)]
    risk_free_rate: f64,
    /// How long a pricing quote may be executed (ms; 30 minutes).
    #[arg(long, env = "AGENTBANK_QUOTE_TTL_MS", default_value_t = 1_800_000)]
    quote_ttl_ms: u64,
    /// The tier of users without one: free, basic, pro or enterprise.
    #[arg(long, env = "AGENTBANK_DEFAULT_TIER", default_value = "free")]
    default_tier: String,
}

impl Common {
    fn kafka(&self) -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: self.bootstrap_servers.clone(),
            partitions: self.partitions,
            replication_factor: self.replication_factor,
            fetch_wait_ms: self.fetch_wait_ms,
        }
    }

    fn topics(&self) -> Topics {
        Topics::with_prefix(&self.topic_prefix)
    }

    fn processor(&self) -> anyhow::Result<ProcessorConfig> {
        let assignment = match self.assignment.as_str() {
            "group" => Assignment::Group,
            "static" if self.instance_index < self.instance_count => Assignment::Static {
                index: self.instance_index,
                count: self.instance_count,
            },
            "static" => anyhow::bail!("instance index must be below instance count"),
            other => anyhow::bail!("unknown assignment '{other}': use static or group"),
        };
        Ok(ProcessorConfig {
            kafka: self.kafka(),
            topics: self.topics(),
            group_id: format!("{}agentbank-processors", self.topic_prefix),
            assignment,
        })
    }

    fn verticals(&self) -> anyhow::Result<Verticals> {
        Verticals::parse(&self.verticals).map_err(anyhow::Error::msg)
    }

    fn gateway(&self, http: &HttpArgs) -> anyhow::Result<GatewayConfig> {
        let jwt_keys = http.jwt_keys.clone().unwrap_or_else(|| {
            tracing::warn!(
                "AGENTBANK_JWT_KEYS unset: signing access tokens with the development key"
            );
            gateway::auth::jwt::DEV_KEYS.to_string()
        });
        let jwt = gateway::auth::jwt::JwtConfig::new(
            &jwt_keys,
            &http.jwt_issuer,
            &http.jwt_audience,
            Duration::from_secs(http.access_token_ttl_s.max(1)),
            Duration::from_secs(http.refresh_token_ttl_s.max(1)),
        )?;
        let service_tokens = gateway::auth::service::ServiceTokens::parse(&http.service_tokens)?;
        for (name, value) in [
            ("AGENTBANK_CONNECTIONS_MAX", http.connections_max as u64),
            (
                "AGENTBANK_HEADER_READ_TIMEOUT_MS",
                http.header_read_timeout_ms,
            ),
            ("AGENTBANK_REQUEST_TIMEOUT_MS", http.request_timeout_ms),
            ("AGENTBANK_IN_FLIGHT_PER_KEY", http.in_flight_per_key as u64),
        ] {
            if value == 0 {
                anyhow::bail!("{name} must be positive");
            }
        }
        if !(-1.0..=1.0).contains(&http.risk_free_rate) {
            anyhow::bail!(
                "AGENTBANK_RISK_FREE_RATE must be an annual rate from -1 to 1 (e.g. 0.04), not {}",
                http.risk_free_rate
            );
        }
        let default_tier =
            gateway::rate_limit::Tier::parse(&http.default_tier).ok_or_else(|| {
                anyhow::anyhow!(
                    "AGENTBANK_DEFAULT_TIER: free, basic, pro or enterprise, not {:?}",
                    http.default_tier
                )
            })?;
        Ok(GatewayConfig {
            verticals: self.verticals()?,
            quote_ttl: Duration::from_millis(http.quote_ttl_ms.max(1)),
            risk_free_rate: http.risk_free_rate,
            bounds: gateway::bounds::Bounds {
                connections_max: http.connections_max,
                header_read: Duration::from_millis(http.header_read_timeout_ms),
                request: Duration::from_millis(http.request_timeout_ms),
                in_flight_per_key: http.in_flight_per_key,
            },
            ws_sessions_per_user: http.ws_sessions_per_user,
            ws_sessions_max: http.ws_sessions_max,
            sse_streams_per_user: http.sse_streams_per_user,
            sse_streams_max: http.sse_streams_max,
            jwt,
            service_tokens,
            default_tier,
            http_addr: http.http_addr,
            kafka: self.kafka(),
            topics: self.topics(),
            reply_timeout: Duration::from_millis(http.reply_timeout_ms),
            settlement_wait: Duration::from_millis(http.settlement_wait_ms),
            wallet_test_funding_max: http.wallet_test_funding_max,
            network_id: http.network_id.clone(),
            rate_limit_per_minute: http.rate_limit_per_minute,
            rate_limit_per_day: http.rate_limit_per_day,
            interest_rates: self.interest_rates.clone(),
            secrets: self.secrets()?,
            webhooks_allow_private: self.webhooks_allow_private,
            sse_metrics_every: Duration::from_millis(http.sse_metrics_ms.max(100)),
            sse_heartbeat: Duration::from_millis(http.sse_heartbeat_ms.max(100)),
            chain: connectors::chain::ChainConfig::from_env()?,
        })
    }

    fn secrets(&self) -> anyhow::Result<connectors::secrets::SecretBox> {
        let key = self.secrets_key.clone().unwrap_or_else(|| {
            tracing::warn!("AGENTBANK_SECRETS_KEY unset: sealing secrets with the development key");
            connectors::secrets::DEV_KEY_HEX.to_string()
        });
        connectors::secrets::SecretBox::from_hex(&key).map_err(|_| {
            anyhow::anyhow!("AGENTBANK_SECRETS_KEY must be 64 hex digits (a 256-bit key)")
        })
    }

    fn dispatcher(&self) -> anyhow::Result<connectors::webhooks::DispatcherConfig> {
        let schedule = if self.webhook_schedule_ms.is_empty() {
            connectors::webhooks::DEFAULT_SCHEDULE.to_vec()
        } else {
            self.webhook_schedule_ms
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect()
        };
        Ok(connectors::webhooks::DispatcherConfig {
            schedule,
            timeout: Duration::from_millis(self.webhook_timeout_ms),
            concurrency: 64,
            allow_private: self.webhooks_allow_private,
            secrets: self.secrets()?,
            kafka: self.kafka(),
            dead_letter_topic: self.topics().webhooks_dead_letter,
        })
    }

    async fn pool(&self, max: u32) -> anyhow::Result<sqlx::PgPool> {
        connectors::db::connect(&self.database_url, max)
            .await
            .context("connecting to Postgres")
    }

    async fn prepare(&self) -> anyhow::Result<()> {
        let topics = self.topics();
        self.kafka()
            .ensure_deployment_topics(&topics)
            .await
            .context("creating topics")?;
        let pool = self.pool(2).await?;
        connectors::db::migrate(&pool).await.context("migrating")?;
        Ok(())
    }
}

/// Runs `role` until shutdown; on error, logs and restarts it after a bounded
/// backoff. A restart resumes from durable state (checkpoint, sink offsets),
/// so an error never loses or repeats an effect.
async fn supervise<F, Fut, E>(name: &'static str, shutdown: watch::Receiver<bool>, mut role: F)
where
    F: FnMut(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    const BACKOFF_MAX: Duration = Duration::from_secs(5);
    let mut backoff = Duration::from_millis(200);
    loop {
        match role(shutdown.clone()).await {
            Ok(()) => return,
            Err(e) => {
                if *shutdown.borrow() {
                    return;
                }
                tracing::error!(role = name, error = %e, retry_in_ms = backoff.as_millis() as u64, "role failed; restarting");
                metrics::counter!("agentbank_role_restarts_total", "role" => name).increment(1);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down: finishing the batches in hand");
        let _ = tx.send(true);
    });
    rx
}

fn install_metrics() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .ok()
}

/// Serves `/metrics` on `addr` for roles without the gateway (processor, sink).
async fn serve_metrics(addr: Option<SocketAddr>) -> anyhow::Result<()> {
    let (Some(addr), Some(handle)) = (addr, install_metrics()) else {
        return Ok(());
    };
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move { handle.render() }),
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(%addr, "metrics on /metrics");
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(())
}

/// Libraries that log message contents (which carry API keys and tokens)
/// at their finest levels: capped whatever `RUST_LOG` asks, so a secret can
/// never reach the log (`tests/secrets_never_logged.rs`).
const PAYLOAD_LOGGERS: [&str; 2] = ["tungstenite=debug", "tokio_tungstenite=debug"];

/// `RUST_LOG` (default `info,rdkafka=warn,sqlx=warn`) with [`PAYLOAD_LOGGERS`] capped.
fn log_filter() -> tracing_subscriber::EnvFilter {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,rdkafka=warn,sqlx=warn".into());
    for cap in PAYLOAD_LOGGERS {
        if let Ok(directive) = cap.parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Logs go to stderr: over stdio, stdout is the MCP channel.
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        .init();
    let common = cli.common;
    let shutdown = shutdown_signal();
    match cli.role {
        Role::Mcp(args) => {
            gateway::mcp::serve_stdio(args.url, args.api_key)
                .await
                .map_err(|e| anyhow::anyhow!("mcp over stdio: {e}"))?;
        }
        Role::Topics => {
            let topics = common.topics();
            common.kafka().ensure_deployment_topics(&topics).await?;
            let names = topics.all().map(|(t, _)| t.to_string());
            let sized = topics.sized().map(|(t, _)| t.to_string());
            println!(
                "topics ready: {}",
                [&names[..], &sized[..]].concat().join(", ")
            );
        }
        Role::Migrate => {
            connectors::db::migrate(&common.pool(2).await?).await?;
            println!("migrations applied");
        }
        Role::Processor => {
            serve_metrics(common.metrics_addr).await?;
            let config = common.processor()?;
            let machine = Arc::new(AgentMachine::new(common.interest_rates.clone()));
            let status = Arc::new(ProcessorStatus::default());
            // One ticking instance is enough; in group mode every member ticks
            // (a repeated tick accrues nothing twice).
            let ticks = common.instance_index == 0 || common.assignment == "group";
            tokio::join!(
                supervise("processor", shutdown.clone(), |s| {
                    processors::runtime::run(config.clone(), machine.clone(), status.clone(), s)
                }),
                run_revenue_machines(&common, shutdown.clone()),
                run_scheduler(&common, ticks, shutdown.clone()),
            )
            .1?;
        }
        Role::Sink => {
            serve_metrics(common.metrics_addr).await?;
            run_sink(&common, shutdown).await?
        }
        Role::Publisher => {
            serve_metrics(common.metrics_addr).await?;
            run_publisher(&common, shutdown).await
        }
        Role::Dispatcher => {
            serve_metrics(common.metrics_addr).await?;
            run_dispatcher(&common, shutdown).await?
        }
        Role::Settlement => {
            if connectors::chain::ChainConfig::from_env()?.is_none() {
                anyhow::bail!("the settlement role needs AGENTBANK_CHAIN_RPC_URL (and AGENTBANK_USDC_ADDRESS)");
            }
            serve_metrics(common.metrics_addr).await?;
            run_settlement(&common, shutdown).await?
        }
        Role::Workers => {
            serve_metrics(common.metrics_addr).await?;
            run_workers(&common, shutdown).await?
        }
        Role::Gateway(http) => {
            let pool = common.pool(32).await?;
            let config = common.gateway(&http)?;
            let metrics = install_metrics();
            supervise("gateway", shutdown, |s| {
                gateway::serve(config.clone(), pool.clone(), metrics.clone(), None, s)
            })
            .await;
        }
        Role::Dev(http) => {
            common.prepare().await?;
            let pool = common.pool(32).await?;
            let metrics = install_metrics();
            let status = Arc::new(ProcessorStatus::default());
            let probe_status = status.clone();
            let probe: ProcessorProbe = Arc::new(move || {
                let partitions = probe_status.partitions.load(Ordering::Relaxed);
                ProcessorHealth {
                    ready: partitions > 0,
                    detail: serde_json::json!({
                        "status": if partitions > 0 { "running" } else { "starting" },
                        "partitions": partitions,
                        "batches": probe_status.batches.load(Ordering::Relaxed),
                        "commands": probe_status.commands.load(Ordering::Relaxed),
                    }),
                }
            });
            let processor_config = common.processor()?;
            let machine = Arc::new(AgentMachine::new(common.interest_rates.clone()));
            let gateway_config = common.gateway(&http)?;
            tokio::join!(
                supervise("processor", shutdown.clone(), |s| processors::runtime::run(
                    processor_config.clone(),
                    machine.clone(),
                    status.clone(),
                    s
                )),
                run_revenue_machines(&common, shutdown.clone()),
                run_sink(&common, shutdown.clone()),
                run_publisher(&common, shutdown.clone()),
                run_scheduler(&common, true, shutdown.clone()),
                run_dispatcher(&common, shutdown.clone()),
                run_settlement(&common, shutdown.clone()),
                run_workers(&common, shutdown.clone()),
                supervise("gateway", shutdown.clone(), |s| gateway::serve(
                    gateway_config.clone(),
                    pool.clone(),
                    metrics.clone(),
                    Some(probe.clone()),
                    s
                )),
            )
            .1?;
        }
    }
    Ok(())
}

/// The revenue platform's machines (opportunities, pricing), each on the
/// generic runtime with its own commands and state topics and consumer group.
async fn run_revenue_machines(
    common: &Common,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let base = common.processor()?;
    let kafka = base.kafka.polling_every(common.revenue_fetch_wait_ms);
    let config = |kind: MachineKind, name: &str| ProcessorConfig {
        kafka: kafka.clone(),
        topics: base.topics.for_machine(kind),
        group_id: format!("{}agentbank-{name}", common.topic_prefix),
        ..base.clone()
    };
    tokio::join!(
        run_machine(
            "opportunities",
            config(MachineKind::Opportunities, "opportunities"),
            processors::opportunities::OpportunityMachine,
            shutdown.clone(),
        ),
        run_machine(
            "pricing",
            config(MachineKind::Pricing, "pricing"),
            processors::pricing::PricingMachine {
                dispersion_alert: common.price_dispersion_alert,
            },
            shutdown.clone(),
        ),
        run_machine(
            "revenue",
            config(MachineKind::Revenue, "revenue"),
            processors::revenue::RevenueMachine,
            shutdown.clone(),
        ),
        run_machine(
            "portfolio",
            config(MachineKind::Portfolio, "portfolio"),
            processors::portfolio::PortfolioMachine,
            shutdown,
        ),
    );
    Ok(())
}

/// One machine on the generic runtime, restarted by [`supervise`].
async fn run_machine<M: processors::runtime::machine::Machine + 'static>(
    name: &'static str,
    config: ProcessorConfig,
    machine: M,
    shutdown: watch::Receiver<bool>,
) {
    let machine = Arc::new(machine);
    let status = Arc::new(ProcessorStatus::default());
    supervise(name, shutdown, |s| {
        processors::runtime::run(config.clone(), machine.clone(), status.clone(), s)
    })
    .await;
}

/// The vertical agents' worker pools (`connectors::workers`).
async fn run_workers(common: &Common, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let pool = common.pool(4).await?;
    let config = connectors::workers::WorkersConfig {
        kafka: common.kafka(),
        topics: common.topics(),
        verticals: common.verticals()?,
        process: connectors::workers::process_name(),
    };
    supervise("workers", shutdown, |s| {
        connectors::workers::run(config.clone(), pool.clone(), s)
    })
    .await;
    Ok(())
}

/// The webhook dispatcher (`connectors::webhooks`).
async fn run_dispatcher(common: &Common, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let pool = common.pool(8).await?;
    let config = common.dispatcher()?;
    supervise("dispatcher", shutdown, |s| {
        connectors::webhooks::run(config.clone(), pool.clone(), s)
    })
    .await;
    Ok(())
}

/// The settlement service (`connectors::chain`), when a chain is configured.
async fn run_settlement(common: &Common, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let Some(chain) = connectors::chain::ChainConfig::from_env()? else {
        tracing::info!(
            "no chain configured (AGENTBANK_CHAIN_RPC_URL): settling on the ledger only"
        );
        return Ok(());
    };
    let pool = common.pool(4).await?;
    let config = connectors::chain::service::SettlementConfig {
        chain,
        kafka: common.kafka(),
        topics: common.topics(),
    };
    supervise("settlement", shutdown, |s| {
        connectors::chain::service::run(config.clone(), pool.clone(), s)
    })
    .await;
    Ok(())
}

/// The interest scheduler (`processors::scheduler`), when `enabled`.
async fn run_scheduler(common: &Common, enabled: bool, shutdown: watch::Receiver<bool>) {
    if !enabled {
        return;
    }
    use processors::scheduler::Tick;
    let interest = Duration::from_millis(common.accrual_interval_ms.max(1_000));
    let expiry = Duration::from_millis(common.quote_expiry_tick_ms.max(50));
    tokio::join!(
        supervise("scheduler", shutdown.clone(), |s| {
            processors::scheduler::run(common.kafka(), common.topics(), Tick::Interest, interest, s)
        }),
        supervise("quote-expiry", shutdown, |s| {
            processors::scheduler::run(
                common.kafka(),
                common.topics(),
                Tick::QuoteExpiry,
                expiry,
                s,
            )
        }),
    );
}

async fn run_publisher(common: &Common, shutdown: watch::Receiver<bool>) {
    let config = connectors::publisher::PublisherConfig {
        kafka: common.kafka(),
        topics: common.topics(),
        group_id: format!("{}agentbank-publisher", common.topic_prefix),
    };
    supervise("publisher", shutdown, |s| {
        connectors::publisher::run(config.clone(), s)
    })
    .await;
}

async fn run_sink(common: &Common, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let pool = common.pool(4).await?;
    let kafka = common.kafka();
    let topics = common.topics();
    let topic = match common.sink_source.as_str() {
        "public" => topics.events,
        _ => topics.events_log,
    };
    supervise("sink", shutdown, |s| {
        let config = connectors::postgres_sink::SinkConfig {
            kafka: kafka.clone(),
            topic: topic.clone(),
        };
        connectors::postgres_sink::run(config, pool.clone(), s)
    })
    .await;
    Ok(())
}

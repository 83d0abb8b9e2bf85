//! Fault injection: a private stack — its own PostgreSQL, broker and
//! agentbank processor, sink and gateway processes, on loopback ports of its
//! own — under load, whose roles are killed with SIGKILL at random moments
//! and restarted; then the audit, with exact expected balances.
//!
//! The load is deposits and instant payments, each with its own
//! Idempotency-Key and retried with it until a definitive answer (a
//! client's duty when a connection drops): so every operation is either
//! acknowledged or refused, and each agent's balance must come out exactly
//! as the acknowledged operations say — a lost or doubled cent shows.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgPool;

use crate::audit::Audit;
use crate::client::{payment_id, Api, Tenant};

/// A process of the stack that can be killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Role {
    Processor,
    Sink,
    Publisher,
    Gateway,
    Dispatcher,
    Broker,
    Postgres,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Processor,
        Role::Sink,
        Role::Publisher,
        Role::Gateway,
        Role::Dispatcher,
        Role::Broker,
        Role::Postgres,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Processor => "processor",
            Role::Sink => "sink",
            Role::Publisher => "publisher",
            Role::Gateway => "gateway",
            Role::Dispatcher => "dispatcher",
            Role::Broker => "broker",
            Role::Postgres => "postgres",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("unknown role '{s}'"))
    }
}

/// The script that runs the local broker (its command line lives there once).
const BROKER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/local/broker");

#[derive(Clone, Debug)]
pub struct Config {
    /// The `agentbank` binary.
    pub agentbank_bin: PathBuf,
    /// Where the stack keeps data and logs (created; emptied first).
    pub dir: PathBuf,
    /// How many kills, spread over `roles` (each role before any twice).
    pub kills: usize,
    pub roles: Vec<Role>,
    /// Time between kills, drawn uniformly from this range.
    pub interval: (Duration, Duration),
    /// How long a killed role stays down before its restart.
    pub downtime: (Duration, Duration),
    /// Operations in flight.
    pub concurrency: usize,
    pub agents: usize,
    pub seed: u64,
}

/// What happened, and whether the audit passed.
#[derive(Debug, Serialize)]
pub struct ChaosReport {
    pub kills: BTreeMap<Role, usize>,
    /// Roles that exited by themselves and were restarted.
    pub self_exits: BTreeMap<Role, usize>,
    pub deposits_acknowledged: usize,
    pub payments_acknowledged: usize,
    /// Operations refused (a definitive 4xx): none expected.
    pub refused: BTreeMap<String, usize>,
    /// Attempts that failed and were retried with the same key.
    pub retries: u64,
    pub elapsed_s: f64,
    pub audit: Audit,
    /// Agents whose balance is not initial + acknowledged deposits ± payments.
    pub balance_mismatches: Vec<(String, String, String)>,
    /// Deposit transactions in the read model vs acknowledged.
    pub deposits_recorded: i64,
    /// Payment rows in the read model vs acknowledged.
    pub payments_recorded: i64,
    /// Events in the read model and on the public topic (the publisher's
    /// work: every one must be there).
    pub events_recorded: usize,
    pub events_unpublished: usize,
}

impl ChaosReport {
    pub fn passed(&self) -> bool {
        self.audit.passed()
            && self.balance_mismatches.is_empty()
            && self.refused.is_empty()
            && self.deposits_recorded == self.deposits_acknowledged as i64
            && self.payments_recorded == self.payments_acknowledged as i64
            && self.events_unpublished == 0
    }

    pub fn print(&self) {
        let kills: usize = self.kills.values().sum();
        println!(
            "chaos: {kills} kills {:?}, self-exits {:?}, {:.0} s",
            self.kills, self.self_exits, self.elapsed_s
        );
        println!(
            "  acknowledged: {} deposits (recorded {}), {} payments (recorded {}); refused {:?}; {} retries",
            self.deposits_acknowledged,
            self.deposits_recorded,
            self.payments_acknowledged,
            self.payments_recorded,
            self.refused,
            self.retries
        );
        self.audit.print("chaos");
        println!(
            "  public topic: {} of {} events published",
            self.events_recorded - self.events_unpublished,
            self.events_recorded
        );
        println!(
            "  exact balances: {}",
            if self.balance_mismatches.is_empty() {
                "every agent = initial + acknowledged deposits ± acknowledged payments".to_string()
            } else {
                format!(
                    "{} differ: {:?}",
                    self.balance_mismatches.len(),
                    self.balance_mismatches
                )
            }
        );
        println!(
            "chaos result: {}",
            if self.passed() {
                "PASSED — 0 lost, 0 duplicated, ledger balanced"
            } else {
                "FAILED"
            }
        );
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("{0}")]
    Setup(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("postgres: {0}")]
    Db(#[from] sqlx::Error),
}

fn setup(msg: impl Into<String>) -> ChaosError {
    ChaosError::Setup(msg.into())
}

fn free_port() -> Result<u16, ChaosError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn pg_bin(name: &str) -> PathBuf {
    ["/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| name.into())
}

/// Postgres refuses to run as root; as root, run it as the unprivileged
/// `agentbank` user that `deploy/local/up` creates.
fn as_postgres_user(program: PathBuf) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "agentbank", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn log_file(dir: &Path, name: &str) -> Result<(Stdio, Stdio), ChaosError> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))?;
    Ok((f.try_clone()?.into(), f.into()))
}

/// The stack's processes and where they listen.
struct Stack {
    cfg: Config,
    pg_dir: PathBuf,
    pg_port: u16,
    broker_port: u16,
    http_port: u16,
    prefix: String,
    running: HashMap<Role, Child>,
}

impl Stack {
    fn database_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/agentbank", self.pg_port)
    }

    fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    fn new(cfg: Config) -> Result<Self, ChaosError> {
        let _ = std::fs::remove_dir_all(&cfg.dir);
        std::fs::create_dir_all(&cfg.dir)?;
        let pg_port = free_port()?;
        // The unprivileged postgres user may not reach the run dir (e.g.
        // under /root): keep its data where it can.
        let pg_dir = if is_root() {
            std::env::temp_dir().join(format!("agentbank-chaos-pg-{pg_port}"))
        } else {
            cfg.dir.join("pg")
        };
        let _ = std::fs::remove_dir_all(&pg_dir);
        std::fs::create_dir_all(pg_dir.join("sock"))?;
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "agentbank"])
                .arg(&pg_dir)
                .status()?
                .success();
            if !ok {
                return Err(setup(
                    "cannot hand the Postgres dir to user 'agentbank' (run deploy/local/up first)",
                ));
            }
        }
        let (out, err) = log_file(&cfg.dir, "initdb")?;
        let ok = as_postgres_user(pg_bin("initdb"))
            .arg("-D")
            .arg(pg_dir.join("data"))
            .args(["-U", "postgres", "--auth=trust", "--encoding=UTF8"])
            .stdout(out)
            .stderr(err)
            .status()?
            .success();
        if !ok {
            return Err(setup(format!("initdb failed: see {}", cfg.dir.display())));
        }
        Ok(Stack {
            prefix: format!("chaos{}.", std::process::id()),
            pg_dir,
            pg_port,
            broker_port: free_port()?,
            http_port: free_port()?,
            cfg,
            running: HashMap::new(),
        })
    }

    fn spawn(&self, role: Role) -> Result<Child, ChaosError> {
        let (out, err) = log_file(&self.cfg.dir, role.name())?;
        let mut c = match role {
            Role::Postgres => {
                let mut c = as_postgres_user(pg_bin("postgres"));
                c.arg("-D")
                    .arg(self.pg_dir.join("data"))
                    .args(["-p", &self.pg_port.to_string(), "-k"])
                    .arg(self.pg_dir.join("sock"))
                    .args(["-c", "listen_addresses=127.0.0.1"]);
                c
            }
            Role::Broker => {
                let mut c = Command::new(BROKER_SCRIPT);
                c.arg(self.cfg.dir.join("broker"))
                    .arg(self.broker_port.to_string());
                c
            }
            Role::Processor | Role::Sink | Role::Publisher | Role::Gateway | Role::Dispatcher => {
                self.agentbank(role.name())
            }
        };
        c.stdin(Stdio::null()).stdout(out).stderr(err);
        c.spawn()
            .map_err(|e| setup(format!("starting {}: {e}", role.name())))
    }

    fn agentbank(&self, subcommand: &str) -> Command {
        let mut c = Command::new(&self.cfg.agentbank_bin);
        c.arg(subcommand)
            .env(
                "KAFKA_BOOTSTRAP_SERVERS",
                format!("127.0.0.1:{}", self.broker_port),
            )
            .env("DATABASE_URL", self.database_url())
            .env("AGENTBANK_TOPIC_PREFIX", &self.prefix)
            .env(
                "AGENTBANK_HTTP_ADDR",
                format!("127.0.0.1:{}", self.http_port),
            )
            .env("AGENTBANK_PARTITIONS", "4")
            .env("AGENTBANK_REPLY_TIMEOUT_MS", "3000")
            .env("AGENTBANK_RATE_LIMIT_PER_MINUTE", "1000000000")
            .env("AGENTBANK_RATE_LIMIT_PER_DAY", "1000000000")
            // Tenants fund their agents' balances in one test funding.
            .env("AGENTBANK_WALLET_TEST_FUNDING_MAX", "1000000000000")
            .env("RUST_LOG", "info,rdkafka=warn,sqlx=warn,librdkafka=error");
        c
    }

    /// Starts `role` and waits until it listens (broker, Postgres).
    async fn start(&mut self, role: Role) -> Result<(), ChaosError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut child = self.spawn(role)?;
            let port = match role {
                Role::Postgres => Some(self.pg_port),
                Role::Broker => Some(self.broker_port),
                _ => None,
            };
            let Some(port) = port else {
                self.running.insert(role, child);
                return Ok(());
            };
            while !port_open(port) && child.try_wait()?.is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if port_open(port) {
                self.running.insert(role, child);
                return Ok(());
            }
            // Postgres refuses to start while the killed postmaster's
            // backends still hold its shared memory: try again shortly.
            let _ = child.kill();
            let _ = child.wait();
            if Instant::now() > deadline {
                return Err(setup(format!("{} did not start", role.name())));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// SIGKILL: the process gets no chance to flush or say goodbye.
    fn kill(&mut self, role: Role) {
        if role == Role::Postgres {
            // The child may be `runuser`; the postmaster's pid is in its file.
            let pid_file = self.pg_dir.join("data/postmaster.pid");
            if let Some(pid) = std::fs::read_to_string(pid_file)
                .ok()
                .and_then(|s| s.lines().next().map(str::to_owned))
            {
                let _ = Command::new("kill").args(["-9", &pid]).status();
            }
        }
        if let Some(mut child) = self.running.remove(&role) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts roles that exited by themselves; returns which did.
    async fn revive(&mut self) -> Result<Vec<Role>, ChaosError> {
        let mut exited = vec![];
        for (role, child) in self.running.iter_mut() {
            if child.try_wait()?.is_some() {
                exited.push(*role);
            }
        }
        for role in &exited {
            self.running.remove(role);
            self.start(*role).await?;
        }
        Ok(exited)
    }

    fn run_once(&self, subcommand: &str) -> Result<(), ChaosError> {
        let (out, err) = log_file(&self.cfg.dir, subcommand)?;
        let ok = self
            .agentbank(subcommand)
            .stdout(out)
            .stderr(err)
            .status()?
            .success();
        if ok {
            Ok(())
        } else {
            Err(setup(format!("agentbank {subcommand} failed")))
        }
    }

    async fn wait_healthy(&self, http: &reqwest::Client) -> Result<(), ChaosError> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ok = http
                .get(format!("{}/health", self.http()))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(setup("the gateway did not become healthy"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Application roles first, the broker and Postgres last (ALL's order).
        for role in Role::ALL {
            self.kill(role);
        }
        let _ = std::fs::remove_dir_all(&self.pg_dir);
    }
}

/// What the load saw: acknowledged operations and the expected balances.
#[derive(Default)]
struct Ledger {
    deposits: usize,
    payments: Vec<uuid::Uuid>,
    /// agent → initial + deposits − sent + received.
    expected: HashMap<String, Decimal>,
    refused: BTreeMap<String, usize>,
}

/// How long one operation keeps retrying before the run gives up on it.
const OPERATION_DEADLINE: Duration = Duration::from_secs(180);

/// Sends operation `i` (even: deposit, odd: payment to the next agent)
/// with key `chaos-<i>` until a definitive answer.
async fn operate(
    api: &Api,
    t: &Tenant,
    i: usize,
    ledger: &Mutex<Ledger>,
    retries: &AtomicU64,
) -> Result<(), ChaosError> {
    let n = t.agents.len();
    let (from, to) = (&t.agents[(i / 2) % n], &t.agents[(i / 2 + 1) % n]);
    // Deterministic, varied amounts with all six decimals in use.
    let amount = Decimal::new(((i as i64 * 7_919) % 999_999) + 1, 6);
    let key = format!("chaos-{i}");
    let deposit = i.is_multiple_of(2);
    let started = Instant::now();
    loop {
        let answer = if deposit {
            api.deposit(t, from, &amount.to_string(), Some(&key)).await
        } else {
            api.pay(t, from, to, &amount.to_string(), Some(&key)).await
        };
        match answer {
            Ok((200, body)) => {
                let mut l = ledger.lock().unwrap();
                if deposit {
                    l.deposits += 1;
                    *l.expected.get_mut(from).unwrap() += amount;
                } else {
                    let id = payment_id(&body)
                        .ok_or_else(|| setup(format!("payment answer without an id: {body}")))?;
                    l.payments.push(id);
                    *l.expected.get_mut(from).unwrap() -= amount;
                    *l.expected.get_mut(to).unwrap() += amount;
                }
                return Ok(());
            }
            Ok((status, body)) if (400..500).contains(&status) && ![408, 429].contains(&status) => {
                let kind = format!("{status} {}", body["error"].as_str().unwrap_or_default());
                *ledger.lock().unwrap().refused.entry(kind).or_default() += 1;
                return Ok(());
            }
            // 5xx, 408, 429 or no answer at all: the same key again.
            _ => {}
        }
        retries.fetch_add(1, Ordering::Relaxed);
        if started.elapsed() > OPERATION_DEADLINE {
            return Err(setup(format!("operation {i} never got an answer")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The roles to kill, in order: every role once (shuffled) before any twice.
pub fn kill_plan(roles: &[Role], kills: usize, rng: &mut impl Rng) -> Vec<Role> {
    let mut plan = Vec::with_capacity(kills);
    while plan.len() < kills && !roles.is_empty() {
        let mut round = roles.to_vec();
        round.shuffle(rng);
        plan.extend(round.into_iter().take(kills - plan.len()));
    }
    plan
}

fn between(rng: &mut impl Rng, (lo, hi): (Duration, Duration)) -> Duration {
    if hi <= lo {
        lo
    } else {
        rng.gen_range(lo..hi)
    }
}

/// Runs the scenario: stack up, tenant and agents, load while killing, load
/// drained, every role up, audit.
pub async fn run(cfg: Config) -> Result<ChaosReport, ChaosError> {
    let begin = Instant::now();
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let plan = kill_plan(&cfg.roles, cfg.kills, &mut rng);
    let mut stack = Stack::new(cfg.clone())?;
    stack.start(Role::Postgres).await?;
    stack.start(Role::Broker).await?;
    {
        let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", stack.pg_port);
        let pool = PgPool::connect(&admin).await?;
        sqlx::query("CREATE DATABASE agentbank")
            .execute(&pool)
            .await?;
    }
    stack.run_once("topics")?;
    stack.run_once("migrate")?;
    for role in [
        Role::Processor,
        Role::Sink,
        Role::Publisher,
        Role::Gateway,
        Role::Dispatcher,
    ] {
        stack.start(role).await?;
    }
    let api = Api::new(&stack.http());
    stack.wait_healthy(&api.http).await?;
    let initial = Decimal::from(1_000);
    let tenant = Arc::new(
        api.tenant(cfg.agents, 0, &initial.to_string())
            .await
            .map_err(|e| setup(format!("tenant set-up: {e:#}")))?,
    );
    let ledger = Arc::new(Mutex::new(Ledger {
        expected: tenant.agents.iter().map(|a| (a.clone(), initial)).collect(),
        ..Ledger::default()
    }));
    let retries = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..cfg.concurrency {
        let (api, t, ledger, retries, stop, next) = (
            api.clone(),
            tenant.clone(),
            ledger.clone(),
            retries.clone(),
            stop.clone(),
            next.clone(),
        );
        load.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                operate(&api, &t, i, &ledger, &retries).await?;
            }
            Ok::<_, ChaosError>(())
        });
    }
    let mut kills = BTreeMap::new();
    let mut self_exits = BTreeMap::new();
    for role in plan {
        let wait = between(&mut rng, cfg.interval);
        let until = Instant::now() + wait;
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
            for r in stack.revive().await? {
                *self_exits.entry(r).or_insert(0) += 1;
            }
        }
        eprintln!(
            "[{:>4.0}s] kill -9 {} ({} ops acknowledged so far)",
            begin.elapsed().as_secs_f64(),
            role.name(),
            {
                let l = ledger.lock().unwrap();
                l.deposits + l.payments.len()
            }
        );
        stack.kill(role);
        *kills.entry(role).or_insert(0) += 1;
        tokio::time::sleep(between(&mut rng, cfg.downtime)).await;
        stack.start(role).await?;
    }
    // Keep the load on a little after the last restart, then drain it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    while let Some(done) = load.join_next().await {
        done.map_err(|e| setup(format!("load task: {e}")))??;
        for r in stack.revive().await? {
            *self_exits.entry(r).or_insert(0) += 1;
        }
    }
    stack.wait_healthy(&api.http).await?;
    let pool = PgPool::connect(&stack.database_url()).await?;
    let ledger = Arc::try_unwrap(ledger)
        .map_err(|_| setup("load still running"))?
        .into_inner()
        .unwrap();
    let (balance_mismatches, deposits_recorded, payments_recorded) =
        settle_and_compare(&pool, &ledger).await?;
    let audit = crate::audit::run(&pool, &ledger.payments).await?;
    let events: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM events")
        .fetch_all(&pool)
        .await?;
    let bootstrap = format!("127.0.0.1:{}", stack.broker_port);
    let topic = format!("{}agentbank.events", stack.prefix);
    let events_recorded = events.len();
    let events_unpublished =
        tokio::task::spawn_blocking(move || unpublished(&bootstrap, &topic, events))
            .await
            .map_err(|e| setup(format!("public topic check: {e}")))??;
    Ok(ChaosReport {
        kills,
        self_exits,
        deposits_acknowledged: ledger.deposits,
        payments_acknowledged: ledger.payments.len(),
        refused: ledger.refused,
        retries: retries.load(Ordering::Relaxed),
        elapsed_s: begin.elapsed().as_secs_f64(),
        audit,
        balance_mismatches,
        deposits_recorded,
        payments_recorded,
        events_recorded,
        events_unpublished,
    })
}

/// How many of `events` (by id) the public topic lacks once the publisher
/// has had a minute to catch up.
fn unpublished(bootstrap: &str, topic: &str, events: Vec<uuid::Uuid>) -> Result<usize, ChaosError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let kafka = |e: rdkafka::error::KafkaError| setup(format!("public topic: {e}"));
    let mut missing: std::collections::HashSet<uuid::Uuid> = events.into_iter().collect();
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "chaos-audit")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(kafka)?;
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(kafka)?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in md.topics().iter().flat_map(|t| t.partitions()) {
        tpl.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)
            .map_err(kafka)?;
    }
    consumer.assign(&tpl).map_err(kafka)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !missing.is_empty() && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            if let Ok(e) = schemas::Event::decode(m.payload().unwrap_or_default()) {
                missing.remove(&e.id);
            }
        }
    }
    Ok(missing.len())
}

/// Waits (bounded) for the read model to reach the acknowledged state, then
/// compares balances and counts.
async fn settle_and_compare(
    pool: &PgPool,
    ledger: &Ledger,
) -> Result<(Vec<(String, String, String)>, i64, i64), ChaosError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows: Vec<(uuid::Uuid, Decimal)> = sqlx::query_as("SELECT id, balance FROM agents")
            .fetch_all(pool)
            .await?;
        let actual: HashMap<String, Decimal> = rows
            .into_iter()
            .map(|(id, b)| (schemas::ids::short(schemas::ids::Kind::Agent, id), b))
            .collect();
        let mismatches: Vec<_> = ledger
            .expected
            .iter()
            .filter(|(agent, want)| actual.get(*agent) != Some(want))
            .map(|(agent, want)| {
                let got = actual
                    .get(agent)
                    .map_or("missing".into(), |b| b.to_string());
                (agent.clone(), want.to_string(), got)
            })
            .collect();
        let deposits: i64 =
            sqlx::query_scalar("SELECT count(*) FROM transactions WHERE kind = 'deposit'")
                .fetch_one(pool)
                .await?;
        let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
            .fetch_one(pool)
            .await?;
        let converged = mismatches.is_empty()
            && deposits == ledger.deposits as i64
            && payments == ledger.payments.len() as i64;
        if converged || Instant::now() > deadline {
            return Ok((mismatches, deposits, payments));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_is_killed_before_any_is_killed_twice() {
        let mut rng = StdRng::seed_from_u64(7);
        let plan = kill_plan(&Role::ALL, 12, &mut rng);
        assert_eq!(plan.len(), 12);
        let mut first: Vec<_> = plan[..Role::ALL.len()].to_vec();
        first.sort();
        assert_eq!(first, Role::ALL.to_vec());
        assert!(kill_plan(&[], 3, &mut rng).is_empty());
    }
}

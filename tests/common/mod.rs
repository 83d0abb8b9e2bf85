//! Test harness: runs real `agentbank` processes against the broker and
//! Postgres that `deploy/local/up` started, each test isolated by its own
//! topic prefix, consumer group, database and HTTP port.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn admin_database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/agentbank".into())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One isolated deployment: prefix, database, HTTP address, child processes.
pub struct Deployment {
    pub name: String,
    pub database_url: String,
    pub http: String,
    pub bootstrap: String,
    children: std::sync::Mutex<Vec<(String, Child)>>,
    /// Extra environment for every process (e.g. the chain's settings).
    env: std::sync::Mutex<Vec<(String, String)>>,
    pub client: reqwest::Client,
}

impl Deployment {
    /// Creates a fresh database and topic prefix for `name`.
    pub async fn new(name: &str) -> Self {
        Self::with_bootstrap(name, bootstrap()).await
    }

    pub async fn with_bootstrap(name: &str, bootstrap: String) -> Self {
        let unique = format!(
            "{name}_{}",
            uuid::Uuid::new_v4().simple().to_string().get(..8).unwrap()
        );
        let admin = admin_database_url();
        let pool = sqlx::PgPool::connect(&admin)
            .await
            .expect("postgres up (run deploy/local/up)");
        sqlx::query(&format!("CREATE DATABASE {unique}"))
            .execute(&pool)
            .await
            .unwrap();
        let base = admin.rsplit_once('/').unwrap().0;
        Deployment {
            name: unique.clone(),
            database_url: format!("{base}/{unique}"),
            http: format!("127.0.0.1:{}", free_port()),
            bootstrap,
            children: std::sync::Mutex::new(vec![]),
            env: std::sync::Mutex::new(vec![]),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_agentbank"));
        c.args(args)
            .env("KAFKA_BOOTSTRAP_SERVERS", &self.bootstrap)
            .env("DATABASE_URL", &self.database_url)
            .env("AGENTBANK_TOPIC_PREFIX", format!("{}.", self.name))
            .env("AGENTBANK_HTTP_ADDR", &self.http)
            .env("AGENTBANK_PARTITIONS", PARTITIONS.to_string())
            .env("AGENTBANK_REPLY_TIMEOUT_MS", "3000")
            // Tests push thousands of requests through one key; the rate-limit
            // test sets its own small budget.
            .env("AGENTBANK_RATE_LIMIT_PER_MINUTE", "1000000")
            .env("AGENTBANK_RATE_LIMIT_PER_DAY", "100000000")
            .env("RUST_LOG", "info,rdkafka=warn,sqlx=warn,librdkafka=error")
            .envs(self.env.lock().unwrap().clone())
            .stdin(Stdio::null());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(format!("{}/{}-{}.log", log_dir(), self.name, args[0]))
            .unwrap();
        c.stdout(log.try_clone().unwrap()).stderr(log);
        c
    }

    /// Runs a one-shot subcommand (`topics`, `migrate`) to completion.
    pub fn run(&self, args: &[&str]) {
        let status = self.command(args).status().unwrap();
        assert!(status.success(), "agentbank {args:?} failed");
    }

    /// Starts a long-running role; `role` names it for `kill`.
    pub fn start(&self, role: &str, args: &[&str]) {
        let child = self.command(args).spawn().unwrap();
        self.children
            .lock()
            .unwrap()
            .push((role.to_string(), child));
    }

    /// Starts a long-running role with extra environment.
    pub fn start_with_env(&self, role: &str, args: &[&str], env: &[(&str, &str)]) {
        let mut c = self.command(args);
        c.envs(env.iter().copied());
        let child = c.spawn().unwrap();
        self.children
            .lock()
            .unwrap()
            .push((role.to_string(), child));
    }

    /// SIGTERM every process of `role` and waits for it to exit (graceful).
    pub fn terminate(&self, role: &str) {
        let mut children = self.children.lock().unwrap();
        for (r, child) in children.iter_mut() {
            if r == role {
                let _ = Command::new("kill").arg(child.id().to_string()).status();
                let _ = child.wait();
            }
        }
        children.retain(|(r, _)| r != role);
    }

    /// `kill -9` every process of `role`.
    pub fn kill(&self, role: &str) {
        let mut children = self.children.lock().unwrap();
        for (r, child) in children.iter_mut() {
            if r == role {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        children.retain(|(r, _)| r != role);
    }

    /// Sets extra environment for processes started from now on.
    pub fn set_env(&self, vars: &[(&str, &str)]) {
        let mut env = self.env.lock().unwrap();
        for (k, v) in vars {
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v.to_string()));
        }
    }

    /// Whether the last process started as `role` has exited (e.g. aborted).
    pub fn exited(&self, role: &str) -> bool {
        let mut children = self.children.lock().unwrap();
        children
            .iter_mut()
            .rev()
            .find(|(r, _)| r == role)
            .is_some_and(|(_, c)| c.try_wait().unwrap().is_some())
    }

    /// Topics + migrations, then every role in one `dev` process.
    pub async fn start_dev(&self) {
        self.start("dev", &["dev"]);
        self.wait_healthy().await;
    }

    /// Topics + migrations, then each role as its own process.
    pub async fn start_split(&self) {
        self.run(&["topics"]);
        self.run(&["migrate"]);
        self.start("processor", &["processor"]);
        self.start("sink", &["sink"]);
        self.start("publisher", &["publisher"]);
        self.start("gateway", &["gateway"]);
        self.wait_healthy().await;
    }

    pub async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.client.get(self.url("/health")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "gateway did not become healthy");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.database_url).await.unwrap()
    }

    pub async fn post(&self, path: &str, key: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.client.post(self.url(path)).json(&body);
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// POSTs `body` with an `Idempotency-Key`, as a retrying client does.
    pub async fn post_keyed(
        &self,
        path: &str,
        key: &str,
        idempotency_key: &str,
        body: Value,
    ) -> (u16, Value) {
        let r = self
            .client
            .post(self.url(path))
            .header("x-api-key", key)
            .header("Idempotency-Key", idempotency_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, key: &str) -> (u16, Value) {
        let r = self
            .client
            .get(self.url(path))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Any request, with headers: the status, the response headers and the
    /// JSON body (`Null` when none).
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self.client.request(method, self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let (status, h) = (r.status().as_u16(), r.headers().clone());
        (status, h, r.json().await.unwrap_or(Value::Null))
    }

    /// Signs up a user and funds its wallet with [`TEST_FUNDING`] (agents
    /// are funded from it); returns (user id, api key).
    pub async fn sign_up(&self, name: &str) -> (String, String) {
        let (user, key) = self.sign_up_unfunded(name).await;
        self.fund_wallet(&key, TEST_FUNDING).await;
        (user, key)
    }

    /// Adds `amount` to the caller's wallet by the test-funding route.
    pub async fn fund_wallet(&self, key: &str, amount: &str) {
        let (status, body) = self
            .post("/user/wallet/fund", Some(key), json!({"amount": amount}))
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// Signs up a user whose wallet holds only the sign-up bonus.
    pub async fn sign_up_unfunded(&self, name: &str) -> (String, String) {
        let email = format!("{name}-{}@example.com", uuid::Uuid::new_v4().simple());
        let (status, body) = self
            .post(
                "/users",
                None,
                json!({"name": name, "email": email, "password": "hunter2hunter2"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["id"].as_str().unwrap().into(),
            body["apikey"].as_str().unwrap().into(),
        )
    }

    /// Creates an agent; returns its id.
    pub async fn create_agent(&self, user: &str, key: &str, extra: Value) -> String {
        let mut body = json!({"userid": user, "name": "Payment Assistant"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, body) = self.post("/agents/create", Some(key), body).await;
        assert_eq!(status, 200, "{body}");
        body["id"].as_str().unwrap().into()
    }
}

impl Deployment {
    /// The deployment's topic names.
    pub fn topics(&self) -> schemas::topics::Topics {
        schemas::topics::Topics::with_prefix(&format!("{}.", self.name))
    }

    /// Injects an interest tick at `through_ms` on every partition, as the
    /// scheduler would: time enters the pipeline as data, tests never sleep.
    pub async fn tick(&self, through_ms: i64) {
        let kafka = connectors::kafka::KafkaConfig {
            bootstrap_servers: self.bootstrap.clone(),
            partitions: PARTITIONS,
            replication_factor: 1,
            fetch_wait_ms: connectors::kafka::DEFAULT_FETCH_WAIT_MS,
        };
        let producer = kafka.producer().unwrap();
        processors::scheduler::tick_all(
            &kafka,
            &producer,
            &self.topics(),
            processors::scheduler::Tick::Interest,
            through_ms,
        )
        .await
        .unwrap();
    }
}

/// What [`Deployment::sign_up`] puts in a new user's wallet besides the bonus.
pub const TEST_FUNDING: &str = "10000";

/// Polls `check` until it gives `Some`, or fails naming `what` after 90 s.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A random 0x-address nobody holds a key for.
pub fn random_address() -> String {
    format!(
        "0x{}00000000",
        &uuid::Uuid::new_v4().simple().to_string()[..32]
    )
}

/// Now, in ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for (_, child) in self.children.get_mut().unwrap().iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until `role`'s log holds `count` lines containing `needle`.
pub async fn wait_for_log(d: &Deployment, role: &str, needle: &str, count: usize) {
    let path = format!("{}/{}-{role}.log", log_dir(), d.name);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .matches(needle)
            .count();
        if seen >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{role} never logged {count}× '{needle}'"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn log_dir() -> String {
    let dir = std::env::var("AGENTBANK_TEST_LOG_DIR")
        .unwrap_or_else(|_| format!("{}/.run/test-logs", env!("CARGO_MANIFEST_DIR")));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Deposits acknowledged per agent, from [`deposit_load`].
pub type Acked = std::collections::HashMap<String, rust_decimal::Decimal>;

/// Sends `count` deposits over `agents` with `concurrency` in flight. Each has
/// its own Idempotency-Key and is retried with the same key until a 200 (or
/// the deadline): after a crash, a retry must apply at most once. Also returns
/// how many requests were disturbed — retried (503s, connection errors) or
/// held up for longer than [`DISTURBED_AFTER`] waiting across a restart:
/// proof that a crash test's crashes hit in-flight work.
pub const DISTURBED_AFTER: Duration = Duration::from_millis(700);

pub async fn deposit_load(
    d: &Deployment,
    user: &str,
    key: &str,
    agents: &[String],
    count: usize,
    concurrency: usize,
) -> (Acked, usize) {
    use futures::StreamExt;
    let retries = std::sync::atomic::AtomicUsize::new(0);
    let retries = &retries;
    use rust_decimal::Decimal;
    let results = futures::stream::iter(0..count)
        .map(|i| {
            let agent = agents[i % agents.len()].clone();
            // Deterministic, varied amounts with all six decimals in use.
            let amount = Decimal::new(((i as i64 * 7_919) % 9_999_999) + 1, 6);
            let idem = format!("load-{i}");
            async move {
                let started = Instant::now();
                let deadline = started + Duration::from_secs(180);
                loop {
                    let r = d
                        .client
                        .post(d.url("/agents/deposit"))
                        .header("x-api-key", key)
                        .header("Idempotency-Key", &idem)
                        .json(&json!({"userid": user, "agentid": agent, "amount": amount.to_string()}))
                        .send()
                        .await;
                    if let Ok(r) = r {
                        if r.status() == 200 {
                            if started.elapsed() > DISTURBED_AFTER {
                                retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            return (agent, amount);
                        }
                        assert!(
                            r.status() == 503 || r.status() == 502,
                            "unexpected status {} for deposit {i}",
                            r.status()
                        );
                    }
                    retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    assert!(Instant::now() < deadline, "deposit {i} never acknowledged");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    let mut acked = Acked::new();
    for (agent, amount) in results {
        *acked.entry(agent).or_default() += amount;
    }
    (acked, retries.load(std::sync::atomic::Ordering::Relaxed))
}

/// The audit: every acknowledged deposit is in the ledger exactly once, the
/// journal balances, and each agent's balance (API and journal) equals what
/// was acknowledged plus its initial balance.
pub async fn audit(
    d: &Deployment,
    key: &str,
    acked: &Acked,
    deposits: usize,
    initial: rust_decimal::Decimal,
) {
    use rust_decimal::Decimal;
    let pool = d.pool().await;
    // The sink may still be catching up after the last crash: wait for it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM transactions WHERE kind = 'deposit'")
            .fetch_one(&pool)
            .await
            .unwrap();
        if n as usize >= deposits || Instant::now() > deadline {
            assert_eq!(
                n as usize, deposits,
                "deposits in the read model vs acknowledged"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let total: Decimal =
        sqlx::query_scalar("SELECT coalesce(sum(amount), 0) FROM journal_postings")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(total.is_zero(), "journal does not balance: {total}");
    let entries: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT entry_id) FROM journal_postings WHERE entry_id LIKE '%:deposit'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        entries as usize, deposits,
        "journal entries vs acknowledged deposits"
    );
    for (agent, sum) in acked {
        let (status, body) = d.get(&format!("/agentsWith/{agent}"), key).await;
        assert_eq!(status, 200);
        let balance: Decimal = body["balance"].as_str().unwrap().parse().unwrap();
        assert_eq!(balance, *sum + initial, "agent {agent}");
    }
}

/// A private local chain for one test: Anvil on its own port (a block every
/// 250 ms), the test USDC deployed with solc-js by `deploy/local/chain/deploy.js`.
/// Tests reach it through [`RpcProxy`] when they need to cut it off.
pub struct LocalChain {
    pub port: u16,
    pub token: String,
    child: std::sync::Mutex<Option<Child>>,
    pub client: connectors::chain::Chain,
}

pub fn chain_dir() -> String {
    format!("{}/deploy/local/chain", env!("CARGO_MANIFEST_DIR"))
}

impl LocalChain {
    pub async fn start() -> Self {
        let port = free_port();
        let child = Self::spawn_anvil(port).await;
        let token = Self::deploy(port);
        let config = connectors::chain::ChainConfig::local(
            &format!("http://127.0.0.1:{port}"),
            token.parse().unwrap(),
            1,
        );
        LocalChain {
            port,
            token,
            child: std::sync::Mutex::new(Some(child)),
            client: connectors::chain::Chain::new(config).unwrap(),
        }
    }

    async fn spawn_anvil(port: u16) -> Child {
        let bin = format!(
            "{}/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil",
            chain_dir()
        );
        let log = std::fs::File::create(format!("{}/anvil-{port}.log", log_dir())).unwrap();
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--chain-id", "31337", "--block-time", "0.25", "--silent"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("anvil installed (run deploy/local/up)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "anvil did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        child
    }

    /// Compiles and deploys the test USDC from Anvil's first account.
    fn deploy(port: u16) -> String {
        let out = format!(
            "{}/usdc-{port}-{}.address",
            log_dir(),
            uuid::Uuid::new_v4().simple()
        );
        let output = Command::new("node")
            .arg(format!("{}/deploy.js", chain_dir()))
            .arg(format!("http://127.0.0.1:{port}"))
            .arg(&out)
            .arg("1000000000000000")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "deploy.js: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    /// A fresh chain on the same port: a new genesis, nothing of the old
    /// state; the token is deployed again (same deployer nonce: same address).
    pub async fn reset(&self) {
        self.kill();
        let child = Self::spawn_anvil(self.port).await;
        *self.child.lock().unwrap() = Some(child);
        assert_eq!(Self::deploy(self.port), self.token);
    }

    pub fn kill(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Environment for agentbank processes settling on this chain via `rpc_url`.
    pub fn env(&self, rpc_url: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AGENTBANK_CHAIN_RPC_URL", rpc_url.to_string()),
            ("AGENTBANK_CHAIN_ID", "31337".into()),
            ("AGENTBANK_USDC_ADDRESS", self.token.clone()),
            ("AGENTBANK_CHAIN_CONFIRMATIONS", "2".into()),
            ("AGENTBANK_CHAIN_POLL_MS", "100".into()),
        ]
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn usdc(&self, address: &str) -> rust_decimal::Decimal {
        let units = self
            .client
            .token_balance(address.parse().unwrap())
            .await
            .unwrap();
        connectors::chain::plan::from_units(units, 6).unwrap()
    }

    pub async fn eth(&self, address: &str) -> rust_decimal::Decimal {
        let units = self
            .client
            .native_balance(address.parse().unwrap())
            .await
            .unwrap();
        connectors::chain::plan::from_units(units, 18).unwrap()
    }

    pub async fn nonce(&self, address: &str) -> u64 {
        self.client
            .mined_nonce(address.parse().unwrap())
            .await
            .unwrap()
    }

    /// Raw JSON-RPC, for what the client does not wrap.
    pub async fn rpc(&self, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let r: Value = reqwest::Client::new()
            .post(self.url())
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["result"].clone()
    }
}

impl Drop for LocalChain {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP relay to the chain's RPC port that a test can cut (connections
/// refused and dropped) and restore: an unreachable RPC endpoint, on demand.
pub struct RpcProxy {
    pub port: u16,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl RpcProxy {
    pub async fn start(target: u16) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let gate = open.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !gate.load(Ordering::SeqCst) {
                    drop(inbound); // cut: refuse by closing at once
                    continue;
                }
                let gate = gate.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    let watch = async {
                        while gate.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! { _ = copy => {}, _ = watch => {} }
                });
            }
        });
        RpcProxy { port, open }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// One record of a topic, as read back for a replay.
/// Partitions of every topic the harness creates (more than one, so sagas
/// cross partitions as well as run within one).
pub const PARTITIONS: i32 = 4;

pub struct Record {
    pub key: Option<Vec<u8>>,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub payload: Vec<u8>,
}

/// Every record of `topic`, partition by partition, from offset 0.
pub fn read_topic(bootstrap: &str, topic: &str) -> Vec<Record> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "replay")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions = md.topics()[0].partitions().len() as i32;
    let mut out = vec![];
    for p in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
        consumer.assign(&tpl).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut next = 0;
        while next < high {
            assert!(
                Instant::now() < deadline,
                "partition {p} not read to {high}"
            );
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                next = m.offset() + 1;
                out.push(Record {
                    key: m.key().map(<[u8]>::to_vec),
                    partition: p,
                    offset: m.offset(),
                    timestamp_ms: m.timestamp().to_millis(),
                    payload: m.payload().unwrap_or_default().to_vec(),
                });
            }
        }
    }
    out
}

/// What a replay gives: every key's final state, and every event, in order.
pub type Replayed<S> = (
    std::collections::HashMap<uuid::Uuid, Option<S>>,
    Vec<schemas::Event>,
);

/// Applies `records` (a machine's whole commands topic, named `topic`: ids
/// and random draws derive from it; [`PARTITIONS`] partitions: saga steps
/// within one are applied in place) to empty state with the runtime's own
/// planner.
pub fn replay<M: processors::runtime::machine::Machine>(
    machine: &M,
    topic: &str,
    records: &[Record],
) -> Replayed<M::State> {
    use processors::runtime::checkpoint::Epoch;
    use processors::runtime::plan::{plan, Input, Shard, Topic};
    let epoch = Epoch {
        number: 0,
        nonce: 0,
    };
    let mut shards = std::collections::BTreeMap::new();
    for r in records {
        shards
            .entry(r.partition)
            .or_insert_with(|| Shard::new(epoch, 0, std::collections::HashMap::new()));
    }
    let inputs = records.iter().map(|r| Input {
        partition: r.partition,
        offset: r.offset,
        record_ms: r.timestamp_ms,
        payload: &r.payload,
    });
    let topic = Topic {
        name: topic,
        partitions: PARTITIONS,
    };
    let planned = plan(machine, topic, &mut shards, inputs);
    let events = planned
        .outputs
        .into_iter()
        .filter_map(|o| match o {
            processors::runtime::plan::Output::Event(e) => Some(e),
            _ => None,
        })
        .collect();
    let states = shards
        .into_values()
        .flat_map(|s| s.states.into_iter().map(|(k, (state, _))| (k, state)))
        .collect();
    (states, events)
}

/// A webhook receiver on a free local port: its URL and what it got (each
/// body as JSON), answering 200.
pub async fn hook_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    let got: std::sync::Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let seen = seen.clone();
            async move {
                if let Ok(v) = serde_json::from_str(&body) {
                    seen.lock().unwrap().push(v);
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

/// A WebSocket session on `/v1/events`.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A session authenticated with `token` (an API key or an access token) and
/// subscribed to `channels`; panics unless both are acknowledged.
pub async fn ws_subscribed(d: &Deployment, token: &str, channels: &[&str]) -> Ws {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/events", d.http))
        .await
        .unwrap();
    for m in [
        json!({"type": "auth", "token": token}),
        json!({"type": "subscribe", "channels": channels}),
    ] {
        ws.send(Message::Text(m.to_string().into())).await.unwrap();
        // The answer is the next text message (pings may come first).
        let answer = loop {
            match ws.next().await {
                Some(Ok(Message::Text(answer))) => break answer,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("no answer to {m}: {other:?}"),
            }
        };
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert!(
            answer["type"] == "auth.ok" || answer["type"] == "subscribed",
            "{answer}"
        );
    }
    ws
}

/// One SSE frame: (event, id, data).
pub type Frame = (String, u64, Value);

/// Reads frames until `enough` holds for what was read (10 s at most).
pub async fn read_until(
    d: &Deployment,
    key: &str,
    last_event_id: Option<u64>,
    enough: impl Fn(&[Frame]) -> bool,
) -> Vec<Frame> {
    let mut req = d
        .client
        .get(d.url("/v1/metrics/stream"))
        .header("x-api-key", key);
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id.to_string());
    }
    let mut r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let (mut buf, mut frames) = (String::new(), vec![]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !enough(&frames) {
        assert!(Instant::now() < deadline, "not enough frames: {frames:?}");
        let chunk = tokio::time::timeout(Duration::from_secs(5), r.chunk())
            .await
            .unwrap()
            .unwrap()
            .expect("stream open");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}:")))
                    .map(|v| v.trim().to_string())
            };
            if let (Some(event), Some(id), Some(data)) =
                (field("event"), field("id"), field("data"))
            {
                frames.push((
                    event,
                    id.parse().unwrap(),
                    serde_json::from_str(&data).unwrap(),
                ));
            }
        }
    }
    frames
}

pub fn metric(frames: &[Frame], name: &str) -> Option<Value> {
    frames
        .iter()
        .rev()
        .find(|(e, _, d)| e == "metric" && d["name"] == name)
        .map(|(_, _, d)| d["value"].clone())
}

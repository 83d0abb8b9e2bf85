//! The workers role: the vertical agents' pools. Each configured vertical
//! (and `general`, for every other) runs `replicas` worker instances; each
//! instance is its own Kafka consumer of `agentbank.executions`, reading the
//! partitions `p % replicas == index` (static assignment, so scaling never
//! waits on a group rebalance), working the requests of its vertical and
//! completing each opportunity with a `CompleteOpportunity` command.
//!
//! Exactly once, by construction: an instance saves how far it read only
//! after the completions before that point were acknowledged, so a crash,
//! a restart or a scale change works a request at most once more; the
//! opportunities machine applies a completion once (a second one finds the
//! opportunity completed), so every execution completes exactly once.
//!
//! A supervisor reconciles, twice a second, what runs with what operators
//! asked for (`read_model::workers`: replicas, paused, restart generation)
//! and reports what runs — instances, tasks in hand, the process's CPU and
//! memory, the lag — to Postgres (for `GET /v1/agents`) and `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use schemas::revenue::workers::{partitions_of, ExecutionRequest, Verticals, EXECUTION_PARTITIONS};
use schemas::topics::Topics;

use crate::kafka::{produce_all, KafkaConfig, Outgoing};
use crate::read_model::workers::{self as model, Desired, StatusRow};
use crate::ConnectorError;

/// How often the supervisor reconciles and reports.
const TICK: Duration = Duration::from_millis(500);
/// How often an instance saves how far it read (and on stopping).
const SAVE_EVERY: Duration = Duration::from_millis(500);
/// An instance's `fetch.wait.max.ms`: it bounds how soon a worker sees an
/// execution, and it sets what an idle pool costs the broker (storage looks
/// at every partition it owns per wait). Executions are background work: a
/// second is soon enough, and at 250 ms the five idle pools took 17 % of a
/// core of the broker's one storage task (Tansu 0.6, load-tests/README.md).
const FETCH_WAIT_MS: u32 = 1_000;
/// Most requests an instance takes in one round (one produce round).
const BATCH_MAX: usize = 64;

#[derive(Clone)]
pub struct WorkersConfig {
    pub kafka: KafkaConfig,
    pub topics: Topics,
    pub verticals: Verticals,
    /// This process's name in the status table (host and pid).
    pub process: String,
}

/// This process's name in the status table: host and pid.
pub fn process_name() -> String {
    let host = sysinfo::System::host_name().unwrap_or_else(|| "localhost".into());
    format!("{host}-{}", std::process::id())
}

/// One pool's counters, shared by its instances and the supervisor.
#[derive(Default)]
struct PoolStats {
    in_hand: AtomicI64,
}

struct Instance {
    stop: watch::Sender<bool>,
    handle: JoinHandle<Result<(), ConnectorError>>,
}

/// What runs of one pool in this process.
struct Running {
    generation: i64,
    instances: Vec<Instance>,
    stats: Arc<PoolStats>,
}

/// Runs the pools until `shutdown`.
pub async fn run(
    config: WorkersConfig,
    pool: PgPool,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectorError> {
    let names = config.verticals.names().to_vec();
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    let mut usage = ProcessUsage::new();
    let mut lag = LagMeter::new(&config)?;
    let mut tick = tokio::time::interval(TICK);
    tracing::info!(pools = ?names, "vertical agents starting");
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        let desired = match model::desired(&pool, &names).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "reading the pools' desired state; retrying");
                continue;
            }
        };
        for d in &desired {
            reconcile(&config, &pool, &mut running, d).await;
        }
        let (cpu, memory) = usage.sample();
        let lags = lag.measure(&pool, &names).await;
        let rows: Vec<StatusRow> = desired
            .iter()
            .map(|d| {
                let r = running.get(&d.pool);
                let running_now = r.map_or(0, |r| r.instances.len() as i32);
                let in_hand = r.map_or(0, |r| r.stats.in_hand.load(Ordering::Relaxed));
                let lag = lags.get(&d.pool).copied().unwrap_or(0);
                metrics::gauge!("agentbank_vertical_workers", "pool" => d.pool.clone())
                    .set(running_now as f64);
                metrics::gauge!("agentbank_vertical_lag", "pool" => d.pool.clone()).set(lag as f64);
                metrics::gauge!("agentbank_vertical_tasks_in_hand", "pool" => d.pool.clone())
                    .set(in_hand as f64);
                StatusRow {
                    pool: d.pool.clone(),
                    process: config.process.clone(),
                    running: running_now,
                    generation: r.map_or(d.generation, |r| r.generation),
                    concurrent_tasks: in_hand as i32,
                    cpu_usage: cpu,
                    memory_usage: memory,
                    lag,
                }
            })
            .collect();
        if let Err(e) = model::report(&pool, &rows).await {
            tracing::warn!(error = %e, "reporting the pools' status");
        }
    }
    for (name, r) in std::mem::take(&mut running) {
        stop_all(&name, r.instances).await;
    }
    tracing::info!("vertical agents stopped");
    Ok(())
}

/// Makes what runs of `d.pool` match `d`: a changed generation (restart)
/// or replica count (scale, pause, resume) stops every instance — each
/// saves how far it read — and starts the wanted number with the new
/// assignment.
async fn reconcile(
    config: &WorkersConfig,
    pool: &PgPool,
    running: &mut BTreeMap<String, Running>,
    d: &Desired,
) {
    let wanted = if d.paused {
        0
    } else {
        d.replicas.clamp(1, EXECUTION_PARTITIONS)
    };
    let current = running.get(&d.pool);
    let finished = current.is_some_and(|r| r.instances.iter().any(|i| i.handle.is_finished()));
    if current.is_some_and(|r| {
        r.generation == d.generation && r.instances.len() as i32 == wanted && !finished
    }) {
        return;
    }
    let stats = match running.remove(&d.pool) {
        Some(r) => {
            stop_all(&d.pool, r.instances).await;
            r.stats
        }
        None => Arc::new(PoolStats::default()),
    };
    let instances = (0..wanted)
        .map(|index| {
            let (stop, stopped) = watch::channel(false);
            let work = Work {
                config: config.clone(),
                pool: pool.clone(),
                name: d.pool.clone(),
                index,
                replicas: wanted,
                stats: stats.clone(),
            };
            Instance {
                stop,
                handle: tokio::spawn(work.run(stopped)),
            }
        })
        .collect::<Vec<_>>();
    tracing::info!(pool = %d.pool, instances = wanted, generation = d.generation,
        paused = d.paused, "vertical agent reconciled");
    metrics::counter!("agentbank_vertical_reconciles_total", "pool" => d.pool.clone()).increment(1);
    running.insert(
        d.pool.clone(),
        Running {
            generation: d.generation,
            instances,
            stats,
        },
    );
}

async fn stop_all(name: &str, instances: Vec<Instance>) {
    for i in &instances {
        let _ = i.stop.send(true);
    }
    for i in instances {
        match i.handle.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(pool = name, error = %e, "worker instance failed"),
            Err(e) => tracing::warn!(pool = name, error = %e, "worker instance panicked"),
        }
    }
}

/// One worker instance: instance `index` of `replicas` of pool `name`.
struct Work {
    config: WorkersConfig,
    pool: PgPool,
    name: String,
    index: i32,
    replicas: i32,
    stats: Arc<PoolStats>,
}

impl Work {
    async fn run(self, mut stop: watch::Receiver<bool>) -> Result<(), ConnectorError> {
        let topic = &self.config.topics.executions;
        let partitions = partitions_of(self.index, self.replicas);
        let saved: BTreeMap<i32, i64> = model::offsets(&self.pool, topic, &self.name)
            .await?
            .into_iter()
            .collect();
        let consumer: StreamConsumer = self.config.kafka.watcher_every(FETCH_WAIT_MS)?;
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            let at = saved
                .get(p)
                .map_or(Offset::Beginning, |o| Offset::Offset(*o));
            tpl.add_partition_offset(topic, *p, at)?;
        }
        consumer.assign(&tpl)?;
        let producer = self.config.kafka.producer()?;
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        let mut dirty = false;
        let mut last_save = Instant::now();
        loop {
            let woke = tokio::select! {
                m = consumer.recv() => Some(m),
                _ = stop.changed() => None,
                // Wakes an idle instance to save what it read.
                _ = tokio::time::sleep(SAVE_EVERY) => None,
            };
            if let Some(first) = woke {
                let mut batch = vec![first?];
                while batch.len() < BATCH_MAX {
                    match consumer.recv().now_or_never() {
                        Some(m) => batch.push(m?),
                        None => break,
                    }
                }
                self.work(&producer, &batch).await?;
                for m in &batch {
                    next.insert(m.partition(), m.offset() + 1);
                }
                dirty = true;
            }
            let stopping = *stop.borrow();
            if dirty && (stopping || last_save.elapsed() >= SAVE_EVERY) {
                let rows: Vec<(i32, i64)> = next.iter().map(|(p, o)| (*p, *o)).collect();
                model::save_offsets(&self.pool, topic, &self.name, &rows).await?;
                dirty = false;
                last_save = Instant::now();
            }
            if stopping {
                return Ok(());
            }
        }
    }

    /// Completes the batch's requests of this pool (one produce round), and
    /// returns once every completion is acknowledged.
    async fn work(
        &self,
        producer: &rdkafka::producer::FutureProducer,
        batch: &[BorrowedMessage<'_>],
    ) -> Result<(), ConnectorError> {
        let mut mine = vec![];
        for m in batch {
            match ExecutionRequest::decode(m.payload().unwrap_or_default()) {
                Ok(r) if self.config.verticals.pool_of(&r.vertical) == self.name => mine.push(r),
                Ok(_) => {}
                Err(e) => tracing::warn!(pool = %self.name, partition = m.partition(),
                    offset = m.offset(), error = %e, "undecodable execution request skipped"),
            }
        }
        if mine.is_empty() {
            return Ok(());
        }
        self.stats
            .in_hand
            .fetch_add(mine.len() as i64, Ordering::Relaxed);
        let now_ms = chrono::Utc::now().timestamp_millis();
        let records = mine
            .iter()
            .map(|r| {
                Ok(Outgoing {
                    topic: self.config.topics.opportunity_commands.clone(),
                    key: r.opportunity_id.to_string(),
                    payload: Some(r.completion(now_ms).encode()?),
                    partition: None,
                })
            })
            .collect::<Result<Vec<_>, ConnectorError>>();
        let produced = match records {
            Ok(records) => produce_all(producer, &records).await.map(|_| ()),
            Err(e) => Err(e),
        };
        self.stats
            .in_hand
            .fetch_sub(mine.len() as i64, Ordering::Relaxed);
        produced?;
        for r in &mine {
            metrics::counter!("agentbank_vertical_tasks_total", "pool" => self.name.clone())
                .increment(1);
            metrics::histogram!("agentbank_vertical_task_seconds", "pool" => self.name.clone())
                .record((now_ms - r.started_ms).max(0) as f64 / 1000.0);
        }
        tracing::debug!(pool = %self.name, instance = self.index, tasks = mine.len(), "executions completed");
        Ok(())
    }
}

/// The process's CPU (share of all cores) and memory (share of the
/// machine's), sampled by `sysinfo` between calls.
struct ProcessUsage {
    system: sysinfo::System,
    pid: Option<sysinfo::Pid>,
    cores: f64,
}

impl ProcessUsage {
    fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        ProcessUsage {
            system: sysinfo::System::new(),
            pid: sysinfo::get_current_pid().ok(),
            cores,
        }
    }

    fn sample(&mut self) -> (f64, f64) {
        let Some(pid) = self.pid else {
            return (0.0, 0.0);
        };
        self.system.refresh_processes_specifics(
            sysinfo::ProcessesToUpdate::Some(&[pid]),
            false,
            sysinfo::ProcessRefreshKind::nothing()
                .with_cpu()
                .with_memory(),
        );
        self.system
            .refresh_memory_specifics(sysinfo::MemoryRefreshKind::nothing().with_ram());
        let Some(p) = self.system.process(pid) else {
            return (0.0, 0.0);
        };
        let cpu = (p.cpu_usage() as f64 / 100.0 / self.cores).clamp(0.0, 1.0);
        let total = self.system.total_memory().max(1) as f64;
        (cpu, (p.memory() as f64 / total).clamp(0.0, 1.0))
    }
}

/// Each pool's lag: records of the executions topic it has not read yet
/// (every vertical's, since each pool reads the whole topic and keeps its
/// own), from the topic's end offsets and the pools' saved offsets; measured
/// every few seconds.
struct LagMeter {
    reader: rdkafka::consumer::BaseConsumer,
    topic: String,
    last: Option<Instant>,
    lags: BTreeMap<String, i64>,
}

impl LagMeter {
    fn new(config: &WorkersConfig) -> Result<Self, ConnectorError> {
        Ok(LagMeter {
            reader: config.kafka.reader()?,
            topic: config.topics.executions.clone(),
            last: None,
            lags: BTreeMap::new(),
        })
    }

    async fn measure(&mut self, pool: &PgPool, names: &[String]) -> BTreeMap<String, i64> {
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(2))
        {
            return self.lags.clone();
        }
        self.last = Some(Instant::now());
        let mut ends = BTreeMap::new();
        for p in 0..EXECUTION_PARTITIONS {
            // A blocking metadata call: off the async workers' way.
            let watermarks = tokio::task::block_in_place(|| {
                self.reader
                    .fetch_watermarks(&self.topic, p, Duration::from_secs(2))
            });
            match watermarks {
                Ok((low, high)) => {
                    ends.insert(p, (low, high));
                }
                Err(e) => {
                    tracing::debug!(error = %e, partition = p, "executions watermarks");
                    return self.lags.clone();
                }
            }
        }
        for name in names {
            let Ok(saved) = model::offsets(pool, &self.topic, name).await else {
                continue;
            };
            let saved: BTreeMap<i32, i64> = saved.into_iter().collect();
            let lag = ends
                .iter()
                .map(|(p, (low, high))| high - saved.get(p).copied().unwrap_or(*low).max(*low))
                .map(|l| l.max(0))
                .sum();
            self.lags.insert(name.clone(), lag);
        }
        self.lags.clone()
    }
}

//! The generic runtime against the real broker: a second machine (a counter
//! keyed by user, not by agent) runs on the same runtime as the agent bank,
//! with packed commands in and packed replies out, and resumes from its
//! checkpoints after a restart; and our partitioner agrees with librdkafka's.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connectors::kafka::{produce_all, KafkaConfig, Outgoing};
use processors::runtime::machine::{Ids, Machine, Route, Step};
use processors::runtime::{Assignment, ProcessorConfig, ProcessorStatus};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use rust_decimal::Decimal;
use schemas::command::Deposit;
use schemas::reply::{Outcome, Reply};
use schemas::topics::Topics;
use schemas::{Command, CommandPayload};
use tokio::sync::watch;
use uuid::Uuid;

/// Counts deposits per user and answers each with the running count.
struct Counter;

impl Machine for Counter {
    type State = u64;

    fn route(&self, command: &Command) -> Route {
        Route::Key(command.user_id)
    }

    fn apply(&self, state: &mut Option<u64>, _command: &Command, _ids: &Ids<'_>) -> Step {
        let count = state.get_or_insert(0);
        *count += 1;
        Step {
            reply: Some(Outcome::Agent(Box::new(schemas::reply::AgentView {
                policies: Default::default(),
                agent_id: Uuid::nil(),
                user_id: Uuid::nil(),
                name: String::new(),
                description: String::new(),
                wallet_address: None,
                currency: "USDC".into(),
                rules: Default::default(),
                tags: vec![],
                status: "counted".into(),
                created_ms: 0,
                balance: Decimal::from(*count),
            }))),
            ..Step::default()
        }
    }
}

fn kafka() -> KafkaConfig {
    KafkaConfig {
        bootstrap_servers: common::bootstrap(),
        partitions: 2,
        replication_factor: 1,
        fetch_wait_ms: connectors::kafka::DEFAULT_FETCH_WAIT_MS,
    }
}

fn deposit(user: Uuid, n: usize) -> Command {
    Command {
        id: Uuid::new_v4(),
        agent_id: Uuid::new_v4(),
        user_id: user,
        correlation_id: Some(format!("0.{n}-{}", Uuid::new_v4().simple())),
        timestamp_ms: 1,
        payload: CommandPayload::Deposit(Deposit {
            amount: Decimal::ONE,
            currency: "USDC".into(),
            settle_on_chain: false,
        }),
    }
}

/// Sends `commands` packed into one record on the partition of `user`.
async fn send_packed(kafka: &KafkaConfig, topics: &Topics, user: Uuid, commands: &[Command]) {
    let key = user.to_string();
    let partition = schemas::topics::partition_for(key.as_bytes(), kafka.partitions);
    let items: Vec<Vec<u8>> = commands.iter().map(|c| c.encode().unwrap()).collect();
    let records = Outgoing::packed(&topics.commands, &key, partition, &items);
    produce_all(&kafka.producer().unwrap(), &records)
        .await
        .unwrap();
}

/// Every reply on replies partition 0, by correlation id, once `expected`
/// have arrived.
fn replies(kafka: &KafkaConfig, topics: &Topics, expected: usize) -> HashMap<String, Reply> {
    let reader: BaseConsumer = kafka.reader().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topics.replies, 0, Offset::Beginning)
        .unwrap();
    reader.assign(&tpl).unwrap();
    let mut out = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < expected {
        assert!(
            Instant::now() < deadline,
            "only {} of {expected} replies",
            out.len()
        );
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(200)) {
            for reply in Reply::decode_all(m.payload().unwrap_or_default()) {
                let reply = reply.unwrap();
                out.insert(reply.correlation_id.clone(), reply);
            }
        }
    }
    out
}

fn count_of(reply: &Reply) -> Decimal {
    match &reply.outcome {
        Outcome::Agent(view) => view.balance,
        other => panic!("{other:?}"),
    }
}

async fn start(config: ProcessorConfig) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(async move {
        processors::runtime::run(
            config,
            Arc::new(Counter),
            Arc::new(ProcessorStatus::default()),
            shutdown,
        )
        .await
        .unwrap();
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_counter_keyed_by_user_runs_on_the_runtime_and_resumes_after_a_restart() {
    let kafka = kafka();
    let prefix = format!("counter{}.", &Uuid::new_v4().simple().to_string()[..8]);
    let topics = Topics::with_prefix(&prefix);
    kafka.ensure_topics(&topics.all()).await.unwrap();
    let config = ProcessorConfig {
        kafka: kafka.clone(),
        topics: topics.clone(),
        group_id: format!("{prefix}processors"),
        assignment: Assignment::Static { index: 0, count: 1 },
    };
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());

    let (stop, task) = start(config.clone()).await;
    let first: Vec<Command> = (0..5).map(|n| deposit(alice, n)).collect();
    send_packed(&kafka, &topics, alice, &first).await;
    send_packed(&kafka, &topics, bob, &[deposit(bob, 0)]).await;
    let got = replies(&kafka, &topics, 6);
    for (n, c) in first.iter().enumerate() {
        let reply = &got[c.correlation_id.as_ref().unwrap()];
        assert_eq!(count_of(reply), Decimal::from(n + 1), "in record order");
    }
    stop.send(true).unwrap();
    task.await.unwrap();

    // A new instance restores the counts from the checkpoints and goes on.
    let (stop, task) = start(config).await;
    let later = deposit(alice, 9);
    send_packed(&kafka, &topics, alice, std::slice::from_ref(&later)).await;
    let got = replies(&kafka, &topics, 7);
    assert_eq!(
        count_of(&got[later.correlation_id.as_ref().unwrap()]),
        Decimal::from(6)
    );
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn librdkafka_puts_keys_where_partition_for_says() {
    let kafka = KafkaConfig {
        partitions: 5,
        ..kafka()
    };
    let topic = format!("partitioner{}", &Uuid::new_v4().simple().to_string()[..8]);
    kafka.ensure_topics(&[(&topic, false)]).await.unwrap();
    let keys: Vec<String> = (0..60).map(|_| Uuid::new_v4().to_string()).collect();
    let records: Vec<Outgoing> = keys
        .iter()
        .map(|k| Outgoing {
            topic: topic.clone(),
            key: k.clone(),
            payload: Some(b"x".to_vec()),
            partition: None,
        })
        .collect();
    let positions = produce_all(&kafka.producer().unwrap(), &records)
        .await
        .unwrap();
    for (key, (partition, _)) in keys.iter().zip(positions) {
        assert_eq!(
            partition,
            schemas::topics::partition_for(key.as_bytes(), 5),
            "key {key}"
        );
    }
}

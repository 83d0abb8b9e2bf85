//! The public contract: an outside consumer decodes `agentbank.events` with
//! nothing but the published `.avsc` — checked with an independent Avro
//! implementation (Python fastavro, fingerprint computed from the spec).

mod common;

use std::time::{Duration, Instant};

use common::Deployment;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn outside_consumer_decodes_events_with_the_published_schema() {
    let d = Deployment::new("avro").await;
    d.start_dev().await;
    let (user, key) = d.sign_up_unfunded("avro").await;
    let agent = d
        .create_agent(&user, &key, json!({"balance": 6, "tags": ["x"]}))
        .await;
    let (status, _) = d
        .post(
            "/agents/deposit",
            Some(&key),
            json!({"userid": user, "agentid": agent, "amount": "0.000001"}),
        )
        .await;
    assert_eq!(status, 200);

    let topic = format!("{}.agentbank.events", d.name);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &d.bootstrap)
        .set("group.id", "avro-contract-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..4 {
        tpl.add_partition_offset(&topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut values = vec![];
    let deadline = Instant::now() + Duration::from_secs(30);
    while values.len() < 6 && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            values.push(hex::encode(m.payload().unwrap()));
        }
    }
    assert_eq!(
        values.len(),
        6,
        "SignupBonusGranted + two WalletChanged (user's key) + AgentCreated + two FundsDeposited (agent's key)"
    );

    let dir = std::env::temp_dir().join(format!("avro-{}", d.name));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("values.hex");
    std::fs::write(&file, values.join("\n")).unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new("python3")
        .arg(format!("{root}/tests/python/decode_events.py"))
        .arg(format!("{root}/schemas/avro/event.avsc"))
        .arg(&file)
        .output()
        .expect("python3 with fastavro (deploy/local/up installs tests/python/requirements.txt)");
    assert!(
        out.status.success(),
        "decoder failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (wallet, records): (Vec<Value>, Vec<Value>) = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .partition(|r| r["agent_id"] == r["user_id"]);
    // Different keys, maybe different partitions: only per-key order is given.
    let wallet_types: Vec<&str> = wallet.iter().map(|r| r["type"].as_str().unwrap()).collect();
    assert_eq!(
        wallet_types,
        ["SignupBonusGranted", "WalletChanged", "WalletChanged"]
    );
    assert_eq!(wallet[0]["payload"]["amount"], "20");
    assert_eq!(wallet[1]["payload"]["memo"], "agent funding");
    assert_eq!(wallet[1]["payload"]["balance_after"], "14");
    assert_eq!(wallet[2]["payload"]["balance_after"], "13.999999");
    assert_eq!(
        wallet[2]["payload"]["agent"],
        json!(records_agent_id(&agent))
    );
    let types: Vec<&str> = records
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["AgentCreated", "FundsDeposited", "FundsDeposited"]);
    assert_eq!(records[0]["payload"]["tags"], json!(["x"]));
    assert_eq!(records[2]["payload"]["amount"], "0.000001");
    assert_eq!(records[2]["payload"]["balance_after"], "6.000001");
    assert_eq!(records[2]["agent_version"], 3);
    let postings = records[2]["payload"]["journal"]["postings"]
        .as_array()
        .unwrap();
    assert_eq!(postings.len(), 2);
}

/// The agent's UUID as events carry it (the API shows a short id).
fn records_agent_id(short: &str) -> String {
    schemas::ids::parse(schemas::ids::Kind::Agent, short)
        .unwrap()
        .to_string()
}

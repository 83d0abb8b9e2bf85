//! The publisher copies the processors' packed events log to the public
//! `agentbank.events` topic. Killed with -9 and restarted again and again
//! while deposits flow, it still leaves every event the read model holds on
//! the public topic — one Avro event per record, keyed by its agent and on
//! that key's partition; a repeat (a batch re-published after a kill) is
//! byte for byte the first.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{deposit_load, read_topic, Deployment, PARTITIONS};
use serde_json::json;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn every_event_reaches_the_public_topic_through_publisher_crashes() {
    let d = Deployment::new("publish").await;
    d.start_split().await;
    let (user, key) = d.sign_up("publish").await;
    let mut agents = vec![];
    for i in 0..4 {
        agents.push(d.create_agent(&user, &key, json!({"balance": i})).await);
    }
    let kills = async {
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(600)).await;
            d.kill("publisher");
            tokio::time::sleep(Duration::from_millis(300)).await;
            d.start("publisher", &["publisher"]);
        }
    };
    // Every deposit is acknowledged (deposit_load retries until it is).
    let ((acked, _), ()) = tokio::join!(deposit_load(&d, &user, &key, &agents, 400, 8), kills);
    assert_eq!(acked.len(), agents.len());

    let pool = d.pool().await;
    let in_read_model: BTreeSet<Uuid> = sqlx::query_scalar("SELECT id FROM events")
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert!(in_read_model.len() > 400, "{} events", in_read_model.len());

    let topic = format!("{}.agentbank.events", d.name);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (published, records) = loop {
        let records = read_topic(&d.bootstrap, &topic);
        let mut published: BTreeMap<Uuid, Vec<u8>> = BTreeMap::new();
        for r in &records {
            let event = schemas::Event::decode(&r.payload).expect("one Avro event per record");
            let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
            assert_eq!(key, event.agent_id.to_string(), "keyed by its agent");
            assert_eq!(
                r.partition,
                schemas::topics::partition_for(key.as_bytes(), PARTITIONS),
                "on its key's partition"
            );
            if let Some(first) = published.insert(event.id, r.payload.clone()) {
                assert_eq!(first, r.payload, "a repeat differs from the first");
            }
        }
        if in_read_model.iter().all(|id| published.contains_key(id)) {
            break (published, records.len());
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} events published",
            in_read_model
                .iter()
                .filter(|id| published.contains_key(id))
                .count(),
            in_read_model.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        published.keys().copied().collect::<BTreeSet<_>>(),
        in_read_model,
        "the public topic and the read model hold the same events"
    );
    eprintln!(
        "{} events, {} records ({} repeats after kills)",
        published.len(),
        records,
        records - published.len()
    );
}

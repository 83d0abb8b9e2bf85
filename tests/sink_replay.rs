//! The Postgres sink is a pure function of the events topic: replaying the
//! topic from offset zero into empty tables yields the same tables.

mod common;

use std::time::{Duration, Instant};

use common::{deposit_load, Deployment};
use serde_json::json;

/// Every money table, as ordered text, for comparison.
async fn snapshot(pool: &sqlx::PgPool) -> Vec<String> {
    let mut out = vec![];
    for q in [
        "SELECT id::text || balance::text || version::text || name || array_to_string(tags, ',') FROM agents ORDER BY id",
        "SELECT entry_id || account || amount::text FROM journal_postings ORDER BY entry_id, account",
        "SELECT event_id::text || kind || amount::text || balance_after::text FROM transactions ORDER BY event_id",
        "SELECT id::text || type || agent_version::text FROM events ORDER BY id",
        "SELECT id::text || status || approval_status || amount::text || array_to_string(tags, ',')
            || coalesce(approved_at::text, '-') || version::text FROM payments ORDER BY id",
    ] {
        let rows: Vec<String> = sqlx::query_scalar(q).fetch_all(pool).await.unwrap();
        out.extend(rows);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn replaying_the_events_topic_rebuilds_identical_tables() {
    let d = Deployment::new("replay").await;
    d.start_split().await;
    let (user, key) = d.sign_up("replay").await;
    let mut agents = vec![];
    for i in 0..4 {
        agents.push(
            d.create_agent(&user, &key, json!({"balance": i, "tags": ["t"]}))
                .await,
        );
    }
    deposit_load(&d, &user, &key, &agents, 100, 8).await;
    // Payments in every state: confirmed, waiting, declined.
    for (i, amount) in [1, 2, 3].into_iter().enumerate() {
        let (status, p) = d
            .post(
                "/payments/register",
                Some(&key),
                json!({"senderagentid": agents[3], "receiveragentid": agents[i], "name": "p", "type": "INTERNAL",
                       "tags": ["a", "b"], "paymentdetails": {"amount": amount}}),
            )
            .await;
        assert_eq!(status, 200, "{p}");
    }
    let (_, waiting) = d
        .post(
            "/agents/create",
            Some(&key),
            json!({"userid": user, "name": "careful", "balance": 10, "requireapprovalforall": true}),
        )
        .await;
    for decline in [false, true] {
        let (_, p) = d
            .post(
                "/payments/register",
                Some(&key),
                json!({"senderagentid": waiting["id"], "receiveragentid": agents[0], "name": "w",
                       "type": "INTERNAL", "paymentdetails": {"amount": 1}}),
            )
            .await;
        if decline {
            let (status, _) = d
                .post(
                    "/payments/setDecline",
                    Some(&key),
                    json!({"paymentId": p["id"]}),
                )
                .await;
            assert_eq!(status, 200);
        }
    }
    let pool = d.pool().await;
    let before = snapshot(&pool).await;
    assert!(before.len() > 300, "the run produced rows");

    d.kill("sink");
    sqlx::query("TRUNCATE agents, journal_postings, transactions, events, payments, sink_offsets")
        .execute(&pool)
        .await
        .unwrap();
    d.start("sink", &["sink"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let after = snapshot(&pool).await;
        if after.len() >= before.len() || Instant::now() > deadline {
            assert_eq!(after, before, "replayed tables differ");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

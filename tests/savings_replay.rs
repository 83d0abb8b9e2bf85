//! Replay: the agent processors' state is a pure function of the commands
//! topic. Every record (gateway commands, packed saga steps, interest ticks)
//! is read back from offset zero and planned into empty state by the
//! runtime's own pure planner with the same machine and rate history; the
//! positions and balances that come out equal, to the unit, what the running
//! system recorded in its read model.

mod common;

use std::time::{Duration, Instant};

use common::Deployment;
use processors::agents::AgentMachine;
use rust_decimal::Decimal;
use schemas::interest::RateSchedule;
use serde_json::json;
use uuid::Uuid;

const DAY_MS: i64 = 86_400_000;
const RATES: &str = "4.5,2025-01-01T00:00:00Z=5";

#[tokio::test(flavor = "multi_thread")]
async fn replaying_the_commands_topic_rebuilds_positions_to_the_unit() {
    let d = Deployment::new("savingsreplay").await;
    let env = [
        ("AGENTBANK_INTEREST_RATES", RATES),
        ("AGENTBANK_ACCRUAL_INTERVAL_MS", "3600000"),
    ];
    d.run(&["topics"]);
    d.run(&["migrate"]);
    for role in ["processor", "sink", "gateway"] {
        d.start_with_env(role, &[role], &env);
    }
    d.wait_healthy().await;
    let (user, key) = d.sign_up("replayer").await;
    let mut agents = vec![];
    for i in 0..3 {
        agents.push(
            d.create_agent(&user, &key, json!({"balance": 1000 + i}))
                .await,
        );
    }
    let mut investments = vec![];
    for (agent, amount) in [(0, "100"), (1, "250.5"), (2, "0.000123"), (0, "42")] {
        let (status, b) = d
            .post(
                "/savings/deposit",
                Some(&key),
                json!({"agentId": agents[agent], "amount": amount}),
            )
            .await;
        assert_eq!(status, 200, "{b}");
        investments.push(b["investmentId"].as_str().unwrap().to_string());
    }
    let now = common::now_ms();
    d.tick(now + 100 * DAY_MS).await;
    // A withdrawal between ticks, a payment and a deposit for good measure.
    let (status, w) = d
        .post(
            "/savings/withdraw",
            Some(&key),
            json!({"investmentId": investments[1]}),
        )
        .await;
    assert_eq!(status, 200, "{w}");
    let (status, p) = d
        .post(
            "/payments/register",
            Some(&key),
            json!({"senderagentid": agents[0], "receiveragentid": agents[2], "name": "p",
                   "type": "INTERNAL", "paymentdetails": {"amount": 3}}),
        )
        .await;
    assert_eq!(status, 200, "{p}");
    d.tick(now + 200 * DAY_MS).await;

    // Wait for the read model to hold the second tick's interest.
    let pool = d.pool().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let accrued: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM savings WHERE status = 'active' AND accrued_to = $1",
        )
        .bind(now + 200 * DAY_MS)
        .fetch_one(&pool)
        .await
        .unwrap();
        if accrued == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the ticks never reached the read model"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Replay every command from offset zero into empty state.
    let rates = RateSchedule::parse(RATES).unwrap();
    let records = common::read_topic(&d.bootstrap, &d.topics().commands);
    let (states, _) = common::replay(&AgentMachine::new(rates), &d.topics().commands, &records);

    let rows: Vec<(Uuid, Uuid, String, Decimal, Decimal, i64, Decimal)> = sqlx::query_as(
        "SELECT id, agent_id, status, principal, rate_ms, accrued_to, interest_posted FROM savings",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 4);
    for (id, agent, status, principal, rate_ms, accrued_to, posted) in rows {
        let state = states[&agent].as_ref().and_then(|s| s.agent()).unwrap();
        match state.savings.get(&id) {
            Some(p) => {
                assert_eq!(status, "active");
                assert_eq!(
                    (p.principal, p.rate_ms, p.accrued_to_ms, p.interest_posted),
                    (principal, rate_ms, accrued_to, posted),
                    "position {id}"
                );
                assert!(posted > Decimal::ZERO || principal < Decimal::ONE);
            }
            None => assert_eq!(status, "completed", "position {id} vanished on replay"),
        }
    }
    let balances: Vec<(Uuid, Decimal)> = sqlx::query_as("SELECT id, balance FROM agents")
        .fetch_all(&pool)
        .await
        .unwrap();
    for (agent, balance) in balances {
        assert_eq!(
            states[&agent]
                .as_ref()
                .and_then(|s| s.agent())
                .unwrap()
                .view
                .balance,
            balance,
            "agent {agent}"
        );
    }
}

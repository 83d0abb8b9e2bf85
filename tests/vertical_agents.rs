//! Vertical agents against the real stack (processor, sink, gateway and a
//! separate workers process on the broker and Postgres): executions keep
//! arriving while an operator scales a pool 1 → 3 → 1, pauses, resumes and
//! restarts it, and the workers process is killed with `kill -9` and
//! started again; every execution completes exactly once (counted in the
//! event log), `GET /v1/agents` and `/metrics` follow the control actions,
//! every action is recorded with who asked and why, and bad control calls
//! get the documented errors.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, Deployment};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const OPERATOR_TOKEN: &str = "ops-token-0123456789abcdef";
const READER_TOKEN: &str = "tiers-token-0123456789abcdef";

fn opportunity(name: &str, vertical: &str) -> Value {
    json!({
        "name": name, "vertical": vertical,
        "market_data": {"total_market_size": 5_000_000_000i64, "growth_rate": 0.2, "competition_count": 10},
        "technical_requirements": {"complexity": "medium", "time_to_market": 90, "required_expertise": ["ml"]}
    })
}

/// Creates and executes one opportunity; returns its id.
async fn execute_one(d: &Deployment, key: &str, name: &str, vertical: &str) -> String {
    let (s, created) = d
        .post("/v1/opportunities", Some(key), opportunity(name, vertical))
        .await;
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let (s, _, active) = d
        .request(
            Method::POST,
            &format!("/v1/opportunities/{id}/execute"),
            &[("x-api-key", key)],
            None,
        )
        .await;
    assert_eq!((s, &active["status"]), (200, &json!("active")), "{active}");
    id
}

async fn control(d: &Deployment, agent: &str, token: &str, body: Value) -> (u16, Value) {
    let (s, _, answer) = d
        .request(
            Method::POST,
            &format!("/v1/agents/{agent}/control"),
            &[("x-service-token", token)],
            Some(body),
        )
        .await;
    (s, answer)
}

async fn agents(d: &Deployment, key: &str) -> Vec<Value> {
    let (s, list) = d.get("/v1/agents", key).await;
    assert_eq!(s, 200, "{list}");
    list["agents"].as_array().unwrap().clone()
}

fn find<'a>(agents: &'a [Value], id: &str) -> &'a Value {
    agents.iter().find(|a| a["id"] == id).unwrap()
}

/// Waits until `agent` reports `status` with `running` instances.
async fn wait_for(d: &Deployment, key: &str, agent: &str, status: &str, running: i64) -> Value {
    eventually(&format!("{agent} {status} with {running}"), || async {
        let all = agents(d, key).await;
        let a = find(&all, agent).clone();
        (a["status"] == status && a["replicas"]["running"] == running).then_some(a)
    })
    .await
}

/// The workers' gauge of `pool` on the workers process's `/metrics`.
async fn workers_gauge(metrics_url: &str, pool: &str) -> Option<f64> {
    let text = reqwest::get(metrics_url).await.ok()?.text().await.ok()?;
    let prefix = format!("agentbank_vertical_workers{{pool=\"{pool}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn vertical_agents_scale_pause_resume_restart_and_complete_every_execution_once() {
    let d = Arc::new(Deployment::new("vagents").await);
    let tokens = format!(
        "ops:operate:{},tiers:tiers:{}",
        hex::encode(Sha256::digest(OPERATOR_TOKEN.as_bytes())),
        hex::encode(Sha256::digest(READER_TOKEN.as_bytes()))
    );
    d.set_env(&[
        ("AGENTBANK_DEFAULT_TIER", "enterprise"),
        ("AGENTBANK_SERVICE_TOKENS", &tokens),
        ("AGENTBANK_VERTICALS", "saas,fintech"),
    ]);
    d.start_split().await;
    let metrics_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let metrics_url = format!("http://{metrics_addr}/metrics");
    let start_workers = || {
        d.start_with_env(
            "workers",
            &["workers"],
            &[("AGENTBANK_METRICS_ADDR", &metrics_addr)],
        )
    };
    start_workers();
    let (_, key) = d.sign_up("vera").await;

    // Every pool appears, one instance each, `general` for other verticals.
    for id in ["agent_saas", "agent_fintech", "agent_general"] {
        let a = wait_for(&d, &key, id, "active", 1).await;
        assert_eq!(a["type"], "vertical_agent");
        assert_eq!(a["health_score"], 1.0, "{a}");
        assert!(
            a["resources"]["memory_usage"].as_f64().unwrap() > 0.0,
            "{a}"
        );
    }
    assert_eq!(workers_gauge(&metrics_url, "saas").await, Some(1.0));

    // Executions keep arriving (saas, fintech, and biotech for `general`)
    // through everything below.
    let keep_going = Arc::new(AtomicBool::new(true));
    let feeder = {
        let d = d.clone();
        let key = key.clone();
        let keep_going = keep_going.clone();
        tokio::spawn(async move {
            let mut ids = vec![];
            let verticals = ["saas", "fintech", "biotech"];
            let mut i = 0;
            while keep_going.load(Ordering::Relaxed) {
                let v = verticals[i % 3];
                ids.push((execute_one(&d, &key, &format!("Venture {i}"), v).await, v));
                i += 1;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            ids
        })
    };

    // Scale 1 → 3: three instances, seen by the API and /metrics.
    let (s, answer) = control(
        &d,
        "agent_saas",
        OPERATOR_TOKEN,
        json!({"action": "scale", "parameters": {"replicas": 3, "reason": "increased_load"}}),
    )
    .await;
    assert_eq!(s, 200, "{answer}");
    assert_eq!(answer["accepted"], true);
    assert_eq!(answer["control"]["requested_by"], "ops");
    assert_eq!(answer["agent"]["replicas"]["desired"], 3);
    wait_for(&d, &key, "agent_saas", "active", 3).await;
    eventually("gauge at 3", || async {
        (workers_gauge(&metrics_url, "saas").await == Some(3.0)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;

    // Pause: nothing of saas completes; its queue grows and shows.
    let (s, _) = control(
        &d,
        "agent_saas",
        OPERATOR_TOKEN,
        json!({"action": "pause", "parameters": {"reason": "maintenance"}}),
    )
    .await;
    assert_eq!(s, 200);
    let paused = wait_for(&d, &key, "agent_saas", "paused", 0).await;
    assert_eq!(paused["health_score"], 0.0);
    let waiting = execute_one(&d, &key, "Held while paused", "SaaS").await;
    let held = eventually("saas backlog while paused", || async {
        let all = agents(&d, &key).await;
        let a = find(&all, "agent_saas").clone();
        (a["queue"]["lag"].as_i64().unwrap() > 0
            && a["queue"]["pending_tasks"].as_i64().unwrap() > 0)
            .then_some(a)
    })
    .await;
    assert_eq!(held["status"], "paused");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, o) = d.get(&format!("/v1/opportunities/{waiting}"), &key).await;
    assert_eq!(
        o["status"], "active",
        "a paused pool completes nothing: {o}"
    );
    // Other pools keep working meanwhile.
    let fintech_now = find(&agents(&d, &key).await, "agent_fintech")["metrics"]["tasks_completed"]
        .as_i64()
        .unwrap();
    eventually("fintech keeps completing", || async {
        let n = find(&agents(&d, &key).await, "agent_fintech")["metrics"]["tasks_completed"]
            .as_i64()
            .unwrap();
        (n > fintech_now).then_some(())
    })
    .await;

    // Resume: the held execution completes.
    let (s, _) = control(
        &d,
        "agent_saas",
        OPERATOR_TOKEN,
        json!({"action": "resume"}),
    )
    .await;
    assert_eq!(s, 200);
    wait_for(&d, &key, "agent_saas", "active", 3).await;
    eventually("held execution completes", || async {
        let (_, o) = d.get(&format!("/v1/opportunities/{waiting}"), &key).await;
        (o["status"] == "completed").then_some(())
    })
    .await;

    // Restart, then back to one instance.
    let (s, r) = control(
        &d,
        "agent_saas",
        OPERATOR_TOKEN,
        json!({"action": "restart", "parameters": {"reason": "new config"}}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    wait_for(&d, &key, "agent_saas", "active", 3).await;
    let (s, _) = control(
        &d,
        "agent_saas",
        OPERATOR_TOKEN,
        json!({"action": "scale", "parameters": {"replicas": 1, "reason": "quiet"}}),
    )
    .await;
    assert_eq!(s, 200);
    let one = wait_for(&d, &key, "agent_saas", "active", 1).await;
    assert_eq!(one["last_control"]["action"], "scale");
    assert_eq!(one["last_control"]["reason"], "quiet");
    eventually("gauge at 1", || async {
        (workers_gauge(&metrics_url, "saas").await == Some(1.0)).then_some(())
    })
    .await;

    // The workers process dies mid-stream and comes back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.kill("workers");
    tokio::time::sleep(Duration::from_millis(700)).await;
    start_workers();
    tokio::time::sleep(Duration::from_secs(2)).await;
    keep_going.store(false, Ordering::Relaxed);
    let mut executed = feeder.await.unwrap();
    executed.push((waiting, "saas"));
    assert!(executed.len() >= 20, "only {} executions", executed.len());

    // Every execution completes, exactly once.
    for (id, _) in &executed {
        eventually(&format!("{id} completed"), || async {
            let (_, o) = d.get(&format!("/v1/opportunities/{id}"), &key).await;
            (o["status"] == "completed").then_some(())
        })
        .await;
    }
    let pool = d.pool().await;
    let counts: Vec<(i64,)> = sqlx::query_as(
        "SELECT count(*) FROM events WHERE type = 'OpportunityExecuted' GROUP BY agent_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(counts.len(), executed.len(), "one completion per execution");
    assert!(counts.iter().all(|(n,)| *n == 1), "{counts:?}");

    // The agents' figures are the tenant's executions, per pool.
    let all = eventually("figures settle", || async {
        let all = agents(&d, &key).await;
        let total: i64 = all
            .iter()
            .map(|a| a["metrics"]["tasks_completed"].as_i64().unwrap())
            .sum();
        (total == executed.len() as i64).then_some(all)
    })
    .await;
    for (agent, vertical) in [
        ("agent_saas", "saas"),
        ("agent_fintech", "fintech"),
        ("agent_general", "biotech"),
    ] {
        let a = find(&all, agent);
        let n = executed.iter().filter(|(_, v)| *v == vertical).count() as i64;
        assert_eq!(a["metrics"]["tasks_completed"], n, "{a}");
        assert_eq!(a["metrics"]["success_rate"], 1.0);
        assert!(
            a["metrics"]["average_latency_ms"].as_i64().unwrap() > 0,
            "{a}"
        );
        assert_eq!(a["queue"]["pending_tasks"], 0);
    }
    // An operator sees every tenant's figures; a token without `operate` does not.
    let (s, _, ops) = d
        .request(
            Method::GET,
            "/v1/agents",
            &[("x-service-token", OPERATOR_TOKEN)],
            None,
        )
        .await;
    assert_eq!(s, 200, "{ops}");
    let total: i64 = ops["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["metrics"]["tasks_completed"].as_i64().unwrap())
        .sum();
    assert_eq!(total, executed.len() as i64);
    let (s, _, e) = d
        .request(
            Method::GET,
            "/v1/agents",
            &[("x-service-token", READER_TOKEN)],
            None,
        )
        .await;
    assert_eq!((s, &e["error"]["code"]), (403, &json!("FORBIDDEN")), "{e}");
    // Another tenant sees the same pools and none of these figures.
    let (_, other) = d.sign_up("otto").await;
    for a in agents(&d, &other).await {
        assert_eq!(a["metrics"]["tasks_completed"], 0, "{a}");
    }

    // Every action recorded with who and why.
    let actions: Vec<(String, Option<String>, String)> = sqlx::query_as(
        "SELECT action, reason, requested_by FROM vertical_agent_actions WHERE pool = 'saas' ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let got: Vec<&str> = actions.iter().map(|a| a.0.as_str()).collect();
    assert_eq!(got, ["scale", "pause", "resume", "restart", "scale"]);
    assert!(actions.iter().all(|a| a.2 == "ops"));
    assert_eq!(actions[0].1.as_deref(), Some("increased_load"));

    // Refusals in the revenue API's envelope.
    let (s, _, e) = d
        .request(
            Method::POST,
            "/v1/agents/agent_saas/control",
            &[("x-api-key", key.as_str())],
            Some(json!({"action": "pause"})),
        )
        .await;
    assert_eq!(
        (s, &e["error"]["code"]),
        (401, &json!("UNAUTHORIZED")),
        "{e}"
    );
    let (s, e) = control(&d, "agent_saas", READER_TOKEN, json!({"action": "pause"})).await;
    assert_eq!(s, 403, "{e}");
    for (body, field) in [
        (json!({"action": "scale"}), "parameters.replicas"),
        (
            json!({"action": "scale", "parameters": {"replicas": 9}}),
            "parameters.replicas",
        ),
        (
            json!({"action": "scale", "parameters": {"replicas": 0}}),
            "parameters.replicas",
        ),
        (
            json!({"action": "pause", "parameters": {"replicas": 2}}),
            "parameters.replicas",
        ),
        (json!({"action": "explode"}), "action"),
        (json!({}), "action"),
        (
            json!({"action": "pause", "parameters": {"reason": "x".repeat(201)}}),
            "parameters.reason",
        ),
        (json!({"action": "pause", "colour": 1}), "colour"),
    ] {
        let (s, e) = control(&d, "agent_saas", OPERATOR_TOKEN, body.clone()).await;
        assert_eq!(
            (s, &e["error"]["code"]),
            (400, &json!("VALIDATION_ERROR")),
            "{body}: {e}"
        );
        assert_eq!(e["error"]["details"]["field"], field, "{body}: {e}");
    }
    let (s, e) = control(
        &d,
        "agent_biotech",
        OPERATOR_TOKEN,
        json!({"action": "pause"}),
    )
    .await;
    assert_eq!(s, 404, "{e}");
    // Nothing half-written: the refusals recorded no action.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM vertical_agent_actions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 5);
}

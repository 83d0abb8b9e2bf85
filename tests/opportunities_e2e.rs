//! Opportunities against the real stack: create (scored by the machine) →
//! get → every filter operator, multi-key sort, sparse fields, pagination
//! edges → execute lifecycle (pending → active → completed) with its events
//! at a webhook receiver and on the WebSocket channel → a batch mixing
//! successes and failures → sandbox test ids and isolation → replaying the
//! machine's input from offset 0 rebuilds the same records.

mod common;

use std::time::Duration;

use common::{eventually, Deployment};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn opportunity(name: &str, vertical: &str, market: i64, growth: f64, competitors: i64) -> Value {
    json!({
        "name": name, "vertical": vertical,
        "market_data": {"total_market_size": market, "growth_rate": growth, "competition_count": competitors},
        "technical_requirements": {"complexity": "high", "time_to_market": 120, "required_expertise": ["ml", "payments"]}
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn opportunities_end_to_end() {
    let d = Deployment::new("opps").await;
    d.set_env(&[
        ("AGENTBANK_WEBHOOKS_ALLOW_PRIVATE", "true"),
        ("AGENTBANK_DEFAULT_TIER", "enterprise"),
    ]);
    d.start_dev().await;
    let (_, key) = d.sign_up("olga").await;
    let auth = [("x-api-key", key.as_str())];
    let (url, hooks) = common::hook_receiver().await;
    let (s, hook) = d
        .post(
            "/v1/webhooks",
            Some(&key),
            json!({"url": url, "events": ["opportunity.created", "opportunity.executed"]}),
        )
        .await;
    assert_eq!(s, 201, "{hook}");
    let mut ws = common::ws_subscribed(&d, &key, &["opportunities"]).await;

    // Create: scored, 201, the seed's shape; idempotent by key.
    let body = opportunity(
        "Blockchain Payment Gateway",
        "fintech",
        10_000_000_000,
        0.3,
        15,
    );
    let (s, h, created) = d
        .request(
            Method::POST,
            "/v1/opportunities",
            &[auth[0], ("idempotency-key", "opp-1")],
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("opp_"));
    assert_eq!(created["status"], "pending");
    assert!(h.contains_key("x-request-id"));
    for f in [
        "score",
        "expected_irr",
        "moat_score",
        "risk_score",
        "scalability_score",
    ] {
        assert!(created[f].is_number(), "{f}: {created}");
    }
    assert_eq!(
        created["economic_analysis"]["serviceable_addressable_market"],
        json!(1_000_000_000)
    );
    assert!(
        created["execution_plan"]["phases"]
            .as_array()
            .unwrap()
            .len()
            == 3
    );
    let (s, _, again) = d
        .request(
            Method::POST,
            "/v1/opportunities",
            &[auth[0], ("idempotency-key", "opp-1")],
            Some(body),
        )
        .await;
    assert_eq!(
        (s, &again["id"]),
        (201, &json!(id)),
        "a retry is the same opportunity"
    );
    let (s, got) = d.get(&format!("/v1/opportunities/{id}"), &key).await;
    assert_eq!((s, &got), (200, &created), "read your write");

    // Validation in the envelope.
    let (s, h, bad) = d
        .request(
            Method::POST,
            "/v1/opportunities",
            &auth,
            Some(json!({"name": "x", "vertical": "saas", "colour": "red"})),
        )
        .await;
    assert_eq!(
        (s, &bad["error"]["code"]),
        (400, &json!("VALIDATION_ERROR")),
        "{bad}"
    );
    assert_eq!(
        bad["error"]["request_id"],
        h["x-request-id"].to_str().unwrap()
    );
    let (s, _, bad) = d
        .request(
            Method::POST,
            "/v1/opportunities",
            &auth,
            Some(json!({"name": "x", "vertical": "saas", "market_data": {"growth_rate": "fast"}})),
        )
        .await;
    assert_eq!(
        (s, &bad["error"]["details"]["field"]),
        (400, &json!("market_data.growth_rate"))
    );
    let (s, missing) = d
        .get("/v1/opportunities/opp_1111111111111111111111", &key)
        .await;
    assert_eq!(
        (s, &missing["error"]["code"]),
        (404, &json!("RESOURCE_NOT_FOUND"))
    );
    assert_eq!(missing["error"]["details"]["resource_type"], "opportunity");

    // A batch mixing successes and failures, each answered on its own.
    let (s, batch) = d
        .post(
            "/v1/batch/opportunities",
            Some(&key),
            json!({"operations": [
                {"method": "POST", "path": "/opportunities", "body": opportunity("AI Analytics", "saas", 5_000_000_000, 0.25, 5)},
                {"method": "POST", "path": "/opportunities", "body": opportunity("Clinic Scheduler", "healthcare", 50_000_000, 0.05, 40)},
                {"method": "POST", "path": "/opportunities", "body": {"name": "No vertical"}},
                {"method": "GET", "path": format!("/opportunities/{id}")},
                {"method": "GET", "path": "/opportunities/opp_nope"},
                {"method": "POST", "path": "/opportunities", "body": {"name": "Tiny Tool", "vertical": "devtools"}},
                {"method": "DELETE", "path": "/opportunities"}
            ]}),
        )
        .await;
    assert_eq!(s, 200, "{batch}");
    let statuses: Vec<u64> = batch["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![201, 201, 400, 200, 404, 201, 400], "{batch}");
    assert_eq!(
        batch["results"][2]["body"]["error"]["code"],
        "VALIDATION_ERROR"
    );
    assert_eq!(batch["results"][3]["body"]["id"], json!(id));
    let (s, big) = d
        .post(
            "/v1/batch/opportunities",
            Some(&key),
            json!({"operations": vec![json!({}); 101]}),
        )
        .await;
    assert_eq!(
        (s, &big["error"]["code"]),
        (400, &json!("VALIDATION_ERROR"))
    );

    // Lists: 4 opportunities now.
    let list = |q: &str| {
        let d = &d;
        let key = key.clone();
        let q = q.to_string();
        async move {
            let (s, v) = d.get(&format!("/v1/opportunities{q}"), &key).await;
            (s, v)
        }
    };
    let names = |v: &Value| -> Vec<String> {
        v["opportunities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (s, all) = list("").await;
    assert_eq!(
        (s, all["pagination"]["total"].as_i64()),
        (200, Some(4)),
        "{all}"
    );
    let scores: Vec<f64> = all["opportunities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["score"].as_f64().unwrap())
        .collect();
    let (_, by_score) = list("?sort=-score,created_at").await;
    let sorted: Vec<f64> = by_score["opportunities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["score"].as_f64().unwrap())
        .collect();
    let mut expected = scores.clone();
    expected.sort_by(|a, b| b.partial_cmp(a).unwrap());
    assert_eq!(sorted, expected);
    let (_, by_vertical) = list("?sort=vertical,-score").await;
    assert_eq!(
        names(&by_vertical),
        vec![
            "Tiny Tool",
            "Blockchain Payment Gateway",
            "Clinic Scheduler",
            "AI Analytics"
        ]
    );
    let top = sorted[1];
    let (_, gte) = list(&format!("?filter[score][gte]={top}")).await;
    assert_eq!(gte["pagination"]["total"], 2);
    let (_, gt) = list(&format!("?filter[score][gt]={top}")).await;
    assert_eq!(gt["pagination"]["total"], 1);
    let (_, lt) = list(&format!("?filter[score][lt]={top}")).await;
    assert_eq!(lt["pagination"]["total"], 2);
    let (_, lte) = list(&format!("?filter[score][lte]={top}&min_score=0")).await;
    assert_eq!(lte["pagination"]["total"], 3);
    let (_, eq) = list("?filter[vertical]=saas").await;
    assert_eq!(names(&eq), vec!["AI Analytics"]);
    let (_, eq2) = list("?filter[vertical][eq]=saas&vertical=saas").await;
    assert_eq!(names(&eq2), vec!["AI Analytics"]);
    let (_, ne) = list("?filter[vertical][ne]=saas").await;
    assert_eq!(ne["pagination"]["total"], 3);
    let (_, within) = list("?filter[vertical][in]=saas,fintech&sort=name").await;
    assert_eq!(
        names(&within),
        vec!["AI Analytics", "Blockchain Payment Gateway"]
    );
    let (_, since) =
        list("?filter[created_at][gte]=2000-01-01T00:00:00Z&filter[status]=pending").await;
    assert_eq!(since["pagination"]["total"], 4);
    let (_, sparse) = list("?fields=id,name,score&per_page=1").await;
    let first = sparse["opportunities"][0].as_object().unwrap();
    assert_eq!(
        first.keys().cloned().collect::<Vec<_>>(),
        vec!["id", "name", "score"]
    );
    // Pagination edges.
    let (_, p1) = list("?per_page=3&page=1&sort=name").await;
    assert_eq!(
        p1["pagination"],
        json!({"page": 1, "per_page": 3, "total": 4, "pages": 2, "prev_page": null, "next_page": 2})
    );
    let (_, p2) = list("?per_page=3&page=2&sort=name").await;
    assert_eq!(names(&p2), vec!["Tiny Tool"]);
    assert_eq!(
        (
            &p2["pagination"]["prev_page"],
            &p2["pagination"]["next_page"]
        ),
        (&json!(1), &Value::Null)
    );
    let (_, past) = list("?per_page=3&page=9").await;
    assert!(past["opportunities"].as_array().unwrap().is_empty());
    let (_, none) = list("?filter[vertical]=gaming").await;
    assert_eq!(
        (
            none["pagination"]["total"].as_i64(),
            none["pagination"]["pages"].as_i64()
        ),
        (Some(0), Some(0))
    );
    for bad in [
        "?per_page=0",
        "?per_page=101",
        "?page=0",
        "?filter[colour]=red",
        "?filter[score][approx]=1",
        "?sort=-colour",
        "?fields=id,secret",
        "?status=paused",
        "?filter[score][gte]=high",
        "?filter[created_at][lt]=yesterday",
        "?colour=red",
    ] {
        let (s, e) = list(bad).await;
        assert_eq!(
            (s, &e["error"]["code"]),
            (400, &json!("VALIDATION_ERROR")),
            "{bad}: {e}"
        );
    }
    let (_, e) = list("?filter[colour]=red").await;
    assert_eq!(e["error"]["details"]["field"], "colour");

    // Execute: pending → active → completed; events reach the webhook and the WebSocket.
    let (s, _, active) = d
        .request(
            Method::POST,
            &format!("/v1/opportunities/{id}/execute"),
            &auth,
            None,
        )
        .await;
    assert_eq!((s, &active["status"]), (200, &json!("active")), "{active}");
    let (s, _, again) = d
        .request(
            Method::POST,
            &format!("/v1/opportunities/{id}/execute"),
            &auth,
            None,
        )
        .await;
    assert_eq!(s, 200, "idempotent: {again}");
    let done = eventually("completion", || async {
        let (_, o) = d.get(&format!("/v1/opportunities/{id}"), &key).await;
        (o["status"] == "completed").then_some(o)
    })
    .await;
    let x = &done["execution"];
    assert_eq!(x["result"], "success");
    assert!(x["execution_time_ms"].as_i64().unwrap() >= 0, "{done}");
    let (_, active_list) = list("?filter[status]=completed").await;
    assert_eq!(names(&active_list), vec!["Blockchain Payment Gateway"]);
    let hooks = eventually("webhooks", || async {
        let got = hooks.lock().unwrap().clone();
        got.iter()
            .any(|h| h["type"] == "opportunity.executed")
            .then_some(got)
    })
    .await;
    assert_eq!(
        hooks
            .iter()
            .filter(|h| h["type"] == "opportunity.created")
            .count(),
        4
    );
    let executed = hooks
        .iter()
        .find(|h| h["type"] == "opportunity.executed")
        .unwrap();
    assert_eq!(executed["data"]["opportunity_id"], json!(id));
    assert_eq!(executed["data"]["result"], "success");
    assert!(executed["data"]["artifacts"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    let mut seen = vec![];
    while !seen.contains(&"opportunity.executed".to_string()) {
        let m = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("ws event")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            assert_eq!(v["channel"], "opportunities");
            seen.push(v["type"].as_str().unwrap().to_string());
        }
    }
    assert!(
        seen.contains(&"opportunity.created".to_string()),
        "{seen:?}"
    );

    // Another tenant sees nothing of it.
    let (_, other) = d.sign_up("otto").await;
    let (s, _) = d.get(&format!("/v1/opportunities/{id}"), &other).await;
    assert_eq!(s, 404);
    let (s, _, _) = d
        .request(
            Method::POST,
            &format!("/v1/opportunities/{id}/execute"),
            &[("x-api-key", &other)],
            None,
        )
        .await;
    assert_eq!(s, 404);
    let (_, theirs) = d.get("/v1/opportunities", &other).await;
    assert_eq!(theirs["pagination"]["total"], 0);

    // Sandbox: test ids, and no live data.
    let (_, _, test_key) = d
        .request(Method::POST, "/v1/sandbox/keys", &auth, None)
        .await;
    let test_key = test_key["api_key"].as_str().unwrap().to_string();
    let (s, ok) = d.get("/v1/opportunities/test_success_123", &test_key).await;
    assert_eq!((s, &ok["id"]), (200, &json!("test_success_123")));
    let (s, _, ok) = d
        .request(
            Method::POST,
            "/v1/opportunities/test_success_9/execute",
            &[("x-api-key", &test_key)],
            None,
        )
        .await;
    assert_eq!((s, &ok["execution"]["result"]), (200, &json!("success")));
    let (s, _, fail) = d
        .request(
            Method::POST,
            "/v1/opportunities/test_fail_9/execute",
            &[("x-api-key", &test_key)],
            None,
        )
        .await;
    assert_eq!(
        (s, &fail["status"], &fail["execution"]["result"]),
        (200, &json!("failed"), &json!("failure"))
    );
    let (s, e) = d
        .get("/v1/opportunities/test_error_404_abc", &test_key)
        .await;
    assert_eq!(
        (s, &e["error"]["code"]),
        (404, &json!("RESOURCE_NOT_FOUND"))
    );
    let (s, e) = d
        .get("/v1/opportunities/test_error_402_abc", &test_key)
        .await;
    assert_eq!(s, 402, "{e}");
    let (s, _) = d.get("/v1/opportunities/test_success_123", &key).await;
    assert_eq!(s, 404, "test ids are the sandbox's only");
    let (_, sandbox) = d.get("/v1/opportunities", &test_key).await;
    assert_eq!(
        sandbox["pagination"]["total"], 0,
        "live data is not the sandbox's"
    );
    let (s, _) = d.get(&format!("/v1/opportunities/{id}"), &test_key).await;
    assert_eq!(s, 404);

    // SSE shows active_opportunities (0: the one executed has completed).
    let mut r = d
        .client
        .get(d.url("/v1/metrics/stream"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    while !text.contains("active_opportunities") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), r.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }

    // Replaying the machine's input from offset 0 into empty state gives
    // the same records as the read model holds.
    let records = common::read_topic(&d.bootstrap, &d.topics().opportunity_commands);
    let (states, _) = common::replay(
        &processors::opportunities::OpportunityMachine,
        &d.topics().opportunity_commands,
        &records,
    );
    let rows: Vec<(sqlx::types::Json<schemas::revenue::opportunity::Opportunity>,)> =
        sqlx::query_as("SELECT record FROM opportunities")
            .fetch_all(&d.pool().await)
            .await
            .unwrap();
    assert_eq!(rows.len(), 4);
    for (row,) in rows {
        let replayed = states[&row.0.id].as_ref().expect("replayed");
        assert_eq!(replayed.opportunity, row.0);
    }
}

//! The revenue ledger through the real API (broker, processors, sink,
//! Postgres): recording events and their documented errors, idempotency by
//! key and by invoice, imported past revenue and the analytics computed
//! from it (checked against figures worked out by hand), cursor pages that
//! stay stable while events arrive, the hash chain's verification catching
//! a tampered row, targets and the milestone on webhooks and the WebSocket
//! `revenue` channel, the SSE `revenue_total`, sandbox test ids, tenants
//! kept apart — and a replay of the revenue topic from offset 0 giving the
//! read model's entries and daily aggregates exactly.

mod common;

use std::collections::HashMap;

use common::{eventually, Deployment};
use futures::StreamExt;
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use schemas::revenue::analytics;
use schemas::revenue::ledger::LedgerEntry;

fn event(ty: &str, amount: Value, product: &str, customer: &str, at: Option<&str>) -> Value {
    let mut e = json!({"event_type": ty, "amount": amount, "currency": "USD",
                       "product_id": product, "customer_id": customer,
                       "vertical": if product == "prod_api" { "saas" } else { "services" },
                       "customer_segment": "smb"});
    if let Some(at) = at {
        e["occurred_at"] = json!(at);
    }
    e
}

async fn post(d: &Deployment, key: &str, body: Value) -> (u16, Value) {
    let (s, _, v) = d
        .request(
            Method::POST,
            "/v1/revenue/events",
            &[("x-api-key", key)],
            Some(body),
        )
        .await;
    (s, v)
}

async fn get(d: &Deployment, key: &str, path: &str) -> (u16, Value) {
    let (s, _, v) = d
        .request(Method::GET, path, &[("x-api-key", key)], None)
        .await;
    (s, v)
}

/// Follows `cursor`s from `cursor` (or the first page) of `path`.
async fn all_pages(d: &Deployment, key: &str, path: &str, cursor: Option<&str>) -> Vec<Value> {
    let (mut out, mut cursor) = (vec![], cursor.map(String::from));
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            Some(c) => format!("{path}{sep}cursor={c}"),
            None => path.to_string(),
        };
        let (s, page) = get(d, key, &url).await;
        assert_eq!(s, 200, "{page}");
        out.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["pagination"]["cursor"].as_str() {
            Some(c) if page["pagination"]["has_more"] == true => cursor = Some(c.to_string()),
            _ => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_revenue_ledger_through_the_api() {
    let d = Deployment::new("revenue").await;
    d.set_env(&[
        ("AGENTBANK_DEFAULT_TIER", "enterprise"),
        ("AGENTBANK_WEBHOOKS_ALLOW_PRIVATE", "true"),
        ("AGENTBANK_SSE_METRICS_MS", "300"),
    ]);
    d.start_dev().await;
    let (_, key) = d.sign_up("rita").await;

    // The seed's event: its answer, its entry.
    let seed = json!({"event_type": "payment_received", "amount": 79.00, "currency": "USD",
        "product_id": "prod_456def", "customer_id": "cust_123abc",
        "metadata": {"payment_method": "stripe", "invoice_id": "inv_789def", "subscription_id": "sub_456ghi"}});
    let (s, first) = post(&d, &key, seed.clone()).await;
    assert_eq!(s, 201, "{first}");
    assert!(first["event_id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(first["status"], "recorded");
    assert_eq!(first["sequence"], 1);
    assert_eq!(first["transaction_hash"].as_str().unwrap().len(), 66);
    assert_eq!(
        first["ledger_entry"],
        json!({"debit": {"account": "accounts_receivable", "amount": 79},
               "credit": {"account": "revenue_general", "amount": 79}})
    );
    // The same invoice again: the same event, nothing posted twice.
    let (s, again) = post(&d, &key, seed.clone()).await;
    assert_eq!((s, &again), (201, &first));
    // The same Idempotency-Key: the same event.
    let keyed = |body: Value| {
        let (d, key) = (&d, key.clone());
        async move {
            d.request(
                Method::POST,
                "/v1/revenue/events",
                &[("x-api-key", key.as_str()), ("idempotency-key", "k-1")],
                Some(body),
            )
            .await
        }
    };
    let one_off = event("payment_received", json!(5), "prod_x", "cust_x", None);
    let (s1, _, k1) = keyed(one_off.clone()).await;
    let (s2, _, k2) = keyed(one_off).await;
    assert_eq!((s1, s2, &k1["event_id"]), (201, 201, &k2["event_id"]));

    // Errors name their field, in the envelope.
    for (field, value) in [
        ("amount", json!(1.005)),
        ("currency", json!("XYZ")),
        ("event_type", json!("gift")),
        ("occurred_at", json!("2999-01-01T00:00:00Z")),
    ] {
        let mut b = seed.clone();
        b[field] = value;
        b["metadata"]["invoice_id"] = json!("inv_err");
        let (s, e) = post(&d, &key, b).await;
        assert_eq!(
            (s, &e["error"]["code"], &e["error"]["details"]["field"]),
            (400, &json!("VALIDATION_ERROR"), &json!(field)),
            "{e}"
        );
        assert!(e["error"]["request_id"].is_string());
    }

    // Imported past revenue: two subscriptions, a one-time sale and its
    // partial refund, an upgrade, a downgrade, a cancellation.
    for (ty, amount, product, customer, at) in [
        (
            "subscription_started",
            json!(100.00),
            "prod_api",
            "cust_a",
            "2025-09-05T10:00:00Z",
        ),
        (
            "subscription_started",
            json!(50.00),
            "prod_api",
            "cust_b",
            "2025-09-10T10:00:00Z",
        ),
        (
            "payment_received",
            json!(30.00),
            "prod_consult",
            "cust_c",
            "2025-09-20T10:00:00Z",
        ),
        (
            "subscription_renewed",
            json!(100.00),
            "prod_api",
            "cust_a",
            "2025-10-05T10:00:00Z",
        ),
        (
            "subscription_upgraded",
            json!(80.00),
            "prod_api",
            "cust_b",
            "2025-10-10T10:00:00Z",
        ),
        (
            "refund",
            json!(10.00),
            "prod_consult",
            "cust_c",
            "2025-10-15T10:00:00Z",
        ),
        (
            "subscription_downgraded",
            json!(60.00),
            "prod_api",
            "cust_a",
            "2025-11-05T10:00:00Z",
        ),
        (
            "subscription_cancelled",
            json!(0),
            "prod_api",
            "cust_b",
            "2025-11-10T10:00:00Z",
        ),
    ] {
        let (s, e) = post(&d, &key, event(ty, amount, product, customer, Some(at))).await;
        assert_eq!(s, 201, "{ty}: {e}");
    }

    // October 2025 by hand: revenue 100 + 80 − 10 = 170; September's 180
    // before it; MRR 150 and 2 subscribers at its start, +30 expansion.
    let (s, oct) = get(
        &d,
        &key,
        "/v1/revenue/analytics?start_date=2025-10-01&end_date=2025-10-31&granularity=month",
    )
    .await;
    assert_eq!(s, 200, "{oct}");
    assert_eq!(
        oct["summary"],
        json!({"total_revenue": 170, "recurring_revenue": 180, "one_time_revenue": 0,
               "refunds": 10, "growth_rate": -0.0556, "churn_rate": 0.0,
               "net_revenue_retention": 1.2, "mrr_start": 150, "mrr_end": 180})
    );
    assert_eq!(
        oct["time_series"],
        json!([{"date": "2025-10-01", "revenue": 170, "new_customers": 0,
                "churned_customers": 0, "expansion_revenue": 30}])
    );
    assert_eq!(oct["breakdown"]["by_product"][0]["product_id"], "prod_api");
    assert_eq!(oct["breakdown"]["by_vertical"][1]["vertical"], "services");
    assert_eq!(oct["breakdown"]["by_vertical"][1]["revenue"], -10);
    // November by week and product: cust_b churned (80 of 180 MRR), cust_a
    // contracted by 40.
    let (_, nov) = get(
        &d,
        &key,
        "/v1/revenue/analytics?start_date=2025-11-01&end_date=2025-11-30&granularity=week&group_by=product",
    )
    .await;
    assert_eq!(nov["summary"]["churn_rate"], 0.5);
    assert_eq!(nov["summary"]["net_revenue_retention"], 0.3333);
    assert_eq!(nov["summary"]["mrr_end"], 60);
    let churned: i64 = nov["time_series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["churned_customers"].as_i64().unwrap())
        .sum();
    assert_eq!(churned, 1);
    assert!(nov["time_series"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["group"] == "prod_api"));
    assert_eq!(nov["time_series"][0]["date"], "2025-10-27"); // the week's Monday
    for bad in [
        "granularity=hour",
        "group_by=color",
        "start_date=2025-12-01&end_date=2025-11-01",
        "start_date=1900-01-01",
        "currency=XYZ",
        "surprise=1",
    ] {
        let (s, e) = get(&d, &key, &format!("/v1/revenue/analytics?{bad}")).await;
        assert_eq!(
            (s, &e["error"]["code"]),
            (400, &json!("VALIDATION_ERROR")),
            "{bad}: {e}"
        );
    }

    // Target, webhooks and the WebSocket, then this month's revenue.
    let (url, hooks) = common::hook_receiver().await;
    let (s, h) = d
        .post(
            "/v1/webhooks",
            Some(&key),
            json!({"url": url, "events": ["revenue.received", "revenue.milestone"]}),
        )
        .await;
    assert_eq!(s, 201, "{h}");
    let mut ws = common::ws_subscribed(&d, &key, &["revenue"]).await;
    let (s, _, t) = d
        .request(
            Method::PUT,
            "/v1/revenue/targets",
            &[("x-api-key", key.as_str())],
            Some(json!({"currency": "usd", "monthly_target": 200})),
        )
        .await;
    assert_eq!(
        (s, &t),
        (200, &json!({"currency": "USD", "monthly_target": 200}))
    );
    assert_eq!(
        get(&d, &key, "/v1/revenue/targets").await.1["targets"],
        json!([{"currency": "USD", "monthly_target": 200}])
    );
    for amount in [60, 50, 10] {
        let (s, e) = post(
            &d,
            &key,
            event("payment_received", json!(amount), "prod_x", "cust_d", None),
        )
        .await;
        assert_eq!(s, 201, "{e}");
    }
    let mut seen = vec![];
    while !seen
        .iter()
        .any(|v: &Value| v["type"] == "revenue.milestone")
        || seen
            .iter()
            .filter(|v| v["type"] == "revenue.received")
            .count()
            < 3
    {
        let m = tokio::time::timeout(std::time::Duration::from_secs(15), ws.next())
            .await
            .expect("revenue events on the WebSocket")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["channel"] == "revenue" {
                seen.push(v);
            }
        }
    }
    let milestone = eventually("the milestone's webhook", || async {
        hooks
            .lock()
            .unwrap()
            .iter()
            .find(|h| h["type"] == "revenue.milestone")
            .cloned()
    })
    .await;
    assert_eq!(milestone["data"]["milestone"], "monthly_target");
    // This month so far: the seed's 79 and 5, then 60 + 50 + 10 crosses 200.
    assert_eq!(milestone["data"]["achieved"], 204);
    assert_eq!(milestone["data"]["target"], 200);
    assert_eq!(milestone["data"]["percentage"], 102);
    eventually("revenue.received webhooks", || async {
        let h = hooks.lock().unwrap();
        (h.iter().filter(|h| h["type"] == "revenue.received").count() >= 3).then_some(())
    })
    .await;
    assert_eq!(
        hooks
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h["type"] == "revenue.milestone")
            .count(),
        1,
        "one milestone per month"
    );

    // Transactions: pages of 4 stay stable while an event arrives.
    let (_, p1) = get(&d, &key, "/v1/revenue/transactions?limit=4").await;
    let total = p1["pagination"]["total_count"].as_i64().unwrap();
    assert_eq!(total, 13);
    assert_eq!(p1["data"][0]["sequence"], 13);
    let (s, _) = post(
        &d,
        &key,
        event("payment_received", json!(5), "prod_x", "cust_e", None),
    )
    .await;
    assert_eq!(s, 201);
    let mut rest = all_pages(
        &d,
        &key,
        "/v1/revenue/transactions?limit=4",
        p1["pagination"]["cursor"].as_str(),
    )
    .await;
    let mut listed: Vec<Value> = p1["data"].as_array().unwrap().clone();
    listed.append(&mut rest);
    let seqs: Vec<i64> = listed
        .iter()
        .map(|t| t["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=13).rev().collect::<Vec<_>>());
    for (query, count) in [
        ("customer_id=cust_b", 3),
        ("event_type=refund", 1),
        (
            "product_id=prod_api&start_date=2025-10-01&end_date=2025-10-31",
            2,
        ),
    ] {
        let got = all_pages(
            &d,
            &key,
            &format!("/v1/revenue/transactions?limit=2&{query}"),
            None,
        )
        .await;
        assert_eq!(got.len(), count, "{query}");
    }
    for bad in [
        "limit=0",
        "limit=101",
        "cursor=eyJpZCI6MTIzNDU2fQ",
        "event_type=gift",
    ] {
        let (s, e) = get(&d, &key, &format!("/v1/revenue/transactions?{bad}")).await;
        assert_eq!(
            (s, &e["error"]["code"]),
            (400, &json!("VALIDATION_ERROR")),
            "{bad}"
        );
    }

    // The chain verifies; the SSE stream shows the USD total.
    let (_, v) = get(&d, &key, "/v1/revenue/ledger/verify").await;
    assert_eq!(
        (&v["valid"], &v["entries_checked"]),
        (&json!(true), &json!(14)),
        "{v}"
    );
    let usd: Decimal = ["79", "5", "410", "120", "5"]
        .iter()
        .map(|s| s.parse::<Decimal>().unwrap())
        .sum();
    let frames = common::read_until(&d, &key, None, |f| {
        common::metric(f, "revenue_total").is_some_and(|v| v == schemas::money::json_number(usd))
    })
    .await;
    assert!(common::metric(&frames, "revenue_total").is_some());

    // Another tenant: an empty ledger of its own; tampering with it is caught.
    let (_, other) = d.sign_up("olaf").await;
    assert_eq!(
        get(&d, &other, "/v1/revenue/transactions").await.1["pagination"]["total_count"],
        0
    );
    let (_, theirs) = get(
        &d,
        &other,
        "/v1/revenue/analytics?start_date=2025-10-01&end_date=2025-10-31",
    )
    .await;
    assert_eq!(theirs["summary"]["total_revenue"], 0);
    for amount in [1, 2, 3] {
        post(
            &d,
            &other,
            event("payment_received", json!(amount), "p", "c", None),
        )
        .await;
    }
    let (_, ok) = get(&d, &other, "/v1/revenue/ledger/verify").await;
    assert_eq!(
        (&ok["valid"], &ok["entries_checked"]),
        (&json!(true), &json!(3))
    );
    let pool = d.pool().await;
    let tenant: uuid::Uuid = sqlx::query_scalar(
        "SELECT tenant_id FROM revenue_entries GROUP BY tenant_id HAVING count(*) = 3",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let alter = "UPDATE revenue_entries SET record = jsonb_set(record, '{amount}', $3)
                 WHERE tenant_id = $1 AND sequence = $2";
    sqlx::query(alter)
        .bind(tenant)
        .bind(2i64)
        .bind(json!("200"))
        .execute(&pool)
        .await
        .unwrap();
    let (_, broken) = get(&d, &other, "/v1/revenue/ledger/verify").await;
    assert_eq!(
        (&broken["valid"], &broken["first_invalid_sequence"]),
        (&json!(false), &json!(2)),
        "{broken}"
    );
    sqlx::query(alter)
        .bind(tenant)
        .bind(2i64)
        .bind(json!("2"))
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        get(&d, &other, "/v1/revenue/ledger/verify").await.1["valid"],
        true
    );

    // Sandbox: test ids on customer_id; the sandbox ledger is its own.
    let (_, _, tk) = d
        .request(
            Method::POST,
            "/v1/sandbox/keys",
            &[("x-api-key", key.as_str())],
            None,
        )
        .await;
    let tk = tk["api_key"].as_str().unwrap().to_string();
    let (s, fail) = post(
        &d,
        &tk,
        event("payment_received", json!(1), "p", "test_fail_1", None),
    )
    .await;
    assert_eq!((s, &fail["error"]["details"]["test"]), (400, &json!(true)));
    let (s, _) = post(
        &d,
        &tk,
        event("payment_received", json!(1), "p", "test_error_503_x", None),
    )
    .await;
    assert_eq!(s, 503);
    let (s, _) = post(
        &d,
        &tk,
        event("payment_received", json!(1), "p", "test_success_1", None),
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(
        get(&d, &tk, "/v1/revenue/transactions").await.1["pagination"]["total_count"],
        1
    );

    // Replay: the revenue topic from offset 0 gives every entry and every
    // daily aggregate exactly.
    let topic = d.topics().revenue_commands;
    let records = common::read_topic(&d.bootstrap, &topic);
    let (_, events) = common::replay(&processors::revenue::RevenueMachine, &topic, &records);
    let mut replayed: HashMap<uuid::Uuid, LedgerEntry> = HashMap::new();
    for e in events {
        if let schemas::EventPayload::RevenueRecorded(r) = e.payload {
            replayed.insert(r.entry.event_id, *r.entry);
        }
    }
    let rows: Vec<(sqlx::types::Json<LedgerEntry>,)> =
        sqlx::query_as("SELECT record FROM revenue_entries")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), replayed.len());
    for (row,) in &rows {
        assert_eq!(replayed.get(&row.0.event_id), Some(&row.0));
    }
    // The replayed entries' aggregates are the stored ones.
    let days = analytics::aggregate(replayed.values());
    let ledgers: std::collections::BTreeSet<(uuid::Uuid, String)> =
        days.keys().map(|k| (k.0, k.1.clone())).collect();
    for (tenant, currency) in ledgers {
        let expected = analytics::rows_of(&days, tenant, &currency);
        let stored = connectors::read_model::revenue::all_daily(&pool, tenant, &currency)
            .await
            .unwrap();
        assert_eq!(stored, expected, "daily aggregates of {tenant} {currency}");
    }
}

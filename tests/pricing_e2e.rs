//! Pricing through the real API: the quote's shape and errors, execution
//! (with a discount, idempotent), expiry as a non-conversion, sandbox test
//! ids — and learning: a simulated market with a known demand curve per
//! segment answers thousands of quotes (executing the ones its customers
//! take, letting the rest expire); the recommended price ends on each
//! segment's revenue-optimal price and regret flattens. Then a replay of the
//! pricing topic from offset 0 gives the read model's quotes exactly.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::{eventually, Deployment};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Per segment, (round, quoted multiplier) as answers arrive.
type Quoted = Arc<Mutex<HashMap<&'static str, Vec<(usize, f64)>>>>;

/// A segment's true conversion at multiplier `m` of the reference price.
fn conversion(m: f64, m0: f64) -> f64 {
    0.8 / (1.0 + (14.0 * (m - m0)).exp())
}

/// Segments and where their demand falls: revenue-optimal at 69.5 and 92.3
/// (× a reference price of 100).
const SEGMENTS: [(&str, f64); 2] = [("seg_low", 0.85), ("seg_high", 1.1)];

/// The revenue-optimal price for a reference of 100 (grid search at 0.1).
fn optimal_price(m0: f64) -> f64 {
    (500..=1300)
        .map(|i| f64::from(i) / 1000.0)
        .max_by(|a, b| (a * conversion(*a, m0)).total_cmp(&(b * conversion(*b, m0))))
        .unwrap()
        * 100.0
}

fn quote_body(segment: &str) -> Value {
    json!({"product_id": "prod_api", "segment_id": segment,
           "context": {"user_value_score": 0.5, "usage_history": {"api_calls_30d": 15000},
                       "competitor_pricing": {"competitor_a": 100.00}}})
}

#[tokio::test(flavor = "multi_thread")]
async fn quotes_learn_each_segments_price_through_the_api() {
    let d = Deployment::new("pricing").await;
    d.set_env(&[
        ("AGENTBANK_QUOTE_TTL_MS", "1000"),
        ("AGENTBANK_QUOTE_EXPIRY_TICK_MS", "100"),
        ("AGENTBANK_DEFAULT_TIER", "enterprise"),
        ("AGENTBANK_PRICE_DISPERSION_ALERT", "0.1"),
        ("AGENTBANK_WEBHOOKS_ALLOW_PRIVATE", "true"),
    ]);
    d.start_dev().await;
    let (_, key) = d.sign_up("pia").await;
    let auth = [("x-api-key", key.as_str())];

    // Shape, errors.
    let (s, h, q) = d
        .request(
            Method::POST,
            "/v1/monetizer/quote",
            &auth,
            Some(quote_body("seg_low")),
        )
        .await;
    assert_eq!(s, 200, "{q}");
    assert!(q["quote_id"].as_str().unwrap().starts_with("quote_"));
    assert_eq!(q["pricing_method"], "contextual_thompson");
    assert_eq!(q["confidence_interval"]["confidence"], 0.95);
    let (lo, price, hi) = (
        q["confidence_interval"]["lower"].as_f64().unwrap(),
        q["recommended_price"].as_f64().unwrap(),
        q["confidence_interval"]["upper"].as_f64().unwrap(),
    );
    assert!(lo <= hi && (50.0..=130.0).contains(&price), "{q}");
    assert!(q["optimization_metrics"]["expected_ltv"].as_f64().unwrap() > 0.0);
    assert!(h.contains_key("x-request-id"));
    for (body, field) in [
        (
            json!({"product_id": "p", "segment_id": "s", "context": {}}),
            "context.competitor_pricing",
        ),
        (
            json!({"product_id": "p", "segment_id": "s", "context": {"competitor_pricing": {"a": -1}}}),
            "context.competitor_pricing.a",
        ),
        (
            json!({"product_id": "p", "segment_id": "s", "context": {"competitor_pricing": {"a": 1}, "user_value_score": 3}}),
            "context.user_value_score",
        ),
        (
            json!({"segment_id": "s", "context": {"competitor_pricing": {"a": 1}}}),
            "product_id",
        ),
        (
            json!({"product_id": "p", "segment_id": "s", "context": {"competitor_pricing": {"a": 1}}, "x": 1}),
            "x",
        ),
    ] {
        let (s, _, e) = d
            .request(Method::POST, "/v1/monetizer/quote", &auth, Some(body))
            .await;
        assert_eq!(
            (s, &e["error"]["code"], &e["error"]["details"]["field"]),
            (400, &json!("VALIDATION_ERROR"), &json!(field))
        );
    }

    // Execute with a discount; again: the same answer.
    let id = q["quote_id"].as_str().unwrap().to_string();
    let exec = json!({"quote_id": id, "adjustments": {"discount_percentage": 10, "reason": "first_time_customer"}});
    let (s, _, done) = d
        .request(
            Method::POST,
            "/v1/monetizer/execute",
            &auth,
            Some(exec.clone()),
        )
        .await;
    assert_eq!((s, &done["status"]), (200, &json!("executed")), "{done}");
    let expected = (price * 0.9 * 100.0).round() / 100.0;
    assert!(
        (done["final_price"].as_f64().unwrap() - expected).abs() < 0.006,
        "{done}"
    );
    let (s, _, again) = d
        .request(Method::POST, "/v1/monetizer/execute", &auth, Some(exec))
        .await;
    assert_eq!((s, &again), (200, &done));
    let (s, _, e) = d
        .request(
            Method::POST,
            "/v1/monetizer/execute",
            &auth,
            Some(json!({"quote_id": "quote_1111111111111111111111"})),
        )
        .await;
    assert_eq!(
        (s, &e["error"]["code"]),
        (404, &json!("RESOURCE_NOT_FOUND"))
    );
    let (s, _, e) = d
        .request(
            Method::POST,
            "/v1/monetizer/execute",
            &auth,
            Some(json!({"quote_id": id, "adjustments": {"discount_percentage": 95}})),
        )
        .await;
    assert_eq!(
        (s, &e["error"]["details"]["field"]),
        (400, &json!("adjustments.discount_percentage"))
    );
    // A quote left alone expires: execute refuses it, and it reads as expired.
    let (_, _, late) = d
        .request(
            Method::POST,
            "/v1/monetizer/quote",
            &auth,
            Some(quote_body("seg_high")),
        )
        .await;
    let late_id = late["quote_id"].as_str().unwrap().to_string();
    let expired = eventually("expiry", || async {
        let (_, q) = d
            .get(&format!("/v1/monetizer/quotes/{late_id}"), &key)
            .await;
        (q["status"] == "expired").then_some(q)
    })
    .await;
    assert_eq!(expired["quote_id"], json!(late_id));
    let (s, _, e) = d
        .request(
            Method::POST,
            "/v1/monetizer/execute",
            &auth,
            Some(json!({"quote_id": late_id})),
        )
        .await;
    assert_eq!(
        (s, &e["error"]["code"]),
        (400, &json!("VALIDATION_ERROR")),
        "{e}"
    );
    // Another tenant sees nothing of it.
    let (_, other) = d.sign_up("otto").await;
    assert_eq!(
        d.get(&format!("/v1/monetizer/quotes/{id}"), &other).await.0,
        404
    );
    // Sandbox test ids.
    let (_, _, tk) = d
        .request(Method::POST, "/v1/sandbox/keys", &auth, None)
        .await;
    let tk = tk["api_key"].as_str().unwrap().to_string();
    let t = [("x-api-key", tk.as_str())];
    let (s, _, ok) = d
        .request(
            Method::POST,
            "/v1/monetizer/execute",
            &t,
            Some(json!({"quote_id": "test_success_1"})),
        )
        .await;
    assert_eq!((s, &ok["status"]), (200, &json!("executed")));
    let (s, _, fail) = d
        .request(
            Method::POST,
            "/v1/monetizer/execute",
            &t,
            Some(json!({"quote_id": "test_fail_1"})),
        )
        .await;
    assert_eq!((s, &fail["status"]), (200, &json!("expired")));
    assert_eq!(
        d.get("/v1/monetizer/quotes/test_error_503_x", &tk).await.0,
        503
    );

    // Alerts: a webhook for them, and the WebSocket `alerts` channel.
    let (url, hooks) = common::hook_receiver().await;
    let (s, h) = d
        .post(
            "/v1/webhooks",
            Some(&key),
            json!({"url": url, "events": ["system.alert"]}),
        )
        .await;
    assert_eq!(s, 201, "{h}");
    let mut ws = common::ws_subscribed(&d, &key, &["alerts"]).await;

    // Learning: 2,500 quotes per segment, 24 at a time; customers convert
    // by the segment's true demand (seeded per round).
    const ROUNDS: usize = 2_500;
    let quoted: Quoted = Arc::default();
    let rounds: Vec<(usize, &str, f64)> = (0..ROUNDS)
        .flat_map(|i| SEGMENTS.iter().map(move |(seg, m0)| (i, *seg, *m0)))
        .collect();
    futures::stream::iter(rounds)
        .for_each_concurrent(24, |(i, segment, m0)| {
            let (d, key, quoted) = (&d, key.clone(), quoted.clone());
            async move {
                let auth = [("x-api-key", key.as_str())];
                let (s, _, q) = d
                    .request(
                        Method::POST,
                        "/v1/monetizer/quote",
                        &auth,
                        Some(quote_body(segment)),
                    )
                    .await;
                assert_eq!(s, 200, "{q}");
                let m = q["recommended_price"].as_f64().unwrap() / 100.0;
                quoted
                    .lock()
                    .unwrap()
                    .entry(segment)
                    .or_default()
                    .push((i, m));
                let mut rng = StdRng::seed_from_u64(i as u64 * 31 + segment.len() as u64);
                if rng.gen_bool(conversion(m, m0)) {
                    let body = json!({"quote_id": q["quote_id"]});
                    let (s, _, e) = d
                        .request(Method::POST, "/v1/monetizer/execute", &auth, Some(body))
                        .await;
                    assert!(s == 200 || s == 400, "{e}"); // 400: it expired before we got to it
                }
            }
        })
        .await;
    for (segment, m0) in SEGMENTS {
        let optimum = optimal_price(m0);
        let mut seen = quoted.lock().unwrap()[segment].clone();
        seen.sort_by_key(|(i, _)| *i);
        let revenue = |m: f64| m * conversion(m, m0);
        let best = (5..=13)
            .map(|k| f64::from(k) / 10.0)
            .map(revenue)
            .fold(0.0, f64::max);
        let regret: Vec<f64> = seen.iter().map(|(_, m)| best - revenue(*m)).collect();
        let first: f64 = regret[..500].iter().sum();
        let last: f64 = regret[ROUNDS - 500..].iter().sum();
        let mut counts: HashMap<i64, usize> = HashMap::new();
        for (_, m) in &seen[ROUNDS - 300..] {
            *counts.entry((m * 100.0).round() as i64).or_default() += 1;
        }
        let (mode, _) = counts.iter().max_by_key(|(_, c)| **c).unwrap();
        let cumulative = |n: usize| regret[..n].iter().sum::<f64>();
        eprintln!(
            "{segment}: cumulative regret after 250/500/1000/1500/2000/2500 quotes: {:.1} {:.1} {:.1} {:.1} {:.1} {:.1}; \
             last 300 prices {counts:?}",
            cumulative(250), cumulative(500), cumulative(1_000), cumulative(1_500), cumulative(2_000), cumulative(2_500)
        );
        assert!(
            ((*mode as f64) - optimum).abs() <= 0.10 * optimum,
            "{segment}: mode {mode}, optimum {optimum}"
        );
        assert!(
            last < 0.6 * first,
            "{segment}: regret not flattening ({first:.1} → {last:.1})"
        );
    }

    // Early quotes explore widely: their dispersion raised a system.alert.
    let alert = loop {
        let m = tokio::time::timeout(std::time::Duration::from_secs(15), ws.next())
            .await
            .expect("an alert on the WebSocket")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "system.alert" {
                break v;
            }
        }
    };
    assert_eq!(
        (&alert["channel"], &alert["data"]["component"]),
        (&json!("alerts"), &json!("monetizer"))
    );
    assert_eq!(alert["data"]["details"]["product_id"], "prod_api");
    assert!(
        alert["data"]["details"]["variance"].as_f64().unwrap() >= 0.1,
        "{alert}"
    );
    let hook = eventually("the alert's webhook", || async {
        hooks
            .lock()
            .unwrap()
            .iter()
            .find(|h| h["type"] == "system.alert")
            .cloned()
    })
    .await;
    assert_eq!(hook["data"]["message"], "High pricing variance detected");

    // Replay: the pricing topic from offset 0 rebuilds the read model's quotes.
    eventually("all quotes closed", || async {
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM quotes WHERE status = 'open'")
            .fetch_one(&d.pool().await)
            .await
            .unwrap();
        (open == 0).then_some(())
    })
    .await;
    let records = common::read_topic(&d.bootstrap, &d.topics().pricing_commands);
    let (_, events) = common::replay(
        &processors::pricing::PricingMachine {
            dispersion_alert: 0.1,
        },
        &d.topics().pricing_commands,
        &records,
    );
    // The last event of each quote, as the replay produced it.
    let mut replayed: HashMap<uuid::Uuid, schemas::revenue::pricing::Quote> = HashMap::new();
    for e in events {
        if let schemas::EventPayload::QuoteIssued(c)
        | schemas::EventPayload::QuoteExecuted(c)
        | schemas::EventPayload::QuoteExpired(c) = e.payload
        {
            replayed.insert(c.quote.quote_id, *c.quote);
        }
    }
    let rows: Vec<(sqlx::types::Json<schemas::revenue::pricing::Quote>,)> =
        sqlx::query_as("SELECT record FROM quotes")
            .fetch_all(&d.pool().await)
            .await
            .unwrap();
    let mut compared = 0;
    for (row,) in rows {
        assert_eq!(
            replayed.get(&row.0.quote_id),
            Some(&row.0),
            "quote {}",
            row.0.quote_id
        );
        compared += 1;
    }
    assert!(compared >= 1_000, "{compared} quotes compared");
}

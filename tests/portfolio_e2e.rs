//! The portfolio through the real stack: executing opportunities opens
//! positions (allocation, product, a past opening date), imported revenue
//! values them day by day, every figure of `/v1/portfolio/status` equals an
//! independent computation from `/v1/portfolio/history` inside this test,
//! rebalancing answers dry runs (risk parity with equal risk contributions),
//! names infeasible constraints, keeps turnover within its limit, and an
//! applied rebalance moves the weights and reaches webhooks and the
//! WebSocket `portfolio` channel.

mod common;

use chrono::{Duration, Utc};
use common::{eventually, Deployment};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn returns(v: &Value) -> Vec<Option<f64>> {
    v.as_array().unwrap().iter().map(Value::as_f64).collect()
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

fn sd(x: &[f64]) -> f64 {
    let m = mean(x);
    (x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64).sqrt()
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-6 * b.abs().max(1.0),
        "{what}: API {a}, recomputed {b}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_portfolio_through_the_api() {
    let d = Deployment::new("portfolio").await;
    d.set_env(&[
        ("AGENTBANK_DEFAULT_TIER", "enterprise"),
        ("AGENTBANK_WEBHOOKS_ALLOW_PRIVATE", "true"),
        ("AGENTBANK_RISK_FREE_RATE", "0.05"),
    ]);
    d.start_dev().await;
    let (_, key) = d.sign_up("pam").await;
    let auth = [("x-api-key", key.as_str())];
    let (url, hooks) = common::hook_receiver().await;
    let (s, _) = d
        .post(
            "/v1/webhooks",
            Some(&key),
            json!({"url": url, "events": ["position.opened", "portfolio.rebalanced"]}),
        )
        .await;
    assert_eq!(s, 201);
    let mut ws = common::ws_subscribed(&d, &key, &["portfolio"]).await;

    // An empty portfolio.
    let (s, empty) = d.get("/v1/portfolio/status", &key).await;
    assert_eq!((s, &empty["total_positions"]), (200, &json!(0)));
    let (s, _, e) = d
        .request(
            Method::POST,
            "/v1/portfolio/rebalance",
            &auth,
            Some(json!({"strategy": "equal_weight"})),
        )
        .await;
    assert_eq!((s, &e["error"]["code"]), (400, &json!("VALIDATION_ERROR")));

    // 60 days of revenue for three products, imported.
    let today = Utc::now();
    let mut rng = StdRng::seed_from_u64(7);
    for day in (1..=60).rev() {
        let at = (today - Duration::days(day)).to_rfc3339();
        for (product, base) in [("prod_a", 40), ("prod_b", 25), ("prod_c", 60)] {
            let amount = base + rng.gen_range(0..30);
            let (s, _, e) = d
                .request(
                    Method::POST,
                    "/v1/revenue/events",
                    &auth,
                    Some(json!({"event_type": "payment_received", "amount": amount, "currency": "USD",
                                "product_id": product, "customer_id": "c", "occurred_at": at})),
                )
                .await;
            assert_eq!(s, 201, "{e}");
        }
    }
    // Three executions open positions 45 days ago.
    let opened = (today - Duration::days(45)).to_rfc3339();
    for (i, (product, allocation)) in [("prod_a", 1000), ("prod_b", 1500), ("prod_c", 800)]
        .into_iter()
        .enumerate()
    {
        let (s, _, o) = d
            .request(
                Method::POST,
                "/v1/opportunities",
                &auth,
                Some(json!({"name": format!("o{i}"), "vertical": "saas",
                    "market_data": {"total_market_size": 1_000_000_000, "growth_rate": 0.2, "competition_count": 5},
                    "technical_requirements": {"complexity": "medium", "time_to_market": 90, "required_expertise": ["ml"]}})),
            )
            .await;
        assert_eq!(s, 201, "{o}");
        let path = format!("/v1/opportunities/{}/execute", o["id"].as_str().unwrap());
        let body = json!({"allocation": allocation, "product_id": product, "opened_at": opened});
        let (s, _, x) = d
            .request(Method::POST, &path, &auth, Some(body.clone()))
            .await;
        assert_eq!(s, 200, "{x}");
        // Executing again opens nothing new.
        d.request(Method::POST, &path, &auth, Some(body)).await;
    }

    // Every figure of the status from the history.
    let (_, st) = d.get("/v1/portfolio/status", &key).await;
    let (_, h) = d.get("/v1/portfolio/history", &key).await;
    assert_eq!(st["total_positions"], 3, "{st}");
    let values = floats(&h["portfolio"]["values"]);
    assert_eq!(values.len(), 46, "45 days ago through today");
    let value = *values.last().unwrap();
    close(
        st["portfolio_value"].as_f64().unwrap(),
        value,
        "portfolio_value",
    );
    let capital: f64 = h["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["capital"].as_f64().unwrap())
        .sum();
    assert_eq!(capital, 3300.0);
    let total_return = (value - capital) / capital;
    let pm = &st["performance_metrics"];
    close(
        pm["total_return"].as_f64().unwrap(),
        total_return,
        "total_return",
    );
    close(
        pm["annualized_return"].as_f64().unwrap(),
        (1.0 + total_return).powf(365.0 / 45.0) - 1.0,
        "annualized_return",
    );
    // Returns net of flows, recomputed from values and flows.
    let flows = floats(&h["portfolio"]["flows"]);
    let r: Vec<f64> = (1..values.len())
        .map(|t| (values[t] - flows[t]) / values[t - 1] - 1.0)
        .collect();
    let api_r: Vec<f64> = returns(&h["portfolio"]["returns"])
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(api_r.len(), r.len());
    for (a, b) in api_r.iter().zip(&r) {
        close(*a, *b, "daily return");
    }
    close(
        pm["sharpe_ratio"].as_f64().unwrap(),
        (mean(&r) - 0.05 / 365.0) / sd(&r) * 365f64.sqrt(),
        "sharpe_ratio",
    );
    let mut peak = f64::MIN;
    let mut mdd = 0.0f64;
    for v in &values {
        peak = peak.max(*v);
        mdd = mdd.max((peak - v) / peak);
    }
    close(pm["max_drawdown"].as_f64().unwrap(), mdd, "max_drawdown");
    let mut sorted = r.clone();
    sorted.sort_by(f64::total_cmp);
    let k = (0.05 * sorted.len() as f64).floor() as usize;
    let var = (-sorted[k]).max(0.0) * value;
    let cvar = (-mean(&sorted[..=k])).max(0.0) * value;
    assert!((pm["value_at_risk"].as_f64().unwrap() - var).abs() < 0.01);
    assert!((st["risk_metrics"]["portfolio_cvar"].as_f64().unwrap() - cvar).abs() < 0.01);
    let pos = h["positions"].as_array().unwrap();
    let weights: Vec<f64> = pos
        .iter()
        .map(|p| floats(&p["values"]).last().unwrap() / value)
        .collect();
    close(
        st["risk_metrics"]["concentration_risk"].as_f64().unwrap(),
        weights.iter().map(|w| w * w).sum(),
        "concentration_risk",
    );
    let mut corr = vec![];
    for i in 0..pos.len() {
        for j in i + 1..pos.len() {
            let (a, b): (Vec<f64>, Vec<f64>) = returns(&pos[i]["returns"])
                .into_iter()
                .zip(returns(&pos[j]["returns"]))
                .filter_map(|(x, y)| Some((x?, y?)))
                .unzip();
            let (ma, mb) = (mean(&a), mean(&b));
            let cov: f64 = a.iter().zip(&b).map(|(x, y)| (x - ma) * (y - mb)).sum();
            let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
            let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
            corr.push(cov / (va * vb).sqrt());
        }
    }
    close(
        st["risk_metrics"]["correlation_risk"].as_f64().unwrap(),
        mean(&corr),
        "correlation_risk",
    );
    for (p, w) in st["positions"].as_array().unwrap().iter().zip(&weights) {
        close(p["weight"].as_f64().unwrap(), *w, "weight");
    }

    // Risk parity, dry run: equal risk contributions, nothing applied.
    let rebalance = |body: Value| {
        let (d, auth) = (&d, auth);
        async move {
            let (s, _, v) = d
                .request(Method::POST, "/v1/portfolio/rebalance", &auth, Some(body))
                .await;
            (s, v)
        }
    };
    let (s, rp) = rebalance(json!({"strategy": "risk_parity", "dry_run": true})).await;
    assert_eq!((s, &rp["applied"]), (200, &json!(false)), "{rp}");
    let after: Vec<f64> = rp["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["risk_contribution_after"].as_f64().unwrap())
        .collect();
    for c in &after {
        assert!((c - 1.0 / 3.0).abs() < 1e-6 * 3.0, "{after:?}");
    }
    let targets: f64 = rp["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["target_weight"].as_f64().unwrap())
        .sum();
    assert!((targets - 1.0).abs() < 1e-6);
    let trades: f64 = rp["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["trade_amount"].as_f64().unwrap())
        .sum();
    assert!(trades.abs() < 1e-9, "trades sum to zero: {trades}");

    // Infeasible constraints are named; turnover stays within its limit.
    for (constraints, field) in [
        (
            json!({"max_position_size": 0.2}),
            "constraints.max_position_size",
        ),
        (json!({"target_risk": 0.000001}), "constraints.target_risk"),
    ] {
        let (s, e) = rebalance(
            json!({"strategy": "min_variance", "constraints": constraints, "dry_run": true}),
        )
        .await;
        assert_eq!(
            (s, &e["error"]["details"]["field"]),
            (400, &json!(field)),
            "{e}"
        );
    }
    let (s, limited) = rebalance(json!({"strategy": "equal_weight", "dry_run": true,
        "constraints": {"turnover_limit": 0.05, "max_position_size": 0.6}}))
    .await;
    assert_eq!(s, 200, "{limited}");
    assert!(limited["turnover"].as_f64().unwrap() <= 0.05 + 1e-9);
    let (s, e) = rebalance(json!({"strategy": "sideways"})).await;
    assert_eq!(
        (s, &e["error"]["details"]["field"]),
        (400, &json!("strategy"))
    );

    // Applied: equal weights, announced.
    let (s, eq) = rebalance(json!({"strategy": "equal_weight", "reason": "quarterly"})).await;
    assert_eq!((s, &eq["applied"]), (200, &json!(true)), "{eq}");
    let (_, st2) = d.get("/v1/portfolio/status", &key).await;
    for p in st2["positions"].as_array().unwrap() {
        assert!(
            (p["weight"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-3,
            "{st2}"
        );
    }
    let hook = eventually("the rebalance's webhook", || async {
        hooks
            .lock()
            .unwrap()
            .iter()
            .find(|h| h["type"] == "portfolio.rebalanced")
            .cloned()
    })
    .await;
    assert_eq!(hook["data"]["strategy"], "equal_weight");
    assert_eq!(hook["data"]["reason"], "quarterly");
    assert_eq!(
        hooks
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h["type"] == "position.opened")
            .count(),
        3,
        "one position per opportunity"
    );
    let seen = loop {
        let m = tokio::time::timeout(std::time::Duration::from_secs(15), ws.next())
            .await
            .expect("the rebalance on the WebSocket")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "portfolio.rebalanced" {
                break v;
            }
        }
    };
    assert_eq!(seen["channel"], "portfolio");

    // Another tenant sees an empty portfolio.
    let (_, other) = d.sign_up("otto").await;
    assert_eq!(
        d.get("/v1/portfolio/status", &other).await.1["total_positions"],
        0
    );
}

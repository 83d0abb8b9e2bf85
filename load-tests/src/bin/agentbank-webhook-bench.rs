//! `agentbank-webhook-bench`: webhook deliveries per second to a local
//! receiver and end-to-end latency from the API call to the webhook's
//! arrival (p50/p99). The receiver runs in this process; the gateway must
//! allow private URLs (`AGENTBANK_WEBHOOKS_ALLOW_PRIVATE=true`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use load_tests::client::Api;
use load_tests::report::histogram;
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    #[arg(long, env = "AGENTBANK_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Deposits to make (each one webhook).
    #[arg(long, default_value_t = 2_000)]
    events: usize,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[arg(long, default_value_t = 16)]
    agents: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The receiver: arrival time per deposit amount (unique per request).
    let arrived: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen = arrived.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let seen = seen.clone();
            async move {
                let at = Instant::now();
                if let Ok(v) = serde_json::from_str::<Value>(&body) {
                    if let Some(amount) = v["data"]["amount"].as_str() {
                        seen.lock().unwrap().entry(amount.to_string()).or_insert(at);
                    }
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let api = Api::new(&args.url);
    let tenant = api.tenant(args.agents, 0, "0").await?;
    let (status, hook) = api
        .post(
            "/v1/webhooks",
            Some(&tenant.key),
            None,
            json!({"url": hook_url, "events": ["deposit.completed"]}),
        )
        .await?;
    anyhow::ensure!(status == 201, "webhook creation failed: {status} {hook}");

    eprintln!(
        "{} deposits at concurrency {}",
        args.events, args.concurrency
    );
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let started = Instant::now();
    futures::stream::iter(0..args.events)
        .map(|i| {
            let (api, tenant, sent) = (&api, &tenant, sent.clone());
            async move {
                // A distinct amount per request identifies its webhook.
                let amount = (i + 1).to_string();
                let at = Instant::now();
                let agent = &tenant.agents[i % tenant.agents.len()];
                if let Ok((200, _)) = api.deposit(tenant, agent, &amount, None).await {
                    sent.lock().unwrap().insert(amount, at);
                }
            }
        })
        .buffer_unordered(args.concurrency)
        .collect::<Vec<_>>()
        .await;
    let acked = sent.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(120);
    while arrived.lock().unwrap().len() < acked && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (sent, arrived) = (
        sent.lock().unwrap().clone(),
        arrived.lock().unwrap().clone(),
    );
    let mut h = histogram();
    for (amount, at) in &sent {
        if let Some(got) = arrived.get(amount) {
            let _ = h.record(got.duration_since(*at).as_micros().max(1) as u64);
        }
    }
    let first = arrived.values().min().copied().unwrap_or(started);
    let last = arrived.values().max().copied().unwrap_or(started);
    let span = last.duration_since(first).as_secs_f64().max(1e-3);
    println!(
        "webhooks: {} of {} acknowledged deposits delivered; {:.0} deliveries/s; API call → webhook p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        arrived.len(),
        acked,
        arrived.len() as f64 / span,
        h.value_at_quantile(0.5) as f64 / 1e3,
        h.value_at_quantile(0.99) as f64 / 1e3,
        h.max() as f64 / 1e3,
    );
    anyhow::ensure!(arrived.len() == acked, "some webhooks never arrived");
    Ok(())
}

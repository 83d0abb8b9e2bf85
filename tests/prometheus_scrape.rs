//! A real Prometheus server (Debian's `prometheus`, installed by
//! `deploy/local/up`) scrapes the gateway's `/metrics` and its query API
//! returns the series: request counts per route and status, business
//! counters, processor timings, the sink's consumer lag.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Deployment;
use serde_json::{json, Value};

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls an instant query until it returns a series with a value ≥ `min`.
async fn query_until(base: &str, q: &str, min: f64) -> Value {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Ok(r) = client
            .get(format!("{base}/api/v1/query"))
            .query(&[("query", q)])
            .send()
            .await
        {
            last = r.json().await.unwrap_or(Value::Null);
            let hit = last["data"]["result"].as_array().and_then(|rs| {
                rs.iter().find(|s| {
                    s["value"][1]
                        .as_str()
                        .and_then(|v| v.parse::<f64>().ok())
                        .is_some_and(|v| v >= min)
                })
            });
            if let Some(series) = hit {
                return series.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("no series for {q} ≥ {min}: {last}");
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_the_expected_series() {
    let d = Deployment::new("prom").await;
    d.start_dev().await;
    let (user, key) = d.sign_up("observed").await;
    let a = d.create_agent(&user, &key, json!({"balance": 10})).await;
    let b = d.create_agent(&user, &key, json!({})).await;
    let (status, _) = d
        .post(
            "/agents/deposit",
            Some(&key),
            json!({"userid": user, "agentid": a, "amount": 1}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = d
        .post(
            "/payments/register",
            Some(&key),
            json!({"senderagentid": a, "receiveragentid": b, "name": "p", "type": "INTERNAL",
                   "paymentdetails": {"amount": "2.5"}}),
        )
        .await;
    assert_eq!(status, 200);

    let dir = std::path::PathBuf::from(common::log_dir()).join(format!("prometheus-{}", d.name));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: agentbank\n    static_configs:\n      - targets: ['{}']\n",
            d.http
        ),
    )
    .unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let _prometheus = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus on PATH (deploy/local/up installs Debian's package)"),
    );
    let base = format!("http://127.0.0.1:{port}");

    query_until(&base, "up{job=\"agentbank\"}", 1.0).await;
    let deposits = query_until(
        &base,
        "agentbank_http_requests_total{route=\"/agents/deposit\",status=\"200\"}",
        1.0,
    )
    .await;
    assert_eq!(deposits["metric"]["method"], "POST");
    query_until(
        &base,
        "agentbank_http_request_seconds_count{route=\"/payments/register\"}",
        1.0,
    )
    .await;
    let settled = query_until(&base, "agentbank_payments_total{outcome=\"settled\"}", 1.0).await;
    assert_eq!(settled["metric"]["currency"], "USDC");
    query_until(
        &base,
        "agentbank_payment_volume_micros_total{currency=\"USDC\"}",
        2_500_000.0,
    )
    .await;
    query_until(&base, "agentbank_processor_apply_seconds_count", 1.0).await;
    query_until(&base, "agentbank_processor_checkpoint_seconds_count", 1.0).await;
    query_until(
        &base,
        "count(agentbank_consumer_lag{consumer=\"sink\"})",
        4.0,
    )
    .await;
}

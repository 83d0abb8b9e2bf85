//! A hostile campaign: thousands of malformed and hostile requests against
//! every route of both APIs — oversized, deeply nested, wrong-typed,
//! unicode-edge, injection and malformed bodies, abusive headers and paths,
//! and another user's ids with an attacker's key — counting what came back:
//! every 5xx is a defect, and so is any answer carrying the victim's data.
//! Run it beside legitimate load (`load-tests/hostile` does both).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use load_tests::client::Api;

#[derive(Parser)]
struct Args {
    #[arg(long, env = "AGENTBANK_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Hostile requests to send.
    #[arg(long, default_value_t = 12_000)]
    requests: usize,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// Every route of both APIs: (method, path with `{id}` for an id).
const ROUTES: [(&str, &str); 40] = [
    ("POST", "/users"),
    ("POST", "/agents/create"),
    ("POST", "/agents/deposit"),
    ("POST", "/agents/withdraw"),
    ("GET", "/agentsWith/{agent}"),
    ("GET", "/agents/{user}"),
    ("POST", "/payments/register"),
    ("POST", "/payments/setApprove"),
    ("POST", "/payments/setDecline"),
    ("POST", "/payments/export"),
    ("GET", "/payments/{payment}"),
    ("GET", "/user/payments"),
    ("GET", "/user/wallet-balance"),
    ("GET", "/transactions/summary"),
    ("POST", "/savings/deposit"),
    ("POST", "/savings/withdraw"),
    ("GET", "/savings/{agent}"),
    ("POST", "/investment/calculator"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/refresh"),
    ("GET", "/v1/auth/me"),
    ("POST", "/v1/sandbox/keys"),
    ("POST", "/v1/opportunities"),
    ("GET", "/v1/opportunities"),
    ("GET", "/v1/opportunities/{opportunity}"),
    ("POST", "/v1/opportunities/{opportunity}/execute"),
    ("POST", "/v1/batch/opportunities"),
    ("POST", "/v1/monetizer/quote"),
    ("POST", "/v1/monetizer/execute"),
    ("GET", "/v1/monetizer/quotes/{quote}"),
    ("POST", "/v1/revenue/events"),
    ("GET", "/v1/revenue/transactions"),
    ("GET", "/v1/revenue/analytics"),
    ("GET", "/v1/revenue/ledger/verify"),
    ("PUT", "/v1/revenue/targets"),
    ("GET", "/v1/portfolio/status"),
    ("POST", "/v1/portfolio/rebalance"),
    ("POST", "/v1/webhooks"),
    ("GET", "/v1/webhooks/{webhook}"),
    ("POST", "/v1/webhooks/{webhook}/replay"),
];

/// Field names the routes read, for wrong-typed bodies.
const FIELDS: [&str; 24] = [
    "userid",
    "agentid",
    "agentId",
    "amount",
    "currency",
    "name",
    "email",
    "password",
    "paymentId",
    "investmentId",
    "senderagentid",
    "receiveragentid",
    "paymentdetails",
    "event_type",
    "product_id",
    "customer_id",
    "occurred_at",
    "metadata",
    "quote_id",
    "strategy",
    "constraints",
    "url",
    "events",
    "market_data",
];

/// Strings that have broken parsers and queries elsewhere.
const NASTY: [&str; 18] = [
    "' OR 1=1 --",
    "\"; DROP TABLE agents; --",
    "<script>alert(1)</script>",
    "../../../../etc/passwd",
    "${jndi:ldap://x/a}",
    "%00%0d%0a",
    "\u{0}",
    "\u{202e}gnp.exe",
    "\u{feff}",
    "𝕏🏦💸",
    "Å",
    "A\u{30a}",
    "-0",
    "1e400",
    "NaN",
    "0x7fffffffffffffff",
    "99999999999999999999999999999999999",
    "{{7*7}}",
];

struct Victim {
    secrets: Vec<String>,
    ids: BTreeMap<&'static str, String>,
}

fn fill(path: &str, ids: &BTreeMap<&'static str, String>, rng: &mut StdRng) -> String {
    let mut out = path.to_string();
    for (kind, id) in ids {
        let slot = format!("{{{kind}}}");
        if out.contains(&slot) {
            let value = match rng.gen_range(0..4) {
                0 => id.clone(),
                1 => NASTY[rng.gen_range(0..NASTY.len())].to_string(),
                2 => "x".repeat(rng.gen_range(60..5_000)),
                _ => uuid::Uuid::new_v4().to_string(),
            };
            out = out.replace(&slot, &urlencode(&value));
        }
    }
    out
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn wrong_value(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..9) {
        0 => Value::Null,
        1 => json!([1, "two", null]),
        2 => json!({"nested": {"deeper": [true]}}),
        3 => json!(rng.gen::<f64>() * 1e300),
        4 => json!(-1),
        5 => json!(true),
        6 => json!(NASTY[rng.gen_range(0..NASTY.len())]),
        7 => json!("9".repeat(rng.gen_range(20..400))),
        _ => json!("é".repeat(rng.gen_range(100..3_000))),
    }
}

/// One hostile request: (method, path, headers, raw body).
type Hostile = (String, String, Vec<(String, String)>, Option<Vec<u8>>);

fn hostile(i: usize, rng: &mut StdRng, attacker_key: &str, victim: &Victim) -> Hostile {
    let (method, template) = ROUTES[rng.gen_range(0..ROUTES.len())];
    let path = fill(template, &victim.ids, rng);
    let mut headers = vec![("x-api-key".to_string(), attacker_key.to_string())];
    let json_type = ("content-type".to_string(), "application/json".to_string());
    let body: Option<Vec<u8>> = match i % 10 {
        // Oversized: over the 64 KiB limit, or far over it.
        0 => Some(
            format!(
                "{{\"name\":\"{}\"}}",
                "a".repeat(if rng.gen_bool(0.5) { 70_000 } else { 1_200_000 })
            )
            .into_bytes(),
        ),
        // Deeply nested.
        1 => {
            let depth = rng.gen_range(100..20_000);
            Some(format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes())
        }
        // Wrong types in every field.
        2 | 3 => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.gen_range(1..8) {
                m.insert(
                    FIELDS[rng.gen_range(0..FIELDS.len())].to_string(),
                    wrong_value(rng),
                );
            }
            Some(Value::Object(m).to_string().into_bytes())
        }
        // Victim ids in the body, with the attacker's key.
        4 | 5 => {
            let id = |k: &str| victim.ids.get(k).cloned().unwrap_or_default();
            Some(json!({"userid": id("user"), "agentid": id("agent"), "agentId": id("agent"),
                "paymentId": id("payment"), "quote_id": id("quote"), "amount": 1, "currency": "USDC",
                "investmentId": id("payment")}).to_string().into_bytes())
        }
        // Malformed JSON.
        6 => Some(match rng.gen_range(0..5) {
            0 => b"{\"amount\": ".to_vec(),
            1 => b"{\"a\":1}garbage".to_vec(),
            2 => b"\xef\xbb\xbf{\"a\":1}".to_vec(),
            3 => b"{\"a\":\"\\ud800\"}".to_vec(),
            _ => (0..rng.gen_range(1..300))
                .map(|_| rng.gen::<u8>())
                .collect(),
        }),
        // Credentials abused.
        7 => {
            headers[0].1 = match rng.gen_range(0..4) {
                0 => String::new(),
                1 => "k".repeat(16_000),
                2 => "ak_live_' OR 1=1 --".into(),
                _ => "test_sk_00000000000000000000000000000000".into(),
            };
            if rng.gen_bool(0.5) {
                headers.push((
                    "authorization".into(),
                    format!("Bearer {}", "e".repeat(rng.gen_range(10..9_000))),
                ));
            }
            Some(b"{}".to_vec())
        }
        // Query strings of nasty values.
        8 => {
            let q = NASTY[rng.gen_range(0..NASTY.len())];
            return (
                method.to_string(),
                format!(
                    "{path}?limit={}&cursor={}&start_date={}&filter[score][gte]={}&sort={}",
                    urlencode(q),
                    urlencode(q),
                    urlencode(q),
                    urlencode(q),
                    urlencode(q)
                ),
                headers,
                None,
            );
        }
        // Unicode-edge strings in plausible bodies.
        _ => Some(
            json!({"name": NASTY[rng.gen_range(0..NASTY.len())], "email": "a@b.c",
            "password": "\u{0}\u{202e}", "product_id": "𝕏".repeat(200), "customer_id": "\u{feff}",
            "event_type": "payment_received", "amount": "1", "currency": "usd"})
            .to_string()
            .into_bytes(),
        ),
    };
    if body.is_some() && !i.is_multiple_of(13) {
        headers.push(json_type);
    }
    (method.to_string(), path, headers, body)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let api = Api::new(&args.url);
    // The victim, with a trace of everything it owns; the attacker.
    let victim_tenant = api.tenant(1, 1, "100").await.context("victim")?;
    let attacker = api.tenant(1, 0, "1").await.context("attacker")?;
    let (s, pay) = api
        .pay(
            &victim_tenant,
            &victim_tenant.approval_agents[0],
            &victim_tenant.agents[0],
            "1",
            None,
        )
        .await?;
    anyhow::ensure!(s == 200, "victim payment: {s} {pay}");
    let payment = load_tests::client::payment_id(&pay)
        .map(|p| p.to_string())
        .unwrap_or_default();
    let (_, q) = api
        .post("/v1/monetizer/quote", Some(&victim_tenant.key), None,
            json!({"product_id": "p", "segment_id": "s", "context": {"competitor_pricing": {"a": 10}}}))
        .await?;
    let (_, o) = api
        .post("/v1/opportunities", Some(&victim_tenant.key), None,
            json!({"name": "victim-only", "vertical": "saas",
                "market_data": {"total_market_size": 1000000, "growth_rate": 0.1, "competition_count": 3},
                "technical_requirements": {"complexity": "low", "time_to_market": 30, "required_expertise": []}}))
        .await?;
    let mut ids = BTreeMap::new();
    ids.insert("user", victim_tenant.user_id.clone());
    ids.insert("agent", victim_tenant.agents[0].clone());
    ids.insert("payment", payment);
    ids.insert(
        "quote",
        q["quote_id"].as_str().unwrap_or_default().to_string(),
    );
    ids.insert(
        "opportunity",
        o["id"].as_str().unwrap_or_default().to_string(),
    );
    ids.insert("webhook", "wh_doesnotexist".to_string());
    let victim = Arc::new(Victim {
        secrets: ids.values().filter(|v| v.len() > 8).cloned().collect(),
        ids,
    });

    let started = Instant::now();
    let statuses: Arc<Mutex<BTreeMap<u16, usize>>> = Arc::default();
    let server_errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let leaks: Arc<Mutex<Vec<String>>> = Arc::default();
    let transport: Arc<Mutex<usize>> = Arc::default();
    futures::stream::iter(0..args.requests)
        .for_each_concurrent(args.concurrency, |i| {
            let (api, victim, key) = (api.clone(), victim.clone(), attacker.key.clone());
            let (statuses, server_errors, leaks, transport) = (
                statuses.clone(),
                server_errors.clone(),
                leaks.clone(),
                transport.clone(),
            );
            let seed = args.seed;
            async move {
                let mut rng =
                    StdRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let (method, path, headers, body) = hostile(i, &mut rng, &key, &victim);
                let mut req = api.http.request(
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET),
                    format!("{}{path}", api.base),
                );
                for (k, v) in &headers {
                    req = req.header(k, v);
                }
                if let Some(b) = body {
                    req = req.body(b);
                }
                match req.send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let text = r.text().await.unwrap_or_default();
                        *statuses.lock().unwrap().entry(status).or_default() += 1;
                        if status >= 500 {
                            server_errors.lock().unwrap().push(format!(
                                "{status} {method} {} → {}",
                                path.chars().take(120).collect::<String>(),
                                text.chars().take(200).collect::<String>()
                            ));
                        }
                        for s in &victim.secrets {
                            if text.contains(s.as_str()) && !path.contains(s.as_str()) {
                                leaks.lock().unwrap().push(format!("{method} {path}: {s}"));
                            }
                        }
                    }
                    // A connection the server refused or cut (oversized bodies): counted apart.
                    Err(_) => *transport.lock().unwrap() += 1,
                }
            }
        })
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let statuses = statuses.lock().unwrap().clone();
    let answered: usize = statuses.values().sum();
    let server_errors = server_errors.lock().unwrap().clone();
    let leaks = leaks.lock().unwrap().clone();
    println!(
        "hostile campaign: {} requests in {elapsed:.1} s ({:.0}/s), {answered} answered, {} cut off by the server",
        args.requests,
        args.requests as f64 / elapsed,
        transport.lock().unwrap()
    );
    println!("  statuses: {statuses:?}");
    println!(
        "  5xx: {}   cross-tenant answers carrying the victim's ids: {}",
        server_errors.len(),
        leaks.len()
    );
    for e in server_errors.iter().take(10) {
        println!("  5xx sample: {e}");
    }
    for l in leaks.iter().take(10) {
        println!("  leak: {l}");
    }
    anyhow::ensure!(
        server_errors.is_empty() && leaks.is_empty(),
        "the campaign found defects"
    );
    Ok(())
}

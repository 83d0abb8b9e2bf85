//! Webhooks against the real stack: receivers are small HTTP servers in the
//! test. Each event arrives once, signed so that an independent verifier
//! (Python's `hmac` as the revenue seed writes it, and the `standardwebhooks`
//! library) accepts it; a receiver that fails twice gets the event on the
//! third attempt, on the (compressed) schedule; replay sends it again; the
//! delivery log shows it all; errors use the revenue API's envelope.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use common::Deployment;
use serde_json::{json, Value};

/// One request a receiver got.
#[derive(Clone, Debug)]
struct Received {
    at: Instant,
    headers: HeaderMap,
    body: String,
}

/// A receiver answering 500 to its first `fail_first` requests, then 200;
/// 503 to everything while `up` is false.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    up: Arc<std::sync::atomic::AtomicBool>,
}

async fn receiver(fail_first: usize) -> Receiver {
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (seen, is_up) = (got.clone(), up.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let (seen, is_up) = (seen.clone(), is_up.clone());
            async move {
                if !is_up.load(std::sync::atomic::Ordering::SeqCst) {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                let mut g = seen.lock().unwrap();
                g.push(Received {
                    at: Instant::now(),
                    headers,
                    body,
                });
                if g.len() <= fail_first {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { url, got, up }
}

impl Receiver {
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.got.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} arrived",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs the Python verifier over `deliveries`; panics with its output on failure.
fn verify_in_python(secret: &str, deliveries: &[Received]) {
    let input: Vec<Value> = deliveries
        .iter()
        .map(|r| {
            let headers: serde_json::Map<String, Value> = r
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap())))
                .collect();
            json!({"secret": secret, "body": r.body, "headers": headers})
        })
        .collect();
    let mut child = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/verify_webhooks.py"
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (deploy/local/up installs standardwebhooks)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "signatures rejected: {text}");
}

fn body(r: &Received) -> Value {
    serde_json::from_str(&r.body).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_are_signed_retried_logged_and_replayable() {
    let d = Deployment::new("webhooks").await;
    let env = [
        ("AGENTBANK_WEBHOOKS_ALLOW_PRIVATE", "true"),
        ("AGENTBANK_WEBHOOK_SCHEDULE_MS", "300,600"),
    ];
    d.start_with_env("dev", &["dev"], &env);
    d.wait_healthy().await;
    let (user, key) = d.sign_up("hooked").await;

    // Errors: the revenue API's envelope.
    let (status, e) = d
        .post("/v1/webhooks", Some(&key), json!({"events": ["*"]}))
        .await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["code"], "VALIDATION_ERROR");
    assert_eq!(e["error"]["message"], "url is required");
    assert!(e["error"]["request_id"]
        .as_str()
        .unwrap()
        .starts_with("req_"));
    assert!(e["error"]["timestamp"].is_string());
    let (status, e) = d
        .post(
            "/v1/webhooks",
            Some(&key),
            json!({"url": "http://x.test/", "events": ["nope"]}),
        )
        .await;
    assert_eq!(
        (status, e["error"]["code"].clone()),
        (400, json!("VALIDATION_ERROR")),
        "{e}"
    );
    let (status, e) = d.post("/v1/webhooks", None, json!({})).await;
    assert_eq!(
        (status, e["error"]["code"].clone()),
        (401, json!("UNAUTHORIZED"))
    );

    // A healthy receiver for deposits and agent creation.
    let ok = receiver(0).await;
    let (status, hook) = d
        .post(
            "/v1/webhooks",
            Some(&key),
            json!({"url": ok.url, "events": ["agent.created", "deposit.completed"]}),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    let hook_id = hook["id"].as_str().unwrap().to_string();
    // A flaky one: fails twice, then accepts.
    let flaky = receiver(2).await;
    let (_, flaky_hook) = d
        .post(
            "/v1/webhooks",
            Some(&key),
            json!({"url": flaky.url, "events": ["deposit.completed"], "secret": "a-secret-of-my-own-choosing"}),
        )
        .await;
    assert!(
        flaky_hook.get("secret").is_none(),
        "a given secret is never echoed"
    );

    let agent = d.create_agent(&user, &key, json!({})).await;
    for amount in ["1.5", "2"] {
        let (status, _) = d
            .post(
                "/agents/deposit",
                Some(&key),
                json!({"userid": user, "agentid": agent, "amount": amount}),
            )
            .await;
        assert_eq!(status, 200);
    }

    // Each event once, in order, signed.
    let got = ok.wait_for(3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_now = ok.got.lock().unwrap().clone();
    assert_eq!(got_now.len(), 3, "no duplicates: {got_now:?}");
    let types: Vec<Value> = got.iter().map(|r| body(r)["type"].clone()).collect();
    assert_eq!(
        types,
        [
            json!("agent.created"),
            json!("deposit.completed"),
            json!("deposit.completed")
        ]
    );
    let first_deposit = body(&got[1]);
    assert_eq!(first_deposit["data"]["amount"], "1.5");
    assert_eq!(first_deposit["data"]["agent_id"], agent.as_str());
    assert!(first_deposit["id"].as_str().unwrap().starts_with("evt_"));
    verify_in_python(&secret, &got);

    // The flaky receiver: 2 failures, then delivered, each wait ≥ its step.
    let tries = flaky.wait_for(4).await; // 3 attempts for the first deposit, then the second
    assert_eq!(
        body(&tries[0])["id"],
        body(&tries[2])["id"],
        "retries resend the same event"
    );
    assert_eq!(
        tries[0].headers["webhook-id"],
        tries[2].headers["webhook-id"]
    );
    let gap = |a: usize, b: usize| tries[b].at - tries[a].at;
    assert!(gap(0, 1) >= Duration::from_millis(270), "{:?}", gap(0, 1));
    assert!(gap(1, 2) >= Duration::from_millis(540), "{:?}", gap(1, 2));
    assert_eq!(
        body(&tries[3])["data"]["amount"],
        "2",
        "per-endpoint order kept"
    );
    verify_in_python("a-secret-of-my-own-choosing", &tries);

    // The delivery log.
    let flaky_id = flaky_hook["id"].as_str().unwrap();
    let (_, log) = d
        .get(&format!("/v1/webhooks/{flaky_id}/deliveries"), &key)
        .await;
    let log = log["deliveries"].as_array().unwrap().clone();
    assert_eq!(log.len(), 2, "{log:?}");
    let first = &log[1];
    assert_eq!(
        (first["status"].clone(), first["attempts"].clone()),
        (json!("succeeded"), json!(3))
    );

    // Replay one delivery: the same event again.
    let (status, r) = d
        .post(
            &format!(
                "/v1/webhooks/deliveries/{}/replay",
                first["id"].as_str().unwrap()
            ),
            Some(&key),
            json!({}),
        )
        .await;
    assert_eq!(status, 202, "{r}");
    let again = flaky.wait_for(5).await;
    assert_eq!(body(&again[4])["id"], body(&tries[2])["id"]);

    // Range replay over everything the healthy receiver got.
    let (status, r) = d
        .post(
            &format!("/v1/webhooks/{hook_id}/replay"),
            Some(&key),
            json!({"from": "2000-01-01T00:00:00Z", "to": "2999-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!((status, r["queued"].clone()), (202, json!(3)));
    let all = ok.wait_for(6).await;
    let replayed: Vec<Value> = all[3..].iter().map(|r| body(r)["id"].clone()).collect();
    let original: Vec<Value> = all[..3].iter().map(|r| body(r)["id"].clone()).collect();
    assert_eq!(replayed, original);

    // Test event, CRUD and scoping.
    let (status, _) = d
        .post(
            &format!("/v1/webhooks/{hook_id}/test"),
            Some(&key),
            json!({}),
        )
        .await;
    assert_eq!(status, 202);
    let tested = ok.wait_for(7).await;
    assert_eq!(body(&tested[6])["type"], "webhook.test");
    let (_, other) = d.sign_up("stranger").await;
    let (status, e) = d.get(&format!("/v1/webhooks/{hook_id}"), &other).await;
    assert_eq!(
        (status, e["error"]["code"].clone()),
        (404, json!("RESOURCE_NOT_FOUND"))
    );
    let (_, listed) = d.get("/v1/webhooks", &key).await;
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 2);
    let r = d
        .client
        .patch(d.url(&format!("/v1/webhooks/{hook_id}")))
        .header("x-api-key", &key)
        .json(&json!({"active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["active"], false);
    let r = d
        .client
        .delete(d.url(&format!("/v1/webhooks/{hook_id}")))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(d.get(&format!("/v1/webhooks/{hook_id}"), &key).await.0, 404);
}

/// The receiver is down while events happen and the dispatcher is killed
/// and restarted: once both are back, every event arrives, in order.
#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_down_across_a_dispatcher_restart_still_gets_everything() {
    let d = Deployment::new("webhookrestart").await;
    let env = [
        ("AGENTBANK_WEBHOOKS_ALLOW_PRIVATE", "true"),
        // Many quick retries: the outage must not exhaust them.
        (
            "AGENTBANK_WEBHOOK_SCHEDULE_MS",
            &"250,".repeat(40)[..(4 * 40 - 1)],
        ),
    ];
    d.run(&["topics"]);
    d.run(&["migrate"]);
    for role in ["processor", "sink", "gateway", "dispatcher"] {
        d.start_with_env(role, &[role], &env);
    }
    d.wait_healthy().await;
    let (user, key) = d.sign_up("patient").await;
    let r = receiver(0).await;
    r.up.store(false, std::sync::atomic::Ordering::SeqCst);
    let (status, _) = d
        .post(
            "/v1/webhooks",
            Some(&key),
            json!({"url": r.url, "events": ["*"]}),
        )
        .await;
    assert_eq!(status, 201);
    let agent = d.create_agent(&user, &key, json!({})).await;
    for i in 1..=5 {
        let (status, _) = d
            .post(
                "/agents/deposit",
                Some(&key),
                json!({"userid": user, "agentid": agent, "amount": i}),
            )
            .await;
        assert_eq!(status, 200);
        if i == 2 {
            d.kill("dispatcher");
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.start_with_env("dispatcher", &["dispatcher"], &env);
    tokio::time::sleep(Duration::from_millis(500)).await;
    r.up.store(true, std::sync::atomic::Ordering::SeqCst);
    // agent.created + 5 deposits, and the wallet's 5 wallet.changed (on
    // the user's key, so interleaved anyhow); the sign-up bonus and funding
    // predate the endpoint.
    let got: Vec<Received> = r
        .wait_for(11)
        .await
        .into_iter()
        .filter(|x| body(x)["type"] != "wallet.changed")
        .collect();
    assert_eq!(got.len(), 6);
    let amounts: Vec<Value> = got[1..6]
        .iter()
        .map(|x| body(x)["data"]["amount"].clone())
        .collect();
    assert_eq!(body(&got[0])["type"], "agent.created");
    assert_eq!(
        amounts,
        [json!("1"), json!("2"), json!("3"), json!("4"), json!("5")]
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        r.got.lock().unwrap().len(),
        11,
        "each event once after recovery"
    );
}

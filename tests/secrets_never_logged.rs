//! Secrets never reach the logs: every role of a `dev` stack runs at
//! `RUST_LOG=trace` through flows that carry every kind of secret — a
//! password, user and agent API keys, a sandbox key, access and refresh
//! tokens, a service token, a webhook secret (and the signatures it makes),
//! the JWT signing key, the secrets-sealing key, the wallet mnemonic — then
//! every line of the log is searched for each of them.

mod common;

use common::{eventually, Deployment};
use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio_tungstenite::tungstenite::Message;

const PASSWORD: &str = "a-Very-Secret-Password-1";
const SERVICE_TOKEN: &str = "svc-Secret-Token-5f2b8e1c9a";
const JWT_SECRET_HEX: &str = "5ec12e75ec12e75ec12e75ec12e75ec12e75ec12e75ec12e75ec12e75ec12e7a";
const SEALING_KEY_HEX: &str = "0badc0de0badc0de0badc0de0badc0de0badc0de0badc0de0badc0de0badc0de";
const MNEMONIC: &str = "zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo wrong";
const WEBHOOK_SECRET: &str = "whsec_c2VjcmV0LXdlYmhvb2sta2V5LTEyMzQ1Njc4";

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_appears_in_any_log_line() {
    let d = Deployment::new("secrets").await;
    let digest = hex::encode(Sha256::digest(SERVICE_TOKEN.as_bytes()));
    d.set_env(&[
        ("RUST_LOG", "trace"),
        (
            "AGENTBANK_SERVICE_TOKENS",
            &format!("ops:act+tiers:{digest}"),
        ),
        ("AGENTBANK_JWT_KEYS", &format!("k1:{JWT_SECRET_HEX}")),
        ("AGENTBANK_SECRETS_KEY", SEALING_KEY_HEX),
        ("AGENTBANK_WALLET_MNEMONIC", MNEMONIC),
        ("AGENTBANK_WEBHOOKS_ALLOW_PRIVATE", "true"),
        ("AGENTBANK_DEFAULT_TIER", "enterprise"),
    ]);
    d.start_dev().await;
    let mut secrets: Vec<String> = vec![
        PASSWORD.into(),
        SERVICE_TOKEN.into(),
        JWT_SECRET_HEX.into(),
        SEALING_KEY_HEX.into(),
        MNEMONIC.into(),
        WEBHOOK_SECRET.into(),
    ];

    let email = format!("sec-{}@example.com", uuid::Uuid::new_v4().simple());
    let (s, user) = d
        .post(
            "/users",
            None,
            json!({"name": "Sec", "email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, 201, "{user}");
    let user_id = user["id"].as_str().unwrap().to_string();
    let key = user["apikey"].as_str().unwrap().to_string();
    secrets.push(key.clone());
    let auth = [("x-api-key", key.as_str())];

    // An agent with its own key, money moving, a payment approved.
    let (s, a) = d
        .post("/agents/create", Some(&key), json!({"userid": user_id, "name": "payer", "balance": 10, "requireapprovalforall": true}))
        .await;
    assert_eq!(s, 200, "{a}");
    let agent_key = a["apikey"].as_str().unwrap().to_string();
    secrets.push(agent_key.clone());
    let payer = a["id"].as_str().unwrap().to_string();
    let payee = d.create_agent(&user_id, &key, json!({})).await;
    let (s, p) = d
        .post(
            "/payments/register",
            Some(&agent_key),
            json!({"senderagentid": payer, "receiveragentid": payee,
              "name": "n", "type": "INTERNAL", "paymentdetails": {"amount": 1}}),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    let (s, _) = d
        .post(
            "/payments/setApprove",
            Some(&key),
            json!({"paymentId": p["id"]}),
        )
        .await;
    assert_eq!(s, 200);

    // Login sessions: access and refresh tokens, refreshed, used, logged out.
    let (s, _, pair) = d
        .request(
            Method::POST,
            "/v1/auth/login",
            &[],
            Some(json!({"email": email, "password": PASSWORD})),
        )
        .await;
    assert_eq!(s, 200, "{pair}");
    let (s, _, pair2) = d
        .request(
            Method::POST,
            "/v1/auth/refresh",
            &[],
            Some(json!({"refresh_token": pair["refresh_token"]})),
        )
        .await;
    assert_eq!(s, 200, "{pair2}");
    for p in [&pair, &pair2] {
        secrets.push(p["access_token"].as_str().unwrap().into());
        secrets.push(p["refresh_token"].as_str().unwrap().into());
    }
    let bearer = format!("Bearer {}", pair2["access_token"].as_str().unwrap());
    let (s, _, _) = d
        .request(
            Method::GET,
            "/v1/auth/me",
            &[("authorization", &bearer)],
            None,
        )
        .await;
    assert_eq!(s, 200);
    // A service token acting for the user, and setting a tier.
    let me = d
        .request(
            Method::GET,
            "/v1/auth/me",
            &[
                ("x-service-token", SERVICE_TOKEN),
                ("x-on-behalf-of", &uuid_of(&d, &key).await),
            ],
            None,
        )
        .await;
    assert_eq!(me.0, 200, "{}", me.2);

    // A sandbox key, used.
    let (s, _, tk) = d
        .request(Method::POST, "/v1/sandbox/keys", &auth, None)
        .await;
    assert_eq!(s, 201);
    let test_key = tk["api_key"].as_str().unwrap().to_string();
    secrets.push(test_key.clone());
    assert_eq!(d.get("/v1/opportunities", &test_key).await.0, 200);

    // A webhook with a chosen secret, delivering (signed) to a receiver.
    let (url, hooks) = common::hook_receiver().await;
    let (s, h) = d
        .post(
            "/v1/webhooks",
            Some(&key),
            json!({"url": url, "events": ["*"], "secret": WEBHOOK_SECRET}),
        )
        .await;
    assert_eq!(s, 201, "{h}");
    // A generated secret is shown once: it must not be logged either.
    let (s, h2) = d
        .post(
            "/v1/webhooks",
            Some(&key),
            json!({"url": url, "events": ["opportunity.created"]}),
        )
        .await;
    assert_eq!(s, 201, "{h2}");
    secrets.push(h2["secret"].as_str().unwrap().into());
    let (s, _, _) = d
        .request(
            Method::POST,
            "/v1/opportunities",
            &[auth[0]],
            Some(json!({"name": "Secretless", "vertical": "saas"})),
        )
        .await;
    assert_eq!(s, 201);
    eventually("a signed delivery", || async {
        (!hooks.lock().unwrap().is_empty()).then_some(())
    })
    .await;

    // The WebSocket auth message carries a key; SSE a bearer token.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/events", d.http))
        .await
        .unwrap();
    ws.send(Message::Text(
        json!({"type": "auth", "token": key}).to_string().into(),
    ))
    .await
    .unwrap();
    let Some(Ok(Message::Text(ok))) = ws.next().await else {
        panic!()
    };
    assert_eq!(
        serde_json::from_str::<Value>(&ok).unwrap()["type"],
        "auth.ok"
    );
    let r = d
        .client
        .get(d.url("/v1/metrics/stream"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(r);
    let (s, _, _) = d
        .request(
            Method::POST,
            "/v1/auth/logout",
            &[("authorization", &bearer)],
            None,
        )
        .await;
    assert_eq!(s, 204);

    // A wrong password and a spent refresh token (revoking the session) are
    // logged as failures, not shown.
    d.request(
        Method::POST,
        "/v1/auth/login",
        &[],
        Some(json!({"email": email, "password": "Wrong-Password-123"})),
    )
    .await;
    d.request(
        Method::POST,
        "/v1/auth/refresh",
        &[],
        Some(json!({"refresh_token": pair["refresh_token"]})),
    )
    .await;

    // Give the roles a moment to write what they log about all this.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let log = std::fs::read_to_string(format!("{}/{}-dev.log", common::log_dir(), d.name)).unwrap();
    assert!(log.lines().count() > 1_000, "trace logging was on");
    for secret in &secrets {
        // Each secret whole, and for keys and tokens their secret half.
        let mut needles = vec![secret.clone()];
        if let Some((_, tail)) = secret.rsplit_once('_') {
            if tail.len() >= 16 {
                needles.push(tail.to_string());
            }
        }
        for needle in needles {
            if let Some(line) = log.lines().find(|l| l.contains(&needle)) {
                panic!(
                    "a secret reached the log: {}…\n{}",
                    &needle[..8.min(needle.len())],
                    &line[..line.len().min(300)]
                );
            }
        }
    }
}

/// The user's UUID, as the service token's `X-On-Behalf-Of` wants it.
async fn uuid_of(d: &Deployment, key: &str) -> String {
    let (_, _, me) = d
        .request(Method::GET, "/v1/auth/me", &[("x-api-key", key)], None)
        .await;
    me["user_id"].as_str().unwrap().to_string()
}

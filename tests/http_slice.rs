//! The first vertical slice over HTTP, against the real broker and Postgres:
//! sign up → create agent → get → list → deposit, read-your-writes, and bad
//! input answered in the Mage error format with nothing written.

mod common;

use common::Deployment;
use rust_decimal::Decimal;
use serde_json::json;
use std::str::FromStr;

async fn journal_rows(d: &Deployment) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM journal_postings")
        .fetch_one(&d.pool().await)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn slice_end_to_end_with_exact_amounts_and_read_your_writes() {
    let d = Deployment::new("slice").await;
    d.start_dev().await;
    let (user, key) = d.sign_up("ada").await;
    assert!(user.starts_with("user_"));

    let (status, created) = d
        .post(
            "/agents/create",
            Some(&key),
            json!({"userid": user, "name": "Payment Assistant", "description": "pays", "balance": 6,
                   "dailylimit": 1000, "transactionlimit": 100, "requireapprovalaboveamount": 50.5,
                   "tags": ["customer-support", "payments"]}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let agent = created["id"].as_str().unwrap().to_string();
    assert!(agent.starts_with("agent_"));
    assert!(created["apikey"].as_str().unwrap().starts_with("mag_"));
    assert_eq!(created["balance"], "6");
    assert_eq!(
        created["paymentRules"]["requireApprovalAboveAmount"],
        json!(50.5)
    );
    assert_eq!(created["tags"], json!(["customer-support", "payments"]));

    // Read-your-writes: the GET right after the write sees it.
    let (status, got) = d.get(&format!("/agentsWith/{agent}"), &key).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["balance"], "6");

    // Exact decimals: 0.1 + 0.2 is 0.3 here, and 0.000001 (USDC's smallest unit) is kept.
    for amount in [json!(0.1), json!("0.2"), json!(0.000001)] {
        let (status, dep) = d
            .post(
                "/v1/agents/deposit",
                Some(&key),
                json!({"userid": user, "agentid": agent, "amount": amount}),
            )
            .await;
        assert_eq!(status, 200, "{dep}");
        assert_eq!(dep["success"], true);
    }
    let (_, got) = d.get(&format!("/v1/agentsWith/{agent}"), &key).await;
    assert_eq!(got["balance"], "6.300001");

    // The list, by short id and by raw UUID of the user; both prefixes.
    let (status, list) = d.get(&format!("/agents/{user}"), &key).await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], agent);

    // The journal: balanced, and the agent's account equals its balance.
    let pool = d.pool().await;
    let total: Decimal = sqlx::query_scalar("SELECT sum(amount) FROM journal_postings")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(total.is_zero());
    let agent_sum: Decimal = sqlx::query_scalar(
        "SELECT sum(amount) FROM journal_postings WHERE account LIKE 'agent:%:available'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(agent_sum, Decimal::from_str("6.300001").unwrap());

    // Withdrawals: never below zero; the journal stays balanced.
    let (status, body) = d
        .post(
            "/agents/withdraw",
            Some(&key),
            json!({"userid": user, "agentid": agent, "amount": 7}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (400, "Insufficient balance")
    );
    let (status, body) = d
        .post(
            "/v1/agents/withdraw",
            Some(&key),
            json!({"userid": user, "agentid": agent, "amount": "1.3"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["updatedBalance"], "5.000001");
    assert_eq!(
        body["message"],
        "Successfully withdrew 1.3 USDC from agent to user"
    );
    let total: Decimal = sqlx::query_scalar("SELECT sum(amount) FROM journal_postings")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(total.is_zero());
    let (_, got) = d.get(&format!("/agentsWith/{agent}"), &key).await;
    assert_eq!(got["balance"], "5.000001");

    // Idempotency-Key: the same deposit twice applies once.
    for _ in 0..2 {
        let r = d
            .client
            .post(d.url("/agents/deposit"))
            .header("x-api-key", &key)
            .header("Idempotency-Key", "dep-1")
            .json(&json!({"userid": user, "agentid": agent, "amount": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["updatedBalance"], "6.000001");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_error_and_writes_nothing() {
    let d = Deployment::new("badinput").await;
    d.start_dev().await;
    let (user, key) = d.sign_up("bob").await;
    let agent = d.create_agent(&user, &key, json!({})).await;
    let (other_user, other_key) = d.sign_up("eve").await;
    let before = journal_rows(&d).await;

    let deposit = |body: serde_json::Value| body;
    let cases: Vec<(&str, Option<&str>, serde_json::Value, u16, &str)> = vec![
        (
            "/agents/deposit",
            Some(&key),
            deposit(json!({"agentid": agent, "amount": 1})),
            400,
            "userid, agentid, and amount are required.",
        ),
        (
            "/agents/deposit",
            Some(&key),
            deposit(json!({"userid": user, "agentid": agent, "amount": -5})),
            400,
            "Invalid deposit amount",
        ),
        (
            "/agents/deposit",
            Some(&key),
            deposit(json!({"userid": user, "agentid": agent, "amount": 0})),
            400,
            "Invalid deposit amount",
        ),
        (
            "/agents/deposit",
            Some(&key),
            deposit(json!({"userid": user, "agentid": agent, "amount": 0.0000001})),
            400,
            "Invalid deposit amount",
        ),
        (
            "/agents/deposit",
            Some(&key),
            deposit(json!({"userid": user, "agentid": agent, "amount": "ten"})),
            400,
            "Invalid deposit amount",
        ),
        (
            "/agents/deposit",
            Some(&key),
            deposit(json!({"userid": user, "agentid": agent, "amount": true})),
            400,
            "Invalid deposit amount",
        ),
        (
            "/agents/deposit",
            Some(&key),
            deposit(json!({"userid": user, "agentid": agent, "amount": 1e300})),
            400,
            "Invalid deposit amount",
        ),
        (
            "/agents/deposit",
            Some(&key),
            deposit(json!({"userid": user, "agentid": agent, "amount": 1, "currency": "EUR"})),
            400,
            "Invalid deposit amount",
        ),
        (
            "/agents/deposit",
            Some(&key),
            deposit(
                json!({"userid": user, "agentid": "agent_1111111111111111111111", "amount": 1}),
            ),
            404,
            "Agent not found",
        ),
        (
            "/agents/deposit",
            Some(&key),
            deposit(json!({"userid": user, "agentid": "not-an-id", "amount": 1})),
            404,
            "Agent not found",
        ),
        // Another user's agent: not found, never moved.
        (
            "/agents/deposit",
            Some(&other_key),
            deposit(json!({"userid": other_user, "agentid": agent, "amount": 1})),
            404,
            "Agent not found",
        ),
        // Acting as another user.
        (
            "/agents/deposit",
            Some(&other_key),
            deposit(json!({"userid": user, "agentid": agent, "amount": 1})),
            404,
            "User not found",
        ),
        (
            "/agents/deposit",
            Some("mag_nope_nope"),
            deposit(json!({"userid": user, "agentid": agent, "amount": 1})),
            401,
            "Invalid or missing API key",
        ),
        (
            "/agents/deposit",
            None,
            deposit(json!({"userid": user, "agentid": agent, "amount": 1})),
            401,
            "Invalid or missing API key",
        ),
        (
            "/agents/create",
            Some(&key),
            json!({"userid": user}),
            400,
            "Agent name is required",
        ),
        (
            "/agents/create",
            Some(&key),
            json!({"userid": user, "name": 5}),
            400,
            "name must be a string",
        ),
        (
            "/agents/create",
            Some(&key),
            json!({"userid": user, "name": "x", "tags": ["1","2","3","4","5","6"]}),
            400,
            "tags may have at most 5 items",
        ),
        (
            "/agents/create",
            Some(&key),
            json!({"userid": user, "name": "x".repeat(101)}),
            400,
            "name must be at most 100 characters",
        ),
        (
            "/agents/create",
            Some(&key),
            json!({"userid": user, "name": "x", "balance": -1}),
            400,
            "balance: invalid amount: amount must not be negative",
        ),
        (
            "/users",
            None,
            json!({"name": "x", "email": "not-an-email", "password": "longenough"}),
            400,
            "email is not a valid address",
        ),
        (
            "/users",
            None,
            json!({"name": "x", "email": "x@y.zz", "password": "short"}),
            400,
            "password must be 8 to 128 characters",
        ),
        (
            "/users",
            None,
            json!({"email": "x@y.zz"}),
            400,
            "name, email and password are required",
        ),
    ];
    for (path, k, body, status, message) in cases {
        let (got_status, got) = d.post(path, k, body.clone()).await;
        assert_eq!(
            (got_status, got["error"].as_str().unwrap_or_default()),
            (status, message),
            "{path} {body}"
        );
    }

    // Malformed JSON, wrong content type, oversized body.
    let r = d
        .client
        .post(d.url("/agents/deposit"))
        .header("x-api-key", &key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<serde_json::Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .starts_with("Malformed JSON"));
    let r = d
        .client
        .post(d.url("/agents/deposit"))
        .header("x-api-key", &key)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let big = json!({"userid": user, "name": "x", "description": "y".repeat(100_000)});
    let r = d
        .client
        .post(d.url("/agents/create"))
        .header("x-api-key", &key)
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.json::<serde_json::Value>().await.unwrap()["error"].is_string());

    // Reads are scoped too.
    let (status, body) = d.get(&format!("/agentsWith/{agent}"), &other_key).await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (404, "Agent not found")
    );
    let (status, _) = d.get(&format!("/agents/{user}"), &other_key).await;
    assert_eq!(status, 404);
    let (status, body) = d.get(&format!("/agents/{user}?limit=1000"), &key).await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (400, "limit must be an integer from 1 to 100")
    );
    let (status, body) = d.get("/nope", &key).await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (404, "Not found")
    );

    assert_eq!(
        journal_rows(&d).await,
        before,
        "a rejected request wrote to the journal"
    );
    let (_, got) = d.get(&format!("/agentsWith/{agent}"), &key).await;
    assert_eq!(got["balance"], "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_answer_429_with_retry_after_per_key() {
    let d = Deployment::new("ratelimit").await;
    d.start_with_env("dev", &["dev"], &[("AGENTBANK_RATE_LIMIT_PER_MINUTE", "5")]);
    d.wait_healthy().await;
    // Unfunded: funding the wallet would spend one of the five requests.
    let (user, key) = d.sign_up_unfunded("limited").await;
    let (other_user, other_key) = d.sign_up_unfunded("other").await;
    for remaining in (0..5).rev() {
        let r = d
            .client
            .get(d.url(&format!("/agents/{user}")))
            .header("x-api-key", &key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-ratelimit-limit"], "5");
        assert_eq!(
            r.headers()["x-ratelimit-remaining"],
            remaining.to_string().as_str()
        );
        assert!(r.headers().contains_key("x-ratelimit-reset"));
    }
    let r = d
        .client
        .get(d.url(&format!("/agents/{user}")))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"]
        .as_str()
        .unwrap()
        .starts_with("Rate limit exceeded"));
    // A write over the limit is refused before it becomes a command.
    let (status, _) = d
        .post(
            "/agents/create",
            Some(&key),
            json!({"userid": user, "name": "x"}),
        )
        .await;
    assert_eq!(status, 429);
    let (status, list) = d.get(&format!("/agents/{other_user}"), &other_key).await;
    assert_eq!(
        (status, list),
        (200, json!([])),
        "another key has its own budget"
    );
    let agents: i64 = sqlx::query_scalar("SELECT count(*) FROM agents")
        .fetch_one(&d.pool().await)
        .await
        .unwrap();
    assert_eq!(agents, 0, "the refused create wrote nothing");
}

/// A retry with the same Idempotency-Key long after the original — more
/// newer commands of the agent than the processor's dedupe window holds —
/// still applies once and answers the original balance (the defect a
/// crash test found: the gateway now checks the read model first).
#[tokio::test(flavor = "multi_thread")]
async fn a_late_idempotent_retry_applies_once() {
    let d = Deployment::new("lateretry").await;
    d.start_dev().await;
    let (user, key) = d.sign_up("late").await;
    let agent = d.create_agent(&user, &key, json!({})).await;
    let deposit = |idem: String, amount: &'static str| {
        let body = json!({"userid": user, "agentid": agent, "amount": amount});
        let (d, key) = (&d, &key);
        async move {
            let (status, r) = d.post_keyed("/agents/deposit", key, &idem, body).await;
            assert_eq!(status, 200, "{r}");
            r["updatedBalance"].clone()
        }
    };
    assert_eq!(deposit("first".into(), "5").await, "5");
    for i in 0..(processors::agents::RECENT_COMMANDS_MAX + 8) {
        deposit(format!("other-{i}"), "1").await;
    }
    let expected = 5 + processors::agents::RECENT_COMMANDS_MAX + 8;
    assert_eq!(
        deposit("first".into(), "5").await,
        "5",
        "the original answer"
    );
    let (_, a) = d.get(&format!("/agentsWith/{agent}"), &key).await;
    assert_eq!(a["balance"], expected.to_string(), "applied once");
}

/// The same for a payment registration: a late retry names the same payment
/// and moves nothing again.
#[tokio::test(flavor = "multi_thread")]
async fn a_late_idempotent_payment_retry_registers_once() {
    let d = Deployment::new("latepay").await;
    d.start_dev().await;
    let (user, key) = d.sign_up("latepay").await;
    let from = d.create_agent(&user, &key, json!({"balance": 100})).await;
    let to = d.create_agent(&user, &key, json!({})).await;
    let pay = |idem: String| {
        let body = json!({"senderagentid": from, "receiveragentid": to, "name": "p",
                          "type": "INTERNAL", "paymentdetails": {"amount": 1}});
        let (d, key) = (&d, &key);
        async move {
            let (status, r) = d.post_keyed("/payments/register", key, &idem, body).await;
            assert_eq!(status, 200, "{r}");
            r["id"].clone()
        }
    };
    let first = pay("first".into()).await;
    for i in 0..(processors::agents::RECENT_COMMANDS_MAX + 4) {
        pay(format!("other-{i}")).await;
    }
    assert_eq!(pay("first".into()).await, first, "the same payment");
    let paid = processors::agents::RECENT_COMMANDS_MAX + 5;
    let (_, a) = d.get(&format!("/agentsWith/{to}"), &key).await;
    assert_eq!(a["balance"], paid.to_string(), "registered once");
}

//! The savings vault end to end against the real stack: deposit, a year of
//! interest injected as a tick on the commands topic (time enters the
//! pipeline as data: no sleeping), the views valued exactly, the
//! withdrawal paying principal plus interest, the ledger balanced, errors
//! as documented, and another user seeing nothing.

mod common;

use std::time::{Duration, Instant};

use common::Deployment;
use rust_decimal::Decimal;
use serde_json::{json, Value};

const YEAR_MS: i64 = 365 * 86_400_000;

/// Polls `GET path` until `done` holds (the sink applies ticks a moment later).
async fn wait_for(d: &Deployment, path: &str, key: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = d.get(path, key).await;
        if status == 200 && done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{path} never got there: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn savings_deposit_accrue_withdraw_as_documented() {
    let d = Deployment::new("savings").await;
    // No scheduled ticks during the test: the test injects its own.
    let env = [
        ("AGENTBANK_INTEREST_RATES", "4.5"),
        ("AGENTBANK_ACCRUAL_INTERVAL_MS", "3600000"),
    ];
    d.start_with_env("dev", &["dev"], &env);
    d.wait_healthy().await;
    let (user, key) = d.sign_up("saver").await;
    let agent = d.create_agent(&user, &key, json!({"balance": 1000})).await;

    // Deposit.
    let (status, body) = d
        .post(
            "/savings/deposit",
            Some(&key),
            json!({"agentId": agent, "amount": 100}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "Successfully invested 100 USDC.");
    let investment = body["investmentId"].as_str().unwrap().to_string();
    assert!(investment.starts_with("inv_"));
    let (_, a) = d.get(&format!("/agentsWith/{agent}"), &key).await;
    assert_eq!(a["balance"], "900", "{a}");

    // A year passes, as a tick on every partition: exactly a year after the
    // investment, so the figures are exact.
    let pool = d.pool().await;
    let invested_ms: i64 = sqlx::query_scalar(
        "SELECT round(extract(epoch FROM invested_at) * 1000)::bigint FROM savings",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    d.tick(invested_ms + YEAR_MS).await;
    // 100·e^0.045 = 104.602785…, toward zero.
    let listed = wait_for(&d, &format!("/savings/{agent}"), &key, |b| {
        b["investments"][0]["current_value"] == "104.602785"
    })
    .await;
    let position = &listed["investments"][0];
    assert_eq!(position["id"], investment.as_str());
    assert_eq!(position["status"], "active");
    assert_eq!(position["amount"], json!(100));
    assert_eq!(position["interest_earned"], "4.602785");

    let (status, dash) = d.get("/savings/dashboard", &key).await;
    assert_eq!(status, 200, "{dash}");
    assert_eq!(dash["totalSavings"], json!(104.602785));
    assert_eq!(dash["totalInvested"], json!(100));
    assert_eq!(dash["interestRate"], json!(4.5));
    assert_eq!(dash["agents"][0]["investment_id"], investment.as_str());
    assert_eq!(dash["agents"][0]["interest"], json!(4.602785));
    assert_eq!(dash["agents"][0]["current"], json!(900));
    // Each position shows the rate it keeps for its life.
    assert_eq!(dash["agents"][0]["interestRate"], json!(4.5));
    assert_eq!(position["interest_rate"], json!(4.5));
    assert_eq!(dash["agents"][0]["totalBalance"], json!(1004.602785));
    let projection: Decimal = dash["yearProjection"].to_string().parse().unwrap();
    assert!(projection >= Decimal::new(104_602_785, 6), "{dash}");
    let (_, mine) = d.get("/savings/myinvestments", &key).await;
    assert_eq!(mine["agents"].as_array().unwrap().len(), 1, "{mine}");

    // Another user sees and moves nothing.
    let (_, other) = d.sign_up("other").await;
    assert_eq!(d.get(&format!("/savings/{agent}"), &other).await.0, 404);
    let (_, theirs) = d.get("/savings/dashboard", &other).await;
    assert_eq!(theirs["agents"], json!([]));
    let (status, _) = d
        .post(
            "/savings/withdraw",
            Some(&other),
            json!({"investmentId": investment}),
        )
        .await;
    assert_eq!(status, 404);

    // Withdraw: principal and interest back to the agent.
    let (status, w) = d
        .post(
            "/savings/withdraw",
            Some(&key),
            json!({"investmentId": investment}),
        )
        .await;
    assert_eq!(status, 200, "{w}");
    assert_eq!(w["message"], "Withdrawal completed successfully.");
    assert_eq!(w["withdrawalDetails"]["principal"], "100");
    assert_eq!(w["withdrawalDetails"]["interest"], "4.602785");
    assert_eq!(w["withdrawalDetails"]["totalAmount"], "104.602785");
    assert_eq!(w["withdrawalDetails"]["duration"]["days"], 0);
    assert_eq!(w["agentId"], agent.as_str());
    assert_eq!(w["updatedBalance"], "1004.602785");
    let (status, again) = d
        .post(
            "/savings/withdraw",
            Some(&key),
            json!({"investmentId": investment}),
        )
        .await;
    assert_eq!(
        (status, again),
        (404, json!({"error": "Investment not found"}))
    );
    let (_, listed) = d.get(&format!("/savings/{agent}"), &key).await;
    assert_eq!(listed["investments"][0]["status"], "completed");

    // A keyed deposit retried after more than the processor's dedupe window
    // of newer commands is still one investment.
    let keyed = |amount: &'static str, idem: String| {
        let body = json!({"agentId": agent, "amount": amount});
        let (d, key) = (&d, &key);
        async move {
            let (status, r) = d.post_keyed("/savings/deposit", key, &idem, body).await;
            assert_eq!(status, 200, "{r}");
            r["investmentId"].clone()
        }
    };
    let first = keyed("1", "late".into()).await;
    for i in 0..(processors::agents::RECENT_COMMANDS_MAX + 4) {
        let (status, _) = d
            .post(
                "/agents/deposit",
                Some(&key),
                json!({"userid": user, "agentid": agent, "amount": 1}),
            )
            .await;
        assert_eq!(status, 200, "deposit {i}");
    }
    assert_eq!(keyed("1", "late".into()).await, first);
    let (_, positions) = d.get(&format!("/savings/{agent}"), &key).await;
    let active = positions["investments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"] == "active")
        .count();
    assert_eq!(active, 1, "one investment, not two: {positions}");
    let (status, _) = d
        .post(
            "/savings/withdraw",
            Some(&key),
            json!({"investmentId": first}),
        )
        .await;
    assert_eq!(status, 200);

    // Documented errors; none writes anything.
    for (body, code, error) in [
        (
            json!({"agentId": agent}),
            400,
            "agentId and amount are required",
        ),
        (
            json!({"agentId": agent, "amount": -1}),
            400,
            "Amount must be a positive number with at most 6 decimal places",
        ),
        (
            json!({"agentId": agent, "amount": 5000}),
            400,
            "Insufficient balance in agent's wallet",
        ),
        (
            json!({"agentId": "agent_nope", "amount": 1}),
            404,
            "Agent not found",
        ),
    ] {
        let (status, answer) = d.post("/savings/deposit", Some(&key), body.clone()).await;
        assert_eq!((status, answer), (code, json!({"error": error})), "{body}");
    }
    let (status, answer) = d.post("/savings/withdraw", Some(&key), json!({})).await;
    assert_eq!(
        (status, answer),
        (400, json!({"error": "Investment ID is required"}))
    );

    // The ledger: balanced; the vault empty again; interest came from expense.
    let sums: Vec<(String, Decimal)> = sqlx::query_as(
        "SELECT account, sum(amount) FROM journal_postings GROUP BY account ORDER BY account",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let total: Decimal = sums.iter().map(|(_, s)| *s).sum();
    assert!(total.is_zero(), "{sums:?}");
    let of = |suffix: &str| {
        sums.iter()
            .filter(|(a, _)| a.ends_with(suffix))
            .map(|(_, s)| *s)
            .sum::<Decimal>()
    };
    assert_eq!(of(":savings"), Decimal::ZERO);
    assert_eq!(of(":interest"), Decimal::ZERO);
    assert_eq!(of("interest:USDC:expense"), Decimal::new(-4_602_785, 6));
    // Interest counts as earned in the summary.
    let (_, summary) = d
        .get(
            "/transactions/summary?start_date=2000-01-01&end_date=2999-12-31",
            &key,
        )
        .await;
    // 1000 initial + 4.602785 interest + the window-filling deposits.
    let earned =
        Decimal::new(1_004_602_785, 6) + Decimal::from(processors::agents::RECENT_COMMANDS_MAX + 4);
    assert_eq!(
        summary["totalEarned"].to_string(),
        earned.to_string(),
        "{summary}"
    );
}

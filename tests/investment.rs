//! The investment endpoints against the real stack: the rate in force from a
//! configured history, and the calculator's documented answers and errors.

mod common;

use common::Deployment;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn interest_rate_and_calculator_behave_as_documented() {
    let d = Deployment::new("investment").await;
    // A past change is in force; a future one is not yet.
    let rates = "4.5,2025-06-01T00:00:00Z=5.25,2999-01-01T00:00:00Z=9";
    d.start_with_env("dev", &["dev"], &[("AGENTBANK_INTEREST_RATES", rates)]);
    d.wait_healthy().await;
    let (_, key) = d.sign_up("saver").await;

    let (status, body) = d.get("/investment/interest-rate", &key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"interestRate": 5.25, "lastUpdated": "2025-06-01T00:00:00.000Z"})
    );
    let r = d
        .client
        .get(d.url("/investment/interest-rate"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the rate needs an API key");

    let (status, _) = d
        .post(
            "/investment/calculator",
            None,
            json!({"amount": 1, "days": 1}),
        )
        .await;
    assert_eq!(status, 401, "the calculator needs an API key");

    // The seed's example, with a custom rate.
    let (status, body) = d
        .post(
            "/investment/calculator",
            Some(&key),
            json!({"amount": 1000, "days": 365, "customRate": 4.5}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["principal"], json!(1000));
    assert_eq!(body["days"], json!(365));
    assert_eq!(body["interestRate"], json!(4.5));
    assert_eq!(body["interestEarned"], "45.00");
    assert_eq!(body["totalAmount"], "1045.00");
    assert_eq!(body["annualYield"], "4.50%");
    assert_eq!(
        body["calculation"]["formula"],
        "principal × rate × (days ÷ 365)"
    );
    assert_eq!(
        body["calculation"]["steps"],
        json!([
            "1000 × 0.045 × 365/365",
            "1000 × 0.045 × 1.000000",
            "1000 × 0.045000",
            "45.000000"
        ])
    );
    // What a vault position earns: 1000·e^0.045, toward zero to 6 places.
    assert_eq!(body["compounding"]["totalAmount"], "1046.027859");
    assert_eq!(body["compounding"]["interestEarned"], "46.027859");

    // Without a custom rate, the rate in force applies.
    let (status, body) = d
        .post(
            "/investment/calculator",
            Some(&key),
            json!({"amount": "200.50", "days": 30}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["interestRate"], json!(5.25));
    // 200.5 × 0.0525 × 30/365 = 0.865171…
    assert_eq!(body["interestEarned"], "0.86");
    assert_eq!(body["totalAmount"], "201.36");

    for (input, error) in [
        (json!({"days": 30}), "Amount and days are required"),
        (json!({"amount": 5}), "Amount and days are required"),
        (
            json!({"amount": -5, "days": 30}),
            "Amount must be a positive number of at most 10^12 with at most 6 decimal places",
        ),
        (
            json!({"amount": "x", "days": 30}),
            "Amount must be a positive number",
        ),
        (
            json!({"amount": 5, "days": 0}),
            "Days must be a positive number",
        ),
        (
            json!({"amount": 5, "days": 3651}),
            "Days must be at most 3650",
        ),
        (
            json!({"amount": 5, "days": 30, "customRate": 101}),
            "Custom rate must be a number between 0 and 100",
        ),
        (
            json!({"amount": 5, "days": 30, "customRate": true}),
            "Custom rate must be a number between 0 and 100",
        ),
    ] {
        let (status, body) = d
            .post("/investment/calculator", Some(&key), input.clone())
            .await;
        assert_eq!(status, 400, "{input} → {body}");
        assert_eq!(body, json!({"success": false, "error": error}), "{input}");
    }
}

//! The web dashboard at `/dashboard` in headless Chromium (Debian `chromium`
//! and `chromedriver`, installed by `deploy/local/up`, driven by Selenium
//! from `tests/python/dashboard_test.py`): sign in (password, then key), the agents, a waiting
//! payment approved with a click, a payment made over REST appearing live,
//! a CSV export, a phone's width. Screenshots are kept in the test log
//! directory (`.run/test-logs/dashboard-*`).

mod common;

use common::Deployment;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_person_supervises_agents_from_the_dashboard() {
    let d = Deployment::new("dashboard").await;
    d.start_dev().await;
    // Signed up by hand to know the password the dashboard signs in with.
    let email = format!("dana-{}@example.com", d.name);
    let (status, body) = d
        .post(
            "/users",
            None,
            json!({"name": "Dana", "email": email, "password": "dashboard-pass"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (user, key) = (
        body["id"].as_str().unwrap().to_string(),
        body["apikey"].as_str().unwrap().to_string(),
    );
    d.fund_wallet(&key, "1000").await;
    let payer = d
        .create_agent(&user, &key, json!({"name": "Payer", "balance": 100, "requireapprovalaboveamount": 5, "tags": ["ops"]}))
        .await;
    let payee = d.create_agent(&user, &key, json!({"name": "Payee"})).await;
    let (status, waiting) = d
        .post(
            "/payments/register",
            Some(&key),
            json!({"senderagentid": payer, "receiveragentid": payee, "name": "needs a human",
                   "type": "INTERNAL", "paymentdetails": {"amount": 10, "currency": "USDC"}}),
        )
        .await;
    assert_eq!(
        (status, waiting["approvalstatus"].as_str()),
        (200, Some("Waiting for Sender Approval")),
        "{waiting}"
    );
    let artifacts = format!("{}/dashboard-{}", common::log_dir(), d.name);
    std::fs::create_dir_all(&artifacts).unwrap();
    let scenario = format!("{artifacts}/scenario.json");
    std::fs::write(
        &scenario,
        json!({"key": key, "email": email, "password": "dashboard-pass",
               "payer": payer, "payee": payee, "waiting": waiting["id"]})
        .to_string(),
    )
    .unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/dashboard_test.py"
    );
    let url = d.url("");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args([script, &url, &scenario, &artifacts])
            .output()
    })
    .await
    .unwrap()
    .expect("python3 with selenium, chromium and chromedriver (deploy/local/up installs them)");
    assert!(
        out.status.success(),
        "dashboard test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

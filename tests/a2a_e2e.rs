//! The agent bank over A2A against the real stack, driven by the official
//! Python SDK (`tests/python/a2a_client.py`, PyPI `a2a-sdk`): the Agent Card,
//! a payment task completing, one input-required until approved over REST,
//! a refused one failing with the bank's reason, a declined one canceled, a
//! wrong key refused.

mod common;

use common::Deployment;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn agents_pay_over_a2a() {
    let d = Deployment::new("a2a").await;
    d.start_dev().await;
    let (user, key) = d.sign_up("a2a").await;
    let payer = d
        .create_agent(
            &user,
            &key,
            json!({"name": "Payer", "balance": 100, "requireapprovalaboveamount": 5}),
        )
        .await;
    let payee = d.create_agent(&user, &key, json!({"name": "Payee"})).await;
    let path = format!("{}/a2a-{}.json", common::log_dir(), d.name);
    std::fs::write(
        &path,
        json!({"key": key, "payer": payer, "payee": payee}).to_string(),
    )
    .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/a2a_client.py");
    let url = d.url("");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args([script, &url, &path])
            .output()
    })
    .await
    .unwrap()
    .expect("python3 with a2a-sdk (deploy/local/up installs tests/python/requirements.txt)");
    assert!(
        out.status.success(),
        "a2a client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

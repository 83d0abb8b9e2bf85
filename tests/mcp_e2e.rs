//! The agent bank over MCP, against the real stack, driven by the official
//! Python SDK (`tests/python/mcp_client.py`, PyPI `mcp`, installed by
//! `deploy/local/up`): over Streamable HTTP at the gateway's `/mcp` and over
//! stdio (`agentbank mcp`). Tools listed with schemas, a balance, a payment
//! (idempotent), one needing approval and approved, refusals as tool errors
//! with the API's message, a wrong or missing key refused, another user's
//! agent invisible.

mod common;

use common::Deployment;
use serde_json::json;

/// Runs the Python client for `transport` with a payer (100, approval above
/// 5) and a payee of its own, and asserts it passed.
async fn run_client(d: &Deployment, transport: &str, user: &str, key: &str, foreign: &str) {
    let payer = d
        .create_agent(
            user,
            key,
            json!({"name": "Payer", "balance": 100, "requireapprovalaboveamount": 5}),
        )
        .await;
    let payee = d.create_agent(user, key, json!({"name": "Payee"})).await;
    let scenario = json!({
        "key": key, "payer": payer, "payee": payee, "foreign": foreign,
        "binary": env!("CARGO_BIN_EXE_agentbank"),
    });
    let path = format!("{}/mcp-{}-{transport}.json", common::log_dir(), d.name);
    std::fs::write(&path, scenario.to_string()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/mcp_client.py");
    let url = d.url("");
    let transport = transport.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args([script, &transport, &url, &path])
            .output()
    })
    .await
    .unwrap()
    .expect("python3 with the mcp SDK (deploy/local/up installs tests/python/requirements.txt)");
    assert!(
        out.status.success(),
        "mcp client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_use_the_bank_over_mcp_http_and_stdio() {
    let d = Deployment::new("mcp").await;
    d.start_dev().await;
    let (user, key) = d.sign_up("mcp").await;
    let (other, other_key) = d.sign_up_unfunded("stranger").await;
    let foreign = d.create_agent(&other, &other_key, json!({})).await;
    // Each user has only their own two agents per transport in view.
    run_client(&d, "http", &user, &key, &foreign).await;
    let (user2, key2) = d.sign_up("mcp2").await;
    run_client(&d, "stdio", &user2, &key2, &foreign).await;
}

//! The settlement service under faults, against a real local chain: killed
//! between broadcast and confirmation and between confirmation and result
//! (each transfer still lands exactly once — token balances and nonces say
//! so — and the ledger matches the chain); an unreachable RPC endpoint and a
//! chain reset give clear errors and retries, never a lost request.

mod common;

use std::time::Duration;

use common::{eventually, random_address, wait_for_log, Deployment, LocalChain, RpcProxy};
use rust_decimal::Decimal;
use serde_json::{json, Value};

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn use_chain(d: &Deployment, chain: &LocalChain, rpc: &str) {
    let env = chain.env(rpc);
    d.set_env(
        &env.iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain([("AGENTBANK_SETTLEMENT_WAIT_MS", "4000")])
            .collect::<Vec<_>>(),
    );
}

async fn create(d: &Deployment, user: &str, key: &str, balance: u32) -> (String, String) {
    let (status, body) = d
        .post(
            "/agents/create",
            Some(key),
            json!({"userid": user, "name": "A", "balance": balance}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    (
        body["id"].as_str().unwrap().into(),
        body["walletAddress"]["addressId"].as_str().unwrap().into(),
    )
}

/// A withdrawal's answer: its status (200 confirmed, 202 pending, 500
/// failed on chain) and body.
async fn withdraw_answer(
    d: &Deployment,
    user: &str,
    key: &str,
    agent: &str,
    amount: &str,
    to: &str,
) -> (u16, Value) {
    d.post(
        "/agents/withdraw",
        Some(key),
        json!({"userid": user, "agentid": agent, "amount": amount, "walletaddress": to}),
    )
    .await
}

/// A withdrawal that is confirmed or still pending (never failed).
async fn withdraw(
    d: &Deployment,
    user: &str,
    key: &str,
    agent: &str,
    amount: &str,
    to: &str,
) -> Value {
    let (status, body) = withdraw_answer(d, user, key, agent, amount, to).await;
    assert!(status == 200 || status == 202, "{status} {body}");
    assert_eq!(body["success"], true, "{body}");
    body
}

async fn balance(d: &Deployment, key: &str, agent: &str) -> Value {
    d.get(&format!("/agentsWith/{agent}"), key).await.1["balance"].clone()
}

async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashing_settlement_service_sends_each_transfer_exactly_once() {
    let chain = LocalChain::start().await;
    let d = Deployment::new("settlecrash").await;
    use_chain(&d, &chain, &chain.url());
    // Withdrawals answer at once (202), so transfers are in flight when the
    // service is killed.
    d.set_env(&[("AGENTBANK_SETTLEMENT_WAIT_MS", "0")]);
    d.start_split().await;
    let treasury = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
    let treasury_nonce = chain.nonce(treasury).await; // the token's deployment
                                                      // Crash 1: right after the first transfer (the faucet's gas) is recorded
                                                      // and broadcast, before its request's offset is committed.
    d.start_with_env(
        "settlement",
        &["settlement"],
        &[("AGENTBANK_FAULT", "settlement-after-broadcast")],
    );
    let (user, key) = d.sign_up("crash").await;
    let (a, wallet) = create(&d, &user, &key, 50).await;
    eventually("crash after broadcast", || async {
        d.exited("settlement").then_some(())
    })
    .await;
    // Crash 2: after a transfer is decided (deep enough), before its result
    // is published.
    d.start_with_env(
        "settlement",
        &["settlement"],
        &[("AGENTBANK_FAULT", "settlement-after-decide")],
    );
    eventually("crash after decision", || async {
        d.exited("settlement").then_some(())
    })
    .await;
    d.start("settlement", &["settlement"]);
    eventually("faucet funds", || async {
        (chain.usdc(&wallet).await == dec("50")).then_some(())
    })
    .await;

    // Ten withdrawals; the service is killed (-9) twice while some are in flight.
    let pool = d.pool().await;
    let outside = random_address();
    for i in 0..10 {
        withdraw(&d, &user, &key, &a, "1", &outside).await;
        if i == 3 || i == 7 {
            eventually("a transfer in flight", || async {
                let n = count(
                    &pool,
                    "SELECT count(*) FROM chain_transfers WHERE status IN ('signed', 'included')",
                )
                .await;
                (n > 0).then_some(())
            })
            .await;
            d.kill("settlement");
            d.start("settlement", &["settlement"]);
        }
    }
    eventually("every withdrawal on chain and reported", || async {
        let open = count(
            &pool,
            "SELECT count(*) FROM chain_transfers WHERE NOT reported",
        )
        .await;
        (open == 0 && chain.usdc(&outside).await == dec("10")).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // nothing more may arrive
    assert_eq!(
        chain.usdc(&outside).await,
        dec("10"),
        "each withdrawal arrived exactly once"
    );
    assert_eq!(
        chain.nonce(&wallet).await,
        10,
        "the agent's wallet sent exactly ten transactions"
    );
    assert_eq!(
        chain.nonce(treasury).await,
        treasury_nonce + 2,
        "the faucet sent gas and tokens once each"
    );
    assert_eq!(chain.usdc(&wallet).await, dec("40"));
    eventually("the ledger caught up", || async {
        (balance(&d, &key, &a).await == "40").then_some(())
    })
    .await;
    let onchain: Decimal = sqlx::query_scalar(
        "SELECT coalesce(sum(amount), 0) FROM journal_postings WHERE account = 'external:USDC:onchain'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(onchain, dec("10"), "the ledger's outflow matches the chain");
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM chain_transfers WHERE status = 'confirmed'"
        )
        .await,
        12
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM events WHERE type = 'TransferSettled'"
        )
        .await,
        12
    );
    assert_eq!(
        count(
            &pool,
            "SELECT coalesce(sum(amount), 0)::bigint FROM journal_postings"
        )
        .await,
        0
    );
    wait_for_log(&d, "settlement", "fault injection: aborting", 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_or_reset_chain_gives_clear_errors_and_loses_nothing() {
    let chain = LocalChain::start().await;
    let proxy = RpcProxy::start(chain.port).await;
    let d = Deployment::new("settleoutage").await;
    use_chain(&d, &chain, &proxy.url());
    d.start_dev().await;
    let (user, key) = d.sign_up("outage").await;
    let (a, wallet) = create(&d, &user, &key, 20).await;
    let pool = d.pool().await;
    let settled = || async {
        (count(
            &pool,
            "SELECT count(*) FROM chain_transfers WHERE NOT reported",
        )
        .await
            == 0)
            .then_some(())
    };
    eventually("faucet funds", || async {
        (chain.usdc(&wallet).await == dec("20")).then_some(())
    })
    .await;
    eventually("faucet confirmed", settled).await;

    // The RPC endpoint goes away: the withdrawal is accepted and held, the
    // service says what fails and retries; once it is back, the transfer lands.
    proxy.cut();
    let outside = random_address();
    let (status, w) = withdraw_answer(&d, &user, &key, &a, "3", &outside).await;
    assert_eq!(status, 202, "held, not decided: {w}");
    assert_eq!(
        (&w["success"], &w["status"]),
        (&json!(true), &json!("pending")),
        "{w}"
    );
    assert_eq!(w["updatedBalance"], "17");
    assert_eq!(w["settlement"]["status"], "queued", "{w}");
    assert_eq!(w["txHash"], Value::Null);
    let poll = w["statusUrl"].as_str().unwrap().to_string();
    wait_for_log(&d, "dev", "could not record the transfer; retrying", 2).await;
    wait_for_log(&d, "dev", &proxy.url(), 1).await;
    proxy.restore();
    eventually("the held withdrawal on chain", || async {
        (chain.usdc(&outside).await == dec("3")).then_some(())
    })
    .await;
    eventually("the withdrawal confirmed", settled).await;
    let (status, polled) = d.get(&poll, &key).await;
    assert_eq!(
        (status, &polled["status"]),
        (200, &json!("confirmed")),
        "{polled}"
    );
    assert!(polled["txHash"].is_string(), "{polled}");

    // A fresh chain (new genesis, empty wallets): the service notices, says so,
    // and restarts its nonces; a withdrawal the new chain cannot pay (no gas
    // in the agent's wallet) fails with its reason and is released; a new agent's faucet works on the new chain.
    chain.reset().await;
    wait_for_log(&d, "dev", "the chain was reset", 1).await;
    let (status, w) = withdraw_answer(&d, &user, &key, &a, "2", &outside).await;
    assert_eq!(status, 500, "a failed transfer is not a success: {w}");
    assert_eq!(
        (&w["success"], &w["error"]),
        (&json!(false), &json!("Transfer failed on-chain"))
    );
    assert_eq!(w["settlement"]["status"], "failed", "{w}");
    // The treasury tops the empty wallet's USDC up, but its gas came from the
    // old chain's faucet: nothing pays for the transfer.
    assert!(
        w["settlement"]["reason"]
            .as_str()
            .unwrap()
            .contains("cannot pay for gas"),
        "{w}"
    );
    eventually("the hold released", || async {
        (balance(&d, &key, &a).await == "17").then_some(())
    })
    .await;
    let (_, wallet_c) = create(&d, &user, &key, 5).await;
    eventually("faucet on the new chain", || async {
        (chain.usdc(&wallet_c).await == dec("5")).then_some(())
    })
    .await;
}

//! On-chain settlement against a real local chain (Anvil, the test USDC
//! compiled with solc-js): faucet funds at agent creation, deposits mirrored
//! from the treasury, withdrawals and EXTERNAL payments to addresses with
//! exact token balances, a wallet short of its ledger balance topped up by
//! the treasury before its withdrawal, and a withdrawal to the user's custodial wallet
//! landing in the user's wallet (the ledger's figure, the chain's beside it),
//! and a deposit sent to that custodial address from outside credited once.

mod common;

use common::{eventually, random_address, Deployment, LocalChain};
use rust_decimal::Decimal;
use serde_json::{json, Value};

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

async fn agent(d: &Deployment, key: &str, id: &str) -> Value {
    let (status, body) = d.get(&format!("/agentsWith/{id}"), key).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Whether Anvil has a successful receipt for `tx_hash` (waiting for its block).
async fn receipt_ok(chain: &LocalChain, tx_hash: &str) -> bool {
    let r = eventually("a receipt", || async {
        let r = chain
            .rpc("eth_getTransactionReceipt", json!([tx_hash]))
            .await;
        (!r.is_null()).then_some(r)
    })
    .await;
    r["status"] == "0x1"
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_deposits_withdrawals_and_payments_settle_on_chain() {
    let chain = LocalChain::start().await;
    let d = Deployment::new("settle").await;
    let env = chain.env(&chain.url());
    d.set_env(
        &env.iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect::<Vec<_>>(),
    );
    d.start_dev().await;
    let (user, key) = d.sign_up("chain").await;

    // Agent creation: a custodial wallet, faucet gas and the initial balance on chain.
    let (status, created) = d
        .post(
            "/agents/create",
            Some(&key),
            json!({"userid": user, "name": "A", "balance": 25}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let a = created["id"].as_str().unwrap().to_string();
    let wallet_a = created["walletAddress"]["addressId"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(schemas::settlement::is_address(&wallet_a), "{created}");
    assert_eq!(created["walletAddress"]["networkId"], "anvil");
    let gas_tx = created["faucetTransaction"]["txHash"]
        .as_str()
        .expect("faucet tx hash")
        .to_string();
    let token_tx = created["transferResult"]["txHash"]
        .as_str()
        .expect("funding tx hash")
        .to_string();
    eventually("faucet funds on chain", || async {
        (chain.usdc(&wallet_a).await == dec("25") && chain.eth(&wallet_a).await == dec("0.01"))
            .then_some(())
    })
    .await;
    assert!(receipt_ok(&chain, &gas_tx).await && receipt_ok(&chain, &token_tx).await);
    assert_eq!(
        agent(&d, &key, &a).await["walletAddress"]["addressId"],
        wallet_a.as_str()
    );

    // A deposit is mirrored on chain from the treasury.
    let (status, dep) = d
        .post(
            "/agents/deposit",
            Some(&key),
            json!({"userid": user, "agentid": a, "amount": 10}),
        )
        .await;
    assert_eq!(status, 200, "{dep}");
    assert_eq!(dep["updatedBalance"], "35");
    let dep_tx = dep["txHash"].as_str().expect("deposit tx hash").to_string();
    eventually("deposit on chain", || async {
        (chain.usdc(&wallet_a).await == dec("35")).then_some(())
    })
    .await;
    assert!(receipt_ok(&chain, &dep_tx).await);

    // A withdrawal to an outside address: exactly the amount arrives; the
    // ledger holds it until the chain confirms, then it leaves the ledger.
    let outside = random_address();
    let (status, w) = d
        .post(
            "/agents/withdraw",
            Some(&key),
            json!({"userid": user, "agentid": a, "amount": "7.5", "walletaddress": outside}),
        )
        .await;
    assert_eq!(status, 200, "{w}");
    assert_eq!(w["updatedBalance"], "27.5");
    assert_eq!(
        w["settlement"]["status"], "confirmed",
        "answered once confirmed: {w}"
    );
    let w_tx = w["txHash"]
        .as_str()
        .expect("withdrawal tx hash")
        .to_string();
    eventually("withdrawal on chain", || async {
        (chain.usdc(&outside).await == dec("7.5")).then_some(())
    })
    .await;
    assert!(receipt_ok(&chain, &w_tx).await);
    let pool = d.pool().await;
    let account_sum = |account: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, Decimal>(
                "SELECT coalesce(sum(amount), 0) FROM journal_postings WHERE account = $1",
            )
            .bind(account)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    eventually("the withdrawal's ledger entry", || async {
        (account_sum("external:USDC:onchain".into()).await == dec("7.5")).then_some(())
    })
    .await;
    assert_eq!(
        chain.usdc(&wallet_a).await,
        dec("27.5"),
        "the agent's wallet matches its ledger balance"
    );

    // An EXTERNAL payment to an address settles with a real hash.
    let payee = random_address();
    let (status, p) = d
        .post(
            "/payments/register",
            Some(&key),
            json!({"senderagentid": a, "receiveragentid": payee, "name": "Vendor", "type": "EXTERNAL",
                   "paymentdetails": {"amount": "2.5", "currency": "USDC", "method": "CRYPTO_ADDRESS"}}),
        )
        .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["receiveragentid"], payee.as_str());
    let pay_tx = p["txHash"].as_str().expect("payment tx hash").to_string();
    let pid = p["id"].as_str().unwrap().to_string();
    let settled = eventually("payment confirmed", || async {
        let (_, body) = d.get(&format!("/payments/{pid}"), &key).await;
        (body["status"] == "Confirmed").then_some(body)
    })
    .await;
    assert_eq!(settled["txHash"], pay_tx.as_str());
    assert_eq!(chain.usdc(&payee).await, dec("2.5"));
    assert!(receipt_ok(&chain, &pay_tx).await);
    assert_eq!(agent(&d, &key, &a).await["balance"], "25");
    assert_eq!(chain.usdc(&wallet_a).await, dec("25"));

    // A wallet short of its ledger balance: B holds 5 on the ledger (paid
    // internally by A) but nothing on chain. The treasury tops B's wallet up
    // by what it lacks, then B's transfer goes: the withdrawal succeeds.
    let b = d.create_agent(&user, &key, json!({"name": "B"})).await;
    let wallet_b = agent(&d, &key, &b).await["walletAddress"]["addressId"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = d
        .post(
            "/payments/register",
            Some(&key),
            json!({"senderagentid": a, "receiveragentid": b, "name": "to B", "type": "INTERNAL",
                   "paymentdetails": {"amount": "5", "currency": "USDC"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let nowhere = random_address();
    let (status, w) = d
        .post(
            "/agents/withdraw",
            Some(&key),
            json!({"userid": user, "agentid": b, "amount": "5", "walletaddress": nowhere}),
        )
        .await;
    assert_eq!((status, &w["success"]), (200, &json!(true)), "{w}");
    assert_eq!(w["settlement"]["status"], "confirmed", "{w}");
    assert_eq!(chain.usdc(&nowhere).await, dec("5"));
    assert_eq!(
        chain.usdc(&wallet_b).await,
        Decimal::ZERO,
        "topped up by exactly what it lacked"
    );
    let top_ups: Vec<(String, Decimal, String)> = sqlx::query_as(
        "SELECT from_address, amount, status FROM chain_transfers WHERE kind = 'top_up' AND to_address = $1",
    )
    .bind(&wallet_b)
    .fetch_all(&d.pool().await)
    .await
    .unwrap();
    assert_eq!(top_ups.len(), 1, "{top_ups:?}");
    assert_eq!(
        (top_ups[0].1, top_ups[0].2.as_str()),
        (dec("5"), "confirmed")
    );
    let settlement = w["settlement"]["id"].as_str().unwrap().to_string();
    let (status, polled) = d.get(&format!("/settlements/{settlement}"), &key).await;
    assert_eq!(
        (status, &polled["status"]),
        (200, &json!("confirmed")),
        "{polled}"
    );
    let (_, other_key) = d.sign_up("nosy").await;
    let (status, _) = d
        .get(&format!("/settlements/{settlement}"), &other_key)
        .await;
    assert_eq!(
        status, 404,
        "another user's settlement does not exist for them"
    );
    assert_eq!(agent(&d, &key, &b).await["balance"], "0");

    // A withdrawal without an address goes on chain to the user's custodial
    // wallet and, once confirmed, lands in the user's wallet: the figure
    // /user/wallet-balance shows is the ledger's, the chain's beside it.
    let wallet_balance = || async {
        let (status, bal) = d.get("/user/wallet-balance", &key).await;
        assert_eq!(
            (status, bal["source"].as_str()),
            (200, Some("ledger")),
            "{bal}"
        );
        bal
    };
    let before = dec(wallet_balance().await["balance"].as_str().unwrap());
    let (status, w) = d
        .post(
            "/agents/withdraw",
            Some(&key),
            json!({"userid": user, "agentid": a, "amount": 4}),
        )
        .await;
    assert_eq!(status, 200, "{w}");
    let user_wallet = w["settlement"]["toAddress"].as_str().unwrap().to_string();
    eventually("withdrawal to the user's wallet", || async {
        (chain.usdc(&user_wallet).await == dec("4")).then_some(())
    })
    .await;
    let bal = eventually("the withdrawal in the wallet", || async {
        let bal = wallet_balance().await;
        (dec(bal["balance"].as_str().unwrap()) == before + dec("4")).then_some(bal)
    })
    .await;
    assert_eq!(
        bal["onChain"],
        json!({"balance": "4", "asset": "USDC"}),
        "{bal}"
    );
    assert_eq!(bal["address"], user_wallet.as_str());
    let user_id = schemas::ids::parse(schemas::ids::Kind::User, &user).unwrap();
    let ledger: Decimal = sqlx::query_scalar(
        "SELECT coalesce(sum(amount), 0) FROM journal_postings WHERE account = $1",
    )
    .bind(schemas::event::accounts::user_wallet(user_id))
    .fetch_one(&d.pool().await)
    .await
    .unwrap();
    assert_eq!(
        ledger,
        before + dec("4"),
        "wallet-balance is the ledger's figure"
    );

    // Money sent to the user's custodial address from outside is credited to
    // the wallet once confirmed, once. Anvil's second account (unlocked)
    // stands in for an exchange: it gets 3 USDC by a withdrawal, then sends 2.
    const EXCHANGE: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
    let (status, w) = d
        .post(
            "/agents/withdraw",
            Some(&key),
            json!({"userid": user, "agentid": a, "amount": 3, "walletaddress": EXCHANGE}),
        )
        .await;
    assert_eq!(status, 200, "{w}");
    let transfer = format!(
        "0xa9059cbb{:0>64}{:064x}",
        user_wallet.trim_start_matches("0x").to_lowercase(),
        2_000_000u64
    );
    let sent = chain
        .rpc(
            "eth_sendTransaction",
            json!([{"from": EXCHANGE, "to": chain.token, "data": transfer}]),
        )
        .await;
    assert!(sent.is_string(), "{sent}");
    let bal = eventually("the on-chain deposit in the wallet", || async {
        let bal = wallet_balance().await;
        (dec(bal["balance"].as_str().unwrap()) == before + dec("6")).then_some(bal)
    })
    .await;
    assert_eq!(bal["onChain"]["balance"], "6", "{bal}");
    let credited: Vec<(String, Decimal, bool)> =
        sqlx::query_as("SELECT from_address, amount, credited FROM chain_deposits")
            .fetch_all(&d.pool().await)
            .await
            .unwrap();
    assert_eq!(
        credited,
        [(EXCHANGE.to_string(), dec("2"), true)],
        "only the outside transfer is a deposit (the withdrawal to the wallet is the bank's own)"
    );

    // Bad addresses are refused up front.
    let (status, body) = d
        .post(
            "/agents/withdraw",
            Some(&key),
            json!({"userid": user, "agentid": a, "amount": 1, "walletaddress": "0x123"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("Invalid wallet address format"))
    );

    // Every settlement reported once; the ledger balances.
    eventually("all settlements reported", || async {
        let open: i64 =
            sqlx::query_scalar("SELECT count(*) FROM chain_transfers WHERE NOT reported")
                .fetch_one(&pool)
                .await
                .unwrap();
        (open == 0).then_some(())
    })
    .await;
    let transfers: i64 =
        // Top-ups are the treasury's, not an agent's money movement: the
        // agent's machine records no TransferSettled for them.
        sqlx::query_scalar(
            "SELECT count(*) FROM chain_transfers WHERE kind NOT IN ('payment', 'top_up')",
        )
            .fetch_one(&pool)
            .await
            .unwrap();
    eventually("one TransferSettled per non-payment transfer", || async {
        let settled: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events WHERE type = 'TransferSettled'")
                .fetch_one(&pool)
                .await
                .unwrap();
        (settled == transfers).then_some(())
    })
    .await;
    let total: Decimal =
        sqlx::query_scalar("SELECT coalesce(sum(amount), 0) FROM journal_postings")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(total, Decimal::ZERO);
}

//! The documented agent-bank flows end to end, against the real broker and
//! Postgres: sign up (with the sandbox bonus) → two agents → deposit →
//! instant payment → payment needing approval → approve → decline → the
//! user's payments → summary → export as CSV, XLSX and PDF, each parsed back.
//! And the user's wallet as the source of agents' funds: the bonus funds an
//! agent, a deposit past the wallet is refused, withdrawals come back.

mod common;

use std::io::Cursor;
use std::time::{Duration, Instant};

use common::Deployment;
use rust_decimal::Decimal;
use serde_json::{json, Value};

fn dec(v: &Value) -> Decimal {
    match v {
        Value::String(s) => s.parse().unwrap(),
        Value::Number(n) => n.to_string().parse().unwrap(),
        other => panic!("not an amount: {other}"),
    }
}

async fn balance(d: &Deployment, key: &str, agent: &str) -> Decimal {
    let (status, body) = d.get(&format!("/agentsWith/{agent}"), key).await;
    assert_eq!(status, 200, "{body}");
    dec(&body["balance"])
}

/// The receiver's credit is written by another partition's events; give the
/// sink a moment if the read races it.
async fn eventually_balance(d: &Deployment, key: &str, agent: &str, want: Decimal) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = balance(d, key, agent).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{agent}: balance {got}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn payment(from: &str, to: &str, amount: Value, name: &str) -> Value {
    json!({
        "senderagentid": from,
        "receiveragentid": to,
        "paymentdetails": {"amount": amount, "currency": "USDC", "method": "CRYPTO_ADDRESS"},
        "name": name,
        "type": "INTERNAL",
        "contactdetails": {"email": "contact@vendorxyz.com", "phoneNumber": "+1234567890"},
        "tags": ["vendor", "regular"],
    })
}

async fn export(d: &Deployment, key: &str, format: &str) -> (u16, String, Vec<u8>) {
    let r = d
        .client
        .post(d.url("/payments/export"))
        .header("x-api-key", key)
        .json(&json!({"format": format, "dateRange": {"start": "2020-01-01", "end": "2100-12-31"}}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ctype, r.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread")]
async fn documented_payment_flows() {
    let d = Deployment::new("payflow").await;
    d.start_dev().await;
    let (user, key) = d.sign_up("ada").await;

    // The sandbox bonus and the test funding are in the user's wallet, from the ledger.
    let (status, wallet) = d.get("/user/wallet-balance", &key).await;
    assert_eq!(status, 200, "{wallet}");
    assert_eq!(
        (wallet["success"].clone(), wallet["asset"].clone()),
        (json!(true), json!("USDC"))
    );
    let funded: Decimal = common::TEST_FUNDING.parse().unwrap();
    assert_eq!(dec(&wallet["balance"]), Decimal::new(20, 0) + funded);
    assert_eq!(wallet["source"], "ledger");

    let (status, created) = d
        .post(
            "/agents/create",
            Some(&key),
            json!({"userid": user, "name": "Alice", "dailylimit": 1000,
                   "transactionlimit": 500, "requireapprovalaboveamount": 50}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let alice = created["id"].as_str().unwrap().to_string();
    let alice_key = created["apikey"].as_str().unwrap().to_string();
    let bob = d.create_agent(&user, &key, json!({"name": "Bob"})).await;
    let (status, body) = d
        .post(
            "/agents/deposit",
            Some(&key),
            json!({"userid": user, "agentid": alice, "amount": 200}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Instant payment: answered once credited, Confirmed/Approved.
    let (status, instant) = d
        .post(
            "/payments/register",
            Some(&key),
            payment(&alice, &bob, json!(25.5), "Small transaction"),
        )
        .await;
    assert_eq!(status, 200, "{instant}");
    assert!(instant["id"].as_str().unwrap().starts_with("payee_"));
    assert_eq!(instant["status"], "Confirmed");
    assert_eq!(instant["approvalstatus"], "Approved");
    assert_eq!(instant["approvalRequired"], false);
    assert_eq!(balance(&d, &key, &alice).await, Decimal::new(1745, 1));
    eventually_balance(&d, &key, &bob, Decimal::new(255, 1)).await;

    // Above the approval threshold: waits, with the amount reserved.
    let (status, waiting) = d
        .post(
            "/v1/payments/register",
            Some(&key),
            payment(&alice, &bob, json!("100"), "Vendor XYZ Payment"),
        )
        .await;
    assert_eq!(status, 200, "{waiting}");
    assert_eq!(waiting["status"], "New");
    assert_eq!(waiting["approvalstatus"], "Waiting for Sender Approval");
    assert_eq!(waiting["approvalRequired"], true);
    assert_eq!(waiting["txHash"], Value::Null);
    let waiting_id = waiting["id"].as_str().unwrap().to_string();
    assert_eq!(balance(&d, &key, &alice).await, Decimal::new(745, 1));
    let (status, pending) = d
        .get(
            "/user/payments?approvalStatus=Waiting%20for%20Sender%20Approval",
            &key,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(pending.as_array().unwrap().len(), 1, "{pending}");

    // The agent itself may not approve its own payment: that is the user's call.
    let (status, err) = d
        .post(
            "/payments/setApprove",
            Some(&alice_key),
            json!({"paymentId": waiting_id}),
        )
        .await;
    assert_eq!(status, 403, "{err}");

    // Approve: the saga completes before the answer.
    let (status, approved) = d
        .post(
            "/payments/setApprove",
            Some(&key),
            json!({"paymentId": waiting_id}),
        )
        .await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["message"], "Approval Status Done.");
    let (status, got) = d.get(&format!("/payments/{waiting_id}"), &key).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        (got["status"].clone(), got["approvalstatus"].clone()),
        (json!("Confirmed"), json!("Approved"))
    );
    assert_eq!(got["paymentdetails"]["amount"], json!(100));
    assert_eq!(got["contactdetails"]["email"], "contact@vendorxyz.com");
    assert!(got["approvedat"].is_string());
    eventually_balance(&d, &key, &bob, Decimal::new(1255, 1)).await;
    let (status, again) = d
        .post(
            "/payments/setApprove",
            Some(&key),
            json!({"paymentId": waiting_id}),
        )
        .await;
    assert_eq!(status, 400, "approving twice: {again}");

    // Decline: final, the reservation comes back.
    let (_, to_decline) = d
        .post(
            "/payments/register",
            Some(&key),
            payment(&alice, &bob, json!(60), "Declined one"),
        )
        .await;
    let decline_id = to_decline["id"].as_str().unwrap().to_string();
    assert_eq!(balance(&d, &key, &alice).await, Decimal::new(145, 1));
    let (status, declined) = d
        .post(
            "/payments/setDecline",
            Some(&key),
            json!({"paymentId": decline_id}),
        )
        .await;
    assert_eq!(status, 200, "{declined}");
    assert_eq!(
        declined,
        json!({"message": "Payment declined successfully", "status": "Decline",
                                "paymentStatus": "Confirmed", "txHash": null})
    );
    assert_eq!(balance(&d, &key, &alice).await, Decimal::new(745, 1));
    let (status, _) = d
        .post(
            "/payments/setApprove",
            Some(&key),
            json!({"paymentId": decline_id}),
        )
        .await;
    assert_eq!(status, 400, "a declined payment cannot be approved");
    let (_, got) = d.get(&format!("/payments/{decline_id}"), &key).await;
    assert_eq!(
        (got["status"].clone(), got["approvalstatus"].clone()),
        (json!("Confirmed"), json!("Decline"))
    );

    // Documented errors, nothing moved.
    let cases = [
        (
            json!({"senderagentid": alice}),
            400,
            "Required fields missing: senderagentid, receiveragentid, paymentdetails, name, type",
        ),
        (
            payment(&alice, &bob, json!(-1), "n"),
            400,
            "Invalid payment details. Amount must be positive.",
        ),
        (
            payment(&alice, &bob, json!(501), "n"),
            400,
            "Payment exceeds the sender agent's transaction limit",
        ),
        (
            payment(&bob, &alice, json!(400), "n"),
            400,
            "Insufficient balance in sender agent's wallet",
        ),
        (
            payment(&alice, "agent_1111111111111111111111", json!(1), "n"),
            404,
            "Receiver agent not found",
        ),
        (
            payment("agent_1111111111111111111111", &bob, json!(1), "n"),
            404,
            "Sender agent not found",
        ),
    ];
    for (body, want_status, want_error) in cases {
        let (status, err) = d.post("/payments/register", Some(&key), body).await;
        assert_eq!(
            (status, err["error"].as_str().unwrap_or_default()),
            (want_status, want_error)
        );
    }
    let (status, err) = d.post("/payments/setApprove", Some(&key), json!({})).await;
    assert_eq!(
        (status, err),
        (400, json!({"error": "Payment ID is required"}))
    );
    assert_eq!(balance(&d, &key, &alice).await, Decimal::new(745, 1));

    // Idempotency-Key: the retry is the same payment, paid once.
    for _ in 0..2 {
        let r = d
            .client
            .post(d.url("/payments/register"))
            .header("x-api-key", &key)
            .header("Idempotency-Key", "pay-once")
            .json(&payment(&alice, &bob, json!(1), "Once"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(balance(&d, &key, &alice).await, Decimal::new(735, 1));
    eventually_balance(&d, &key, &bob, Decimal::new(1265, 1)).await;

    // Another user sees none of it.
    let (_, other_key) = d.sign_up("eve").await;
    let (status, _) = d.get(&format!("/payments/{waiting_id}"), &other_key).await;
    assert_eq!(status, 404);
    let (status, _) = d
        .post(
            "/payments/setDecline",
            Some(&other_key),
            json!({"paymentId": decline_id}),
        )
        .await;
    assert_eq!(status, 404);
    let (_, theirs) = d.get("/user/payments", &other_key).await;
    assert_eq!(theirs, json!([]));

    // The user's payments, with names and direction.
    let (status, list) = d.get("/user/payments?limit=100", &key).await;
    assert_eq!(status, 200);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 4);
    assert!(list.iter().all(|p| p["direction"] == "outgoing"
        && p["initiatedBy"] == "Alice"
        && p["receivedBy"] == "Bob"));
    let (_, declined_list) = d.get("/user/payments?approvalStatus=Declined", &key).await;
    assert_eq!(declined_list.as_array().unwrap().len(), 1);
    let (status, _) = d.get("/user/payments?approvalStatus=Bogus", &key).await;
    assert_eq!(status, 400);

    // Summary: earned = deposit 200 + received 126.5; spent = sent 126.5.
    let (status, summary) = d
        .get(
            "/transactions/summary?start_date=2020-01-01T00:00:00Z&end_date=2100-01-01T00:00:00Z",
            &key,
        )
        .await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(dec(&summary["totalEarned"]), Decimal::new(3265, 1));
    assert_eq!(dec(&summary["totalSpent"]), Decimal::new(1265, 1));
    assert_eq!(
        summary["transactionCount"], 7,
        "1 deposit, 3 sent, 3 received"
    );
    let (status, err) = d
        .get(
            "/transactions/summary?start_date=2020-01-01T00:00:00Z",
            &key,
        )
        .await;
    assert_eq!(
        (status, err),
        (
            400,
            json!({"success": false, "error": "start_date and end_date are required"})
        )
    );
    let (status, err) = d
        .get(
            "/transactions/summary?start_date=yesterday&end_date=today",
            &key,
        )
        .await;
    assert_eq!(status, 400, "{err}");

    // Exports: every format parses back to the same four payments.
    let mut ids: Vec<String> = list
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();

    let (status, ctype, bytes) = export(&d, &key, "csv").await;
    assert_eq!((status, ctype.as_str()), (200, "text/csv; charset=utf-8"));
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    assert_eq!(reader.headers().unwrap().get(0), Some("id"));
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let mut csv_ids: Vec<String> = rows.iter().map(|r| r[0].to_string()).collect();
    csv_ids.sort();
    assert_eq!(csv_ids, ids);
    let amounts: Decimal = rows.iter().map(|r| r[7].parse::<Decimal>().unwrap()).sum();
    assert_eq!(amounts, Decimal::new(1865, 1), "25.5 + 100 + 60 + 1");

    let (status, _, bytes) = export(&d, &key, "xlsx").await;
    assert_eq!(status, 200);
    use calamine::Reader;
    let mut book = calamine::Xlsx::new(Cursor::new(bytes)).unwrap();
    let sheet = book.worksheet_range("Payments").unwrap();
    let mut xlsx_ids: Vec<String> = sheet.rows().skip(1).map(|r| r[0].to_string()).collect();
    xlsx_ids.sort();
    assert_eq!(xlsx_ids, ids);
    assert_eq!(sheet.rows().next().unwrap()[7].to_string(), "amount");

    let (status, ctype, bytes) = export(&d, &key, "pdf").await;
    assert_eq!((status, ctype.as_str()), (200, "application/pdf"));
    let doc = lopdf::Document::load_mem(&bytes).unwrap();
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    let text = doc.extract_text(&pages).unwrap();
    for id in &ids {
        assert!(
            text.contains(id.as_str()),
            "{id} missing from the PDF: {text}"
        );
    }

    let (status, err) = d
        .post("/payments/export", Some(&key), json!({"format": "docx"}))
        .await;
    assert_eq!(
        (status, err),
        (
            400,
            json!({"error": "Invalid export format. Supported formats are: csv, xlsx, pdf"})
        )
    );
    let (status, err) = d
        .post(
            "/payments/export",
            Some(&key),
            json!({"format": "csv", "dateRange": {"start": "May 1st"}}),
        )
        .await;
    assert_eq!(
        (status, err),
        (400, json!({"error": "Invalid date range format"}))
    );

    // The ledger balances; the clearing account is empty once sagas finish.
    let pool = d.pool().await;
    let total: Decimal =
        sqlx::query_scalar("SELECT coalesce(sum(amount), 0) FROM journal_postings")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(total.is_zero());
    let clearing: Decimal = sqlx::query_scalar(
        "SELECT coalesce(sum(amount), 0) FROM journal_postings WHERE account = 'settlement:USDC:clearing'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(clearing.is_zero(), "clearing holds {clearing}");
}

async fn wallet(d: &Deployment, key: &str) -> Decimal {
    let (status, w) = d.get("/user/wallet-balance", key).await;
    assert_eq!((status, w["source"].as_str()), (200, Some("ledger")), "{w}");
    dec(&w["balance"])
}

/// Waits until the wallet shows `want` (its saga steps land after the answer).
async fn eventually_wallet(d: &Deployment, key: &str, want: &str) {
    let want: Decimal = want.parse().unwrap();
    common::eventually(&format!("wallet at {want}"), || async {
        (wallet(d, key).await == want).then_some(())
    })
    .await;
}

/// The ledger's own figure for an account (journal postings).
async fn posted(pool: &sqlx::PgPool, account: &str) -> Decimal {
    sqlx::query_scalar("SELECT coalesce(sum(amount), 0) FROM journal_postings WHERE account = $1")
        .bind(account)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_users_wallet_funds_agents() {
    let d = Deployment::new("walletflow").await;
    d.start_dev().await;
    let (user, key) = d.sign_up_unfunded("wendy").await;
    let user_id = schemas::ids::parse(schemas::ids::Kind::User, &user).unwrap();
    let wallet_account = schemas::event::accounts::user_wallet(user_id);
    assert_eq!(
        wallet(&d, &key).await,
        Decimal::new(20, 0),
        "the sign-up bonus"
    );

    // The bonus funds an agent at its creation.
    let (status, a) = d
        .post(
            "/agents/create",
            Some(&key),
            json!({"userid": user, "name": "Funded", "balance": 15}),
        )
        .await;
    assert_eq!((status, a["balance"].as_str()), (200, Some("15")), "{a}");
    let agent = a["id"].as_str().unwrap().to_string();
    eventually_wallet(&d, &key, "5").await;

    // More than the wallet holds: refused with the seed's message, nothing moves,
    // and an agent asked for with too large a balance is not created.
    let (status, body) = d
        .post(
            "/agents/deposit",
            Some(&key),
            json!({"userid": user, "agentid": agent, "amount": 6}),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"success": false, "error": "Transfer failed on-chain: insufficient funds"})
        )
    );
    let (status, body) = d
        .post(
            "/agents/create",
            Some(&key),
            json!({"userid": user, "name": "Too rich", "balance": 6}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("Transfer failed on-chain: insufficient funds")),
        "{body}"
    );
    let (_, list) = d.get(&format!("/agents/{user}"), &key).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(balance(&d, &key, &agent).await, Decimal::new(15, 0));

    // Exactly the wallet: accepted; a retry with the same Idempotency-Key
    // answers the same and debits once.
    for _ in 0..2 {
        let (status, body) = d
            .post_keyed(
                "/agents/deposit",
                &key,
                "wallet-all-in",
                json!({"userid": user, "agentid": agent, "amount": 5}),
            )
            .await;
        assert_eq!(
            (status, body["updatedBalance"].as_str()),
            (200, Some("20")),
            "{body}"
        );
    }
    eventually_wallet(&d, &key, "0").await;

    // A withdrawal comes back to the wallet.
    let (status, body) = d
        .post(
            "/agents/withdraw",
            Some(&key),
            json!({"userid": user, "agentid": agent, "amount": 8}),
        )
        .await;
    assert_eq!(
        (status, body["updatedBalance"].as_str()),
        (200, Some("12")),
        "{body}"
    );
    eventually_wallet(&d, &key, "8").await;

    // Another user's agent: 404, and the amount held for it comes back.
    let (other, other_key) = d.sign_up_unfunded("otto").await;
    let foreign = d.create_agent(&other, &other_key, json!({})).await;
    let (status, body) = d
        .post(
            "/agents/deposit",
            Some(&key),
            json!({"userid": user, "agentid": foreign, "amount": 3}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("Agent not found")),
        "{body}"
    );
    eventually_wallet(&d, &key, "8").await;

    // The documented test funding: bounded, validated, the caller's own wallet only.
    let (status, body) = d
        .post("/user/wallet/fund", Some(&key), json!({"amount": "100.5"}))
        .await;
    assert_eq!(
        (status, body["balance"].as_str()),
        (200, Some("108.5")),
        "{body}"
    );
    for (amount, error) in [
        (json!(-1), "Invalid deposit amount"),
        (json!("abc"), "Invalid deposit amount"),
        (
            json!(10_001),
            "amount must be at most 10000 per test funding",
        ),
    ] {
        let (status, body) = d
            .post("/user/wallet/fund", Some(&key), json!({"amount": amount}))
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(error)),
            "{amount}"
        );
    }
    let (status, _) = d
        .post("/user/wallet/fund", None, json!({"amount": 1}))
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        wallet(&d, &other_key).await,
        Decimal::new(20, 0),
        "the other user's wallet untouched"
    );

    // The figure shown is the ledger's, and nothing is left in transit.
    let pool = d.pool().await;
    common::eventually("transit empty", || async {
        posted(&pool, &schemas::event::accounts::wallet_transit("USDC"))
            .await
            .is_zero()
            .then_some(())
    })
    .await;
    assert_eq!(posted(&pool, &wallet_account).await, wallet(&d, &key).await);
    assert_eq!(wallet(&d, &key).await, "108.5".parse::<Decimal>().unwrap());
}

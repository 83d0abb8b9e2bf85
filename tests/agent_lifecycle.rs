//! An agent's lifecycle against the real stack: rules, description and tags
//! changed; paused (its payments refused, credits landing), resumed;
//! its key regenerated and revoked (the old key refused at once on every
//! route tried); deactivated only at zero balance, after which nothing
//! reaches it. Every change is an event with who, what and why — at a
//! webhook receiver and on the WebSocket `agents` channel.

mod common;

use std::time::Duration;

use common::{eventually, Deployment};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn payment(from: &str, to: &str, amount: i64) -> Value {
    json!({
        "senderagentid": from,
        "receiveragentid": to,
        "paymentdetails": {"amount": amount, "currency": "USDC", "method": "CRYPTO_ADDRESS"},
        "name": "lifecycle",
        "type": "INTERNAL",
    })
}

async fn agent(d: &Deployment, key: &str, id: &str) -> Value {
    let (s, a) = d.get(&format!("/agentsWith/{id}"), key).await;
    assert_eq!(s, 200, "{a}");
    a
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_lifecycle_end_to_end() {
    let d = Deployment::new("lifecycle").await;
    d.set_env(&[("AGENTBANK_WEBHOOKS_ALLOW_PRIVATE", "true")]);
    d.start_dev().await;
    let (user, key) = d.sign_up("lina").await;
    let (url, hooks) = common::hook_receiver().await;
    let (s, hook) = d
        .post(
            "/v1/webhooks",
            Some(&key),
            json!({"url": url, "events": ["agent.updated", "agent.paused", "agent.resumed", "agent.deactivated"]}),
        )
        .await;
    assert_eq!(s, 201, "{hook}");
    let mut ws = common::ws_subscribed(&d, &key, &["agents"]).await;

    let (s, created) = d
        .post(
            "/agents/create",
            Some(&key),
            json!({"userid": user, "name": "Shopper", "balance": 100, "dailylimit": 500, "tags": ["a"]}),
        )
        .await;
    assert_eq!(s, 200, "{created}");
    let a = created["id"].as_str().unwrap().to_string();
    let a_key = created["apikey"].as_str().unwrap().to_string();
    let b = d.create_agent(&user, &key, json!({"balance": 50})).await;

    // Update: description, tags, a limit set, another removed, with a reason.
    let (s, updated) = d
        .post(
            "/agents/update",
            Some(&key),
            json!({"agentid": a, "description": "buys things", "tags": ["shop", "eu"],
                   "dailylimit": 80, "transactionlimit": 30, "reason": "tighter budget"}),
        )
        .await;
    assert_eq!(s, 200, "{updated}");
    assert_eq!(updated["description"], "buys things");
    assert_eq!(updated["tags"], json!(["shop", "eu"]));
    assert_eq!(updated["paymentRules"]["dailyLimit"].as_f64(), Some(80.0));
    assert_eq!(
        updated["paymentRules"]["transactionLimit"].as_f64(),
        Some(30.0)
    );
    let read = agent(&d, &key, &a).await;
    assert_eq!(
        read["paymentRules"]["transactionLimit"].as_f64(),
        Some(30.0),
        "read your writes: {read}"
    );
    // The new limit holds at once.
    let (s, e) = d
        .post("/payments/register", Some(&key), payment(&a, &b, 40))
        .await;
    assert_eq!(s, 400, "{e}");
    let (s, removed) = d
        .post(
            "/agents/update",
            Some(&key),
            json!({"agentid": a, "transactionlimit": null}),
        )
        .await;
    assert_eq!(
        (s, &removed["paymentRules"]["transactionLimit"]),
        (200, &Value::Null),
        "{removed}"
    );
    // The agent's own key may not change its rules; nothing to change is an error.
    let (s, e) = d
        .post(
            "/agents/update",
            Some(&a_key),
            json!({"agentid": a, "dailylimit": 10_000}),
        )
        .await;
    assert_eq!(s, 403, "{e}");
    let (s, e) = d
        .post("/agents/update", Some(&key), json!({"agentid": a}))
        .await;
    assert_eq!(s, 400, "{e}");
    let (s, e) = d
        .post(
            "/agents/update",
            Some(&key),
            json!({"agentid": a, "dailylimit": -1}),
        )
        .await;
    assert_eq!(s, 400, "{e}");

    // Pause: its payments are refused (user key and its own key), credits land.
    let (s, paused) = d
        .post(
            "/agents/pause",
            Some(&key),
            json!({"agentid": a, "reason": "suspicious"}),
        )
        .await;
    assert_eq!((s, &paused["status"]), (200, &json!("paused")), "{paused}");
    for k in [&key, &a_key] {
        let (s, e) = d
            .post("/payments/register", Some(k), payment(&a, &b, 5))
            .await;
        assert_eq!(s, 400, "{e}");
        assert!(e["error"].as_str().unwrap().contains("paused"), "{e}");
    }
    let (s, credit) = d
        .post("/payments/register", Some(&key), payment(&b, &a, 10))
        .await;
    assert_eq!(
        (s, &credit["status"]),
        (200, &json!("Confirmed")),
        "{credit}"
    );
    assert_eq!(agent(&d, &key, &a).await["balance"], "110");
    let (s, resumed) = d
        .post("/agents/resume", Some(&key), json!({"agentid": a}))
        .await;
    assert_eq!(
        (s, &resumed["status"]),
        (200, &json!("active")),
        "{resumed}"
    );
    let (s, paid) = d
        .post("/payments/register", Some(&a_key), payment(&a, &b, 5))
        .await;
    assert_eq!(s, 200, "{paid}");

    // A regenerated key: the old one is refused at once on every route.
    let (s, fresh) = d
        .post(
            "/agents/keys/regenerate",
            Some(&key),
            json!({"agentid": a, "reason": "leaked"}),
        )
        .await;
    assert_eq!(s, 200, "{fresh}");
    assert_eq!(fresh["revoked"], 1);
    let new_key = fresh["apikey"].as_str().unwrap().to_string();
    let routes: [(Method, String, Option<Value>); 3] = [
        (Method::GET, format!("/agentsWith/{a}"), None),
        (
            Method::POST,
            "/payments/register".into(),
            Some(payment(&a, &b, 1)),
        ),
        (Method::GET, format!("/savings/{a}"), None),
    ];
    for (m, path, body) in &routes {
        let (s, _, e) = d
            .request(m.clone(), path, &[("x-api-key", &a_key)], body.clone())
            .await;
        assert_eq!(s, 401, "old key on {path}: {e}");
    }
    assert_eq!(agent(&d, &new_key, &a).await["id"], json!(a));
    let (s, r) = d
        .post("/agents/keys/revoke", Some(&key), json!({"agentid": a}))
        .await;
    assert_eq!((s, &r["revoked"]), (200, &json!(1)), "{r}");
    let (s, _) = d.get(&format!("/agentsWith/{a}"), &new_key).await;
    assert_eq!(s, 401);

    // Deactivate: refused while it holds money, then final.
    let (s, e) = d
        .post("/agents/deactivate", Some(&key), json!({"agentid": a}))
        .await;
    assert_eq!(s, 400, "{e}");
    assert!(e["error"].as_str().unwrap().contains("zero balance"), "{e}");
    let balance = agent(&d, &key, &a).await["balance"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, w) = d
        .post(
            "/agents/withdraw",
            Some(&key),
            json!({"userid": user, "agentid": a, "amount": balance}),
        )
        .await;
    assert_eq!(s, 200, "{w}");
    let (s, gone) = d
        .post(
            "/agents/deactivate",
            Some(&key),
            json!({"agentid": a, "reason": "retired"}),
        )
        .await;
    assert_eq!((s, &gone["status"]), (200, &json!("deactivated")), "{gone}");
    let (s, failed) = d
        .post("/payments/register", Some(&key), payment(&b, &a, 1))
        .await;
    assert_eq!(
        (s, &failed["error"]),
        (400, &json!("Receiver agent is deactivated")),
        "a deactivated receiver takes nothing"
    );
    let (s, e) = d
        .post(
            "/agents/deposit",
            Some(&key),
            json!({"userid": user, "agentid": a, "amount": 1}),
        )
        .await;
    assert_eq!(s, 400, "{e}");
    let (s, e) = d
        .post("/agents/resume", Some(&key), json!({"agentid": a}))
        .await;
    assert_eq!(s, 400, "{e}");

    // Every change is an event with who, what and why.
    let all = eventually("lifecycle webhooks", || async {
        let got = hooks.lock().unwrap().clone();
        (got.len() >= 7).then_some(got)
    })
    .await;
    let mut types: Vec<&str> = all.iter().map(|h| h["type"].as_str().unwrap()).collect();
    types.sort();
    assert_eq!(
        types,
        [
            "agent.deactivated",
            "agent.paused",
            "agent.resumed",
            "agent.updated",
            "agent.updated",
            "agent.updated",
            "agent.updated"
        ],
        "refused changes record nothing"
    );
    let mut all = all;
    all.sort_by_key(|h| h["created"].as_str().unwrap().to_string());
    let first = &all[0]["data"];
    assert_eq!(first["actor"], format!("user:{}", uuid_of(&user)));
    assert_eq!(first["reason"], "tighter budget");
    let fields: Vec<&str> = first["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["description", "tags", "daily_limit", "transaction_limit"]
    );
    assert_eq!(first["changes"][2]["from"], "500");
    assert_eq!(first["changes"][2]["to"], "80");
    let paused_hook = all.iter().find(|h| h["type"] == "agent.paused").unwrap();
    assert_eq!(paused_hook["data"]["reason"], "suspicious");
    let key_change = all
        .iter()
        .find(|h| h["data"]["changes"][0]["field"] == "api_key")
        .expect("the key regeneration is audited");
    assert_eq!(key_change["data"]["reason"], "leaked");
    assert!(
        !key_change.to_string().contains(&new_key),
        "never the secret: {key_change}"
    );
    // The same on the WebSocket channel.
    let mut seen = vec![];
    while seen.len() < 3 {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            let ty = v["type"].as_str().unwrap_or_default().to_string();
            if ty.starts_with("agent.") && ty != "agent.created" {
                seen.push(ty);
            }
        }
    }
    assert_eq!(seen, ["agent.updated", "agent.updated", "agent.paused"]);
}

/// The UUID behind a short `user_…` id.
fn uuid_of(short: &str) -> String {
    schemas::ids::parse(schemas::ids::Kind::User, short)
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn spending_policies_end_to_end() {
    let d = Deployment::new("policies").await;
    d.start_dev().await;
    let (user, key) = d.sign_up("pia").await;
    let a = d.create_agent(&user, &key, json!({"balance": 500})).await;
    let b = d.create_agent(&user, &key, json!({})).await;
    let blocked = d.create_agent(&user, &key, json!({})).await;
    let (s, set) = d
        .post(
            "/agents/update",
            Some(&key),
            json!({"agentid": a, "requireapprovalaboveamount": 15, "spendingpolicies": {
                "hourlyLimit": 20, "maxPaymentsPerHour": 5, "blockedRecipients": [blocked],
                "approvalExpiryMinutes": 1}}),
        )
        .await;
    assert_eq!(s, 200, "{set}");
    assert_eq!(set["spendingPolicies"]["hourlyLimit"].as_f64(), Some(20.0));
    assert_eq!(set["spendingPolicies"]["approvalExpiryMinutes"], 1);
    for bad in [
        json!({"hourlyLimit": -1}),
        json!({"colour": 1}),
        json!({"approvalExpiryMinutes": 0}),
        json!({"allowedRecipients": ["x"], "blockedRecipients": ["X"]}),
    ] {
        let (s, e) = d
            .post(
                "/agents/update",
                Some(&key),
                json!({"agentid": a, "spendingpolicies": bad}),
            )
            .await;
        assert_eq!(s, 400, "{e}");
    }

    // A blocked recipient, then the hourly cap.
    let (s, e) = d
        .post("/payments/register", Some(&key), payment(&a, &blocked, 1))
        .await;
    assert_eq!(s, 400, "{e}");
    assert!(e["error"].as_str().unwrap().contains("blocked"), "{e}");
    for _ in 0..2 {
        let (s, p) = d
            .post("/payments/register", Some(&key), payment(&a, &b, 9))
            .await;
        assert_eq!((s, &p["status"]), (200, &json!("Confirmed")), "{p}");
    }
    let (s, e) = d
        .post("/payments/register", Some(&key), payment(&a, &b, 3))
        .await;
    assert_eq!(s, 400, "{e}");
    assert!(e["error"].as_str().unwrap().contains("hourly limit"), "{e}");

    // An approval that expires: held, then released by the scheduler's tick.
    let (s, waiting) = d
        .post("/payments/register", Some(&key), payment(&a, &b, 2))
        .await;
    assert_eq!(s, 200, "{waiting}");
    let _ = waiting;
    let (s, big) = d
        .post(
            "/agents/update",
            Some(&key),
            json!({"agentid": a, "spendingpolicies": {"hourlyLimit": 100, "approvalExpiryMinutes": 1}}),
        )
        .await;
    assert_eq!(s, 200, "{big}");
    let (s, held) = d
        .post("/payments/register", Some(&key), payment(&a, &b, 16))
        .await;
    assert_eq!(s, 200, "{held}");
    assert_eq!(held["approvalstatus"], "Waiting for Sender Approval");
    let payment_id = held["id"].as_str().unwrap().to_string();
    let read = agent(&d, &key, &a).await;
    assert_eq!(read["reservedBalance"], "16", "{read}");
    assert_eq!(
        read["pendingApprovals"],
        json!({"count": 1, "amount": "16"})
    );
    assert_eq!(read["balance"], "464", "500 - 9 - 9 - 2 - 16: {read}");
    d.tick(common::now_ms() + 61_000).await;
    let expired = eventually("the approval expires", || async {
        let (_, p) = d.get(&format!("/payments/{payment_id}"), &key).await;
        (p["approvalstatus"] == "Expired").then_some(p)
    })
    .await;
    assert_eq!(expired["status"], "Confirmed", "final: {expired}");
    let read = agent(&d, &key, &a).await;
    assert_eq!(read["reservedBalance"], "0", "{read}");
    assert_eq!(read["pendingApprovals"]["count"], 0);
    assert_eq!(read["balance"], "480");
    let (s, e) = d
        .post(
            "/payments/setApprove",
            Some(&key),
            json!({"paymentId": payment_id}),
        )
        .await;
    assert_eq!(s, 400, "an expired approval cannot be approved: {e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn history_filters_and_exports() {
    let d = Deployment::new("history").await;
    d.start_dev().await;
    let (user, key) = d.sign_up("hana").await;
    let a = d
        .create_agent(&user, &key, json!({"balance": 100, "tags": ["eu"]}))
        .await;
    let b = d.create_agent(&user, &key, json!({"tags": ["us"]})).await;
    let move_funds = |path: &'static str, amount: i64| {
        let (d, key, user, a) = (&d, key.clone(), user.clone(), a.clone());
        async move {
            let (s, r) = d
                .post(
                    path,
                    Some(&key),
                    json!({"userid": user, "agentid": a, "amount": amount}),
                )
                .await;
            assert_eq!(s, 200, "{r}");
        }
    };
    move_funds("/agents/deposit", 10).await;
    let mut tagged = payment(&a, &b, 5);
    tagged["tags"] = json!(["vendor"]);
    let (s, p) = d.post("/payments/register", Some(&key), tagged).await;
    assert_eq!(s, 200, "{p}");
    let (s, inv) = d
        .post(
            "/savings/deposit",
            Some(&key),
            json!({"agentId": a, "amount": 20}),
        )
        .await;
    assert_eq!(s, 200, "{inv}");
    move_funds("/agents/withdraw", 3).await;

    // One list, newest first, every kind, paged by cursor without gaps or repeats.
    let (s, all) = d.get(&format!("/agents/{a}/transactions"), &key).await;
    assert_eq!(s, 200, "{all}");
    let kinds: Vec<&str> = all["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "withdrawal",
            "savings deposit",
            "payment sent",
            "deposit",
            "initial balance"
        ]
    );
    assert_eq!(all["transactions"][0]["balanceAfter"], "82");
    let mut seen = vec![];
    let mut cursor = String::new();
    loop {
        let (s, page) = d
            .get(
                &format!("/agents/{a}/transactions?limit=2&cursor={cursor}"),
                &key,
            )
            .await;
        assert_eq!(s, 200, "{page}");
        for t in page["transactions"].as_array().unwrap() {
            seen.push(t["id"].as_str().unwrap().to_string());
        }
        if page["hasMore"] != true {
            break;
        }
        cursor = page["nextCursor"].as_str().unwrap().to_string();
    }
    let ids: Vec<String> = all["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, ids);
    let (_, sent) = d
        .get(
            &format!("/agents/{a}/transactions?kind=payment_sent,withdrawal"),
            &key,
        )
        .await;
    assert_eq!(sent["transactions"].as_array().unwrap().len(), 2, "{sent}");
    let (_, none) = d
        .get(
            &format!("/agents/{a}/transactions?start_date=2999-01-01"),
            &key,
        )
        .await;
    assert_eq!(none["transactions"], json!([]));
    let (s, e) = d
        .get(&format!("/agents/{a}/transactions?kind=theft"), &key)
        .await;
    assert_eq!(s, 400, "{e}");
    let (_, other) = d.sign_up("nosy").await;
    let (s, _) = d.get(&format!("/agents/{a}/transactions"), &other).await;
    assert_eq!(s, 404);

    // Exports of the history in the three formats.
    for format in ["csv", "xlsx", "pdf"] {
        let r = d
            .client
            .post(d.url(&format!("/agents/{a}/transactions/export")))
            .header("x-api-key", &key)
            .json(&json!({"format": format}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{format}");
        let bytes = r.bytes().await.unwrap();
        match format {
            "csv" => {
                let text = String::from_utf8(bytes.to_vec()).unwrap();
                assert_eq!(text.lines().count(), 6, "{text}");
                assert!(
                    text.lines().nth(1).unwrap().contains("initial balance"),
                    "oldest first: {text}"
                );
            }
            "xlsx" => assert_eq!(&bytes[..2], b"PK"),
            _ => assert_eq!(&bytes[..5], b"%PDF-"),
        }
    }

    // Filters on payments and agents.
    let (_, vendor) = d.get("/user/payments?tag=vendor", &key).await;
    assert_eq!(vendor.as_array().unwrap().len(), 1, "{vendor}");
    let (_, untagged) = d.get("/user/payments?tag=nothing", &key).await;
    assert_eq!(untagged, json!([]));
    let (_, later) = d.get("/user/payments?start_date=2999-01-01", &key).await;
    assert_eq!(later, json!([]));
    let (s, e) = d
        .get(
            "/user/payments?start_date=2030-01-02&end_date=2030-01-01",
            &key,
        )
        .await;
    assert_eq!(s, 400, "{e}");
    let (_, eu) = d.get(&format!("/agents/{user}?tag=eu"), &key).await;
    assert_eq!(eu.as_array().unwrap().len(), 1, "{eu}");
    assert_eq!(eu[0]["id"], json!(a));
    let (_, paused) = d.get(&format!("/agents/{user}?status=paused"), &key).await;
    assert_eq!(paused, json!([]));
}

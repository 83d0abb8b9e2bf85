//! Cross-tenant attacks, generated from the route table: two users with
//! agents, payments, a savings position, a webhook, an opportunity and its
//! position, a quote and revenue. For every operation of both OpenAPI
//! documents that takes an id (in its path or body), the other user's id —
//! with the user's key, an agent's key for another agent, and the sandbox
//! key — is a 4xx that carries none of the victim's data, and the victim's
//! state is unchanged afterwards. An operation that takes an id and is
//! missing from the table below fails the test, so a new route cannot be
//! forgotten. Lists without ids never show the victim's ids, and the
//! attacker's WebSocket session carries none of the victim's events.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::Deployment;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// The victim's ids, by what they name.
struct Victim {
    user: String,
    /// The public id of the victim's key.
    key_id: String,
    agent: String,
    other_agent: String,
    payment: String,
    investment: String,
    webhook: String,
    opportunity: String,
    quote: String,
}

impl Victim {
    /// What the victim owns, as the victim reads it.
    async fn state(&self, d: &Deployment, key: &str) -> Vec<Value> {
        let mut out = vec![];
        for path in [
            format!("/agentsWith/{}", self.agent),
            format!("/payments/{}", self.payment),
            format!("/v1/webhooks/{}", self.webhook),
            format!("/v1/opportunities/{}", self.opportunity),
            format!("/v1/monetizer/quotes/{}", self.quote),
        ] {
            out.push(d.get(&path, key).await.1);
        }
        out
    }

    /// Every text of the victim's that must never reach the attacker.
    fn secrets(&self) -> Vec<&str> {
        vec![
            &self.user,
            &self.agent,
            &self.other_agent,
            &self.payment,
            &self.investment,
            &self.webhook,
            &self.opportunity,
            &self.quote,
            "victim-secret-memo",
        ]
    }
}

/// Operations that take an id: (method, path template) → the request the
/// attacker sends (path, body) with the victim's ids. A template's `{…}`
/// is replaced by the id given with it.
fn attacks(v: &Victim) -> BTreeMap<(&'static str, &'static str), (String, Value)> {
    let usdc = |user: &str, agent: &str| json!({"userid": user, "agentid": agent, "amount": 1, "currency": "USDC"});
    let none = Value::Null;
    let rows: Vec<(&'static str, &'static str, &str, Value)> = vec![
        // The agent bank (mounted at / and /v1).
        ("GET", "/agentsWith/{id}", &v.agent, none.clone()),
        ("GET", "/agents/{id}", &v.user, none.clone()),
        (
            "POST",
            "/agents/create",
            "",
            json!({"userid": v.user, "name": "intruder"}),
        ),
        ("POST", "/agents/deposit", "", usdc(&v.user, &v.agent)),
        ("POST", "/agents/withdraw", "", usdc(&v.user, &v.agent)),
        (
            "POST",
            "/payments/setApprove",
            "",
            json!({"paymentId": v.payment}),
        ),
        (
            "POST",
            "/payments/setDecline",
            "",
            json!({"paymentId": v.payment}),
        ),
        ("GET", "/payments/{id}", &v.payment, none.clone()),
        // The agent's lifecycle: nobody else's key changes, pauses or re-keys it.
        (
            "POST",
            "/agents/update",
            "",
            json!({"agentid": v.agent, "description": "owned", "dailylimit": null}),
        ),
        ("POST", "/agents/pause", "", json!({"agentid": v.agent})),
        ("GET", "/agents/{id}/transactions", &v.agent, none.clone()),
        (
            "POST",
            "/agents/{id}/transactions/export",
            &v.agent,
            json!({"format": "csv"}),
        ),
        ("POST", "/agents/resume", "", json!({"agentid": v.agent})),
        (
            "POST",
            "/agents/deactivate",
            "",
            json!({"agentid": v.other_agent}),
        ),
        (
            "POST",
            "/agents/keys/regenerate",
            "",
            json!({"agentid": v.agent}),
        ),
        (
            "POST",
            "/agents/keys/revoke",
            "",
            json!({"agentid": v.agent}),
        ),
        (
            "POST",
            "/savings/deposit",
            "",
            json!({"agentId": v.agent, "amount": 1}),
        ),
        (
            "POST",
            "/savings/withdraw",
            "",
            json!({"investmentId": v.investment}),
        ),
        ("GET", "/savings/{agentId}", &v.agent, none.clone()),
        // The revenue platform (/v1).
        (
            "GET",
            "/v1/opportunities/{id}",
            &v.opportunity,
            none.clone(),
        ),
        (
            "POST",
            "/v1/opportunities/{id}/execute",
            &v.opportunity,
            json!({}),
        ),
        ("GET", "/v1/monetizer/quotes/{id}", &v.quote, none.clone()),
        (
            "POST",
            "/v1/monetizer/execute",
            "",
            json!({"quote_id": v.quote}),
        ),
        ("GET", "/v1/webhooks/{id}", &v.webhook, none.clone()),
        (
            "PATCH",
            "/v1/webhooks/{id}",
            &v.webhook,
            json!({"active": false}),
        ),
        ("DELETE", "/v1/webhooks/{id}", &v.webhook, none.clone()),
        ("POST", "/v1/webhooks/{id}/test", &v.webhook, json!({})),
        (
            "GET",
            "/v1/webhooks/{id}/deliveries",
            &v.webhook,
            none.clone(),
        ),
        ("POST", "/v1/webhooks/{id}/replay", &v.webhook, json!({})),
        // The victim's own API keys.
        ("DELETE", "/v1/keys/{key_id}", &v.key_id, none.clone()),
        (
            "POST",
            "/v1/keys/{key_id}/rotate",
            &v.key_id,
            json!({"overlap_seconds": 0}),
        ),
        // Shared pools, not a tenant's: control needs an operator's token.
        (
            "POST",
            "/v1/agents/{agent_id}/control",
            "agent_saas",
            json!({"action": "pause", "parameters": {"reason": "intrusion"}}),
        ),
        (
            "PUT",
            "/v1/admin/users/{user_id}/tier",
            &v.user,
            json!({"tier": "enterprise"}),
        ),
    ];
    rows.into_iter()
        .map(|(method, template, id, body)| {
            let path = match (template.find('{'), template.find('}')) {
                (Some(a), Some(b)) => format!("{}{id}{}", &template[..a], &template[b + 1..]),
                _ => template.to_string(),
            };
            ((method, template), (path, body))
        })
        .collect()
}

/// Operations of both documents that take an id: a path parameter, or a
/// body field naming an id.
fn id_operations(docs: &[(&str, &Value)]) -> BTreeSet<(String, String)> {
    // Names in the caller's own namespace (a product, a segment, a
    // customer of the tenant's) are not ids of anyone's resources.
    let id_field = |name: &str| {
        let n = name.to_ascii_lowercase();
        (n == "id" || n.ends_with("id"))
            && !["product_id", "segment_id", "customer_id", "walletaddress"].contains(&n.as_str())
    };
    let mut out = BTreeSet::new();
    for (prefix, doc) in docs {
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    continue;
                }
                let in_path = path.contains('{');
                let schema = &op["requestBody"]["content"]["application/json"]["schema"];
                let schema = match schema["$ref"].as_str() {
                    Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
                    None => schema,
                };
                let in_body = schema["properties"]
                    .as_object()
                    .is_some_and(|p| p.keys().any(|k| id_field(k)));
                if in_path || in_body {
                    out.insert((method.to_uppercase(), format!("{prefix}{path}")));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn no_route_reads_or_moves_another_users_money() {
    let d = Deployment::new("xtenant").await;
    d.set_env(&[
        ("AGENTBANK_DEFAULT_TIER", "enterprise"),
        ("AGENTBANK_WEBHOOKS_ALLOW_PRIVATE", "true"),
    ]);
    d.start_dev().await;

    // The victim and its resources.
    let (vu, vk) = d.sign_up("victim").await;
    let va = d
        .create_agent(&vu, &vk, json!({"requireapprovalforall": true}))
        .await;
    let vb = d.create_agent(&vu, &vk, json!({"name": "Other"})).await;
    let (s, _) = d
        .post(
            "/agents/deposit",
            Some(&vk),
            json!({"userid": vu, "agentid": va, "amount": 100, "currency": "USDC"}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, p) = d
        .post(
            "/payments/register",
            Some(&vk),
            json!({"senderagentid": va, "receiveragentid": vb, "name": "victim-secret-memo", "type": "INTERNAL",
                   "paymentdetails": {"amount": 10, "currency": "USDC", "method": "CRYPTO_ADDRESS"}}),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    let payment = p["id"]
        .as_str()
        .or(p["paymentId"].as_str())
        .unwrap_or_default()
        .to_string();
    let (s, inv) = d
        .post(
            "/savings/deposit",
            Some(&vk),
            json!({"agentId": va, "amount": 20}),
        )
        .await;
    assert_eq!(s, 200, "{inv}");
    let investment = inv["investment"]["id"]
        .as_str()
        .or(inv["id"].as_str())
        .or(inv["investmentId"].as_str())
        .unwrap_or_default()
        .to_string();
    let vauth = [("x-api-key", vk.as_str())];
    let (_, _, wh) = d
        .request(
            Method::POST,
            "/v1/webhooks",
            &vauth,
            Some(json!({"url": "https://93.184.216.34/hook", "events": ["*"], "active": false})),
        )
        .await;
    let (_, _, opp) = d
        .request(Method::POST, "/v1/opportunities", &vauth,
            Some(json!({"name": "victim-secret-memo", "vertical": "saas",
                "market_data": {"total_market_size": 1000000, "growth_rate": 0.1, "competition_count": 3},
                "technical_requirements": {"complexity": "low", "time_to_market": 30, "required_expertise": []}})))
        .await;
    let (_, _, quote) = d
        .request(Method::POST, "/v1/monetizer/quote", &vauth,
            Some(json!({"product_id": "p", "segment_id": "s", "context": {"competitor_pricing": {"a": 10}}})))
        .await;
    let victim = Victim {
        user: vu.clone(),
        key_id: vk
            .trim_start_matches("mag_")
            .split('_')
            .next()
            .unwrap()
            .to_string(),
        agent: va.clone(),
        other_agent: vb.clone(),
        payment,
        investment,
        webhook: wh["id"].as_str().unwrap().to_string(),
        opportunity: opp["id"].as_str().unwrap().to_string(),
        quote: quote["quote_id"].as_str().unwrap().to_string(),
    };
    assert!(
        !victim.payment.is_empty() && !victim.investment.is_empty(),
        "{p} {inv}"
    );
    let before = victim.state(&d, &vk).await;

    // The attacker: a user key, an agent key, a sandbox key.
    let (au, ak) = d.sign_up("attacker").await;
    let (_, agent) = d
        .post(
            "/agents/create",
            Some(&ak),
            json!({"userid": au, "name": "Mallory"}),
        )
        .await;
    let agent_key = agent["apikey"].as_str().unwrap().to_string();
    let (_, _, sandbox) = d
        .request(
            Method::POST,
            "/v1/sandbox/keys",
            &[("x-api-key", ak.as_str())],
            None,
        )
        .await;
    let sandbox_key = sandbox["api_key"].as_str().unwrap().to_string();
    let (hook_url, hooks) = common::hook_receiver().await;
    let (_, _, own_hook) = d
        .request(
            Method::POST,
            "/v1/webhooks",
            &[("x-api-key", ak.as_str())],
            Some(json!({"url": hook_url, "events": ["*"]})),
        )
        .await;
    let own_hook = own_hook["id"].as_str().unwrap().to_string();
    let mut ws = common::ws_subscribed(
        &d,
        &ak,
        &[
            "payments",
            "agents",
            "savings",
            "opportunities",
            "revenue",
            "alerts",
            "portfolio",
        ],
    )
    .await;

    // Every id-taking operation of both documents is in the table.
    let mage: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/gateway/api/mage-openapi.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let revenue = d
        .client
        .get(d.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let table = attacks(&victim);
    let known: BTreeSet<(String, String)> = table
        .keys()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let in_docs = id_operations(&[("", &mage), ("/v1", &revenue)]);
    for op in [
        ("GET", "/agentsWith/{id}"),
        ("POST", "/savings/withdraw"),
        ("GET", "/v1/opportunities/{id}"),
        ("POST", "/v1/monetizer/execute"),
    ] {
        assert!(
            in_docs.contains(&(op.0.to_string(), op.1.to_string())),
            "{op:?} not found in the documents"
        );
    }
    for op in in_docs {
        assert!(
            known.contains(&op),
            "{op:?} takes an id: add it to the cross-tenant table"
        );
    }

    // Every attack, with every credential: a 4xx without the victim's data.
    let mut tried = 0;
    for ((method, template), (path, body)) in &table {
        for key in [&ak, &agent_key, &sandbox_key] {
            let auth: Vec<(&str, &str)> = vec![("x-api-key", key.as_str())];
            let sent = body.to_string();
            let body = (!body.is_null()).then(|| body.clone());
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            let (s, _, answer) = d.request(m, path, &auth, body).await;
            assert!(
                (400..500).contains(&s),
                "{method} {template} with another user's id: {s} {answer}"
            );
            let text = answer.to_string();
            for secret in victim.secrets() {
                assert!(
                    // Echoing the id the attacker sent leaks nothing.
                    !text.contains(secret) || path.contains(secret) || sent.contains(secret),
                    "{method} {template} answered the victim's {secret}: {text}"
                );
            }
            tried += 1;
        }
    }
    assert!(tried >= 60, "{tried} attacks");

    // Lists without ids never carry the victim's ids.
    for (method, path) in id_free_gets(&[("", &mage), ("/v1", &revenue)]) {
        let _ = method;
        let (_, text) = {
            let r = d
                .client
                .get(d.url(&path))
                .header("x-api-key", &ak)
                .send()
                .await
                .unwrap();
            (r.status(), r.text().await.unwrap_or_default())
        };
        for secret in victim.secrets() {
            assert!(
                !text.contains(secret),
                "GET {path} showed the victim's {secret}"
            );
        }
    }

    // The attacker's SSE metrics count only the attacker's own (one agent,
    // no balance), not the victim's two funded agents and its payment.
    let frames = common::read_until(&d, &ak, None, |f| {
        common::metric(f, "payments_sent_total").is_some()
    })
    .await;
    assert_eq!(common::metric(&frames, "agents_total"), Some(json!(1)));
    assert_eq!(common::metric(&frames, "balance_total"), Some(json!(0)));
    assert_eq!(
        common::metric(&frames, "payments_sent_total"),
        Some(json!(0))
    );

    // The victim is untouched.
    let after = victim.state(&d, &vk).await;
    assert_eq!(before, after, "the victim's state changed");

    // The victim acts, then the attacker: the attacker's session and
    // webhook hear only the attacker's events, live and replayed.
    let (s, _) = d
        .post(
            "/agents/deposit",
            Some(&vk),
            json!({"userid": vu, "agentid": va, "amount": 5, "currency": "USDC"}),
        )
        .await;
    assert_eq!(s, 200);
    let mallory = agent["id"].as_str().unwrap().to_string();
    let (s, _) = d
        .post(
            "/agents/deposit",
            Some(&ak),
            json!({"userid": au, "agentid": mallory, "amount": 3, "currency": "USDC"}),
        )
        .await;
    assert_eq!(s, 200);
    let delivered = |n: usize| {
        let hooks = hooks.clone();
        async move {
            let seen = hooks.lock().unwrap().clone();
            (seen
                .iter()
                .filter(|h| h["type"] == "deposit.completed")
                .count()
                >= n)
                .then_some(seen)
        }
    };
    common::eventually("the attacker's own deposit delivered", || delivered(1)).await;
    let from = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let to = (chrono::Utc::now() + chrono::Duration::minutes(1)).to_rfc3339();
    let (s, _, replay) = d
        .request(
            Method::POST,
            &format!("/v1/webhooks/{own_hook}/replay"),
            &[("x-api-key", ak.as_str())],
            Some(json!({"from": from, "to": to})),
        )
        .await;
    assert!(s < 300, "{replay}");
    let seen = common::eventually("the replayed deposit", || delivered(2)).await;
    for h in &seen {
        let text = h.to_string();
        for secret in victim.secrets() {
            assert!(
                !text.contains(secret),
                "the attacker's webhook got the victim's {secret}: {text}"
            );
        }
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, ws.next()).await {
        if let Message::Text(t) = m {
            for secret in victim.secrets() {
                assert!(
                    !t.contains(secret),
                    "the attacker's WebSocket carried {secret}: {t}"
                );
            }
        }
    }
}

/// GET operations without path parameters (lists, summaries).
fn id_free_gets(docs: &[(&str, &Value)]) -> Vec<(String, String)> {
    let mut out = vec![];
    for (prefix, doc) in docs {
        for (path, ops) in doc["paths"].as_object().unwrap() {
            if path.contains('{') || path.contains("openapi") {
                continue;
            }
            if ops.get("get").is_some() {
                out.push(("GET".into(), format!("{prefix}{path}")));
            }
        }
    }
    out
}

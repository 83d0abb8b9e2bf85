//! One identity for both APIs, against the real stack: login → bearer calls
//! → expiry → refresh → a spent refresh token revokes its session → logout;
//! service tokens (acting for a user, setting tiers); each method on an
//! agent-bank route and a revenue route; tier headers and 429; sandbox keys
//! that never see live data; errors in the right shape with `request_id`
//! equal to `X-Request-Id`.

mod common;

use std::time::Duration;

use common::Deployment;
use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio_tungstenite::tungstenite::Message;

const SERVICE_TOKEN: &str = "svc-test-token-0123456789";

fn envelope_ok(status: u16, headers: &reqwest::header::HeaderMap, body: &Value, code: &str) {
    let e = &body["error"];
    assert_eq!(e["code"], code, "{status} {body}");
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(e["details"].is_object(), "{body}");
    assert!(e["timestamp"].as_str().is_some(), "{body}");
    let rid = headers["x-request-id"].to_str().unwrap();
    assert!(rid.starts_with("req_"));
    assert_eq!(e["request_id"], rid);
}

#[tokio::test(flavor = "multi_thread")]
async fn login_refresh_logout_service_tokens_tiers_and_sandbox() {
    let d = Deployment::new("identity").await;
    let digest = hex::encode(Sha256::digest(SERVICE_TOKEN.as_bytes()));
    d.set_env(&[
        ("AGENTBANK_ACCESS_TOKEN_TTL_S", "2"),
        (
            "AGENTBANK_SERVICE_TOKENS",
            &format!("ops:act+tiers:{digest}"),
        ),
    ]);
    d.start_dev().await;
    let email = format!("ida-{}@example.com", uuid::Uuid::new_v4().simple());
    let (status, user) = d
        .post(
            "/users",
            None,
            json!({"name": "Ida", "email": email, "password": "correct horse"}),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    let (user_id, key) = (
        user["id"].as_str().unwrap().to_string(),
        user["apikey"].as_str().unwrap().to_string(),
    );

    // A wrong password: 401 in the envelope, request id echoed.
    let (s, h, body) = d
        .request(
            Method::POST,
            "/v1/auth/login",
            &[],
            Some(json!({"email": email, "password": "nope"})),
        )
        .await;
    assert_eq!(s, 401);
    envelope_ok(s, &h, &body, "UNAUTHORIZED");

    let login = |email: String| {
        let d = &d;
        async move {
            let (s, _, pair) = d
                .request(
                    Method::POST,
                    "/v1/auth/login",
                    &[],
                    Some(json!({"email": email.to_uppercase(), "password": "correct horse"})),
                )
                .await;
            assert_eq!(s, 200, "{pair}");
            assert_eq!(pair["token_type"], "bearer");
            assert_eq!(pair["expires_in"], 2);
            pair
        }
    };
    let pair = login(email.clone()).await;
    let bearer = format!("Bearer {}", pair["access_token"].as_str().unwrap());

    // Each method on a revenue route and an agent-bank route.
    let service_headers = [("x-service-token", SERVICE_TOKEN)];
    let me = |headers: Vec<(&'static str, String)>| {
        let d = &d;
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            d.request(Method::GET, "/v1/auth/me", &h, None).await
        }
    };
    let (s, _, who) = me(vec![("authorization", bearer.clone())]).await;
    assert_eq!(
        (s, who["auth_method"].as_str()),
        (200, Some("bearer")),
        "{who}"
    );
    let account = who["user_id"].as_str().unwrap().to_string();
    let (s, _, who) = me(vec![("x-api-key", key.clone())]).await;
    assert_eq!(
        (s, &who["user_id"], &who["mode"]),
        (200, &json!(account), &json!("live"))
    );
    let (s, h, body) = me(vec![("x-service-token", SERVICE_TOKEN.into())]).await;
    assert_eq!(s, 400, "a service must name the user: {body}");
    envelope_ok(s, &h, &body, "VALIDATION_ERROR");
    let (s, _, who) = me(vec![
        ("x-service-token", SERVICE_TOKEN.into()),
        ("x-on-behalf-of", account.clone()),
    ])
    .await;
    assert_eq!(
        (s, &who["auth_method"], &who["tenant_id"]),
        (200, &json!("service_token"), &json!(account))
    );
    let (s, _, _) = me(vec![
        ("x-service-token", "wrong".into()),
        ("x-on-behalf-of", account.clone()),
    ])
    .await;
    assert_eq!(s, 401);
    let agents_path = format!("/v1/agents/{user_id}");
    for headers in [
        vec![("authorization", bearer.as_str())],
        vec![("x-api-key", key.as_str())],
        vec![service_headers[0], ("x-on-behalf-of", account.as_str())],
    ] {
        let (s, _, agents) = d.request(Method::GET, &agents_path, &headers, None).await;
        assert_eq!(s, 200, "{headers:?}: {agents}");
        assert!(agents.is_array());
    }
    // The bank keeps its own error shape.
    let (s, h, body) = d
        .request(
            Method::GET,
            &agents_path,
            &[("authorization", "Bearer nonsense")],
            None,
        )
        .await;
    assert_eq!(s, 401);
    assert!(body["error"].is_string(), "{body}");
    assert!(h.contains_key("x-request-id"));

    // Expiry, then refresh.
    // exp = iat + 2 s in whole seconds, checked with 1 s of leeway: dead within 4 s.
    tokio::time::sleep(Duration::from_millis(4_200)).await;
    let (s, h, body) = me(vec![("authorization", bearer.clone())]).await;
    assert_eq!(s, 401, "expired: {body}");
    envelope_ok(s, &h, &body, "UNAUTHORIZED");
    let refresh = |token: String| {
        let d = &d;
        async move {
            d.request(
                Method::POST,
                "/v1/auth/refresh",
                &[],
                Some(json!({"refresh_token": token})),
            )
            .await
        }
    };
    let first = pair["refresh_token"].as_str().unwrap().to_string();
    let (s, _, second) = refresh(first.clone()).await;
    assert_eq!(s, 200, "{second}");
    let bearer2 = format!("Bearer {}", second["access_token"].as_str().unwrap());
    assert_eq!(me(vec![("authorization", bearer2.clone())]).await.0, 200);
    // The spent one again: refused, and the whole family is revoked.
    let (s, h, body) = refresh(first).await;
    assert_eq!(s, 401, "{body}");
    envelope_ok(s, &h, &body, "UNAUTHORIZED");
    let (s, _, _) = refresh(second["refresh_token"].as_str().unwrap().to_string()).await;
    assert_eq!(s, 401, "the successor died with its family");
    assert_eq!(
        me(vec![("authorization", bearer2)]).await.0,
        401,
        "and its access token"
    );

    // Logout ends a session.
    let pair = login(email.clone()).await;
    let bearer3 = format!("Bearer {}", pair["access_token"].as_str().unwrap());
    let (s, _, _) = d
        .request(
            Method::POST,
            "/v1/auth/logout",
            &[("authorization", &bearer3)],
            None,
        )
        .await;
    assert_eq!(s, 204);
    assert_eq!(me(vec![("authorization", bearer3)]).await.0, 401);
    let (s, _, _) = refresh(pair["refresh_token"].as_str().unwrap().to_string()).await;
    assert_eq!(s, 401);

    // Tiers: free by default (burst 10), 429 with Retry-After past the burst;
    // a service token lifts the user to basic.
    let (_, h, _) = me(vec![("x-api-key", key.clone())]).await;
    assert_eq!(h["x-ratelimit-limit"], "60");
    assert_eq!(h["x-ratelimit-burst-limit"], "10");
    assert!(h.contains_key("x-ratelimit-remaining") && h.contains_key("x-ratelimit-reset"));
    let mut limited = None;
    for _ in 0..12 {
        let (s, h, body) = me(vec![("x-api-key", key.clone())]).await;
        if s == 429 {
            limited = Some((h, body));
            break;
        }
    }
    let (h, body) = limited.expect("the free tier's burst runs out");
    envelope_ok(429, &h, &body, "RATE_LIMIT_EXCEEDED");
    assert!(h["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    let tier_path = format!("/v1/admin/users/{account}/tier");
    let (s, h, body) = d
        .request(Method::PUT, &tier_path, &[], Some(json!({"tier": "basic"})))
        .await;
    assert_eq!(s, 401);
    envelope_ok(s, &h, &body, "UNAUTHORIZED");
    let (s, h, body) = d
        .request(
            Method::PUT,
            &tier_path,
            &service_headers,
            Some(json!({"tier": "gold"})),
        )
        .await;
    assert_eq!(s, 400);
    envelope_ok(s, &h, &body, "VALIDATION_ERROR");
    let (s, _, body) = d
        .request(
            Method::PUT,
            &tier_path,
            &service_headers,
            Some(json!({"tier": "basic"})),
        )
        .await;
    assert_eq!((s, &body["tier"]), (200, &json!("basic")), "{body}");
    let missing = format!("/v1/admin/users/{}/tier", uuid::Uuid::new_v4());
    let (s, h, body) = d
        .request(
            Method::PUT,
            &missing,
            &service_headers,
            Some(json!({"tier": "basic"})),
        )
        .await;
    assert_eq!(s, 404);
    envelope_ok(s, &h, &body, "RESOURCE_NOT_FOUND");
    assert_eq!(body["error"]["details"]["resource_type"], "user");
    let (s, h, who) = me(vec![("x-api-key", key.clone())]).await;
    assert_eq!((s, &who["tier"]), (200, &json!("basic")));
    assert_eq!(h["x-ratelimit-burst-limit"], "100");

    // Sandbox: a test key acts in a tenant of its own, both ways.
    let (s, _, test_key) = d
        .request(
            Method::POST,
            "/v1/sandbox/keys",
            &[("x-api-key", &key)],
            None,
        )
        .await;
    assert_eq!(s, 201, "{test_key}");
    let test_key = test_key["api_key"].as_str().unwrap().to_string();
    assert!(test_key.starts_with("test_sk_"));
    let (s, _, who) = me(vec![("x-api-key", test_key.clone())]).await;
    assert_eq!((s, &who["mode"]), (200, &json!("test")));
    assert_ne!(who["tenant_id"], json!(account));
    let live_agent = d.create_agent(&user_id, &key, json!({})).await;
    let test_agent = d.create_agent(&user_id, &test_key, json!({})).await;
    let listed = |k: String| {
        let d = &d;
        let path = agents_path.clone();
        async move {
            let (s, _, agents) = d
                .request(Method::GET, &path, &[("x-api-key", &k)], None)
                .await;
            assert_eq!(s, 200, "{agents}");
            agents
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    let live = listed(key.clone()).await;
    let test = listed(test_key.clone()).await;
    assert!(
        live.contains(&live_agent) && !live.contains(&test_agent),
        "{live:?}"
    );
    assert_eq!(test, vec![test_agent.clone()]);
    let (s, _) = d.get(&format!("/agentsWith/{test_agent}"), &key).await;
    assert_eq!(s, 404, "a live key never reads sandbox data");
    let (s, _) = d.get(&format!("/agentsWith/{live_agent}"), &test_key).await;
    assert_eq!(s, 404, "a test key never reads live data");
    let (s, _, _) = d
        .request(
            Method::POST,
            "/v1/sandbox/keys",
            &[("x-api-key", &test_key)],
            None,
        )
        .await;
    assert_eq!(s, 403, "sandbox keys come from live credentials");

    // The WebSocket `auth` message takes an access token; SSE takes Bearer.
    let pair = login(email.clone()).await;
    let access = pair["access_token"].as_str().unwrap().to_string();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/events", d.http))
        .await
        .unwrap();
    ws.send(Message::Text(
        json!({"type": "auth", "token": access}).to_string().into(),
    ))
    .await
    .unwrap();
    let Some(Ok(Message::Text(ok))) = ws.next().await else {
        panic!("no answer")
    };
    assert_eq!(
        serde_json::from_str::<Value>(&ok).unwrap(),
        json!({"type": "auth.ok"})
    );
    let r = d
        .client
        .get(d.url("/v1/metrics/stream"))
        .header("authorization", format!("Bearer {access}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
}

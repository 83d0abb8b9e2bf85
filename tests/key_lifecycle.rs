//! A user's API keys against the real stack: named keys added and listed
//! (never a secret), last use recorded, a rotation whose old key works
//! during the overlap and is refused after it, a revocation refused at
//! once, a lost key recovered by signing in with the password, the cap on
//! keys, and nobody else's credentials reaching them.

mod common;

use std::time::Duration;

use common::{eventually, Deployment};
use reqwest::Method;
use serde_json::{json, Value};

async fn call(
    d: &Deployment,
    m: Method,
    path: &str,
    auth: (&str, &str),
    body: Option<Value>,
) -> (u16, Value) {
    let (s, _, v) = d.request(m, path, &[auth], body).await;
    (s, v)
}

/// Whether `key` is accepted on a bank route.
async fn works(d: &Deployment, user: &str, key: &str) -> bool {
    d.get(&format!("/agents/{user}"), key).await.0 == 200
}

#[tokio::test(flavor = "multi_thread")]
async fn user_keys_are_listed_rotated_revoked_and_recovered() {
    let d = Deployment::new("keys").await;
    d.set_env(&[("AGENTBANK_DEFAULT_TIER", "enterprise")]);
    d.start_dev().await;
    let email = format!("kim-{}@example.com", uuid::Uuid::new_v4().simple());
    let (s, user) = d
        .post(
            "/users",
            None,
            json!({"name": "kim", "email": email, "password": "hunter2hunter2"}),
        )
        .await;
    assert_eq!(s, 201, "{user}");
    let uid = user["id"].as_str().unwrap().to_string();
    let first = user["apikey"].as_str().unwrap().to_string();

    // A named key: shown once, then listed without its secret.
    let (s, made) = call(
        &d,
        Method::POST,
        "/v1/keys",
        ("x-api-key", &first),
        Some(json!({"name": "ci"})),
    )
    .await;
    assert_eq!(s, 201, "{made}");
    let ci = made["api_key"].as_str().unwrap().to_string();
    let ci_id = made["key"]["id"].as_str().unwrap().to_string();
    assert!(ci.starts_with(made["key"]["prefix"].as_str().unwrap()));
    assert!(works(&d, &uid, &ci).await);
    let (s, list) = call(&d, Method::GET, "/v1/keys", ("x-api-key", &first), None).await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["keys"].as_array().unwrap().len(), 2, "{list}");
    let secret = ci.rsplit('_').next().unwrap();
    assert!(!list.to_string().contains(secret), "never a secret: {list}");
    let listed = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == ci_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(listed["name"], "ci");
    assert!(
        listed["last_used_at"].is_string(),
        "used just now: {listed}"
    );

    // Rotation: both keys work during the overlap, the old one not after.
    let (s, rotated) = call(
        &d,
        Method::POST,
        &format!("/v1/keys/{ci_id}/rotate"),
        ("x-api-key", &first),
        Some(json!({"overlap_seconds": 2})),
    )
    .await;
    assert_eq!(s, 201, "{rotated}");
    let ci2 = rotated["api_key"].as_str().unwrap().to_string();
    assert_eq!(rotated["key"]["name"], "ci");
    assert_eq!(rotated["replaces"]["id"], ci_id.as_str());
    assert!(
        works(&d, &uid, &ci).await,
        "the old key works during the overlap"
    );
    assert!(works(&d, &uid, &ci2).await);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(
        !works(&d, &uid, &ci).await,
        "the old key is refused after the overlap"
    );
    assert!(works(&d, &uid, &ci2).await);

    // Revocation: refused at once.
    let ci2_id = rotated["key"]["id"].as_str().unwrap().to_string();
    let (s, _) = call(
        &d,
        Method::DELETE,
        &format!("/v1/keys/{ci2_id}"),
        ("x-api-key", &first),
        None,
    )
    .await;
    assert_eq!(s, 204);
    assert!(!works(&d, &uid, &ci2).await);
    let (s, e) = call(
        &d,
        Method::DELETE,
        &format!("/v1/keys/{ci2_id}"),
        ("x-api-key", &first),
        None,
    )
    .await;
    assert_eq!(
        (s, &e["error"]["code"]),
        (404, &json!("RESOURCE_NOT_FOUND")),
        "{e}"
    );

    // A lost key: sign in with the password, make a new key with the token.
    let (s, first_id) = (
        200,
        first
            .trim_start_matches("mag_")
            .split('_')
            .next()
            .unwrap()
            .to_string(),
    );
    let _ = s;
    let (s, _) = call(
        &d,
        Method::DELETE,
        &format!("/v1/keys/{first_id}"),
        ("x-api-key", &first),
        None,
    )
    .await;
    assert_eq!(s, 204);
    assert!(!works(&d, &uid, &first).await, "the user now holds no key");
    let (s, tokens) = d
        .post(
            "/v1/auth/login",
            None,
            json!({"email": email, "password": "hunter2hunter2"}),
        )
        .await;
    assert_eq!(s, 200, "{tokens}");
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().unwrap());
    let (s, recovered) = call(
        &d,
        Method::POST,
        "/v1/keys",
        ("authorization", &bearer),
        Some(json!({"name": "recovered"})),
    )
    .await;
    assert_eq!(s, 201, "{recovered}");
    let key = recovered["api_key"].as_str().unwrap().to_string();
    assert!(works(&d, &uid, &key).await);

    // An agent's key manages no user keys; another user reaches none of them.
    let (s, agent) = d
        .post(
            "/agents/create",
            Some(&key),
            json!({"userid": uid, "name": "bot"}),
        )
        .await;
    assert_eq!(s, 200, "{agent}");
    let agent_key = agent["apikey"].as_str().unwrap();
    let (s, _) = call(&d, Method::GET, "/v1/keys", ("x-api-key", agent_key), None).await;
    assert_eq!(s, 403);
    let (_, other) = d.sign_up("ola").await;
    let recovered_id = recovered["key"]["id"].as_str().unwrap();
    let (s, _) = call(
        &d,
        Method::DELETE,
        &format!("/v1/keys/{recovered_id}"),
        ("x-api-key", &other),
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (s, theirs) = call(&d, Method::GET, "/v1/keys", ("x-api-key", &other), None).await;
    assert_eq!(s, 200);
    assert!(!theirs.to_string().contains(recovered_id), "{theirs}");
    assert!(works(&d, &uid, &key).await);

    // Bounds: a name is required and short, overlaps are bounded, 20 keys at most.
    for (body, field) in [
        (json!({}), "name"),
        (json!({"name": "x".repeat(61)}), "name"),
        (json!({"name": "a", "colour": 1}), "colour"),
    ] {
        let (s, e) = call(
            &d,
            Method::POST,
            "/v1/keys",
            ("x-api-key", &key),
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            (s, &e["error"]["details"]["field"]),
            (400, &json!(field)),
            "{body}: {e}"
        );
    }
    let (s, e) = call(
        &d,
        Method::POST,
        &format!("/v1/keys/{recovered_id}/rotate"),
        ("x-api-key", &key),
        Some(json!({"overlap_seconds": 2_592_001})),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    let mut last = 0;
    for i in 0..25 {
        let (s, _) = call(
            &d,
            Method::POST,
            "/v1/keys",
            ("x-api-key", &key),
            Some(json!({"name": format!("k{i}")})),
        )
        .await;
        last = s;
        if s == 409 {
            break;
        }
    }
    assert_eq!(last, 409, "at most 20 keys");
    let (_, list) = call(&d, Method::GET, "/v1/keys", ("x-api-key", &key), None).await;
    assert_eq!(list["keys"].as_array().unwrap().len(), 20);
    eventually("last use recorded", || async {
        let (_, list) = call(&d, Method::GET, "/v1/keys", ("x-api-key", &key), None).await;
        list["keys"][0]["last_used_at"].is_string().then_some(())
    })
    .await;
}

//! A minimal agentbank client for load runs.

use anyhow::{bail, Context};
use serde_json::{json, Value};

#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

/// A signed-up user with its key and agents.
pub struct Tenant {
    pub user_id: String,
    pub key: String,
    pub agents: Vec<String>,
}

impl Api {
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1_024)
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("http client");
        Api {
            base: base.trim_end_matches('/').to_string(),
            http,
        }
    }

    async fn post(
        &self,
        path: &str,
        key: Option<&str>,
        body: Value,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        let r = req.send().await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// Signs up a user and creates `agents` agents for it, each holding
    /// `balance` (enough for a payments run never to run dry).
    pub async fn tenant(&self, agents: usize, balance: &str) -> anyhow::Result<Tenant> {
        let email = format!("load-{}@example.com", uuid::Uuid::new_v4().simple());
        let (s, b) = self
            .post(
                "/users",
                None,
                json!({"name": "load", "email": email, "password": "load-password"}),
            )
            .await?;
        if s != 201 {
            bail!("sign-up failed: {s} {b}");
        }
        let user_id = b["id"].as_str().context("user id")?.to_string();
        let key = b["apikey"].as_str().context("api key")?.to_string();
        let mut ids = Vec::with_capacity(agents);
        for i in 0..agents {
            let (s, b) = self
                .post(
                    "/agents/create",
                    Some(&key),
                    json!({"userid": user_id, "name": format!("agent {i}"), "balance": balance}),
                )
                .await?;
            if s != 200 {
                bail!("agent creation failed: {s} {b}");
            }
            ids.push(b["id"].as_str().context("agent id")?.to_string());
        }
        Ok(Tenant {
            user_id,
            key,
            agents: ids,
        })
    }

    /// One deposit; returns the HTTP status.
    pub async fn deposit(&self, t: &Tenant, agent: usize, amount: &str) -> anyhow::Result<u16> {
        let body = json!({"userid": t.user_id, "agentid": t.agents[agent % t.agents.len()], "amount": amount});
        Ok(self.post("/agents/deposit", Some(&t.key), body).await?.0)
    }
}

impl Api {
    /// One instant payment from agent `i` to the next one (a different
    /// partition most of the time: the cross-partition saga); returns the
    /// HTTP status and, when acknowledged, the payment's id.
    pub async fn pay(
        &self,
        t: &Tenant,
        i: usize,
        amount: &str,
    ) -> anyhow::Result<(u16, Option<uuid::Uuid>)> {
        let n = t.agents.len();
        let body = json!({
            "senderagentid": t.agents[i % n],
            "receiveragentid": t.agents[(i + 1) % n],
            "name": "load",
            "type": "INTERNAL",
            "paymentdetails": {"amount": amount, "currency": "USDC", "method": "CRYPTO_ADDRESS"},
        });
        let (status, answer) = self.post("/payments/register", Some(&t.key), body).await?;
        let id = answer["id"]
            .as_str()
            .and_then(|s| schemas::ids::parse(schemas::ids::Kind::Payee, s).ok());
        Ok((status, id))
    }
}

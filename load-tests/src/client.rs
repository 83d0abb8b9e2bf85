//! A minimal agentbank client for load runs: the calls the workloads make,
//! each answering the HTTP status and whatever the run needs from the body.

use anyhow::{bail, Context};
use serde_json::{json, Value};

#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

/// What a tenant's wallet holds beyond its agents' balances, for the
/// deposits of a run (a million of chaos's deposits of up to 1, a
/// trillion of the load workloads' 0.000001): a long run must never refuse
/// a deposit for want of funds.
pub const DEPOSIT_FUNDS: u32 = 1_000_000;

/// A signed-up user with its key and agents. `approval_agents` are created
/// with `requireapprovalforall`, so their payments wait for `setApprove`.
pub struct Tenant {
    pub user_id: String,
    pub key: String,
    pub agents: Vec<String>,
    pub approval_agents: Vec<String>,
}

/// One HTTP answer: status and JSON body (`Null` when it was not JSON).
pub type Answer = (u16, Value);

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

    /// POSTs `body`; `idempotency_key` makes a retry the same command.
    pub async fn post(
        &self,
        path: &str,
        key: Option<&str>,
        idempotency_key: Option<&str>,
        body: Value,
    ) -> anyhow::Result<Answer> {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        if let Some(k) = idempotency_key {
            req = req.header("idempotency-key", k);
        }
        let r = req.send().await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    pub async fn get(&self, path: &str, key: &str) -> anyhow::Result<Answer> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("x-api-key", key)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// `POST /users` with a fresh e-mail address.
    pub async fn sign_up(&self) -> anyhow::Result<Answer> {
        let email = format!("load-{}@example.com", uuid::Uuid::new_v4().simple());
        self.post(
            "/users",
            None,
            None,
            json!({"name": "load", "email": email, "password": "load-password"}),
        )
        .await
    }

    /// `POST /agents/create` for the tenant's user; `extra` adds fields.
    pub async fn create_agent(
        &self,
        t: &Tenant,
        name: &str,
        extra: Value,
    ) -> anyhow::Result<Answer> {
        let mut body = json!({"userid": t.user_id, "name": name});
        if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
            b.extend(extra);
        }
        self.post("/agents/create", Some(&t.key), None, body).await
    }

    /// Signs up a user, funds its wallet and creates `agents` agents for it, each holding
    /// `balance` (enough for a payments run never to run dry), plus
    /// `approval_agents` whose every payment waits for approval.
    pub async fn tenant(
        &self,
        agents: usize,
        approval_agents: usize,
        balance: &str,
    ) -> anyhow::Result<Tenant> {
        let (s, b) = self.sign_up().await?;
        if s != 201 {
            bail!("sign-up failed: {s} {b}");
        }
        let mut tenant = Tenant {
            user_id: b["id"].as_str().context("user id")?.to_string(),
            key: b["apikey"].as_str().context("api key")?.to_string(),
            agents: Vec::with_capacity(agents),
            approval_agents: Vec::with_capacity(approval_agents),
        };
        // Agents are funded from the user's wallet: fill it first, with
        // room for the run's deposits besides.
        let each: rust_decimal::Decimal = balance.parse().context("balance")?;
        let total = each * rust_decimal::Decimal::from(agents + approval_agents)
            + rust_decimal::Decimal::from(DEPOSIT_FUNDS);
        {
            let (s, b) = self.fund_wallet(&tenant, &total.to_string()).await?;
            if s != 200 {
                bail!("wallet funding failed: {s} {b}");
            }
        }
        for i in 0..agents + approval_agents {
            let approval = i >= agents;
            let extra = json!({"balance": balance, "requireapprovalforall": approval});
            let (s, b) = self
                .create_agent(&tenant, &format!("agent {i}"), extra)
                .await?;
            if s != 200 {
                bail!("agent creation failed: {s} {b}");
            }
            let id = b["id"].as_str().context("agent id")?.to_string();
            if approval {
                tenant.approval_agents.push(id);
            } else {
                tenant.agents.push(id);
            }
        }
        Ok(tenant)
    }

    /// `POST /user/wallet/fund`: `amount` into the tenant's wallet (the
    /// server's `AGENTBANK_WALLET_TEST_FUNDING_MAX` must allow it).
    pub async fn fund_wallet(&self, t: &Tenant, amount: &str) -> anyhow::Result<Answer> {
        self.post(
            "/user/wallet/fund",
            Some(&t.key),
            None,
            json!({"amount": amount}),
        )
        .await
    }

    /// One deposit of `amount` into `agent`.
    pub async fn deposit(
        &self,
        t: &Tenant,
        agent: &str,
        amount: &str,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<Answer> {
        let body = json!({"userid": t.user_id, "agentid": agent, "amount": amount});
        self.post("/agents/deposit", Some(&t.key), idempotency_key, body)
            .await
    }

    /// Registers a payment of `amount` USDC from `sender` to `receiver`.
    pub async fn pay(
        &self,
        t: &Tenant,
        sender: &str,
        receiver: &str,
        amount: &str,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<Answer> {
        let body = json!({
            "senderagentid": sender,
            "receiveragentid": receiver,
            "name": "load",
            "type": "INTERNAL",
            "paymentdetails": {"amount": amount, "currency": "USDC", "method": "CRYPTO_ADDRESS"},
        });
        self.post("/payments/register", Some(&t.key), idempotency_key, body)
            .await
    }

    /// `POST /payments/setApprove` for a waiting payment.
    pub async fn approve(&self, t: &Tenant, payment_id: &str) -> anyhow::Result<Answer> {
        self.post(
            "/payments/setApprove",
            Some(&t.key),
            None,
            json!({"paymentId": payment_id}),
        )
        .await
    }
}

/// The payment id in a register/approve answer.
pub fn payment_id(answer: &Value) -> Option<uuid::Uuid> {
    answer["id"]
        .as_str()
        .and_then(|s| schemas::ids::parse(schemas::ids::Kind::Payee, s).ok())
}

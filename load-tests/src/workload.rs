//! What a load run sends: a weighted mix of operations (sign-ups, agent
//! creation, deposits, instant and approval payments, reads) and how each one
//! is performed against the API. The choice of operation for request `i` is a
//! pure function of `i`, so two runs with the same mix send the same sequence.

use std::fmt;
use std::str::FromStr;

use serde_json::json;

use crate::client::{payment_id, Api, Tenant};

/// An invoice id no other request of any run has used (a repeat would be
/// answered as a duplicate, cheaply, and flatter the figures).
fn invoice_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    static RUN: std::sync::LazyLock<u128> = std::sync::LazyLock::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    });
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("inv_{}_{n}", *RUN)
}

/// One kind of request in a mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `POST /users` (a new user; Argon2 makes this CPU-heavy).
    SignUp,
    /// `POST /agents/create` for the load user.
    CreateAgent,
    /// `POST /agents/deposit` of 0.000001 USDC.
    Deposit,
    /// An instant payment to the next agent (mostly another partition).
    Payment,
    /// A payment from an approval-required agent, then `setApprove`; the
    /// latency covers both calls.
    ApprovalPayment,
    /// `GET /agentsWith/{id}`.
    Read,
    /// `POST /v1/opportunities` (scored by the opportunities machine).
    CreateOpportunity,
    /// `GET /v1/opportunities?sort=-score&per_page=20`.
    ListOpportunities,
    /// `POST /v1/monetizer/quote` (the pricing machine), one product of 16.
    Quote,
    /// `POST /v1/revenue/events` (the revenue ledger): payments and
    /// subscription charges of 200 customers over 8 products.
    RevenueEvent,
}

impl Op {
    pub const ALL: [Op; 10] = [
        Op::SignUp,
        Op::CreateAgent,
        Op::Deposit,
        Op::Payment,
        Op::ApprovalPayment,
        Op::Read,
        Op::CreateOpportunity,
        Op::ListOpportunities,
        Op::Quote,
        Op::RevenueEvent,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::SignUp => "signup",
            Op::CreateAgent => "agent",
            Op::Deposit => "deposit",
            Op::Payment => "payment",
            Op::ApprovalPayment => "approval",
            Op::Read => "read",
            Op::CreateOpportunity => "opportunity",
            Op::ListOpportunities => "opportunity_list",
            Op::Quote => "quote",
            Op::RevenueEvent => "revenue_event",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Relative weights of each [`Op`], e.g. `deposit=30,payment=50,read=20`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    weights: Vec<(Op, u32)>,
    total: u32,
}

/// Presets by name; anything else is parsed as `op=weight,…`.
pub const PRESETS: [(&str, &str); 7] = [
    ("deposits", "deposit=1"),
    ("payments", "payment=1"),
    ("opportunities", "opportunity=1"),
    ("opportunity-lists", "opportunity_list=1"),
    ("quotes", "quote=1"),
    ("revenue-events", "revenue_event=1"),
    (
        "mixed",
        "signup=1,agent=2,deposit=25,payment=45,approval=10,read=17",
    ),
];

impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let spec = PRESETS
            .iter()
            .find(|(name, _)| *name == s)
            .map_or(s, |(_, spec)| spec);
        let mut weights = vec![];
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("'{part}' is not op=weight"))?;
            let op = Op::ALL
                .into_iter()
                .find(|o| o.name() == name.trim())
                .ok_or_else(|| {
                    let names: Vec<_> = Op::ALL.iter().map(|o| o.name()).collect();
                    format!("unknown op '{name}' (one of {})", names.join(", "))
                })?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("weight of '{name}' must be a whole number"))?;
            if weight > 0 {
                weights.push((op, weight));
            }
        }
        let total = weights.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return Err("the mix has no operation with a positive weight".into());
        }
        Ok(Mix { weights, total })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<_> = self
            .weights
            .iter()
            .map(|(op, w)| format!("{op}={w}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl Mix {
    /// The operation of request `i`: a slot picked by SplitMix64's
    /// finalizer of `i`, so kinds interleave, and every arithmetic
    /// subsequence (a closed-loop worker takes every C-th request) still
    /// sees all of them in proportion — a plain multiplicative hash did not:
    /// with 8 workers each saw only 3 of 6 kinds.
    pub fn op(&self, i: u64) -> Op {
        let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let slot = (z ^ (z >> 31)) % u64::from(self.total);
        let mut acc = 0;
        for (op, w) in &self.weights {
            acc += u64::from(*w);
            if slot < acc {
                return *op;
            }
        }
        unreachable!("slot < total")
    }

    pub fn uses(&self, op: Op) -> bool {
        self.weights.iter().any(|(o, _)| *o == op)
    }
}

/// What one operation came back with.
pub struct Done {
    pub status: u16,
    /// The payment an acknowledged payment operation created.
    pub payment: Option<uuid::Uuid>,
}

/// Performs request `i` as `op`.
pub async fn perform(api: &Api, t: &Tenant, op: Op, i: u64) -> anyhow::Result<Done> {
    let n = t.agents.len();
    let agent = |k: u64| t.agents[(k % n as u64) as usize].as_str();
    let done = |status, payment| Done { status, payment };
    Ok(match op {
        Op::SignUp => done(api.sign_up().await?.0, None),
        Op::CreateAgent => done(
            api.create_agent(t, &format!("load agent {i}"), json!({}))
                .await?
                .0,
            None,
        ),
        Op::Deposit => done(api.deposit(t, agent(i), "0.000001", None).await?.0, None),
        Op::Payment => {
            let (status, body) = api.pay(t, agent(i), agent(i + 1), "0.000001", None).await?;
            done(status, payment_id(&body).filter(|_| status == 200))
        }
        Op::ApprovalPayment => {
            let m = t.approval_agents.len() as u64;
            let sender = &t.approval_agents[(i % m) as usize];
            let (status, body) = api.pay(t, sender, agent(i), "0.000001", None).await?;
            let Some(id) = payment_id(&body).filter(|_| status == 200) else {
                return Ok(done(status, None));
            };
            // The register answer comes after the read model has the
            // payment (read your writes), so the approval finds it at once.
            let (status, _) = api
                .approve(t, body["id"].as_str().unwrap_or_default())
                .await?;
            done(status, Some(id).filter(|_| status == 200))
        }
        Op::Read => done(
            api.get(&format!("/agentsWith/{}", agent(i)), &t.key)
                .await?
                .0,
            None,
        ),
        Op::CreateOpportunity => {
            let vertical = ["saas", "fintech", "ai"][(i % 3) as usize];
            let body = json!({
                "name": format!("load opportunity {i}"), "vertical": vertical,
                "market_data": {"total_market_size": 1_000_000 * (i % 10_000 + 1), "growth_rate": 0.2, "competition_count": i % 50},
                "technical_requirements": {"complexity": "high", "time_to_market": 90, "required_expertise": ["ml"]},
            });
            done(
                api.post("/v1/opportunities", Some(&t.key), None, body)
                    .await?
                    .0,
                None,
            )
        }
        Op::Quote => {
            let segment = ["smb", "enterprise"][(i % 2) as usize];
            let body = json!({
                "product_id": format!("prod_{}", i % 16), "segment_id": segment,
                "context": {"user_value_score": (i % 10) as f64 / 10.0,
                            "competitor_pricing": {"a": 99.0, "b": 149.0}},
            });
            done(
                api.post("/v1/monetizer/quote", Some(&t.key), None, body)
                    .await?
                    .0,
                None,
            )
        }
        Op::RevenueEvent => {
            let kind = [
                "payment_received",
                "subscription_renewed",
                "subscription_upgraded",
            ][(i % 3) as usize];
            let body = json!({
                "event_type": kind, "amount": 10 + (i % 90), "currency": "USD",
                "product_id": format!("prod_{}", i % 8), "customer_id": format!("cust_{}", i % 200),
                "vertical": "saas", "metadata": {"invoice_id": invoice_id()},
            });
            done(
                api.post("/v1/revenue/events", Some(&t.key), None, body)
                    .await?
                    .0,
                None,
            )
        }
        Op::ListOpportunities => done(
            api.get("/v1/opportunities?sort=-score&per_page=20", &t.key)
                .await?
                .0,
            None,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_and_specs_parse_and_bad_specs_say_why() {
        let m: Mix = "mixed".parse().unwrap();
        assert!(
            Op::ALL[..6].iter().all(|o| m.uses(*o)),
            "mixed: every bank operation"
        );
        assert_eq!(
            "deposit=3,read=1".parse::<Mix>().unwrap().to_string(),
            "deposit=3,read=1"
        );
        assert!("deposit".parse::<Mix>().unwrap_err().contains("op=weight"));
        assert!("bogus=1".parse::<Mix>().unwrap_err().contains("unknown op"));
        assert!("read=0".parse::<Mix>().unwrap_err().contains("positive"));
        assert!("read=x".parse::<Mix>().unwrap_err().contains("whole"));
    }

    #[test]
    fn ops_follow_the_weights() {
        let m: Mix = "deposit=3,payment=1".parse().unwrap();
        let deposits = (0..40_000).filter(|i| m.op(*i) == Op::Deposit).count();
        // 3/4 of the requests, to within 2%.
        assert!((29_200..=30_800).contains(&deposits), "{deposits}");
        assert_eq!(m.op(17), m.op(17));
    }

    #[test]
    fn every_closed_loop_worker_sees_every_kind() {
        let m: Mix = "signup=1,agent=1,deposit=1,payment=1,approval=1,read=1"
            .parse()
            .unwrap();
        for workers in [1u64, 8, 16, 64] {
            for w in 0..workers.min(8) {
                let seen: std::collections::BTreeSet<Op> =
                    (0..60).map(|k| m.op(w + workers * k)).collect();
                assert_eq!(seen.len(), 6, "worker {w} of {workers}: {seen:?}");
            }
        }
    }
}

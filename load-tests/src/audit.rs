//! The correctness audit a load run ends with, read from the system's
//! Postgres (agentbank's read model or the baseline's tables — same schema):
//! the journal sums to zero per currency, every agent's balance equals its
//! replayed journal (a payment applied twice shows up here), every
//! acknowledged payment exists, and none is stuck in flight.

use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// How long an acknowledged payment may still be in flight after the run.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Serialize)]
pub struct Audit {
    /// Currencies whose postings do not sum to zero, with the sum.
    pub unbalanced_currencies: Vec<(String, String)>,
    /// Agents whose balance differs from their journal, with both.
    pub balance_mismatches: Vec<(Uuid, String, String)>,
    pub payments_acknowledged: usize,
    /// Acknowledged payments not in the payments table.
    pub payments_missing: usize,
    /// Payments still in flight (New/Approved) after [`SETTLE_TIMEOUT`].
    pub payments_stuck: i64,
}

impl Audit {
    pub fn passed(&self) -> bool {
        self.unbalanced_currencies.is_empty()
            && self.balance_mismatches.is_empty()
            && self.payments_missing == 0
            && self.payments_stuck == 0
    }

    pub fn print(&self, name: &str) {
        println!(
            "{name} audit: {} — journal {}, balances {}, payments acknowledged {} / missing {} / stuck {}",
            if self.passed() { "PASSED" } else { "FAILED" },
            if self.unbalanced_currencies.is_empty() { "balanced".into() } else { format!("{:?}", self.unbalanced_currencies) },
            if self.balance_mismatches.is_empty() { "match the journal".into() } else { format!("{} differ: {:?}", self.balance_mismatches.len(), &self.balance_mismatches[..self.balance_mismatches.len().min(5)]) },
            self.payments_acknowledged,
            self.payments_missing,
            self.payments_stuck,
        );
    }
}

/// Waits for in-flight payments to finish (up to [`SETTLE_TIMEOUT`]) and for
/// the read model to hold every acknowledged payment, then audits.
pub async fn run(pool: &PgPool, acknowledged: &[Uuid]) -> Result<Audit, sqlx::Error> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let (mut stuck, mut found);
    loop {
        stuck = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM payments WHERE status = 'New' AND approval_status = 'Approved'",
        )
        .fetch_one(pool)
        .await?;
        found = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM payments WHERE id = ANY($1)")
            .bind(acknowledged)
            .fetch_one(pool)
            .await? as usize;
        if (stuck == 0 && found == acknowledged.len()) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let unbalanced: Vec<(String, Decimal)> = sqlx::query_as(
        "SELECT currency, sum(amount) FROM journal_postings GROUP BY currency HAVING sum(amount) <> 0",
    )
    .fetch_all(pool)
    .await?;
    let mismatches: Vec<(Uuid, Decimal, Decimal)> = sqlx::query_as(
        "SELECT a.id, a.balance, coalesce(j.total, 0)
         FROM agents a
         LEFT JOIN (SELECT account, sum(amount) AS total FROM journal_postings GROUP BY account) j
           ON j.account = 'agent:' || a.id || ':available'
         WHERE a.balance <> coalesce(j.total, 0)",
    )
    .fetch_all(pool)
    .await?;
    Ok(Audit {
        unbalanced_currencies: unbalanced
            .into_iter()
            .map(|(c, s)| (c, s.to_string()))
            .collect(),
        balance_mismatches: mismatches
            .into_iter()
            .map(|(id, b, j)| (id, b.to_string(), j.to_string()))
            .collect(),
        payments_acknowledged: acknowledged.len(),
        payments_missing: acknowledged.len() - found.min(acknowledged.len()),
        payments_stuck: stuck,
    })
}

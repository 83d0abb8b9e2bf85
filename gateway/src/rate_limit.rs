//! Per-API-key rate limits — the Mage docs: 100 requests a minute and 5,000 a
//! day per key, `429` with `Retry-After` beyond them, and `X-RateLimit-Limit`,
//! `-Remaining`, `-Reset` on every keyed response. GCRA (the `governor`
//! crate), so a key's budget refills smoothly rather than all at a window's
//! edge; `Reset` is when the minute budget is full again. Limits are per
//! gateway instance (in memory); checked only after the key is verified, so
//! made-up keys cannot grow the table.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// How often keys whose budgets are full again are dropped from memory.
pub const FORGET_IDLE_EVERY: Duration = Duration::from_secs(600);

type Limiter = DefaultKeyedRateLimiter<String, StateInformationMiddleware>;

pub struct RateLimits {
    per_minute: u32,
    minute: Limiter,
    day: Limiter,
    clock: DefaultClock,
}

/// What the caller's key has left, for the response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub limit: u32,
    pub remaining: u32,
    pub reset_unix_s: u64,
}

/// Over the limit: try again after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub budget: Budget,
    pub retry_after_s: u64,
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).expect("max(1) is non-zero")
}

impl RateLimits {
    pub fn new(per_minute: u32, per_day: u32) -> Self {
        let day_quota = Quota::with_period(Duration::from_secs(86_400) / per_day.max(1))
            .expect("a positive period")
            .allow_burst(nonzero(per_day));
        RateLimits {
            per_minute: per_minute.max(1),
            minute: RateLimiter::keyed(Quota::per_minute(nonzero(per_minute))).with_middleware(),
            day: RateLimiter::keyed(day_quota).with_middleware(),
            clock: DefaultClock::default(),
        }
    }

    fn budget(&self, remaining: u32) -> Budget {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let refill_s = u64::from(self.per_minute - remaining.min(self.per_minute)) * 60
            / u64::from(self.per_minute);
        Budget {
            limit: self.per_minute,
            remaining,
            reset_unix_s: now.as_secs() + refill_s,
        }
    }

    /// Counts one request of `key` against both budgets.
    pub fn check(&self, key: &str) -> Result<Budget, Limited> {
        let key = key.to_string();
        let refused = |not_until: governor::NotUntil<_>| Limited {
            budget: self.budget(0),
            retry_after_s: not_until.wait_time_from(self.clock.now()).as_secs().max(1),
        };
        let minute = self.minute.check_key(&key).map_err(refused)?;
        self.day.check_key(&key).map_err(refused)?;
        Ok(self.budget(minute.remaining_burst_capacity()))
    }

    /// Drops idle keys; call now and then.
    pub fn forget_idle(&self) {
        self.minute.retain_recent();
        self.day.retain_recent();
    }
}

/// Where the auth extractor leaves the caller's budget for [`headers`].
#[derive(Clone, Default)]
pub struct BudgetSlot(pub Arc<Mutex<Option<Budget>>>);

/// Adds the `X-RateLimit-*` headers to responses of keyed requests.
pub async fn headers(mut req: Request, next: Next) -> Response {
    let slot = BudgetSlot::default();
    req.extensions_mut().insert(slot.clone());
    let mut response = next.run(req).await;
    if let Some(b) = *slot.0.lock().expect("budget slot") {
        let h = response.headers_mut();
        h.insert("x-ratelimit-limit", HeaderValue::from(b.limit));
        h.insert("x-ratelimit-remaining", HeaderValue::from(b.remaining));
        h.insert("x-ratelimit-reset", HeaderValue::from(b.reset_unix_s));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minute_budget_runs_out_per_key() {
        let limits = RateLimits::new(3, 1_000);
        for remaining in [2, 1, 0] {
            assert_eq!(limits.check("a").unwrap().remaining, remaining);
        }
        let refused = limits.check("a").unwrap_err();
        assert!(
            refused.retry_after_s >= 1 && refused.retry_after_s <= 20,
            "{refused:?}"
        );
        assert_eq!(refused.budget.remaining, 0);
        assert!(limits.check("b").is_ok(), "another key has its own budget");
    }

    #[test]
    fn the_day_budget_runs_out_too() {
        let limits = RateLimits::new(100, 2);
        assert!(limits.check("a").is_ok());
        assert!(limits.check("a").is_ok());
        let refused = limits.check("a").unwrap_err();
        assert!(
            refused.retry_after_s > 60,
            "a day budget refills slowly: {refused:?}"
        );
    }
}

//! Rate limits, checked only after the caller is authenticated (so made-up
//! keys cannot grow the tables), `429` with `Retry-After` beyond them:
//!
//! - agent-bank routes (the Mage docs): 100 requests a minute and 5,000 a day
//!   per key, with `X-RateLimit-Limit`, `-Remaining`, `-Reset`;
//! - revenue routes: the user's [`Tier`] (the seed's table) per tenant, with
//!   `X-RateLimit-Burst-Limit` and `-Burst-Remaining` as well.
//!
//! GCRA (the `governor` crate), so a budget refills smoothly rather than all
//! at a window's edge; `Reset` is when the minute budget is full again. A
//! tier's minute budget and its burst are two limiters: the burst one allows
//! `burst` requests at once and refills at the tier's rate.
//!
//! Limits live in each gateway's memory: with N gateway instances behind a
//! balancer that spreads a caller's requests, the caller gets up to N times
//! the budget (documented in `docs/revenue.md`; a shared store is the fix
//! when that matters more than a Postgres/Redis round trip per request).

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
    /// A tier's burst: `(limit, remaining)`.
    pub burst: Option<(u32, u32)>,
}

impl Budget {
    /// `remaining` of `per_minute`; reset is when the minute budget is full
    /// again at the steady rate.
    fn new(per_minute: u32, remaining: u32, burst: Option<(u32, u32)>) -> Budget {
        let per_minute = per_minute.max(1);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let refill_s =
            u64::from(per_minute - remaining.min(per_minute)) * 60 / u64::from(per_minute);
        Budget {
            limit: per_minute,
            remaining,
            reset_unix_s: now.as_secs() + refill_s,
            burst,
        }
    }
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
        Budget::new(self.per_minute, remaining, None)
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
        if let Some((limit, remaining)) = b.burst {
            h.insert("x-ratelimit-burst-limit", HeaderValue::from(limit));
            h.insert("x-ratelimit-burst-remaining", HeaderValue::from(remaining));
        }
    }
    response
}

/// A user's rate-limit tier on the revenue routes (the seed's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    Free,
    Basic,
    Pro,
    Enterprise,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Free, Tier::Basic, Tier::Pro, Tier::Enterprise];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Basic => "basic",
            Tier::Pro => "pro",
            Tier::Enterprise => "enterprise",
        }
    }

    pub fn parse(s: &str) -> Option<Tier> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// Requests a minute and burst; `None`: unlimited.
    pub fn limits(self) -> Option<(u32, u32)> {
        match self {
            Tier::Free => Some((60, 10)),
            Tier::Basic => Some((600, 100)),
            Tier::Pro => Some((6_000, 1_000)),
            Tier::Enterprise => None,
        }
    }
}

/// One limited tier's limiters.
struct TierLimiter {
    per_minute: u32,
    burst: u32,
    minute: Limiter,
    bursts: Limiter,
}

/// The revenue routes' limits, per tenant, by tier.
pub struct TierLimits {
    tiers: Vec<(Tier, TierLimiter)>,
    clock: DefaultClock,
}

impl Default for TierLimits {
    fn default() -> Self {
        let tiers = Tier::ALL
            .into_iter()
            .filter_map(|t| {
                let (per_minute, burst) = t.limits()?;
                let bursts = Quota::per_minute(nonzero(per_minute)).allow_burst(nonzero(burst));
                Some((
                    t,
                    TierLimiter {
                        per_minute,
                        burst,
                        minute: RateLimiter::keyed(Quota::per_minute(nonzero(per_minute)))
                            .with_middleware(),
                        bursts: RateLimiter::keyed(bursts).with_middleware(),
                    },
                ))
            })
            .collect();
        TierLimits {
            tiers,
            clock: DefaultClock::default(),
        }
    }
}

impl TierLimits {
    /// Counts one request of `key` in `tier`; `Ok(None)`: unlimited.
    pub fn check(&self, tier: Tier, key: &str) -> Result<Option<Budget>, Limited> {
        let Some((_, l)) = self.tiers.iter().find(|(t, _)| *t == tier) else {
            return Ok(None);
        };
        let key = key.to_string();
        let budget = |remaining: u32, burst_remaining: u32| {
            Budget::new(l.per_minute, remaining, Some((l.burst, burst_remaining)))
        };
        let refused = |not_until: governor::NotUntil<_>| Limited {
            budget: budget(0, 0),
            retry_after_s: not_until.wait_time_from(self.clock.now()).as_secs().max(1),
        };
        let burst = l.bursts.check_key(&key).map_err(refused)?;
        let minute = l.minute.check_key(&key).map_err(refused)?;
        Ok(Some(budget(
            minute.remaining_burst_capacity(),
            burst.remaining_burst_capacity(),
        )))
    }

    /// Drops idle keys; call now and then.
    pub fn forget_idle(&self) {
        for (_, l) in &self.tiers {
            l.minute.retain_recent();
            l.bursts.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tiers_allow_their_burst_then_refuse() {
        let limits = TierLimits::default();
        for i in 0..10 {
            let b = limits.check(Tier::Free, "t").unwrap().unwrap();
            assert_eq!((b.limit, b.burst), (60, Some((10, 9 - i))));
        }
        let refused = limits.check(Tier::Free, "t").unwrap_err();
        assert!(refused.retry_after_s >= 1);
        assert!(
            limits.check(Tier::Basic, "t").unwrap().is_some(),
            "tiers are separate"
        );
        assert_eq!(limits.check(Tier::Enterprise, "t").unwrap(), None);
        assert_eq!(Tier::parse("PRO"), Some(Tier::Pro));
        assert_eq!(Tier::parse("gold"), None);
    }

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

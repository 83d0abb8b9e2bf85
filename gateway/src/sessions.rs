//! Bounds on what a client can hold open: WebSocket sessions and SSE
//! streams, per user and per gateway. A session holds a [`Held`] for its
//! lifetime; dropping it (the connection ends, however) frees the place.
//! Refusals count in `agentbank_gateway_limit_hits_total{limit}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

/// One kind of session's limits and who holds them.
pub struct SessionLimits {
    kind: &'static str,
    per_user: usize,
    total: usize,
    open: Mutex<(usize, HashMap<Uuid, usize>)>,
}

/// Why a session was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The user holds `per_user` already.
    PerUser(usize),
    /// The gateway holds `total` already.
    Gateway(usize),
}

/// A place held; freed on drop.
pub struct Held {
    limits: Arc<SessionLimits>,
    user: Uuid,
}

impl SessionLimits {
    pub fn new(kind: &'static str, per_user: usize, total: usize) -> Arc<Self> {
        Arc::new(SessionLimits {
            kind,
            per_user: per_user.max(1),
            total: total.max(1),
            open: Mutex::new((0, HashMap::new())),
        })
    }

    /// Takes a place for `user`, if both bounds allow.
    pub fn acquire(self: &Arc<Self>, user: Uuid) -> Result<Held, Refused> {
        let mut open = self.open.lock().expect("session limits");
        let refused = if open.0 >= self.total {
            Some((Refused::Gateway(self.total), "gateway"))
        } else if open.1.get(&user).copied().unwrap_or(0) >= self.per_user {
            Some((Refused::PerUser(self.per_user), "per_user"))
        } else {
            None
        };
        if let Some((why, scope)) = refused {
            metrics::counter!("agentbank_gateway_limit_hits_total", "limit" => format!("{}_{scope}", self.kind))
                .increment(1);
            return Err(why);
        }
        open.0 += 1;
        *open.1.entry(user).or_default() += 1;
        metrics::gauge!("agentbank_gateway_sessions", "kind" => self.kind).set(open.0 as f64);
        Ok(Held {
            limits: self.clone(),
            user,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let Ok(mut open) = self.limits.open.lock() else {
            return;
        };
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.user);
            }
        }
        metrics::gauge!("agentbank_gateway_sessions", "kind" => self.limits.kind)
            .set(open.0 as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_per_user_and_in_all_and_freed_on_drop() {
        let limits = SessionLimits::new("ws", 2, 3);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let a1 = limits.acquire(a).unwrap();
        let _a2 = limits.acquire(a).unwrap();
        assert_eq!(limits.acquire(a).err(), Some(Refused::PerUser(2)));
        let _b1 = limits.acquire(b).unwrap();
        assert_eq!(limits.acquire(b).err(), Some(Refused::Gateway(3)));
        drop(a1);
        assert!(limits.acquire(b).is_ok(), "a freed place is free again");
    }
}

//! In-memory caches that keep Postgres off the write path: verified API keys
//! and agents' owners. A payment used to cost three queries before anything
//! reached the broker (the key, the sender's owner, the receiver's owner).
//!
//! - **Keys**: only verified keys are cached, with the SHA-256 of their
//!   secret; a presented key is still compared in constant time against it.
//!   Entries live [`KEY_TTL`]; a revoked key is forgotten by every gateway at
//!   once ([`follow_revocations`]: Postgres `NOTIFY` in the revoking
//!   transaction), and the whole cache is dropped if that channel was lost.
//! - **Owners**: an agent's owner never changes and agents are never deleted,
//!   so a found owner is cached for good; a miss is never cached (the agent
//!   may be created a moment later).
//!
//! - **Sessions and tiers**: see [`TtlCache`].
//!
//! All are bounded: when full, they are emptied and refill from Postgres
//! (cheaper than tracking recency, and rare at these sizes).

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::rate_limit::Tier;
use crate::tenant::Mode;

/// How long a verified key is trusted without asking Postgres again.
pub const KEY_TTL: Duration = Duration::from_secs(60);
/// Most keys cached.
pub const KEYS_MAX: usize = 100_000;
/// Most agent owners cached (~50 bytes each).
pub const OWNERS_MAX: usize = 1_000_000;

/// Who a verified key acts for: its user, its agent for an agent key, and
/// whether it is a live or a sandbox key.
pub type KeyOwner = (Uuid, Option<Uuid>, Mode);

struct CachedKey {
    secret_sha256: Vec<u8>,
    owner: KeyOwner,
    verified: Instant,
    /// A rotated key's end (ms since the epoch).
    expires_ms: Option<i64>,
}

/// Verified API keys by key id.
#[derive(Default)]
pub struct KeyCache {
    keys: RwLock<HashMap<String, CachedKey>>,
}

impl KeyCache {
    /// The stored secret digest and owner of a recently verified key.
    pub fn get(&self, key_id: &str) -> Option<(Vec<u8>, KeyOwner)> {
        let keys = self.keys.read().expect("key cache");
        let k = keys.get(key_id)?;
        let live = k
            .expires_ms
            .is_none_or(|end| chrono::Utc::now().timestamp_millis() < end);
        (live && k.verified.elapsed() < KEY_TTL).then(|| (k.secret_sha256.clone(), k.owner))
    }

    pub fn put(
        &self,
        key_id: &str,
        secret_sha256: Vec<u8>,
        owner: KeyOwner,
        expires_ms: Option<i64>,
    ) {
        let mut keys = self.keys.write().expect("key cache");
        if keys.len() >= KEYS_MAX {
            keys.clear();
        }
        keys.insert(
            key_id.to_string(),
            CachedKey {
                secret_sha256,
                owner,
                verified: Instant::now(),
                expires_ms,
            },
        );
    }

    /// Forgets one key (deleted by this gateway).
    pub fn forget(&self, key_id: &str) {
        self.keys.write().expect("key cache").remove(key_id);
    }

    /// Forgets every key (when revocations may have been missed).
    pub fn clear(&self) {
        self.keys.write().expect("key cache").clear();
    }

    /// Forgets every key of a user (deleted by this gateway).
    pub fn forget_user(&self, user_id: Uuid) {
        self.keys
            .write()
            .expect("key cache")
            .retain(|_, k| k.owner.0 != user_id);
    }
}

/// Agents' owners (agent id → user id).
#[derive(Default)]
pub struct OwnerCache {
    owners: RwLock<HashMap<Uuid, Uuid>>,
}

impl OwnerCache {
    pub fn get(&self, agent: Uuid) -> Option<Uuid> {
        self.owners
            .read()
            .expect("owner cache")
            .get(&agent)
            .copied()
    }

    pub fn put(&self, agent: Uuid, owner: Uuid) {
        let mut owners = self.owners.write().expect("owner cache");
        if owners.len() >= OWNERS_MAX {
            owners.clear();
        }
        owners.insert(agent, owner);
    }
}

/// Values trusted for [`KEY_TTL`] after they were read from Postgres: open
/// login sessions, users' tiers. A change made through this gateway forgets
/// the entry at once; one made through another takes effect within the TTL.
pub struct TtlCache<K, V> {
    entries: RwLock<HashMap<K, (V, Instant)>>,
}

impl<K, V> Default for TtlCache<K, V> {
    fn default() -> Self {
        TtlCache {
            entries: RwLock::new(HashMap::new()),
        }
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> TtlCache<K, V> {
    pub fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.read().expect("ttl cache");
        let (v, at) = entries.get(key)?;
        (at.elapsed() < KEY_TTL).then(|| v.clone())
    }

    pub fn put(&self, key: K, value: V) {
        let mut entries = self.entries.write().expect("ttl cache");
        if entries.len() >= KEYS_MAX {
            entries.clear();
        }
        entries.insert(key, (value, Instant::now()));
    }

    pub fn forget(&self, key: &K) {
        self.entries.write().expect("ttl cache").remove(key);
    }
}

/// The gateway's caches, shared by its handlers.
#[derive(Default)]
pub struct Caches {
    pub keys: KeyCache,
    pub owners: OwnerCache,
    /// Login sessions known to be open.
    pub sessions: TtlCache<Uuid, ()>,
    /// Users' tiers (`None`: no such user).
    pub tiers: TtlCache<Uuid, Option<Tier>>,
}

/// Forgets keys as they are revoked anywhere (`identity::revoke_agent_keys`
/// notifies); runs until the process ends, reconnecting with backoff.
pub async fn follow_revocations(pool: sqlx::PgPool, caches: std::sync::Arc<Caches>) {
    use connectors::read_model::identity::KEYS_REVOKED_CHANNEL;
    let mut backoff = Duration::from_millis(200);
    loop {
        let listening = async {
            let mut l = sqlx::postgres::PgListener::connect_with(&pool).await?;
            l.listen(KEYS_REVOKED_CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        let mut listener = match listening.await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "key revocation channel unavailable; retrying");
                caches.keys.clear();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => caches.keys.forget(n.payload()),
                // The connection was lost: what was revoked meanwhile is unknown.
                Ok(None) => caches.keys.clear(),
                Err(e) => {
                    tracing::warn!(error = %e, "key revocation channel lost");
                    caches.keys.clear();
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_served_until_forgotten_and_owners_for_good() {
        let caches = Caches::default();
        let user = Uuid::new_v4();
        assert!(caches.keys.get("k").is_none());
        caches
            .keys
            .put("k", vec![1, 2], (user, None, Mode::Live), None);
        let (digest, got) = caches.keys.get("k").unwrap();
        assert_eq!((digest, got), (vec![1, 2], (user, None, Mode::Live)));
        caches.keys.forget_user(user);
        assert!(caches.keys.get("k").is_none());
        caches
            .keys
            .put("k", vec![1], (user, None, Mode::Live), None);
        caches.keys.forget("k");
        assert!(caches.keys.get("k").is_none());
        // A rotated key is served until its overlap ends, not beyond.
        let now = chrono::Utc::now().timestamp_millis();
        caches
            .keys
            .put("old", vec![1], (user, None, Mode::Live), Some(now + 60_000));
        assert!(caches.keys.get("old").is_some());
        caches
            .keys
            .put("old", vec![1], (user, None, Mode::Live), Some(now - 1));
        assert!(caches.keys.get("old").is_none());

        let agent = Uuid::new_v4();
        assert_eq!(caches.owners.get(agent), None);
        caches.owners.put(agent, user);
        assert_eq!(caches.owners.get(agent), Some(user));
    }
}

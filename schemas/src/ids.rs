//! Identifiers. Entities are UUIDs; the Mage API also shows them as short ids,
//! a prefix plus the base58 of the UUID's 16 bytes (`agent_k77NTwxp2Ym3JCmVsKtXQA`).
//! Both forms are accepted everywhere. Derived ids (events, replies) are UUID v5
//! of their input's position, so replaying an input yields the same ids.

use uuid::Uuid;

use crate::SchemaError;

/// What an id names; gives the short-id prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Agent,
    Payee,
    /// A savings vault position (the seed: `inv_k77NTwxp2Ym3JCmVsKtXQA`).
    Investment,
    /// An event as webhooks show it.
    Event,
    /// A webhook endpoint.
    Webhook,
    /// One webhook delivery.
    Delivery,
    /// A revenue-platform opportunity.
    Opportunity,
    /// A pricing quote.
    Quote,
}

impl Kind {
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::User => "user_",
            Kind::Agent => "agent_",
            Kind::Payee => "payee_",
            Kind::Investment => "inv_",
            Kind::Event => "evt_",
            Kind::Webhook => "wh_",
            Kind::Delivery => "dlv_",
            Kind::Opportunity => "opp_",
            Kind::Quote => "quote_",
        }
    }
}

/// Longest id text we try to parse; anything longer is rejected unread.
pub const ID_TEXT_MAX: usize = 64;

/// The short id of `id`, e.g. `agent_…`.
pub fn short(kind: Kind, id: Uuid) -> String {
    format!(
        "{}{}",
        kind.prefix(),
        bs58::encode(id.as_bytes()).into_string()
    )
}

/// Parses a short id of `kind` or a raw UUID.
pub fn parse(kind: Kind, text: &str) -> Result<Uuid, SchemaError> {
    let text = text.trim();
    let bad = || SchemaError::Id(format!("'{}' is not a valid id", truncate(text)));
    if text.len() > ID_TEXT_MAX {
        return Err(bad());
    }
    if let Some(rest) = text.strip_prefix(kind.prefix()) {
        let bytes = bs58::decode(rest).into_vec().map_err(|_| bad())?;
        let arr: [u8; 16] = bytes.try_into().map_err(|_| bad())?;
        return Ok(Uuid::from_bytes(arr));
    }
    Uuid::parse_str(text).map_err(|_| bad())
}

fn truncate(text: &str) -> String {
    text.chars().take(ID_TEXT_MAX).collect()
}

/// Namespace of every derived id.
const DERIVED_NAMESPACE: Uuid = Uuid::from_u128(0x6167_656e_7462_616e_6b2d_6465_7269_7665);

/// Deterministic id of the `index`-th output of the input at (topic, partition, offset).
pub fn derived(topic: &str, partition: i32, offset: i64, index: u32) -> Uuid {
    let name = format!("{topic}/{partition}/{offset}/{index}");
    Uuid::new_v5(&DERIVED_NAMESPACE, name.as_bytes())
}

/// Deterministic id of the `index`-th output for `agent` of one input that
/// fans out over many agents (an interest tick).
pub fn derived_for(topic: &str, partition: i32, offset: i64, agent: Uuid, index: u32) -> Uuid {
    let name = format!("{topic}/{partition}/{offset}/{agent}/{index}");
    Uuid::new_v5(&DERIVED_NAMESPACE, name.as_bytes())
}

/// Deterministic id of an output of item `sub` of a packed record, optionally
/// for one `key` it fans out to. Item 0 names its outputs as a single-command
/// record at that offset would ([`derived`], [`derived_for`]), so ids do not
/// change with packing of a one-item record.
pub fn derived_at(
    topic: &str,
    partition: i32,
    offset: i64,
    sub: u32,
    key: Option<Uuid>,
    index: u32,
) -> Uuid {
    match (sub, key) {
        (0, None) => derived(topic, partition, offset, index),
        (0, Some(k)) => derived_for(topic, partition, offset, k, index),
        (_, None) => {
            let name = format!("{topic}/{partition}/{offset}.{sub}/{index}");
            Uuid::new_v5(&DERIVED_NAMESPACE, name.as_bytes())
        }
        (_, Some(k)) => {
            let name = format!("{topic}/{partition}/{offset}.{sub}/{k}/{index}");
            Uuid::new_v5(&DERIVED_NAMESPACE, name.as_bytes())
        }
    }
}

/// Deterministic id of an output of a saga step applied in the same batch as
/// the input at (topic, partition, offset, item `sub`) that caused it: the
/// `step`-th (from 1) step of that input's chain, for `key`.
pub fn derived_step(
    topic: &str,
    (partition, offset, sub): (i32, i64, u32),
    step: u32,
    key: Option<Uuid>,
    index: u32,
) -> Uuid {
    let key = key.unwrap_or_default();
    let name = format!("{topic}/{partition}/{offset}.{sub}+{step}/{key}/{index}");
    Uuid::new_v5(&DERIVED_NAMESPACE, name.as_bytes())
}

/// Deterministic id from a user-chosen key (e.g. an `Idempotency-Key` header),
/// scoped to the user so two users' keys never collide.
pub fn from_idempotency_key(user_id: Uuid, route: &str, key: &str) -> Uuid {
    let name = format!("{user_id}/{route}/{key}");
    Uuid::new_v5(&DERIVED_NAMESPACE, name.as_bytes())
}

/// Serde for a UUID as its hyphenated text in every format: apache-avro's
/// serializer is not "human readable", so a bare `Uuid` would become 16
/// bytes where the schemas say `string`. `#[serde(with = "ids::uuid_text")]`.
pub mod uuid_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(id: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&id.hyphenated())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        let text = String::deserialize(d)?;
        Uuid::parse_str(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_round_trip_and_raw_uuids_parse() {
        let id = Uuid::new_v4();
        let s = short(Kind::Agent, id);
        assert!(s.starts_with("agent_"));
        assert_eq!(parse(Kind::Agent, &s).unwrap(), id);
        assert_eq!(parse(Kind::Agent, &id.to_string()).unwrap(), id);
        assert!(
            parse(Kind::User, &s).is_err(),
            "an agent id is not a user id"
        );
        assert!(parse(Kind::Agent, "agent_0OIl").is_err());
        assert!(parse(Kind::Agent, &"x".repeat(1000)).is_err());
    }

    #[test]
    fn derived_ids_are_deterministic_and_distinct() {
        assert_eq!(derived("t", 1, 2, 0), derived("t", 1, 2, 0));
        assert_ne!(derived("t", 1, 2, 0), derived("t", 1, 2, 1));
        assert_ne!(derived("t", 1, 2, 0), derived("t", 1, 3, 0));
        assert_eq!(derived_at("t", 1, 2, 0, None, 3), derived("t", 1, 2, 3));
        let k = Uuid::from_u128(9);
        assert_eq!(
            derived_at("t", 1, 2, 0, Some(k), 3),
            derived_for("t", 1, 2, k, 3)
        );
        assert_ne!(derived_at("t", 1, 2, 1, None, 3), derived("t", 1, 2, 3));
        assert_ne!(
            derived_at("t", 1, 2, 1, None, 0),
            derived_at("t", 1, 2, 2, None, 0)
        );
    }
}

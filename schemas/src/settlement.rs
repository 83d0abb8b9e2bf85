//! On-chain settlement, as it travels: what an agent's processor asks the
//! settlement service to send ([`SettlementRequest`], on
//! `agentbank.settlement.requests`) and what became of it
//! ([`SettlementResult`], on `agentbank.settlement.results`, and fed back to
//! the agent as a `CompleteSettlement` command). Shapes:
//! `avro/settlement_request.avsc`, `avro/settlement_result.avsc`.
//!
//! A settlement's id is derived from the command that asked for it
//! ([`settlement_id`]), so the gateway can find a command's transfer (and its
//! transaction hash) without waiting for the processor to name it.

use std::sync::LazyLock;

use apache_avro::{from_avro_datum, from_value, to_avro_datum, to_value, Schema};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::avro::MAGIC;
use crate::SchemaError;

pub const REQUEST_AVSC: &str = include_str!("../avro/settlement_request.avsc");
pub const RESULT_AVSC: &str = include_str!("../avro/settlement_result.avsc");

/// `kind`: why the transfer happens.
pub mod kind {
    /// Sandbox faucet at agent creation: native coin for gas.
    pub const FAUCET_GAS: &str = "faucet_gas";
    /// Sandbox faucet at agent creation: the initial balance in tokens.
    pub const FAUCET_TOKEN: &str = "faucet_token";
    /// A deposit mirrored on chain: treasury → the agent's wallet.
    pub const DEPOSIT: &str = "deposit";
    /// A withdrawal: the agent's wallet → an address; the amount is held
    /// until the result.
    pub const WITHDRAWAL: &str = "withdrawal";
    /// An EXTERNAL payment to an address; the reservation is held until the result.
    pub const PAYMENT: &str = "payment";
    /// The treasury → an agent's wallet, for what the wallet lacks of a
    /// withdrawal or payment its ledger balance covers (it was paid by other
    /// agents on the ledger only). Not the agent's money movement: the
    /// agent's machine ignores its result.
    pub const TOP_UP: &str = "top_up";
}

/// `from_wallet`: which custodial wallet sends.
pub mod wallet {
    pub const TREASURY: &str = "treasury";
    pub const AGENT: &str = "agent";
}

/// `asset`: the token or the chain's native coin.
pub mod asset {
    pub const USDC: &str = "USDC";
    pub const ETH: &str = "ETH";
}

/// `status` of a result.
pub mod status {
    pub const CONFIRMED: &str = "confirmed";
    pub const FAILED: &str = "failed";
}

/// The settlement a command asks for, by the command's id and the transfer's
/// kind: replays of the command ask for the same one.
pub fn settlement_id(command_id: Uuid, kind: &str) -> Uuid {
    Uuid::new_v5(&command_id, format!("settlement:{kind}").as_bytes())
}

/// Whether `text` is a 0x-prefixed 20-byte hex address (any letter case).
pub fn is_address(text: &str) -> bool {
    text.len() == 42 && text.starts_with("0x") && text[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettlementRequest {
    #[serde(with = "uuid_text")]
    pub id: Uuid,
    #[serde(with = "uuid_text")]
    pub agent_id: Uuid,
    #[serde(with = "uuid_text")]
    pub user_id: Uuid,
    pub kind: String,
    pub asset: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub from_wallet: String,
    pub to_address: Option<String>,
    pub payment_id: Option<String>,
    pub timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettlementResult {
    #[serde(with = "uuid_text")]
    pub request_id: Uuid,
    #[serde(with = "uuid_text")]
    pub agent_id: Uuid,
    #[serde(with = "uuid_text")]
    pub user_id: Uuid,
    pub kind: String,
    pub asset: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub payment_id: Option<String>,
    pub status: String,
    pub from_address: String,
    pub to_address: String,
    pub tx_hash: Option<String>,
    pub block_number: Option<i64>,
    pub chain_id: i64,
    pub reason: String,
    pub timestamp: i64,
}

impl SettlementResult {
    pub fn confirmed(&self) -> bool {
        self.status == status::CONFIRMED
    }
}

/// UUIDs as their hyphenated text: the Avro serializer would otherwise
/// write their 16 bytes, and the schemas say string.
mod uuid_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(id: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        let text = String::deserialize(d)?;
        Uuid::parse_str(&text).map_err(serde::de::Error::custom)
    }
}

/// One record schema with the single-object header (marker + fingerprint).
struct RecordCodec {
    schema: Schema,
    fingerprint: [u8; 8],
}

impl RecordCodec {
    fn new(avsc: &str) -> Self {
        let schema = Schema::parse_str(avsc).expect("settlement schemas are valid");
        let fingerprint = crate::avro::fingerprint_of(&schema).expect("8-byte fingerprint");
        RecordCodec {
            schema,
            fingerprint,
        }
    }

    fn encode<T: Serialize>(&self, record: &T) -> Result<Vec<u8>, SchemaError> {
        let value = to_value(record)?.resolve(&self.schema)?;
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&self.fingerprint);
        out.extend_from_slice(&to_avro_datum(&self.schema, value)?);
        Ok(out)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, SchemaError> {
        if bytes.len() < 10 || bytes[..2] != MAGIC {
            return Err(SchemaError::Framing("missing C3 01 marker"));
        }
        if bytes[2..10] != self.fingerprint {
            return Err(SchemaError::Framing("unknown schema fingerprint"));
        }
        let value = from_avro_datum(&self.schema, &mut &bytes[10..], None)?;
        Ok(from_value::<T>(&value)?)
    }
}

static REQUESTS: LazyLock<RecordCodec> = LazyLock::new(|| RecordCodec::new(REQUEST_AVSC));
static RESULTS: LazyLock<RecordCodec> = LazyLock::new(|| RecordCodec::new(RESULT_AVSC));

impl SettlementRequest {
    pub fn encode(&self) -> Result<Vec<u8>, SchemaError> {
        REQUESTS.encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, SchemaError> {
        REQUESTS.decode(bytes)
    }
}

impl SettlementResult {
    pub fn encode(&self) -> Result<Vec<u8>, SchemaError> {
        RESULTS.encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, SchemaError> {
        RESULTS.decode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result() -> SettlementResult {
        SettlementResult {
            request_id: Uuid::new_v4(),
            agent_id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            kind: kind::WITHDRAWAL.into(),
            asset: asset::USDC.into(),
            amount: Decimal::new(1_500_001, 6),
            payment_id: None,
            status: status::CONFIRMED.into(),
            from_address: "0x0000000000000000000000000000000000000001".into(),
            to_address: "0x00000000000000000000000000000000000000aB".into(),
            tx_hash: Some(format!("0x{}", "ab".repeat(32))),
            block_number: Some(12),
            chain_id: 31337,
            reason: String::new(),
            timestamp: 1_700_000_000_000,
        }
    }

    #[test]
    fn requests_and_results_round_trip() {
        let request = SettlementRequest {
            id: Uuid::new_v4(),
            agent_id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            kind: kind::PAYMENT.into(),
            asset: asset::USDC.into(),
            amount: Decimal::new(25, 1),
            from_wallet: wallet::AGENT.into(),
            to_address: Some("0x00000000000000000000000000000000000000aB".into()),
            payment_id: Some(Uuid::new_v4().to_string()),
            timestamp: 5,
        };
        let bytes = request.encode().unwrap();
        assert_eq!(bytes[..2], MAGIC);
        assert_eq!(SettlementRequest::decode(&bytes).unwrap(), request);
        let failed = SettlementResult {
            status: status::FAILED.into(),
            tx_hash: None,
            block_number: None,
            reason: "insufficient token balance".into(),
            ..result()
        };
        for r in [result(), failed] {
            assert_eq!(SettlementResult::decode(&r.encode().unwrap()).unwrap(), r);
        }
        assert!(SettlementResult::decode(&request.encode().unwrap()).is_err());
    }

    #[test]
    fn ids_follow_the_command_and_addresses_are_checked() {
        let c = Uuid::new_v4();
        assert_eq!(
            settlement_id(c, kind::DEPOSIT),
            settlement_id(c, kind::DEPOSIT)
        );
        assert_ne!(
            settlement_id(c, kind::DEPOSIT),
            settlement_id(c, kind::FAUCET_GAS)
        );
        assert!(is_address("0x00000000000000000000000000000000000000aB"));
        assert!(!is_address("0x00000000000000000000000000000000000000a"));
        assert!(!is_address("0x00000000000000000000000000000000000000zz"));
        assert!(!is_address("1x00000000000000000000000000000000000000ab"));
    }
}

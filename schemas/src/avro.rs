//! The published Avro schemas (`schemas/avro/*.avsc`) and the wire format of
//! the command and event topics: Avro *single-object encoding* — the two bytes
//! `C3 01`, the schema's 8-byte little-endian CRC-64-AVRO (Rabin) fingerprint,
//! then the Avro binary body. Any outside consumer decodes a record with the
//! `.avsc` file whose fingerprint matches.
//!
//! The schemas use no logical types: apache-avro 0.21 writes a logical type's
//! primitive as `{"type":"long"}` in its Parsing Canonical Form where the spec
//! says `"long"`, so its fingerprints would differ from every other
//! implementation's. `tests/avro_contract.rs` checks against fastavro.
//!
//! Evolution: union branches and optional fields are only appended, and every
//! earlier version stays in `avro/history/`: a record written by an earlier
//! release (still on the topic during an upgrade) is read with its own writer
//! schema and resolved to the current one, never skipped.

use std::collections::{HashMap, HashSet};
use std::sync::{LazyLock, Mutex};

use apache_avro::rabin::Rabin;
use apache_avro::schema::{
    ArraySchema, EnumSchema, FixedSchema, MapSchema, Name, Namespace, RecordSchema, ResolvedSchema,
    UnionSchema,
};
use apache_avro::types::Value;
use apache_avro::{
    from_avro_datum, from_value, to_value, GenericSingleObjectReader, GenericSingleObjectWriter,
    Schema,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use crate::command::{Command, CommandPayload};
use crate::event::{Event, EventPayload};
use crate::SchemaError;

/// The command envelope schema, as published.
pub const COMMAND_AVSC: &str = include_str!("../avro/command.avsc");
/// The event envelope schema, as published.
pub const EVENT_AVSC: &str = include_str!("../avro/event.avsc");
/// Earlier versions, oldest first; records written with them still decode.
pub const COMMAND_HISTORY: [&str; 10] = [
    include_str!("../avro/history/command.v1.avsc"),
    include_str!("../avro/history/command.v2.avsc"),
    include_str!("../avro/history/command.v3.avsc"),
    include_str!("../avro/history/command.v4.avsc"),
    include_str!("../avro/history/command.v5.avsc"),
    include_str!("../avro/history/command.v6.avsc"),
    include_str!("../avro/history/command.v7.avsc"),
    include_str!("../avro/history/command.v8.avsc"),
    include_str!("../avro/history/command.v9.avsc"),
    include_str!("../avro/history/command.v10.avsc"),
];
pub const EVENT_HISTORY: [&str; 10] = [
    include_str!("../avro/history/event.v1.avsc"),
    include_str!("../avro/history/event.v2.avsc"),
    include_str!("../avro/history/event.v3.avsc"),
    include_str!("../avro/history/event.v4.avsc"),
    include_str!("../avro/history/event.v5.avsc"),
    include_str!("../avro/history/event.v6.avsc"),
    include_str!("../avro/history/event.v7.avsc"),
    include_str!("../avro/history/event.v8.avsc"),
    include_str!("../avro/history/event.v9.avsc"),
    include_str!("../avro/history/event.v10.avsc"),
];

/// Single-object encoding marker.
pub const MAGIC: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;

/// One envelope schema with its fingerprint and the schemas of its payload
/// union's branches (in union order).
pub struct EnvelopeCodec {
    schema: Schema,
    fingerprint: [u8; 8],
    /// Each branch with the named types it refers to defined inside it, so a
    /// payload resolves against its branch alone: resolving against the whole
    /// envelope indexed every branch's names (allocating and hashing each)
    /// for every record encoded.
    branches: Vec<Schema>,
    /// Earlier writer schemas by fingerprint.
    history: Vec<([u8; 8], Schema)>,
    /// Reads the current version with its names resolved once: a plain
    /// `from_avro_datum` indexed the whole envelope's names for every record.
    reader: GenericSingleObjectReader,
    /// Writers that keep the schema resolved: resolving it on every record
    /// was a tenth of agentbank's CPU under load (perf). One per concurrent
    /// encoder, reused.
    writers: Mutex<Vec<GenericSingleObjectWriter>>,
}

pub static COMMANDS: LazyLock<EnvelopeCodec> = LazyLock::new(|| {
    EnvelopeCodec::new(COMMAND_AVSC, &COMMAND_HISTORY).expect("command.avsc is valid")
});
pub static EVENTS: LazyLock<EnvelopeCodec> =
    LazyLock::new(|| EnvelopeCodec::new(EVENT_AVSC, &EVENT_HISTORY).expect("event.avsc is valid"));

impl EnvelopeCodec {
    fn new(avsc: &str, history: &[&str]) -> Result<Self, SchemaError> {
        let schema = Schema::parse_str(avsc)?;
        let fingerprint = fingerprint_of(&schema)?;
        let history = history
            .iter()
            .map(|old| {
                let old = Schema::parse_str(old)?;
                Ok((fingerprint_of(&old)?, old))
            })
            .collect::<Result<Vec<_>, SchemaError>>()?;
        let Schema::Record(record) = &schema else {
            return Err(SchemaError::Shape("envelope is not a record".into()));
        };
        let payload = record
            .fields
            .iter()
            .find(|f| f.name == "payload")
            .ok_or_else(|| SchemaError::Shape("no payload field".into()))?;
        let Schema::Union(union) = &payload.schema else {
            return Err(SchemaError::Shape("payload is not a union".into()));
        };
        let names = ResolvedSchema::try_from(&schema)?;
        let mut branches = Vec::with_capacity(union.variants().len());
        for branch in union.variants() {
            let standalone = standalone(branch, names.get_names(), &None, &mut HashSet::new());
            // It must resolve on its own, or encoding would fail at run time.
            ResolvedSchema::try_from(&standalone)?;
            branches.push(standalone);
        }
        Ok(EnvelopeCodec {
            branches,
            reader: GenericSingleObjectReader::new(schema.clone())?,
            schema,
            fingerprint,
            history,
            writers: Mutex::new(Vec::new()),
        })
    }

    /// The CRC-64-AVRO fingerprint, little-endian, as in the record header.
    pub fn fingerprint(&self) -> [u8; 8] {
        self.fingerprint
    }

    /// The record in single-object encoding (header, then body), validated
    /// against the schema.
    fn encode(&self, fields: Vec<(&str, Value)>) -> Result<Vec<u8>, SchemaError> {
        let record = Value::Record(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        );
        let pooled = self.writers.lock().ok().and_then(|mut w| w.pop());
        let mut writer = match pooled {
            Some(w) => w,
            None => GenericSingleObjectWriter::new_with_capacity(&self.schema, 512)?,
        };
        let mut out = Vec::with_capacity(512);
        let written = writer.write_value_ref(&record, &mut out);
        if let Ok(mut pool) = self.writers.lock() {
            pool.push(writer);
        }
        written?;
        debug_assert!(out[..2] == MAGIC && out[2..HEADER_LEN] == self.fingerprint);
        Ok(out)
    }

    fn decode(&self, bytes: &[u8]) -> Result<Fields, SchemaError> {
        if bytes.len() < HEADER_LEN || bytes[..2] != MAGIC {
            return Err(SchemaError::Framing("missing C3 01 marker"));
        }
        let datum = if bytes[2..HEADER_LEN] == self.fingerprint {
            self.reader.read_value(&mut &bytes[..])?
        } else {
            let mut body = &bytes[HEADER_LEN..];
            let (_, writer) = self
                .history
                .iter()
                .find(|(fp, _)| bytes[2..HEADER_LEN] == fp[..])
                .ok_or(SchemaError::Framing("unknown schema fingerprint"))?;
            from_avro_datum(writer, &mut body, Some(&self.schema))?
        };
        match datum {
            Value::Record(fields) => Ok(Fields(fields.into_iter().collect())),
            other => Err(SchemaError::Shape(format!(
                "expected record, got {other:?}"
            ))),
        }
    }

    fn payload<T: Serialize>(&self, index: usize, payload: &T) -> Result<Value, SchemaError> {
        let value = to_value(payload)?.resolve(&self.branches[index])?;
        Ok(Value::Union(index as u32, Box::new(value)))
    }
}

/// `schema` with each named type it refers to (e.g. `JournalEntry`, defined in
/// an earlier branch) defined at its first use, in the order Avro resolves
/// names (depth first, fields in order); later uses stay references.
fn standalone(
    schema: &Schema,
    names: &HashMap<Name, &Schema>,
    namespace: &Namespace,
    defined: &mut HashSet<Name>,
) -> Schema {
    match schema {
        Schema::Ref { name } => {
            let full = name.fully_qualified_name(namespace);
            match names.get(&full) {
                Some(definition) if !defined.contains(&full) => {
                    standalone(definition, names, &full.namespace, defined)
                }
                _ => Schema::Ref { name: full },
            }
        }
        Schema::Record(record) => {
            let full = record.name.fully_qualified_name(namespace);
            defined.insert(full.clone());
            let fields = record
                .fields
                .iter()
                .map(|field| {
                    let mut field = field.clone();
                    field.schema = standalone(&field.schema, names, &full.namespace, defined);
                    field
                })
                .collect();
            // Named in full: its place in the branch may have another
            // enclosing namespace than its definition had.
            Schema::Record(RecordSchema {
                name: full,
                fields,
                ..record.clone()
            })
        }
        Schema::Enum(e) => {
            let name = e.name.fully_qualified_name(namespace);
            defined.insert(name.clone());
            Schema::Enum(EnumSchema { name, ..e.clone() })
        }
        Schema::Fixed(f) => {
            let name = f.name.fully_qualified_name(namespace);
            defined.insert(name.clone());
            Schema::Fixed(FixedSchema { name, ..f.clone() })
        }
        Schema::Array(array) => Schema::Array(ArraySchema {
            items: Box::new(standalone(&array.items, names, namespace, defined)),
            attributes: array.attributes.clone(),
        }),
        Schema::Map(map) => Schema::Map(MapSchema {
            types: Box::new(standalone(&map.types, names, namespace, defined)),
            attributes: map.attributes.clone(),
        }),
        Schema::Union(union) => {
            let variants = union
                .variants()
                .iter()
                .map(|v| standalone(v, names, namespace, defined))
                .collect();
            // The same variants, only references expanded: still a valid union.
            Schema::Union(UnionSchema::new(variants).expect("variants of a valid union"))
        }
        other => other.clone(),
    }
}

/// A decoded record's fields by name.
pub(crate) fn fingerprint_of(schema: &Schema) -> Result<[u8; 8], SchemaError> {
    schema
        .fingerprint::<Rabin>()
        .bytes
        .as_slice()
        .try_into()
        .map_err(|_| SchemaError::Shape("fingerprint is not 8 bytes".into()))
}

struct Fields(HashMap<String, Value>);

impl Fields {
    fn take(&mut self, name: &str) -> Result<Value, SchemaError> {
        self.0
            .remove(name)
            .ok_or_else(|| SchemaError::Shape(format!("missing field {name}")))
    }

    fn string(&mut self, name: &str) -> Result<String, SchemaError> {
        match self.take(name)? {
            Value::String(s) => Ok(s),
            other => Err(SchemaError::Shape(format!(
                "{name}: expected string, got {other:?}"
            ))),
        }
    }

    fn uuid(&mut self, name: &str) -> Result<Uuid, SchemaError> {
        let s = self.string(name)?;
        Uuid::parse_str(&s).map_err(|_| SchemaError::Shape(format!("{name}: '{s}' is not a UUID")))
    }

    fn long(&mut self, name: &str) -> Result<i64, SchemaError> {
        match self.take(name)? {
            Value::Long(v) | Value::TimestampMillis(v) => Ok(v),
            other => Err(SchemaError::Shape(format!(
                "{name}: expected long, got {other:?}"
            ))),
        }
    }

    fn optional_string(&mut self, name: &str) -> Result<Option<String>, SchemaError> {
        match self.take(name)? {
            Value::Union(_, inner) => match *inner {
                Value::Null => Ok(None),
                Value::String(s) => Ok(Some(s)),
                other => Err(SchemaError::Shape(format!("{name}: got {other:?}"))),
            },
            other => Err(SchemaError::Shape(format!(
                "{name}: expected union, got {other:?}"
            ))),
        }
    }

    fn union(&mut self, name: &str) -> Result<(u32, Value), SchemaError> {
        match self.take(name)? {
            Value::Union(index, inner) => Ok((index, *inner)),
            other => Err(SchemaError::Shape(format!(
                "{name}: expected union, got {other:?}"
            ))),
        }
    }
}

fn optional(value: Option<&str>) -> Value {
    match value {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(s) => Value::Union(1, Box::new(Value::String(s.to_string()))),
    }
}

fn branch<T: DeserializeOwned>(value: Value) -> Result<T, SchemaError> {
    Ok(from_value::<T>(&value)?)
}

fn check_type(expected: &str, found: String) -> Result<(), SchemaError> {
    if expected == found {
        Ok(())
    } else {
        Err(SchemaError::Shape(format!(
            "type '{found}' but payload is {expected}"
        )))
    }
}

impl Command {
    /// Avro single-object encoding against `command.avsc`.
    pub fn encode(&self) -> Result<Vec<u8>, SchemaError> {
        let codec = &*COMMANDS;
        let payload = match &self.payload {
            CommandPayload::CreateAgent(p) => codec.payload(0, p)?,
            CommandPayload::Deposit(p) => codec.payload(1, p)?,
            CommandPayload::Withdraw(p) => codec.payload(2, p)?,
            CommandPayload::RegisterPayment(p) => codec.payload(3, p)?,
            CommandPayload::ApprovePayment(p) => codec.payload(4, p)?,
            CommandPayload::DeclinePayment(p) => codec.payload(5, p)?,
            CommandPayload::CreditPayment(p) => codec.payload(6, p)?,
            CommandPayload::SettlePayment(p) => codec.payload(7, p)?,
            CommandPayload::GrantSignupBonus(p) => codec.payload(8, p)?,
            CommandPayload::DepositSavings(p) => codec.payload(9, p)?,
            CommandPayload::WithdrawSavings(p) => codec.payload(10, p)?,
            CommandPayload::AccrueInterest(p) => codec.payload(11, p)?,
            CommandPayload::CompleteSettlement(p) => codec.payload(12, p)?,
            CommandPayload::CreateOpportunity(p) => codec.payload(13, p)?,
            CommandPayload::ExecuteOpportunity(p) => codec.payload(14, p)?,
            CommandPayload::CompleteOpportunity(p) => codec.payload(15, p)?,
            CommandPayload::RequestQuote(p) => codec.payload(16, p)?,
            CommandPayload::ExecuteQuote(p) => codec.payload(17, p)?,
            CommandPayload::ExpireQuotes(p) => codec.payload(18, p)?,
            CommandPayload::RecordRevenue(p) => codec.payload(19, p)?,
            CommandPayload::SetRevenueTarget(p) => codec.payload(20, p)?,
            CommandPayload::OpenPosition(p) => codec.payload(21, p)?,
            CommandPayload::ApplyRebalance(p) => codec.payload(22, p)?,
            CommandPayload::UpdateAgent(p) => codec.payload(23, p)?,
            CommandPayload::FundWallet(p) => codec.payload(24, p)?,
            CommandPayload::FundAgent(p) => codec.payload(25, p)?,
            CommandPayload::CreditFromWallet(p) => codec.payload(26, p)?,
            CommandPayload::SettleWallet(p) => codec.payload(27, p)?,
        };
        codec.encode(vec![
            ("id", Value::String(self.id.to_string())),
            ("type", Value::String(self.payload.type_name().into())),
            ("agent_id", Value::String(self.agent_id.to_string())),
            ("user_id", Value::String(self.user_id.to_string())),
            ("correlation_id", optional(self.correlation_id.as_deref())),
            ("timestamp", Value::Long(self.timestamp_ms)),
            ("payload", payload),
        ])
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, SchemaError> {
        let mut f = COMMANDS.decode(bytes)?;
        let type_name = f.string("type")?;
        let payload = match f.union("payload")? {
            (0, v) => CommandPayload::CreateAgent(branch(v)?),
            (1, v) => CommandPayload::Deposit(branch(v)?),
            (2, v) => CommandPayload::Withdraw(branch(v)?),
            (3, v) => CommandPayload::RegisterPayment(branch(v)?),
            (4, v) => CommandPayload::ApprovePayment(branch(v)?),
            (5, v) => CommandPayload::DeclinePayment(branch(v)?),
            (6, v) => CommandPayload::CreditPayment(branch(v)?),
            (7, v) => CommandPayload::SettlePayment(branch(v)?),
            (8, v) => CommandPayload::GrantSignupBonus(branch(v)?),
            (9, v) => CommandPayload::DepositSavings(branch(v)?),
            (10, v) => CommandPayload::WithdrawSavings(branch(v)?),
            (11, v) => CommandPayload::AccrueInterest(branch(v)?),
            (12, v) => CommandPayload::CompleteSettlement(branch(v)?),
            (13, v) => CommandPayload::CreateOpportunity(branch(v)?),
            (14, v) => CommandPayload::ExecuteOpportunity(branch(v)?),
            (15, v) => CommandPayload::CompleteOpportunity(branch(v)?),
            (16, v) => CommandPayload::RequestQuote(branch(v)?),
            (17, v) => CommandPayload::ExecuteQuote(branch(v)?),
            (18, v) => CommandPayload::ExpireQuotes(branch(v)?),
            (19, v) => CommandPayload::RecordRevenue(branch(v)?),
            (20, v) => CommandPayload::SetRevenueTarget(branch(v)?),
            (21, v) => CommandPayload::OpenPosition(branch(v)?),
            (22, v) => CommandPayload::ApplyRebalance(branch(v)?),
            (23, v) => CommandPayload::UpdateAgent(branch(v)?),
            (24, v) => CommandPayload::FundWallet(branch(v)?),
            (25, v) => CommandPayload::FundAgent(branch(v)?),
            (26, v) => CommandPayload::CreditFromWallet(branch(v)?),
            (27, v) => CommandPayload::SettleWallet(branch(v)?),
            (i, _) => return Err(SchemaError::Shape(format!("unknown command branch {i}"))),
        };
        check_type(payload.type_name(), type_name)?;
        Ok(Command {
            id: f.uuid("id")?,
            agent_id: f.uuid("agent_id")?,
            user_id: f.uuid("user_id")?,
            correlation_id: f.optional_string("correlation_id")?,
            timestamp_ms: f.long("timestamp")?,
            payload,
        })
    }
}

impl Event {
    /// Avro single-object encoding against `event.avsc`.
    pub fn encode(&self) -> Result<Vec<u8>, SchemaError> {
        let codec = &*EVENTS;
        let payload = match &self.payload {
            EventPayload::AgentCreated(p) => codec.payload(0, p)?,
            EventPayload::FundsDeposited(p) => codec.payload(1, p)?,
            EventPayload::FundsWithdrawn(p) => codec.payload(2, p)?,
            EventPayload::PaymentRegistered(p) => codec.payload(3, p)?,
            EventPayload::PaymentApproved(p) => codec.payload(4, p)?,
            EventPayload::PaymentDeclined(p) => codec.payload(5, p)?,
            EventPayload::PaymentConfirmed(p) => codec.payload(6, p)?,
            EventPayload::PaymentFailed(p) => codec.payload(7, p)?,
            EventPayload::PaymentReceived(p) => codec.payload(8, p)?,
            EventPayload::SignupBonusGranted(p) => codec.payload(9, p)?,
            EventPayload::SavingsDeposited(p) => codec.payload(10, p)?,
            EventPayload::InterestAccrued(p) => codec.payload(11, p)?,
            EventPayload::SavingsWithdrawn(p) => codec.payload(12, p)?,
            EventPayload::TransferSettled(p) => codec.payload(13, p)?,
            EventPayload::OpportunityCreated(p) => codec.payload(14, p)?,
            EventPayload::OpportunityActivated(p) => codec.payload(15, p)?,
            EventPayload::OpportunityExecuted(p) => codec.payload(16, p)?,
            EventPayload::QuoteIssued(p) => codec.payload(17, p)?,
            EventPayload::QuoteExecuted(p) => codec.payload(18, p)?,
            EventPayload::QuoteExpired(p) => codec.payload(19, p)?,
            EventPayload::SystemAlert(p) => codec.payload(20, p)?,
            EventPayload::RevenueRecorded(p) => codec.payload(21, p)?,
            EventPayload::RevenueMilestone(p) => codec.payload(22, p)?,
            EventPayload::RevenueTargetSet(p) => codec.payload(23, p)?,
            EventPayload::PositionOpened(p) => codec.payload(24, p)?,
            EventPayload::PortfolioRebalanced(p) => codec.payload(25, p)?,
            EventPayload::AgentUpdated(p) => codec.payload(26, p)?,
            EventPayload::WalletChanged(p) => codec.payload(27, p)?,
        };
        codec.encode(vec![
            ("id", Value::String(self.id.to_string())),
            ("type", Value::String(self.payload.type_name().into())),
            ("agent_id", Value::String(self.agent_id.to_string())),
            ("user_id", Value::String(self.user_id.to_string())),
            ("command_id", Value::String(self.command_id.to_string())),
            ("correlation_id", optional(self.correlation_id.as_deref())),
            ("timestamp", Value::Long(self.timestamp_ms)),
            ("agent_version", Value::Long(self.agent_version)),
            ("payload", payload),
        ])
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, SchemaError> {
        let mut f = EVENTS.decode(bytes)?;
        let type_name = f.string("type")?;
        let payload = match f.union("payload")? {
            (0, v) => EventPayload::AgentCreated(branch(v)?),
            (1, v) => EventPayload::FundsDeposited(branch(v)?),
            (2, v) => EventPayload::FundsWithdrawn(branch(v)?),
            (3, v) => EventPayload::PaymentRegistered(branch(v)?),
            (4, v) => EventPayload::PaymentApproved(branch(v)?),
            (5, v) => EventPayload::PaymentDeclined(branch(v)?),
            (6, v) => EventPayload::PaymentConfirmed(branch(v)?),
            (7, v) => EventPayload::PaymentFailed(branch(v)?),
            (8, v) => EventPayload::PaymentReceived(branch(v)?),
            (9, v) => EventPayload::SignupBonusGranted(branch(v)?),
            (10, v) => EventPayload::SavingsDeposited(branch(v)?),
            (11, v) => EventPayload::InterestAccrued(branch(v)?),
            (12, v) => EventPayload::SavingsWithdrawn(branch(v)?),
            (13, v) => EventPayload::TransferSettled(branch(v)?),
            (14, v) => EventPayload::OpportunityCreated(branch(v)?),
            (15, v) => EventPayload::OpportunityActivated(branch(v)?),
            (16, v) => EventPayload::OpportunityExecuted(branch(v)?),
            (17, v) => EventPayload::QuoteIssued(branch(v)?),
            (18, v) => EventPayload::QuoteExecuted(branch(v)?),
            (19, v) => EventPayload::QuoteExpired(branch(v)?),
            (20, v) => EventPayload::SystemAlert(branch(v)?),
            (21, v) => EventPayload::RevenueRecorded(branch(v)?),
            (22, v) => EventPayload::RevenueMilestone(branch(v)?),
            (23, v) => EventPayload::RevenueTargetSet(branch(v)?),
            (24, v) => EventPayload::PositionOpened(branch(v)?),
            (25, v) => EventPayload::PortfolioRebalanced(branch(v)?),
            (26, v) => EventPayload::AgentUpdated(branch(v)?),
            (27, v) => EventPayload::WalletChanged(branch(v)?),
            (i, _) => return Err(SchemaError::Shape(format!("unknown event branch {i}"))),
        };
        check_type(payload.type_name(), type_name)?;
        Ok(Event {
            id: f.uuid("id")?,
            agent_id: f.uuid("agent_id")?,
            user_id: f.uuid("user_id")?,
            command_id: f.uuid("command_id")?,
            correlation_id: f.optional_string("correlation_id")?,
            timestamp_ms: f.long("timestamp")?,
            agent_version: f.long("agent_version")?,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{CreateAgent, Deposit};
    use crate::event::{FundsMovement, JournalEntry, Posting};
    use rust_decimal::Decimal;

    pub(super) fn create_agent() -> Command {
        Command {
            id: Uuid::new_v4(),
            agent_id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            correlation_id: Some("c-1".into()),
            timestamp_ms: 1_700_000_000_123,
            payload: CommandPayload::CreateAgent(CreateAgent {
                name: "Payment Assistant".into(),
                description: "d".into(),
                wallet_address: None,
                currency: "USDC".into(),
                daily_limit: Some(Decimal::new(1000, 0)),
                transaction_limit: None,
                require_approval_for_all: false,
                require_approval_above_amount: Some(Decimal::new(505, 1)),
                tags: vec!["a".into(), "b".into()],
                initial_balance: Decimal::new(6, 0),
                settle_on_chain: true,
            }),
        }
    }

    #[test]
    fn commands_round_trip_with_single_object_header() {
        for cmd in [
            create_agent(),
            Command {
                correlation_id: None,
                payload: CommandPayload::Deposit(Deposit {
                    amount: Decimal::new(1, 6),
                    currency: "USDC".into(),
                    settle_on_chain: false,
                }),
                ..create_agent()
            },
        ] {
            let bytes = cmd.encode().unwrap();
            assert_eq!(bytes[..2], MAGIC);
            assert_eq!(bytes[2..10], COMMANDS.fingerprint());
            assert_eq!(Command::decode(&bytes).unwrap(), cmd);
        }
    }

    fn opportunity(executed: bool) -> crate::revenue::opportunity::Opportunity {
        use crate::revenue::opportunity::*;
        let spec = OpportunitySpec {
            name: "Gateway".into(),
            vertical: "fintech".into(),
            market_data: MarketData {
                total_market_size: Decimal::new(10_000_000_000, 0),
                growth_rate: 0.3,
                competition_count: 15,
            },
            technical_requirements: TechnicalRequirements {
                complexity: "very_high".into(),
                time_to_market: 90,
                required_expertise: vec!["payments".into()],
            },
            target_customers: vec!["smb".into()],
            pricing_model: "subscription".into(),
        };
        Opportunity {
            id: Uuid::new_v4(),
            tenant_id: Uuid::new_v4(),
            name: spec.name.clone(),
            vertical: spec.vertical.clone(),
            status: status::COMPLETED.into(),
            score: 0.8123,
            expected_irr: 1.5,
            payback_months: 7,
            moat_score: 0.7,
            risk_score: 0.3,
            scalability_score: 0.6,
            metadata: OpportunityMetadata {
                market_size: spec.market_data.total_market_size,
                competition_level: "medium".into(),
                technical_complexity: "very_high".into(),
                target_customers: spec.target_customers.clone(),
                pricing_model: spec.pricing_model.clone(),
            },
            economic_analysis: EconomicAnalysis {
                total_addressable_market: Decimal::new(10_000_000_000, 0),
                serviceable_addressable_market: Decimal::new(1_000_000_000, 0),
                serviceable_obtainable_market: Decimal::new(8_000_000_050, 2),
                market_growth_rate: 0.3,
                competitive_advantage_period: 14,
                execution_cost: Decimal::new(1_234_500, 0),
            },
            execution_plan: vec![Phase {
                name: "MVP Development".into(),
                duration_days: 36,
                resources_required: Resources {
                    developers: 6,
                    designers: 1,
                    marketing: 1,
                },
            }],
            market_data: spec.market_data.clone(),
            technical_requirements: spec.technical_requirements.clone(),
            execution: executed.then(|| Execution {
                started_ms: 1,
                completed_ms: Some(9),
                execution_time_ms: Some(8),
                result: Some("success".into()),
                artifacts: vec![Artifact {
                    kind: "execution_plan".into(),
                    url: "/v1/x".into(),
                }],
            }),
            created_ms: 1,
            updated_ms: 9,
            version: 3,
        }
    }

    #[test]
    fn opportunity_messages_round_trip() {
        use crate::revenue::opportunity::*;
        for executed in [false, true] {
            let o = opportunity(executed);
            for payload in [
                EventPayload::OpportunityCreated(crate::event::OpportunityChange {
                    opportunity: Box::new(o.clone()),
                }),
                EventPayload::OpportunityExecuted(crate::event::OpportunityChange {
                    opportunity: Box::new(o.clone()),
                }),
            ] {
                let ev = Event {
                    id: Uuid::new_v4(),
                    agent_id: o.id,
                    user_id: o.tenant_id,
                    command_id: Uuid::new_v4(),
                    correlation_id: Some("c".into()),
                    timestamp_ms: 5,
                    agent_version: o.version,
                    payload,
                };
                let bytes = ev.encode().unwrap();
                let decoded = Event::decode(&bytes);
                assert!(
                    decoded.is_ok(),
                    "executed={executed} {}: {decoded:?}",
                    ev.payload.type_name()
                );
                assert_eq!(decoded.unwrap(), ev);
            }
        }
        let spec = OpportunitySpec {
            name: "n".into(),
            vertical: "saas".into(),
            market_data: opportunity(false).market_data,
            technical_requirements: opportunity(false).technical_requirements,
            target_customers: vec![],
            pricing_model: "usage".into(),
        };
        for payload in [
            CommandPayload::CreateOpportunity(Box::new(CreateOpportunity { spec })),
            CommandPayload::ExecuteOpportunity(ExecuteOpportunity {
                opportunity_id: Uuid::new_v4(),
            }),
            CommandPayload::CompleteOpportunity(CompleteOpportunity {
                opportunity_id: Uuid::new_v4(),
                started_ms: 3,
            }),
        ] {
            let mut c = create_agent();
            c.payload = payload;
            assert_eq!(Command::decode(&c.encode().unwrap()).unwrap(), c);
            assert_eq!(
                Command::decode_item(&c.encode_internal().unwrap()).unwrap(),
                c
            );
        }
    }

    #[test]
    fn events_round_trip() {
        let agent = Uuid::new_v4();
        let ev = Event {
            id: Uuid::new_v4(),
            agent_id: agent,
            user_id: Uuid::new_v4(),
            command_id: Uuid::new_v4(),
            correlation_id: None,
            timestamp_ms: 5,
            agent_version: 2,
            payload: EventPayload::FundsDeposited(FundsMovement {
                amount: Decimal::new(50, 0),
                currency: "USDC".into(),
                balance_after: Decimal::new(1500000001, 6),
                memo: "deposit".into(),
                journal: JournalEntry {
                    entry_id: "e".into(),
                    postings: vec![
                        Posting {
                            account: "a".into(),
                            amount: Decimal::new(50, 0),
                        },
                        Posting {
                            account: "b".into(),
                            amount: Decimal::new(-50, 0),
                        },
                    ],
                },
            }),
        };
        let bytes = ev.encode().unwrap();
        assert_eq!(Event::decode(&bytes).unwrap(), ev);
        assert!(
            Command::decode(&bytes).is_err(),
            "an event is not a command"
        );
    }

    /// The wallet's commands and event, optional values in both states.
    #[test]
    fn wallet_records_round_trip() {
        use crate::command::{CreditFromWallet, FundAgent, FundWallet, SettleWallet};
        use crate::event::{JournalEntry, Posting, WalletChange};
        let CommandPayload::CreateAgent(create) = create_agent().payload else {
            unreachable!()
        };
        let amount = Decimal::new(1_234_567, 6);
        let payloads = [
            CommandPayload::FundWallet(FundWallet {
                amount,
                currency: "USDC".into(),
                memo: "test funding".into(),
            }),
            CommandPayload::FundAgent(Box::new(FundAgent {
                agent_id: Uuid::new_v4().to_string(),
                amount,
                currency: "USDC".into(),
                settle_on_chain: true,
                create: Some(create.clone()),
            })),
            CommandPayload::FundAgent(Box::new(FundAgent {
                agent_id: Uuid::new_v4().to_string(),
                amount,
                currency: "USDC".into(),
                settle_on_chain: false,
                create: None,
            })),
            CommandPayload::CreditFromWallet(Box::new(CreditFromWallet {
                request_id: Uuid::new_v4().to_string(),
                amount,
                currency: "USDC".into(),
                settle_on_chain: false,
                create: Some(create),
                origin_partition: 3,
                origin_offset: 1 << 40,
                origin_sub: 7,
            })),
            CommandPayload::SettleWallet(SettleWallet {
                agent_id: Uuid::new_v4().to_string(),
                amount,
                currency: "USDC".into(),
                request_id: Some(Uuid::new_v4().to_string()),
                refund_reason: Some("Agent not found".into()),
                origin_partition: 0,
                origin_offset: 5,
                origin_sub: 0,
            }),
        ];
        for payload in payloads {
            let cmd = Command {
                payload,
                ..create_agent()
            };
            assert_eq!(Command::decode(&cmd.encode().unwrap()).unwrap(), cmd);
        }
        for agent in [None, Some(Uuid::new_v4().to_string())] {
            let ev = Event {
                id: Uuid::new_v4(),
                agent_id: Uuid::new_v4(),
                user_id: Uuid::new_v4(),
                command_id: Uuid::new_v4(),
                correlation_id: None,
                timestamp_ms: 1,
                agent_version: 0,
                payload: EventPayload::WalletChanged(WalletChange {
                    amount,
                    currency: "USDC".into(),
                    balance_after: amount,
                    memo: "funded".into(),
                    agent,
                    journal: JournalEntry {
                        entry_id: "e".into(),
                        postings: vec![Posting {
                            account: "a".into(),
                            amount,
                        }],
                    },
                }),
            };
            assert_eq!(Event::decode(&ev.encode().unwrap()).unwrap(), ev);
        }
    }

    /// An agent's update, command and event, with optional values in both states.
    #[test]
    fn agent_updates_round_trip() {
        use crate::command::{FieldChange, UpdateAgent};
        use crate::event::AgentUpdated;
        let changes = vec![
            FieldChange {
                field: "daily_limit".into(),
                from: Some("500".into()),
                to: None,
            },
            FieldChange {
                field: "status".into(),
                from: Some("active".into()),
                to: Some("paused".into()),
            },
        ];
        let cmd = Command {
            payload: CommandPayload::UpdateAgent(UpdateAgent {
                changes: changes.clone(),
                actor: "user:x".into(),
                reason: None,
            }),
            ..create_agent()
        };
        assert_eq!(Command::decode(&cmd.encode().unwrap()).unwrap(), cmd);
        let ev = Event {
            id: Uuid::new_v4(),
            agent_id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            command_id: Uuid::new_v4(),
            correlation_id: None,
            timestamp_ms: 5,
            agent_version: 3,
            payload: EventPayload::AgentUpdated(AgentUpdated {
                changes,
                actor: "user:x".into(),
                reason: Some("why".into()),
                description: "d".into(),
                daily_limit: None,
                transaction_limit: Some(Decimal::new(25, 1)),
                require_approval_for_all: true,
                require_approval_above_amount: None,
                tags: vec!["t".into()],
                status: "paused".into(),
            }),
        };
        assert_eq!(Event::decode(&ev.encode().unwrap()).unwrap(), ev);
    }

    pub(super) fn payment(decided: Option<i64>) -> crate::payment::Payment {
        crate::payment::Payment {
            payment_id: Uuid::new_v4().to_string(),
            sender_agent_id: Uuid::new_v4().to_string(),
            receiver_agent_id: Uuid::new_v4().to_string(),
            name: "Vendor XYZ".into(),
            payment_type: "EXTERNAL".into(),
            amount: Decimal::new(600_001, 5),
            currency: "USDC".into(),
            method: "CRYPTO_ADDRESS".into(),
            contact_email: Some("a@b.c".into()),
            contact_phone: None,
            tags: vec!["vendor".into()],
            status: "New".into(),
            approval_status: "Approved".into(),
            approval_required: false,
            created_ms: 9,
            decided_ms: decided,
            tx_hash: None,
            receiver_address: decided.map(|_| "0x00000000000000000000000000000000000000aB".into()),
        }
    }

    /// Every payment command and event branch survives encode → decode,
    /// including the optional fields in both states.
    #[test]
    fn payment_records_round_trip() {
        use crate::command::{CreditPayment, PaymentRef, RegisterPayment, SettlePayment};
        use crate::event::PaymentChange;
        let base = create_agent();
        let commands = [
            CommandPayload::RegisterPayment(RegisterPayment {
                payment_id: Uuid::new_v4().to_string(),
                receiver_agent_id: Uuid::new_v4().to_string(),
                name: "n".into(),
                payment_type: "INTERNAL".into(),
                amount: Decimal::new(1, 6),
                currency: "USDC".into(),
                method: "CRYPTO_ADDRESS".into(),
                contact_email: None,
                contact_phone: Some("+1".into()),
                tags: vec![],
                receiver_address: Some("0x00000000000000000000000000000000000000aB".into()),
            }),
            CommandPayload::ApprovePayment(PaymentRef {
                payment_id: "p".into(),
            }),
            CommandPayload::DeclinePayment(PaymentRef {
                payment_id: "p".into(),
            }),
            CommandPayload::CreditPayment(CreditPayment {
                payment: payment(Some(12)),
                origin_partition: 3,
                origin_offset: 1 << 40,
                origin_sub: 3,
            }),
            CommandPayload::SettlePayment(SettlePayment {
                payment_id: "p".into(),
                credited: false,
                reason: "Receiver agent not found".into(),
            }),
            CommandPayload::GrantSignupBonus(crate::command::GrantSignupBonus {
                amount: Decimal::new(20, 0),
                currency: "USDC".into(),
            }),
            CommandPayload::DepositSavings(crate::command::DepositSavings {
                investment_id: "i".into(),
                amount: Decimal::new(1005, 1),
                currency: "USDC".into(),
            }),
            CommandPayload::WithdrawSavings(crate::command::WithdrawSavings {
                investment_id: "i".into(),
            }),
            CommandPayload::AccrueInterest(crate::command::AccrueInterest { through: 1 << 41 }),
        ];
        for payload in commands {
            let cmd = Command {
                payload,
                ..base.clone()
            };
            assert_eq!(Command::decode(&cmd.encode().unwrap()).unwrap(), cmd);
            // The internal codec carries the same command; both decode as items.
            let internal = cmd.encode_internal().unwrap();
            assert_eq!(Command::decode_item(&internal).unwrap(), cmd);
            assert_eq!(Command::decode_item(&cmd.encode().unwrap()).unwrap(), cmd);
            assert!(Command::decode(&internal).is_err(), "not Avro");
        }
        let round_trips = |payload| {
            let ev = Event {
                id: Uuid::new_v4(),
                agent_id: Uuid::new_v4(),
                user_id: Uuid::new_v4(),
                command_id: Uuid::new_v4(),
                correlation_id: None,
                timestamp_ms: 1,
                agent_version: 1,
                payload,
            };
            assert_eq!(Event::decode(&ev.encode().unwrap()).unwrap(), ev);
        };
        let journal = JournalEntry {
            entry_id: "e".into(),
            postings: vec![],
        };
        let position = crate::event::SavingsPosition {
            investment_id: "i".into(),
            principal: Decimal::new(1005, 1),
            currency: "USDC".into(),
            invested_ms: 7,
            status: "active".into(),
            rate_ms: Decimal::new(45, 1),
            accrued_to_ms: 9,
            interest_posted: Decimal::new(1, 6),
            closed_ms: Some(10),
            rate_pct: Some(Decimal::new(45, 1)),
        };
        let change = crate::event::SavingsChange {
            position,
            amount: Decimal::new(2, 0),
            balance_after: Decimal::new(3, 0),
            journal: journal.clone(),
        };
        for payload in [
            EventPayload::SavingsDeposited(change.clone()),
            EventPayload::InterestAccrued(change.clone()),
            EventPayload::SavingsWithdrawn(change),
        ] {
            round_trips(payload);
        }
        for (decided, journal) in [(None, None), (Some(4), Some(journal))] {
            let change = PaymentChange {
                payment: payment(decided),
                balance_after: Decimal::new(5, 0),
                reserved_after: Decimal::new(1, 0),
                journal,
            };
            for payload in [
                EventPayload::PaymentRegistered(change.clone()),
                EventPayload::PaymentReceived(change.clone()),
            ] {
                round_trips(payload);
            }
        }
    }

    /// A deposit written by the first release (before payments) still
    /// decodes: an upgrade never skips what is on the topic.
    #[test]
    fn records_of_earlier_schema_versions_decode() {
        let v1 = EnvelopeCodec::new(COMMAND_HISTORY[0], &[]).unwrap();
        assert_ne!(v1.fingerprint(), COMMANDS.fingerprint());
        let cmd = Command {
            payload: CommandPayload::Deposit(Deposit {
                amount: Decimal::new(15, 1),
                currency: "USDC".into(),
                settle_on_chain: false,
            }),
            ..create_agent()
        };
        let CommandPayload::Deposit(d) = &cmd.payload else {
            unreachable!()
        };
        let bytes = v1
            .encode(vec![
                ("id", Value::String(cmd.id.to_string())),
                ("type", Value::String("Deposit".into())),
                ("agent_id", Value::String(cmd.agent_id.to_string())),
                ("user_id", Value::String(cmd.user_id.to_string())),
                ("correlation_id", optional(cmd.correlation_id.as_deref())),
                ("timestamp", Value::Long(cmd.timestamp_ms)),
                ("payload", v1.payload(1, d).unwrap()),
            ])
            .unwrap();
        assert_eq!(Command::decode(&bytes).unwrap(), cmd);
    }

    #[test]
    fn garbage_is_rejected_not_panicked_on() {
        assert!(Command::decode(b"").is_err());
        assert!(Command::decode(b"{\"json\":1}").is_err());
        let mut bytes = create_agent().encode().unwrap();
        bytes.truncate(20);
        assert!(Command::decode(&bytes).is_err());
    }

    #[test]
    fn a_branch_resolves_alone_as_within_the_whole_envelope() {
        // Branches refer to JournalEntry and Payment, defined once in earlier
        // branches; resolving against the whole envelope is the reference.
        for (avsc, codec) in [(COMMAND_AVSC, &*COMMANDS), (EVENT_AVSC, &*EVENTS)] {
            let envelope = Schema::parse_str(avsc).unwrap();
            let Schema::Record(record) = &envelope else {
                panic!("envelope is a record")
            };
            let payload = record.fields.iter().find(|f| f.name == "payload").unwrap();
            let Schema::Union(union) = &payload.schema else {
                panic!("payload is a union")
            };
            assert_eq!(union.variants().len(), codec.branches.len());
            for alone in &codec.branches {
                // Every named type a branch uses is defined within it.
                ResolvedSchema::try_from(alone).unwrap();
            }
        }
        let credit = crate::command::CreditPayment {
            payment: payment(Some(12)),
            origin_partition: 3,
            origin_offset: 1 << 40,
            origin_sub: 3,
        };
        let envelope = Schema::parse_str(COMMAND_AVSC).unwrap();
        let index = COMMANDS
            .branches
            .iter()
            .position(|b| matches!(b, Schema::Record(r) if r.name.name == "CreditPayment"))
            .unwrap();
        let whole_branch = match &envelope {
            Schema::Record(r) => match &r
                .fields
                .iter()
                .find(|f| f.name == "payload")
                .unwrap()
                .schema
            {
                Schema::Union(u) => u.variants()[index].clone(),
                _ => unreachable!(),
            },
            _ => unreachable!(),
        };
        let within = to_value(&credit)
            .unwrap()
            .resolve_schemata(&whole_branch, vec![&envelope])
            .unwrap();
        let alone = to_value(&credit)
            .unwrap()
            .resolve(&COMMANDS.branches[index])
            .unwrap();
        assert_eq!(within, alone);
    }

    #[test]
    fn fingerprint_matches_the_published_avsc() {
        // An outside consumer computes the fingerprint from the file it downloaded.
        let schema = Schema::parse_str(COMMAND_AVSC).unwrap();
        assert_eq!(
            schema.fingerprint::<Rabin>().bytes,
            COMMANDS.fingerprint().to_vec()
        );
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    /// `cargo test --release -p schemas --lib avro_costs -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn avro_costs() {
        // A saga step: the largest command on the payment path.
        let cmd = Command {
            payload: CommandPayload::CreditPayment(crate::command::CreditPayment {
                payment: super::tests::payment(Some(12)),
                origin_partition: 1,
                origin_offset: 2,
                origin_sub: 3,
            }),
            ..super::tests::create_agent()
        };
        let time = |f: &dyn Fn()| {
            let t = std::time::Instant::now();
            for _ in 0..20_000 {
                f();
            }
            t.elapsed().as_secs_f64() / 20_000.0 * 1e6
        };
        let bytes = cmd.encode().unwrap();
        let internal = cmd.encode_internal().unwrap();
        println!(
            "avro encode {:.1} µs, decode {:.1} µs; internal encode {:.1} µs, decode {:.1} µs",
            time(&|| drop(std::hint::black_box(cmd.encode().unwrap()))),
            time(&|| drop(std::hint::black_box(Command::decode(&bytes).unwrap()))),
            time(&|| drop(std::hint::black_box(cmd.encode_internal().unwrap()))),
            time(&|| drop(std::hint::black_box(
                Command::decode_item(&internal).unwrap()
            ))),
        );
    }
}

//! Decoders never panic: arbitrary bytes, and valid records mutated (bytes
//! flipped, cut short, spliced), fed to every decoder of a topic record —
//! commands (single and packed), events, replies, settlement requests and
//! results, every machine's checkpoint — and arbitrary JSON fed to the
//! API's body and query parsers. An error, never a panic; and a decoder
//! that accepts mutated bytes hands back a value that encodes again (no
//! half-built record).

use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use uuid::Uuid;

use schemas::reply::Reply;
use schemas::revenue::ledger::{LedgerEntry, Movement, RecordRevenue, RevenueRecorded};
use schemas::revenue::portfolio::{ApplyRebalance, OpenPosition, Trade};
use schemas::revenue::pricing::SystemAlert;
use schemas::settlement::{SettlementRequest, SettlementResult};
use schemas::{Command, CommandPayload, Event, EventPayload};

fn command(payload: CommandPayload) -> Command {
    Command {
        id: Uuid::from_u128(1),
        agent_id: Uuid::from_u128(2),
        user_id: Uuid::from_u128(3),
        correlation_id: Some("gw-0:17".into()),
        timestamp_ms: 1_780_000_000_000,
        payload,
    }
}

fn event(payload: EventPayload) -> Event {
    Event {
        id: Uuid::from_u128(4),
        agent_id: Uuid::from_u128(2),
        user_id: Uuid::from_u128(3),
        command_id: Uuid::from_u128(1),
        correlation_id: None,
        timestamp_ms: 1_780_000_000_000,
        agent_version: 7,
        payload,
    }
}

/// Valid encodings of records with nested records, arrays, optionals and
/// decimals.
fn samples() -> Vec<Vec<u8>> {
    let entry = LedgerEntry {
        event_id: Uuid::from_u128(5),
        tenant_id: Uuid::from_u128(3),
        sequence: 1,
        event_type: "payment_received".into(),
        amount: Decimal::new(7900, 2),
        currency: "USD".into(),
        debit_account: "accounts_receivable".into(),
        credit_account: "revenue_saas".into(),
        product_id: "prod".into(),
        customer_id: "cust".into(),
        vertical: "saas".into(),
        customer_segment: "smb".into(),
        occurred_ms: 1,
        recorded_ms: 2,
        natural_key: Some("payment_received:inv".into()),
        metadata: "{}".into(),
        previous_hash: "0x00".into(),
        transaction_hash: "0x11".into(),
        movement: Movement::default(),
    };
    vec![
        command(CommandPayload::RecordRevenue(Box::new(RecordRevenue {
            event_type: "refund".into(),
            amount: Decimal::new(1, 2),
            currency: "EUR".into(),
            product_id: "p".into(),
            customer_id: "c".into(),
            vertical: "general".into(),
            customer_segment: "default".into(),
            occurred_ms: 5,
            natural_key: None,
            metadata: "{\"a\":1}".into(),
        })))
        .encode()
        .unwrap(),
        command(CommandPayload::OpenPosition(OpenPosition {
            opportunity_id: Uuid::from_u128(9),
            product_id: "p".into(),
            capital: Decimal::from(1000),
            opened_ms: 3,
        }))
        .encode()
        .unwrap(),
        command(CommandPayload::ApplyRebalance(ApplyRebalance {
            strategy: "risk_parity".into(),
            expected_version: 3,
            trades: vec![
                Trade {
                    opportunity_id: Uuid::from_u128(9),
                    amount: Decimal::new(-500, 2),
                },
                Trade {
                    opportunity_id: Uuid::from_u128(10),
                    amount: Decimal::new(500, 2),
                },
            ],
            reason: "r".into(),
        }))
        .encode()
        .unwrap(),
        event(EventPayload::RevenueRecorded(RevenueRecorded {
            entry: Box::new(entry),
        }))
        .encode()
        .unwrap(),
        schemas::revenue::workers::ExecutionRequest {
            opportunity_id: Uuid::from_u128(11),
            tenant_id: Uuid::from_u128(12),
            vertical: "saas".into(),
            started_ms: 1_700_000_000_000,
        }
        .encode()
        .unwrap(),
        event(EventPayload::SystemAlert(SystemAlert {
            severity: "warning".into(),
            component: "monetizer".into(),
            message: "m".into(),
            product_id: Some("p".into()),
            variance: Some(0.5),
        }))
        .encode()
        .unwrap(),
    ]
}

/// Every record decoder, on the same bytes; anything decoded encodes again.
fn decode_everything(bytes: &[u8]) {
    if let Ok(c) = Command::decode(bytes) {
        c.encode().expect("a decoded command encodes again");
    }
    for c in Command::decode_all(bytes).into_iter().flatten() {
        c.encode().expect("a decoded packed command encodes again");
    }
    if let Ok(e) = Event::decode(bytes) {
        e.encode().expect("a decoded event encodes again");
    }
    let _ = Reply::decode(bytes);
    let _ = Reply::decode_all(bytes);
    let _ = SettlementRequest::decode(bytes);
    let _ = SettlementResult::decode(bytes);
    if let Ok(x) = schemas::revenue::workers::ExecutionRequest::decode(bytes) {
        x.encode()
            .expect("a decoded execution request encodes again");
    }
    let record = || vec![("k@1.2".to_string(), Some(bytes.to_vec()))];
    let _ = processors::runtime::checkpoint::restore::<processors::agents::machine::BankState, _>(
        record(),
    );
    let _ =
        processors::runtime::checkpoint::restore::<processors::pricing::PricingState, _>(record());
    let _ =
        processors::runtime::checkpoint::restore::<processors::revenue::RevenueState, _>(record());
    let _ = processors::runtime::checkpoint::restore::<processors::portfolio::PortfolioState, _>(
        record(),
    );
    let _ = processors::runtime::checkpoint::restore::<
        processors::opportunities::OpportunityState,
        _,
    >(record());
}

/// Arbitrary JSON, a few levels deep.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,40}".prop_map(Value::String),
        prop_oneof![
            Just("1e400"),
            Just("-0"),
            Just("0.000000000000000000000000000001"),
            Just("79228162514264337593543950336"),
            Just("2026-02-30"),
            Just("2026-12-01T00:00:00Z"),
            Just("USD"),
            Just("payment_received"),
            Just("risk_parity"),
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    "[a-z_]{1,20}",
                    Just("amount".to_string()),
                    Just("currency".to_string()),
                    Just("metadata".to_string()),
                    Just("context".to_string()),
                    Just("constraints".to_string()),
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bodies shaped like the routes' own, with arbitrary values in them.
fn arb_body() -> impl Strategy<Value = Map<String, Value>> {
    let keys = prop_oneof![
        Just("event_type"),
        Just("amount"),
        Just("currency"),
        Just("product_id"),
        Just("customer_id"),
        Just("vertical"),
        Just("occurred_at"),
        Just("metadata"),
        Just("segment_id"),
        Just("context"),
        Just("name"),
        Just("market_data"),
        Just("technical_requirements"),
        Just("allocation"),
        Just("opened_at"),
        Just("strategy"),
        Just("constraints"),
        Just("action"),
        Just("parameters"),
    ];
    prop::collection::btree_map(keys, arb_json(), 0..10)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    #[test]
    fn arbitrary_bytes_are_refused_not_panicked_on(bytes in prop::collection::vec(any::<u8>(), 0..1_500)) {
        decode_everything(&bytes);
    }

    #[test]
    fn mutated_records_are_refused_or_whole(
        sample in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in prop::option::of(any::<prop::sample::Index>()),
        splice in prop::collection::vec(any::<u8>(), 0..40),
        at in any::<prop::sample::Index>(),
    ) {
        let all = samples();
        let mut bytes = all[sample.index(all.len())].clone();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] ^= b;
        }
        let pos = at.index(bytes.len());
        bytes.splice(pos..pos, splice);
        if let Some(c) = cut {
            bytes.truncate(c.index(bytes.len() + 1));
        }
        decode_everything(&bytes);
        // Packed: the mutated record as an item among valid ones.
        let items: Vec<&[u8]> = all.iter().map(Vec::as_slice).chain([bytes.as_slice()]).collect();
        for packed in schemas::packed::pack(&items) {
            decode_everything(&packed);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn api_parsers_refuse_arbitrary_bodies(body in arb_body(), params in prop::collection::vec(("\\PC{0,30}", "\\PC{0,60}"), 0..6)) {
        let now = 1_780_000_000_000;
        let _ = gateway::revenue::ledger::parse_event(&body, now);
        let _ = gateway::revenue::pricing::parse_request(&body, 1_000);
        let _ = gateway::revenue::opportunities::parse_spec(&body);
        let _ = gateway::revenue::agents::parse_control(&body);
        let _ = gateway::revenue::opportunities::parse_list(Uuid::from_u128(1), &params);
        let object = gateway::body::JsonObject(body.clone());
        let _ = gateway::revenue::portfolio::parse_allocation(Some(&object));
        for name in ["amount", "currency", "product_id", "name"] {
            let _ = object.opt_amount(name);
            let _ = object.opt_str(name, 100);
            let _ = object.opt_bool(name);
        }
    }
}

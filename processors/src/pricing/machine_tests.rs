//! The pricing machine, pure: quotes are idempotent and seeded by position,
//! executes and expiries close each quote once and teach its arm.

use rust_decimal::Decimal;
use uuid::Uuid;

use schemas::reply::{Outcome, RejectCode};
use schemas::revenue::pricing::{
    status, CompetitorPrice, ExecuteQuote, ExpireQuotes, Quote, RequestQuote,
};
use schemas::{Command, CommandPayload, EventPayload};

use super::{product_key, PricingMachine, PricingState};
use crate::runtime::machine::{Ids, Machine, Position};

fn at(offset: i64) -> Ids<'static> {
    Ids::new(
        "pricing",
        Position {
            partition: 0,
            offset,
            sub: 0,
        },
        None,
    )
}

fn command(tenant: Uuid, key: Uuid, ts: i64, payload: CommandPayload) -> Command {
    Command {
        id: Uuid::new_v4(),
        agent_id: key,
        user_id: tenant,
        correlation_id: None,
        timestamp_ms: ts,
        payload,
    }
}

fn request(score: f64) -> CommandPayload {
    CommandPayload::RequestQuote(Box::new(RequestQuote {
        product_id: "prod_1".into(),
        segment_id: "smb".into(),
        user_value_score: score,
        competitor_prices: vec![
            CompetitorPrice {
                name: "a".into(),
                price: Decimal::from(99),
            },
            CompetitorPrice {
                name: "b".into(),
                price: Decimal::from(149),
            },
        ],
        usage_history: vec![],
        ttl_ms: 1_000,
    }))
}

fn quoted(step: &crate::runtime::machine::Step) -> Quote {
    match &step.reply {
        Some(Outcome::Quote(q)) => (**q).clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn quotes_execute_and_expire_once_and_teach_their_arm() {
    let m = PricingMachine::default();
    let tenant = Uuid::new_v4();
    let key = product_key(tenant, "prod_1");
    let mut state: Option<PricingState> = None;

    let q1 = command(tenant, key, 10_000, request(0.75));
    let step = m.apply(&mut state, &q1, &at(0));
    let quote = quoted(&step);
    assert_eq!(quote.reference_price, Decimal::from(124));
    assert!(quote.lower <= quote.upper);
    assert!(matches!(
        step.events[0].payload,
        EventPayload::QuoteIssued(_)
    ));
    // Same position, fresh state: the same draw (replay).
    let mut fresh = None;
    assert_eq!(
        quoted(&m.apply(&mut fresh, &q1, &at(0))).recommended_price,
        quote.recommended_price
    );
    // A retry answers the same quote and changes nothing.
    let again = m.apply(&mut state, &q1, &at(1));
    assert!(again.events.is_empty());
    assert_eq!(quoted(&again), quote);
    let size = serde_json::to_vec(state.as_ref().unwrap()).unwrap().len();
    assert!(size < 2_000, "one open quote's state: {size} bytes");

    let exec = |id: Uuid, ts: i64| {
        command(
            tenant,
            key,
            ts,
            CommandPayload::ExecuteQuote(ExecuteQuote {
                quote_id: id,
                discount_percentage: Decimal::from(10),
                reason: "first_time_customer".into(),
            }),
        )
    };
    let done = m.apply(&mut state, &exec(quote.quote_id, 10_500), &at(2));
    let executed = quoted(&done);
    assert_eq!(executed.status, status::EXECUTED);
    assert_eq!(
        executed.final_price,
        Some((quote.recommended_price * Decimal::new(9, 1)).round_dp(2))
    );
    // Learned only at its expiry, like the quotes that do not convert.
    let s = state.as_ref().unwrap();
    assert!(s
        .posteriors
        .get("smb|2")
        .is_none_or(|p| p.alpha[quote.arm as usize] == 1.0));
    // Executing again: the same answer, nothing learned twice.
    let twice = m.apply(&mut state, &exec(quote.quote_id, 10_600), &at(3));
    assert!(twice.events.is_empty());
    assert_eq!(twice.reply, Some(Outcome::Done));
    assert_eq!(
        m.apply(&mut state, &q1, &at(3)).reply,
        Some(Outcome::Done),
        "a closed quote's retried request"
    );
    // Unknown quote: not found.
    let unknown = m.apply(&mut state, &exec(Uuid::new_v4(), 10_600), &at(4));
    assert!(matches!(
        unknown.reply,
        Some(Outcome::Rejected {
            code: RejectCode::NotFound,
            ..
        })
    ));

    // A second quote expires: too late to execute, the tick closes it once.
    let q2 = command(tenant, key, 20_000, request(0.1));
    let second = quoted(&m.apply(&mut state, &q2, &at(5)));
    let late = m.apply(&mut state, &exec(second.quote_id, 21_001), &at(6));
    assert!(matches!(
        late.reply,
        Some(Outcome::Rejected {
            code: RejectCode::Invalid,
            ..
        })
    ));
    assert!(m.wants_broadcast(state.as_ref().unwrap()));
    let tick = |through: i64| {
        command(
            Uuid::nil(),
            Uuid::nil(),
            through,
            CommandPayload::ExpireQuotes(ExpireQuotes { through }),
        )
    };
    assert!(
        m.apply(&mut state, &tick(20_999), &at(7)).events.is_empty(),
        "not yet due"
    );
    // The executed quote's expiry passed: its conversion is learned now,
    // once, without an event.
    assert_eq!(
        state.as_ref().unwrap().posteriors["smb|2"].alpha[quote.arm as usize],
        2.0
    );
    let expired = m.apply(&mut state, &tick(21_500), &at(8));
    let EventPayload::QuoteExpired(c) = &expired.events[0].payload else {
        panic!()
    };
    assert_eq!(
        (c.quote.status.as_str(), c.quote.closed_ms),
        (status::EXPIRED, Some(21_000))
    );
    assert_eq!(
        state.as_ref().unwrap().posteriors["smb|0"].beta[second.arm as usize],
        2.0
    );
    assert!(
        m.apply(&mut state, &tick(30_000), &at(9)).events.is_empty(),
        "closed once"
    );
    assert!(!m.wants_broadcast(state.as_ref().unwrap()));
    let after = m.apply(&mut state, &exec(second.quote_id, 30_001), &at(10));
    assert!(matches!(
        after.reply,
        Some(Outcome::Rejected {
            code: RejectCode::Invalid,
            ..
        })
    ));

    // Another tenant's command on this key finds nothing.
    let foreign = command(
        Uuid::new_v4(),
        key,
        10_700,
        CommandPayload::ExecuteQuote(ExecuteQuote {
            quote_id: quote.quote_id,
            discount_percentage: Decimal::ZERO,
            reason: String::new(),
        }),
    );
    assert!(matches!(
        m.apply(&mut state, &foreign, &at(11)).reply,
        Some(Outcome::Rejected {
            code: RejectCode::NotFound,
            ..
        })
    ));
}

#[test]
fn dispersed_prices_raise_one_alert_per_crossing() {
    let m = PricingMachine {
        dispersion_alert: 0.05,
    };
    let tenant = Uuid::new_v4();
    let key = product_key(tenant, "prod_1");
    let mut state: Option<PricingState> = None;
    let mut alerts = vec![];
    // A fresh posterior explores every arm: prices from 0.5x to 1.3x disperse.
    for i in 0..60 {
        let step = m.apply(
            &mut state,
            &command(tenant, key, 1_000 + i, request(0.5)),
            &at(i),
        );
        alerts.extend(step.events.into_iter().filter_map(|e| match e.payload {
            EventPayload::SystemAlert(a) => Some(a),
            _ => None,
        }));
    }
    assert_eq!(alerts.len(), 1, "once per crossing: {alerts:?}");
    let a = &alerts[0];
    assert_eq!(
        (a.component.as_str(), a.product_id.as_deref()),
        ("monetizer", Some("prod_1"))
    );
    assert!(a.variance.unwrap() > 0.05);
    assert!(state.unwrap().alerting);
    // The default threshold is not crossed by the same prices twice over.
    assert!(super::dispersion(&[Decimal::from(10), Decimal::from(10)].into()) == 0.0);
}

#[test]
fn a_products_state_stays_within_one_record() {
    let m = PricingMachine::default();
    let tenant = Uuid::new_v4();
    let key = product_key(tenant, "prod_1");
    let mut state: Option<PricingState> = None;
    for i in 0..(super::OPEN_MAX as i64 + 5) {
        let step = m.apply(
            &mut state,
            &command(tenant, key, 1_000 + i, request(0.5)),
            &at(i),
        );
        if i >= super::OPEN_MAX as i64 {
            assert!(matches!(
                step.reply,
                Some(Outcome::Rejected {
                    code: RejectCode::Invalid,
                    ..
                })
            ));
        }
    }
    let size = serde_json::to_vec(state.as_ref().unwrap()).unwrap().len();
    assert!(
        size < 900_000,
        "a full product's checkpoint: {size} bytes (the broker's default limit is 1 MB)"
    );
    // Close them all, then fill the closed memory and the open set again.
    let tick = command(
        Uuid::nil(),
        Uuid::nil(),
        1_000_000,
        CommandPayload::ExpireQuotes(ExpireQuotes { through: 1_000_000 }),
    );
    m.apply(&mut state, &tick, &at(5_000));
    for i in 0..(super::OPEN_MAX as i64) {
        m.apply(
            &mut state,
            &command(tenant, key, 2_000_000 + i, request(0.5)),
            &at(6_000 + i),
        );
    }
    let size = serde_json::to_vec(state.as_ref().unwrap()).unwrap().len();
    assert!(
        size < 900_000,
        "a full product's checkpoint: {size} bytes (the broker's default limit is 1 MB)"
    );
}

//! Valuation by hand: capital plus the product's revenue since opening,
//! split by capital between positions on one product; returns net of flows.

use std::collections::HashMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::*;

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
}

#[test]
fn values_follow_revenue_split_by_capital_and_returns_exclude_flows() {
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let holdings = vec![
        Holding {
            opportunity_id: a,
            product_id: "p".into(),
            opened: day(1),
        },
        Holding {
            opportunity_id: b,
            product_id: "p".into(),
            opened: day(2),
        },
    ];
    let flows = vec![
        Flow {
            opportunity_id: a,
            day: day(1),
            amount: Decimal::from(100),
        },
        Flow {
            opportunity_id: b,
            day: day(2),
            amount: Decimal::from(300),
        },
    ];
    let revenue: HashMap<(String, NaiveDate), Decimal> = [
        (("p".to_string(), day(1)), Decimal::from(10)),
        (("p".to_string(), day(2)), Decimal::from(40)),
        (("q".to_string(), day(2)), Decimal::from(999)),
    ]
    .into_iter()
    .collect();
    let v = valuation(&holdings, &flows, &revenue, day(3));
    assert_eq!(v.dates, vec![day(1), day(2), day(3)]);
    // Day 1: a alone earns 10. Day 2: 40 split 100:300 → 10 and 30.
    assert_eq!(
        v.positions[0].values,
        vec![Decimal::from(110), Decimal::from(120), Decimal::from(120)]
    );
    assert_eq!(
        v.positions[1].values,
        vec![Decimal::ZERO, Decimal::from(330), Decimal::from(330)]
    );
    assert_eq!(
        v.portfolio.values,
        vec![Decimal::from(110), Decimal::from(450), Decimal::from(450)]
    );
    // The portfolio's day-2 return leaves out b's 300 coming in: 150/110 − 1.
    let r = v.portfolio.returns[1].unwrap();
    assert!((r - (150.0 / 110.0 - 1.0)).abs() < 1e-12);
    assert_eq!(
        v.positions[1].returns[1], None,
        "no return on the first day held"
    );
    let s = status(
        &holdings,
        &[Decimal::from(100), Decimal::from(300)],
        &v,
        0.0,
    );
    assert_eq!(s.portfolio_value, Decimal::from(450));
    assert_eq!(s.positions[1].unrealized_pnl, Decimal::from(30));
    assert_eq!(s.performance_metrics.total_return, Some(0.125));
}

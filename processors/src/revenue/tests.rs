//! The revenue machine, pure: the ledger balances per currency, the hash
//! chain verifies and catches any altered, removed or reordered entry,
//! repeats post nothing, milestones fire once a month, and analytics from
//! the daily aggregates equal an independent recomputation from the raw
//! events for every granularity and grouping.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{Datelike, NaiveDate};
use proptest::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

use schemas::reply::Outcome;
use schemas::revenue::analytics::{
    self, AnalyticsQuery, AnalyticsView, Breakdown, DailyRow, Granularity, GroupBy, Opening,
    SeriesPoint, Share, Summary,
};
use schemas::revenue::ledger::{
    ChainVerifier, LedgerEntry, RecordRevenue, RevenueKind, SetRevenueTarget, RECEIVABLES,
};
use schemas::revenue::ledger_key;
use schemas::{Command, CommandPayload, EventPayload};

use super::{RevenueMachine, RevenueState};
use crate::runtime::machine::{Ids, Machine, Position};

const DAY_MS: i64 = 86_400_000;
/// 2026-01-01T00:00:00Z.
const EPOCH_2026: i64 = 1_767_225_600_000;

fn at(offset: i64) -> Ids<'static> {
    Ids::new(
        "revenue",
        Position {
            partition: 0,
            offset,
            sub: 0,
        },
        None,
    )
}

fn tenant() -> Uuid {
    Uuid::from_u128(7)
}

fn command(id: Uuid, payload: CommandPayload) -> Command {
    Command {
        id,
        agent_id: ledger_key(tenant()),
        user_id: tenant(),
        correlation_id: None,
        timestamp_ms: EPOCH_2026 + 200 * DAY_MS,
        payload,
    }
}

#[derive(Debug, Clone)]
struct Raw {
    kind: RevenueKind,
    amount: Decimal,
    currency: &'static str,
    product: String,
    customer: String,
    vertical: String,
    segment: String,
    day: i64,
    invoice: Option<String>,
}

impl Raw {
    fn record(&self) -> RecordRevenue {
        RecordRevenue {
            event_type: self.kind.as_str().into(),
            amount: self.amount,
            currency: self.currency.into(),
            product_id: self.product.clone(),
            customer_id: self.customer.clone(),
            vertical: self.vertical.clone(),
            customer_segment: self.segment.clone(),
            occurred_ms: EPOCH_2026 + self.day * DAY_MS + 3_600_000,
            natural_key: self
                .invoice
                .as_ref()
                .map(|i| format!("{}:{i}", self.kind.as_str())),
            metadata: "{}".into(),
        }
    }

    fn date(&self) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + chrono::Days::new(self.day as u64)
    }
}

impl Raw {
    /// An event of customer `c` of product `p` (saas, smb) on `day`.
    fn of(kind: RevenueKind, amount: Decimal, currency: &'static str, day: i64) -> Raw {
        Raw {
            kind,
            amount,
            currency,
            product: "p".into(),
            customer: "c".into(),
            vertical: "saas".into(),
            segment: "smb".into(),
            day,
            invoice: None,
        }
    }

    fn command(&self, id: u128) -> Command {
        command(
            Uuid::from_u128(id),
            CommandPayload::RecordRevenue(Box::new(self.record())),
        )
    }
}

fn arb_raw() -> impl Strategy<Value = Raw> {
    (
        0usize..7,
        1i64..50_000,
        prop_oneof![Just("USD"), Just("JPY")],
        0u8..3,
        0u8..5,
        0u8..2,
        0u8..2,
        0i64..120,
        prop::option::of(0u8..6),
    )
        .prop_map(|(k, cents, currency, p, c, v, s, day, inv)| {
            let kind = RevenueKind::ALL[k];
            let amount = if currency == "JPY" {
                Decimal::from(cents)
            } else {
                Decimal::new(cents, 2)
            };
            Raw {
                kind,
                amount,
                currency,
                product: format!("prod_{p}"),
                customer: format!("cust_{c}"),
                vertical: ["saas", "fintech"][v as usize].into(),
                segment: ["smb", "enterprise"][s as usize].into(),
                day,
                invoice: inv.map(|i| format!("inv_{i}")),
            }
        })
}

/// Runs the events through the machine; the entries posted.
fn post(raws: &[Raw]) -> Vec<LedgerEntry> {
    let machine = RevenueMachine;
    let mut state: Option<RevenueState> = None;
    let mut entries = vec![];
    for (i, r) in raws.iter().enumerate() {
        let c = command(
            Uuid::from_u128(1_000 + i as u128),
            CommandPayload::RecordRevenue(Box::new(r.record())),
        );
        let step = machine.apply(&mut state, &c, &at(i as i64));
        for e in step.events {
            if let EventPayload::RevenueRecorded(rec) = e.payload {
                entries.push(*rec.entry);
            }
        }
    }
    entries
}

/// The sink's daily aggregates of one currency.
fn daily_rows(entries: &[LedgerEntry], currency: &str) -> Vec<DailyRow> {
    analytics::rows_of(&analytics::aggregate(entries), tenant(), currency)
}

fn opening_of(rows: &[DailyRow], q: &AnalyticsQuery) -> Opening {
    let (ps, pe) = q.previous_range();
    let mut o = Opening::default();
    for r in rows {
        if r.day < q.start {
            o.mrr += r.movement.mrr_change();
            o.subscribers += r.movement.subscriber_change();
        }
        if r.day >= ps && r.day <= pe {
            o.previous_revenue += r.movement.revenue();
        }
    }
    o
}

/// Deduplicates like the ledger: by natural key (event type + invoice).
fn unique(raws: &[Raw]) -> Vec<Raw> {
    let mut seen = BTreeSet::new();
    raws.iter()
        .filter(|r| {
            r.invoice
                .as_ref()
                .is_none_or(|i| seen.insert(format!("{}:{i}", r.kind.as_str())))
        })
        .cloned()
        .collect()
}

/// The independent reference: from the raw events, in order, every figure
/// of the analytics answer, computed directly.
fn reference(raws: &[Raw], q: &AnalyticsQuery) -> AnalyticsView {
    #[derive(Default, Clone)]
    struct Sub {
        mrr: Decimal,
        live: bool,
    }
    struct Tagged<'a> {
        raw: &'a Raw,
        signed: Decimal,
        new: i64,
        churned: i64,
        expansion: Decimal,
        mrr_delta: Decimal,
        subs_delta: i64,
        contraction: Decimal,
        churned_mrr: Decimal,
    }
    let mut subs: HashMap<String, Sub> = HashMap::new();
    let mut tagged = vec![];
    for raw in raws {
        let signed = if raw.kind == RevenueKind::Refund {
            -raw.amount
        } else {
            raw.amount
        };
        let mut t = Tagged {
            raw,
            signed,
            new: 0,
            churned: 0,
            expansion: Decimal::ZERO,
            mrr_delta: Decimal::ZERO,
            subs_delta: 0,
            contraction: Decimal::ZERO,
            churned_mrr: Decimal::ZERO,
        };
        // Only customers who ever subscribed are remembered.
        let key = format!("{}/{}", raw.currency, raw.customer);
        let known = subs.contains_key(&key);
        let mut scratch = Sub::default();
        let sub = if raw.kind.is_subscription()
            && (known || raw.kind != RevenueKind::SubscriptionCancelled)
        {
            subs.entry(key).or_default()
        } else {
            &mut scratch
        };
        match raw.kind {
            RevenueKind::PaymentReceived | RevenueKind::Refund => {}
            RevenueKind::SubscriptionCancelled => {
                if sub.live {
                    t.churned = 1;
                    t.subs_delta = -1;
                    t.churned_mrr = sub.mrr;
                    t.mrr_delta = -sub.mrr;
                    *sub = Sub {
                        mrr: Decimal::ZERO,
                        live: false,
                    };
                }
            }
            _ => {
                if sub.live {
                    let d = raw.amount - sub.mrr;
                    t.mrr_delta = d;
                    if d > Decimal::ZERO {
                        t.expansion = d;
                    } else {
                        t.contraction = -d;
                    }
                } else {
                    t.new = i64::from(!known);
                    t.subs_delta = 1;
                    t.mrr_delta = raw.amount;
                }
                *sub = Sub {
                    mrr: raw.amount,
                    live: true,
                };
            }
        }
        tagged.push(t);
    }
    let cur: Vec<&Tagged> = tagged
        .iter()
        .filter(|t| t.raw.currency == q.currency)
        .collect();
    let inside: Vec<&&Tagged> = cur
        .iter()
        .filter(|t| t.raw.date() >= q.start && t.raw.date() <= q.end)
        .collect();
    let before = |t: &&&Tagged| t.raw.date() < q.start;
    let mrr_start: Decimal = cur.iter().filter(|t| before(t)).map(|t| t.mrr_delta).sum();
    let subs_start: i64 = cur.iter().filter(|t| before(t)).map(|t| t.subs_delta).sum();
    let len = (q.end - q.start).num_days() + 1;
    let prev: Decimal = cur
        .iter()
        .filter(|t| {
            let d = t.raw.date();
            d < q.start && (q.start - d).num_days() <= len
        })
        .map(|t| t.signed)
        .sum();
    let total: Decimal = inside.iter().map(|t| t.signed).sum();
    let sum_if = |f: &dyn Fn(&Tagged) -> bool| -> Decimal {
        inside
            .iter()
            .filter(|t| f(t))
            .map(|t| t.raw.amount)
            .sum::<Decimal>()
    };
    let recurring = sum_if(&|t| t.raw.kind.is_subscription());
    let one_time = sum_if(&|t| t.raw.kind == RevenueKind::PaymentReceived);
    let refunds = sum_if(&|t| t.raw.kind == RevenueKind::Refund);
    let expansion: Decimal = inside.iter().map(|t| t.expansion).sum();
    let contraction: Decimal = inside.iter().map(|t| t.contraction).sum();
    let churned_mrr: Decimal = inside.iter().map(|t| t.churned_mrr).sum();
    let churned: i64 = inside.iter().map(|t| t.churned).sum();
    let mrr_change: Decimal = inside.iter().map(|t| t.mrr_delta).sum();
    let div = |a: Decimal, b: Decimal| {
        use rust_decimal::prelude::ToPrimitive;
        (b > Decimal::ZERO).then(|| (a / b).round_dp(4).to_f64().unwrap() + 0.0)
    };
    // Periods, by calendar arithmetic of their own.
    let bucket = |d: NaiveDate| match q.granularity {
        Granularity::Day => d,
        Granularity::Week => {
            let w = d.iso_week();
            NaiveDate::from_isoywd_opt(w.year(), w.week(), chrono::Weekday::Mon).unwrap()
        }
        Granularity::Month => NaiveDate::from_ymd_opt(d.year(), d.month(), 1).unwrap(),
    };
    let mut periods = BTreeSet::new();
    let mut d = q.start;
    while d <= q.end {
        periods.insert(bucket(d));
        d = d.succ_opt().unwrap();
    }
    let group_of = |r: &Raw, by: GroupBy| match by {
        GroupBy::Product => r.product.clone(),
        GroupBy::Vertical => r.vertical.clone(),
        GroupBy::CustomerSegment => r.segment.clone(),
    };
    let groups: Vec<Option<String>> = match q.group_by {
        None => vec![None],
        Some(by) => inside
            .iter()
            .map(|t| group_of(t.raw, by))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(Some)
            .collect(),
    };
    let mut time_series = vec![];
    for p in &periods {
        for g in &groups {
            let mine: Vec<&&&Tagged> = inside
                .iter()
                .filter(|t| {
                    bucket(t.raw.date()) == *p
                        && g.as_ref()
                            .is_none_or(|g| group_of(t.raw, q.group_by.unwrap()) == *g)
                })
                .collect();
            time_series.push(SeriesPoint {
                date: p.to_string(),
                group: g.clone(),
                revenue: mine.iter().map(|t| t.signed).sum(),
                new_customers: mine.iter().map(|t| t.new).sum(),
                churned_customers: mine.iter().map(|t| t.churned).sum(),
                expansion_revenue: mine.iter().map(|t| t.expansion).sum(),
            });
        }
    }
    let shares = |by: GroupBy| {
        let mut m: BTreeMap<String, Decimal> = BTreeMap::new();
        for t in &inside {
            *m.entry(group_of(t.raw, by)).or_default() += t.signed;
        }
        let mut v: Vec<Share> = m
            .into_iter()
            .map(|(k, revenue)| Share {
                product_id: (by == GroupBy::Product).then(|| k.clone()),
                vertical: (by == GroupBy::Vertical).then(|| k.clone()),
                customer_segment: (by == GroupBy::CustomerSegment).then(|| k.clone()),
                revenue,
                percentage: div(revenue, total).unwrap_or(0.0),
            })
            .collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.revenue));
        v
    };
    AnalyticsView {
        currency: q.currency.clone(),
        start_date: q.start.to_string(),
        end_date: q.end.to_string(),
        granularity: q.granularity.as_str().into(),
        group_by: q.group_by.map(|g| g.as_str().into()),
        summary: Summary {
            total_revenue: total,
            recurring_revenue: recurring,
            one_time_revenue: one_time,
            refunds,
            growth_rate: div(total - prev, prev.abs()),
            churn_rate: div(Decimal::from(churned), Decimal::from(subs_start)),
            net_revenue_retention: div(
                mrr_start + expansion - contraction - churned_mrr,
                mrr_start,
            ),
            mrr_start,
            mrr_end: mrr_start + mrr_change,
        },
        time_series,
        breakdown: Breakdown {
            by_product: shares(GroupBy::Product),
            by_vertical: shares(GroupBy::Vertical),
            by_customer_segment: shares(GroupBy::CustomerSegment),
        },
    }
}

/// Account balances (debits positive) per currency.
fn balances(entries: &[LedgerEntry]) -> BTreeMap<(String, String), Decimal> {
    let mut b = BTreeMap::new();
    for e in entries {
        *b.entry((e.currency.clone(), e.debit_account.clone()))
            .or_default() += e.amount;
        *b.entry((e.currency.clone(), e.credit_account.clone()))
            .or_default() -= e.amount;
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_ledger_balances_per_currency(raws in prop::collection::vec(arb_raw(), 1..80)) {
        let entries = post(&raws);
        let b = balances(&entries);
        for currency in ["USD", "JPY"] {
            let mine: Vec<_> = entries.iter().filter(|e| e.currency == currency).collect();
            let sum: Decimal = b.iter().filter(|((c, _), _)| c == currency).map(|(_, v)| *v).sum();
            prop_assert_eq!(sum, Decimal::ZERO);
            // Receivables hold exactly the net revenue.
            let net: Decimal = mine.iter().map(|e| e.movement.revenue()).sum();
            let ar = b.get(&(currency.to_string(), RECEIVABLES.to_string())).copied().unwrap_or_default();
            prop_assert_eq!(ar, net);
            let scale = if currency == "JPY" { 0 } else { 2 };
            for e in mine {
                prop_assert!(e.amount.scale() <= scale);
            }
        }
    }

    #[test]
    fn the_chain_verifies_and_catches_any_tampering(
        raws in prop::collection::vec(arb_raw(), 2..40),
        pick in any::<prop::sample::Index>(),
        other in any::<prop::sample::Index>(),
        field in 0usize..6,
    ) {
        let entries = post(&raws);
        prop_assume!(entries.len() >= 2);
        let verify = |es: &[LedgerEntry]| {
            let mut v = ChainVerifier::default();
            es.iter().try_for_each(|e| v.push(e)).map(|_| v.checked())
        };
        prop_assert_eq!(verify(&entries), Ok(entries.len() as i64));
        let i = pick.index(entries.len());
        // Altered: any posted field.
        let mut altered = entries.clone();
        let e = &mut altered[i];
        match field {
            0 => e.amount += Decimal::new(1, 2),
            1 => e.customer_id.push('x'),
            2 => e.occurred_ms += 1,
            3 => e.credit_account = "revenue_other".into(),
            4 => e.metadata = "{\"x\":1}".into(),
            _ => {
                e.event_type = if e.event_type == "refund" { "payment_received" } else { "refund" }.into()
            }
        }
        prop_assert!(verify(&altered).is_err());
        // Removed.
        let mut removed = entries.clone();
        removed.remove(i);
        if i < entries.len() - 1 {
            prop_assert!(verify(&removed).is_err());
        }
        // Reordered.
        let j = other.index(entries.len());
        prop_assume!(i != j);
        let mut swapped = entries.clone();
        swapped.swap(i, j);
        prop_assert!(verify(&swapped).is_err());
    }

    #[test]
    fn analytics_from_aggregates_equal_a_recomputation_from_raw_events(
        raws in prop::collection::vec(arb_raw(), 1..120),
        from in 0i64..120,
        len in 1i64..90,
        granularity in prop_oneof![Just(Granularity::Day), Just(Granularity::Week), Just(Granularity::Month)],
        group_by in prop_oneof![Just(None), Just(Some(GroupBy::Product)), Just(Some(GroupBy::Vertical)), Just(Some(GroupBy::CustomerSegment))],
        currency in prop_oneof![Just("USD"), Just("JPY")],
    ) {
        let entries = post(&raws);
        let start = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + chrono::Days::new(from as u64);
        let q = AnalyticsQuery {
            currency: currency.into(),
            start,
            end: start + chrono::Days::new(len as u64 - 1),
            granularity,
            group_by,
        };
        let rows = daily_rows(&entries, currency);
        let got = analytics::compute(&q, &opening_of(&rows, &q), &rows).unwrap();
        prop_assert_eq!(got, reference(&unique(&raws), &q));
    }
}

#[test]
fn a_repeat_by_id_or_natural_key_posts_nothing() {
    let machine = RevenueMachine;
    let mut state = None;
    let raw = Raw {
        invoice: Some("inv_1".into()),
        ..Raw::of(
            RevenueKind::PaymentReceived,
            Decimal::new(7900, 2),
            "USD",
            3,
        )
    };
    let c = raw.command(1);
    let first = machine.apply(&mut state, &c, &at(0));
    let Some(Outcome::RevenueEntry(e)) = first.reply else {
        panic!("expected an entry, got {:?}", first.reply)
    };
    assert_eq!(e.sequence, 1);
    assert_eq!(e.debit_account, "accounts_receivable");
    assert_eq!(e.credit_account, "revenue_saas");
    // The same command again, and another command with the same invoice.
    let again = machine.apply(&mut state, &c, &at(1));
    assert!(again.events.is_empty());
    assert_eq!(again.reply, Some(Outcome::Done));
    let dup = machine.apply(&mut state, &raw.command(2), &at(2));
    assert!(dup.events.is_empty());
    assert_eq!(state.as_ref().unwrap().sequence, 1);
    // A refund of the same invoice is another event.
    let refund = Raw {
        kind: RevenueKind::Refund,
        ..raw
    };
    let step = machine.apply(&mut state, &refund.command(3), &at(3));
    let Some(Outcome::RevenueEntry(e)) = step.reply else {
        panic!("expected the refund's entry")
    };
    assert_eq!(
        (e.debit_account.as_str(), e.credit_account.as_str()),
        ("refunds_saas", "accounts_receivable")
    );
    assert_eq!(e.sequence, 2);
}

#[test]
fn a_milestone_fires_once_per_month_and_currency() {
    let machine = RevenueMachine;
    let mut state = None;
    let target = command(
        Uuid::from_u128(1),
        CommandPayload::SetRevenueTarget(SetRevenueTarget {
            currency: "USD".into(),
            monthly_target: Decimal::from(100),
        }),
    );
    machine.apply(&mut state, &target, &at(0));
    let mut milestones = vec![];
    for (i, (day, cents)) in [(0, 6_000), (1, 6_000), (2, 6_000), (40, 12_000), (41, 100)]
        .into_iter()
        .enumerate()
    {
        let raw = Raw::of(
            RevenueKind::PaymentReceived,
            Decimal::new(cents, 2),
            "USD",
            day,
        );
        for e in machine
            .apply(&mut state, &raw.command(10 + i as u128), &at(1 + i as i64))
            .events
        {
            if let EventPayload::RevenueMilestone(m) = e.payload {
                milestones.push((m.month, m.achieved));
            }
        }
    }
    assert_eq!(
        milestones,
        vec![
            ("2026-01".to_string(), Decimal::from(120)),
            ("2026-02".to_string(), Decimal::from(120)),
        ]
    );
}

#[test]
fn invalid_amounts_and_currencies_are_refused_by_the_machine() {
    let machine = RevenueMachine;
    let mut state = None;
    for (i, (amount, currency, kind)) in [
        (Decimal::new(1, 3), "USD", RevenueKind::PaymentReceived),
        (Decimal::new(5, 1), "JPY", RevenueKind::PaymentReceived),
        (Decimal::ZERO, "USD", RevenueKind::PaymentReceived),
        (Decimal::from(-1), "USD", RevenueKind::Refund),
        (Decimal::ONE, "XAU", RevenueKind::PaymentReceived),
        (Decimal::ONE, "ZZZ", RevenueKind::PaymentReceived),
    ]
    .into_iter()
    .enumerate()
    {
        let raw = Raw::of(kind, amount, currency, 0);
        let step = machine.apply(&mut state, &raw.command(i as u128), &at(0));
        assert!(step.events.is_empty(), "{amount} {currency} was posted");
        assert!(matches!(step.reply, Some(Outcome::Rejected { .. })));
    }
    // Zero is a valid final charge of a cancellation.
    let raw = Raw::of(RevenueKind::SubscriptionCancelled, Decimal::ZERO, "USD", 0);
    assert_eq!(
        machine
            .apply(&mut state, &raw.command(99), &at(9))
            .events
            .len(),
        1
    );
}

//! The opportunities machine and its scoring model, pure: lifecycle,
//! idempotency, tenancy; scores bounded, deterministic and monotone where
//! `docs/revenue.md` says so.

use proptest::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

use schemas::reply::{Outcome, RejectCode};
use schemas::revenue::opportunity::{
    status, CreateOpportunity, ExecuteOpportunity, MarketData, OpportunitySpec,
    TechnicalRequirements, COMPLEXITIES,
};
use schemas::{Command, CommandPayload, EventPayload};

use super::scoring::{self, score};
use super::{OpportunityMachine, OpportunityState};
use crate::runtime::machine::{Ids, Machine, Position};

fn spec(
    market: i64,
    growth: f64,
    competitors: i64,
    complexity: &str,
    ttm: i64,
    experts: usize,
) -> OpportunitySpec {
    OpportunitySpec {
        name: "Blockchain Payment Gateway".into(),
        vertical: "fintech".into(),
        market_data: MarketData {
            total_market_size: Decimal::from(market),
            growth_rate: growth,
            competition_count: competitors,
        },
        technical_requirements: TechnicalRequirements {
            complexity: complexity.into(),
            time_to_market: ttm,
            required_expertise: (0..experts).map(|i| format!("skill{i}")).collect(),
        },
        target_customers: vec!["smb".into()],
        pricing_model: "subscription".into(),
    }
}

fn command(id: Uuid, key: Uuid, tenant: Uuid, ts: i64, payload: CommandPayload) -> Command {
    Command {
        id,
        agent_id: key,
        user_id: tenant,
        correlation_id: None,
        timestamp_ms: ts,
        payload,
    }
}

fn at(offset: i64) -> Position {
    Position {
        partition: 0,
        offset,
        sub: 0,
    }
}

#[test]
fn lifecycle_pending_active_completed_through_the_log() {
    let m = OpportunityMachine;
    let (key, tenant) = (Uuid::new_v4(), Uuid::new_v4());
    let mut state: Option<OpportunityState> = None;
    let create = command(
        Uuid::new_v4(),
        key,
        tenant,
        1_000,
        CommandPayload::CreateOpportunity(Box::new(CreateOpportunity {
            spec: spec(10_000_000_000, 0.3, 15, "very_high", 90, 3),
        })),
    );
    let step = m.apply(&mut state, &create, &Ids::new("t", at(0), None));
    assert!(matches!(
        &step.events[0].payload,
        EventPayload::OpportunityCreated(_)
    ));
    let Some(Outcome::Opportunity(o)) = &step.reply else {
        panic!("{step:?}")
    };
    assert_eq!((o.status.as_str(), o.version), (status::PENDING, 1));
    // Retried create: the same answer, nothing new.
    let again = m.apply(&mut state, &create, &Ids::new("t", at(1), None));
    assert!(again.events.is_empty());
    assert_eq!(again.reply, step.reply);
    // Another create on the same key conflicts.
    let other = Command {
        id: Uuid::new_v4(),
        ..create.clone()
    };
    let step = m.apply(&mut state, &other, &Ids::new("t", at(2), None));
    assert!(matches!(
        step.reply,
        Some(Outcome::Rejected {
            code: RejectCode::Conflict,
            ..
        })
    ));

    let execute = command(
        Uuid::new_v4(),
        key,
        tenant,
        2_000,
        CommandPayload::ExecuteOpportunity(ExecuteOpportunity {
            opportunity_id: key,
        }),
    );
    // Another tenant cannot see it.
    let foreign = Command {
        user_id: Uuid::new_v4(),
        ..execute.clone()
    };
    let step = m.apply(&mut state, &foreign, &Ids::new("t", at(3), None));
    assert!(matches!(
        step.reply,
        Some(Outcome::Rejected {
            code: RejectCode::NotFound,
            ..
        })
    ));
    let step = m.apply(&mut state, &execute, &Ids::new("t", at(4), None));
    assert!(matches!(
        &step.events[0].payload,
        EventPayload::OpportunityActivated(_)
    ));
    assert!(step.commands.is_empty());
    assert_eq!(step.executions.len(), 1);
    let work = step.executions[0].clone();
    assert_eq!(
        (work.opportunity_id, work.tenant_id, work.started_ms),
        (key, tenant, 2_000)
    );
    let complete = work.completion(2_300);
    assert_eq!(complete.agent_id, key);
    assert_eq!(
        complete.id,
        work.completion(9_999).id,
        "a retry is the same command"
    );
    assert_eq!(state.as_ref().unwrap().opportunity.status, status::ACTIVE);
    // Executing again changes nothing.
    let step = m.apply(&mut state, &execute, &Ids::new("t", at(5), None));
    assert!(step.events.is_empty() && step.executions.is_empty());

    let ids = Ids::new("t", at(6), None).at_record_time(Some(2_345));
    let step = m.apply(&mut state, &complete, &ids);
    let EventPayload::OpportunityExecuted(done) = &step.events[0].payload else {
        panic!()
    };
    let x = done.opportunity.execution.as_ref().unwrap();
    assert_eq!(
        (x.execution_time_ms, x.result.as_deref()),
        (Some(345), Some("success"))
    );
    assert_eq!(
        (done.opportunity.status.as_str(), done.opportunity.version),
        (status::COMPLETED, 3)
    );
    // A replayed completion is nothing.
    assert_eq!(m.apply(&mut state, &complete, &ids), Default::default());
}

#[test]
fn the_seed_example_scores_sensibly() {
    let o = score(
        &spec(10_000_000_000, 0.30, 15, "very_high", 90, 3),
        Uuid::nil(),
        Uuid::nil(),
        0,
    );
    assert_eq!(o.metadata.competition_level, "medium");
    assert_eq!(
        o.economic_analysis.serviceable_addressable_market,
        Decimal::from(1_000_000_000)
    );
    // SOM = 1e9 × 0.2 × 10/25 = 80M.
    assert_eq!(
        o.economic_analysis.serviceable_obtainable_market,
        Decimal::from(80_000_000)
    );
    assert_eq!(o.execution_plan.len(), 3);
    assert!(
        o.expected_irr > 1.0,
        "a $80M obtainable market repays a small build fast: {o:?}"
    );
    assert!(
        o.payback_months >= 1 && o.payback_months <= 12,
        "{}",
        o.payback_months
    );
}

fn arb_spec() -> impl Strategy<Value = OpportunitySpec> {
    (
        0i64..1_000_000_000_000,
        -0.5f64..2.0,
        0i64..500,
        0usize..4,
        1i64..1_000,
        0usize..10,
    )
        .prop_map(|(m, g, c, k, t, e)| spec(m, g, c, COMPLEXITIES[k], t, e))
}

proptest! {
    #[test]
    fn scores_are_bounded_and_deterministic(s in arb_spec()) {
        let a = score(&s, Uuid::nil(), Uuid::nil(), 7);
        let b = score(&s, Uuid::nil(), Uuid::nil(), 7);
        prop_assert_eq!(&a, &b);
        for x in [a.score, a.moat_score, a.risk_score, a.scalability_score] {
            prop_assert!((0.0..=1.0).contains(&x), "{x}");
        }
        prop_assert!((-0.99..=10.0).contains(&a.expected_irr));
        prop_assert!((1..=scoring::PAYBACK_MONTHS_MAX).contains(&a.payback_months));
        prop_assert!(a.economic_analysis.serviceable_obtainable_market <= a.economic_analysis.serviceable_addressable_market);
        prop_assert!(a.economic_analysis.serviceable_addressable_market <= a.economic_analysis.total_addressable_market);
    }

    #[test]
    fn a_bigger_or_faster_growing_market_never_scores_lower(s in arb_spec(), more in 1i64..1_000_000_000, faster in 0.0f64..1.0) {
        let base = score(&s, Uuid::nil(), Uuid::nil(), 0);
        let mut bigger = s.clone();
        bigger.market_data.total_market_size += Decimal::from(more);
        prop_assert!(score(&bigger, Uuid::nil(), Uuid::nil(), 0).score >= base.score);
        prop_assert!(score(&bigger, Uuid::nil(), Uuid::nil(), 0).expected_irr >= base.expected_irr);
        let mut growing = s.clone();
        growing.market_data.growth_rate += faster;
        prop_assert!(score(&growing, Uuid::nil(), Uuid::nil(), 0).score >= base.score);
    }

    #[test]
    fn more_competitors_or_a_later_launch_never_lower_risk(s in arb_spec(), more in 1i64..100, later in 1i64..400) {
        let base = score(&s, Uuid::nil(), Uuid::nil(), 0);
        let mut crowded = s.clone();
        crowded.market_data.competition_count += more;
        let crowded = score(&crowded, Uuid::nil(), Uuid::nil(), 0);
        prop_assert!(crowded.risk_score >= base.risk_score);
        prop_assert!(crowded.moat_score <= base.moat_score);
        let mut slow = s.clone();
        slow.technical_requirements.time_to_market += later;
        prop_assert!(score(&slow, Uuid::nil(), Uuid::nil(), 0).risk_score >= base.risk_score);
    }
}

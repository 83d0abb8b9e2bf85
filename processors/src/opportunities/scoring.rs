//! The opportunity scoring model: pure, deterministic, explainable. Each
//! figure is a short formula of the client's inputs (`docs/revenue.md`
//! gives them with their reasons); scores are in [0, 1] and rounded to 4
//! places, money is `Decimal` rounded to cents.
//!
//! Inputs: total market size `M` (USD/yr), growth `g`, competitors `c`,
//! complexity `k` (low 0.25, medium 0.5, high 0.75, very_high 1.0), time to
//! market `t` (days), expertise areas `e`, vertical.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use uuid::Uuid;

use schemas::revenue::opportunity::{
    status, EconomicAnalysis, Opportunity, OpportunityMetadata, OpportunitySpec, Phase, Resources,
};

/// Cost of one person-day, USD (a blended rate).
pub const PERSON_DAY_USD: i64 = 600;
/// Serviceable share of the addressable market.
pub const SAM_SHARE: Decimal = Decimal::from_parts(10, 0, 0, false, 2); // 0.10
/// Share of the serviceable market a sole entrant can obtain.
pub const SOM_SHARE_ALONE: Decimal = Decimal::from_parts(20, 0, 0, false, 2); // 0.20
/// Operating margin on obtained revenue.
pub const MARGIN: f64 = 0.25;
/// Adoption of the obtainable market in years 1–5.
pub const ADOPTION: [f64; 5] = [0.10, 0.30, 0.60, 0.90, 1.00];
/// Payback beyond this many months is reported as this (not within 10 years).
pub const PAYBACK_MONTHS_MAX: i64 = 120;

/// Complexity as a number in (0, 1]; unknown text counts as medium.
pub fn complexity_factor(complexity: &str) -> f64 {
    match complexity {
        "low" => 0.25,
        "medium" => 0.5,
        "high" => 0.75,
        "very_high" => 1.0,
        _ => 0.5,
    }
}

/// How well a vertical scales (software scales, services less so).
pub fn vertical_scalability(vertical: &str) -> f64 {
    match vertical.to_ascii_lowercase().as_str() {
        "saas" => 0.9,
        "ai" | "devtools" => 0.85,
        "fintech" | "marketplace" => 0.8,
        "ecommerce" | "media" => 0.7,
        "healthcare" | "education" => 0.6,
        _ => 0.65,
    }
}

fn clamp01(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

/// Rounded to 4 places, never a negative zero (JSON keeps "-0.0", Postgres'
/// jsonb does not: a record must read back as it was answered).
fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0 + 0.0
}

/// 0 at $1M a year or less, 1 at $10B or more, linear in log10 between.
pub fn market_score(market: Decimal) -> f64 {
    let m = market.to_f64().unwrap_or(0.0).max(1.0);
    clamp01((m.log10() - 6.0) / 4.0)
}

/// 0 for a shrinking or flat market, 1 at 50 % a year or more.
pub fn growth_score(g: f64) -> f64 {
    clamp01(g / 0.5)
}

/// 1 alone in the market, ½ with 10 competitors: `10 / (10 + c)`.
pub fn openness(competitors: i64) -> f64 {
    10.0 / (10.0 + competitors.max(0) as f64)
}

pub fn competition_level(competitors: i64) -> &'static str {
    match competitors {
        c if c <= 5 => "low",
        c if c <= 20 => "medium",
        _ => "high",
    }
}

/// The execution plan: MVP (40 % of the time to market), beta & launch
/// (30 %), scale (30 %); more developers for harder builds and more
/// expertise areas.
pub fn plan(spec: &OpportunitySpec) -> Vec<Phase> {
    let t = spec.technical_requirements.time_to_market.max(1);
    let k = complexity_factor(&spec.technical_requirements.complexity);
    let experts = spec.technical_requirements.required_expertise.len() as i64;
    let developers = 2 + (4.0 * k).round() as i64 + experts / 2;
    let days = |share: i64| ((t * share + 99) / 100).max(1);
    vec![
        Phase {
            name: "MVP Development".into(),
            duration_days: days(40),
            resources_required: Resources {
                developers,
                designers: 1,
                marketing: 1,
            },
        },
        Phase {
            name: "Beta & Launch".into(),
            duration_days: days(30),
            resources_required: Resources {
                developers: (developers + 1) / 2,
                designers: 1,
                marketing: 2,
            },
        },
        Phase {
            name: "Scale".into(),
            duration_days: days(30),
            resources_required: Resources {
                developers: (developers + 1) / 2,
                designers: 1,
                marketing: 3,
            },
        },
    ]
}

/// What the plan costs: person-days × [`PERSON_DAY_USD`].
pub fn plan_cost(phases: &[Phase]) -> Decimal {
    phases
        .iter()
        .map(|p| {
            let r = &p.resources_required;
            Decimal::from(
                (r.developers + r.designers + r.marketing) * p.duration_days * PERSON_DAY_USD,
            )
        })
        .sum()
}

/// Yearly cash flows after the build: the obtainable market adopted per
/// [`ADOPTION`], growing with the market, at [`MARGIN`].
fn cash_flows(som: f64, g: f64) -> [f64; 5] {
    let mut flows = [0.0; 5];
    for (y, a) in ADOPTION.iter().enumerate() {
        flows[y] = som * a * (1.0 + g).powi(y as i32 + 1) * MARGIN;
    }
    flows
}

/// The rate at which the flows repay `cost` (NPV = 0), by bisection in
/// [-0.99, 10]; the bounds when it lies outside them.
pub fn irr(cost: f64, flows: &[f64]) -> f64 {
    let npv = |r: f64| {
        flows
            .iter()
            .enumerate()
            .map(|(y, f)| f / (1.0 + r).powi(y as i32 + 1))
            .sum::<f64>()
            - cost
    };
    let (mut lo, mut hi) = (-0.99_f64, 10.0_f64);
    if npv(hi) > 0.0 {
        return hi;
    }
    if npv(lo) < 0.0 {
        return lo;
    }
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if npv(mid) > 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// Months until the flows (spread evenly over each year) repay `cost`.
pub fn payback_months(cost: f64, flows: &[f64]) -> i64 {
    let mut left = cost;
    for (y, &f) in flows.iter().enumerate() {
        let monthly = f / 12.0;
        if monthly > 0.0 && left <= f {
            return (y as i64 * 12 + (left / monthly).ceil() as i64).clamp(1, PAYBACK_MONTHS_MAX);
        }
        left -= f;
    }
    PAYBACK_MONTHS_MAX
}

/// Scores `spec` as opportunity `id` of `tenant`, created at `at_ms`.
pub fn score(spec: &OpportunitySpec, id: Uuid, tenant: Uuid, at_ms: i64) -> Opportunity {
    let md = &spec.market_data;
    let tr = &spec.technical_requirements;
    let k = complexity_factor(&tr.complexity);
    let open = openness(md.competition_count);
    let expertise = (tr.required_expertise.len() as f64 / 5.0).min(1.0);
    let ttm = (tr.time_to_market.max(0) as f64 / 365.0).min(1.0);

    let moat = clamp01(0.5 * k + 0.3 * expertise + 0.2 * open);
    let risk = clamp01(0.4 * k + 0.3 * ttm + 0.3 * (1.0 - open));
    let scalability = clamp01(vertical_scalability(&spec.vertical) * (1.0 - 0.3 * k));
    let score = clamp01(
        0.25 * market_score(md.total_market_size)
            + 0.15 * growth_score(md.growth_rate)
            + 0.20 * moat
            + 0.15 * scalability
            + 0.25 * (1.0 - risk),
    );

    let tam = md.total_market_size.max(Decimal::ZERO);
    let sam = (tam * SAM_SHARE).round_dp(2);
    // SOM = SAM × 20 % × 10 / (10 + c), exact in Decimal.
    let som = (sam * SOM_SHARE_ALONE * Decimal::from(10)
        / Decimal::from(10 + md.competition_count.max(0)))
    .round_dp(2);
    let phases = plan(spec);
    let cost = plan_cost(&phases);
    let flows = cash_flows(som.to_f64().unwrap_or(0.0), md.growth_rate.max(-0.99));
    let cost_f = cost.to_f64().unwrap_or(0.0);
    // A lead lasts longer with a moat, shorter with many competitors: 6–36 months.
    let advantage_months = (6.0 + 30.0 * moat * open).round() as i64;

    Opportunity {
        id,
        tenant_id: tenant,
        name: spec.name.clone(),
        vertical: spec.vertical.clone(),
        status: status::PENDING.into(),
        score: round4(score),
        expected_irr: round4(irr(cost_f, &flows)),
        payback_months: payback_months(cost_f, &flows),
        moat_score: round4(moat),
        risk_score: round4(risk),
        scalability_score: round4(scalability),
        metadata: OpportunityMetadata {
            market_size: tam,
            competition_level: competition_level(md.competition_count).into(),
            technical_complexity: tr.complexity.clone(),
            target_customers: spec.target_customers.clone(),
            pricing_model: spec.pricing_model.clone(),
        },
        economic_analysis: EconomicAnalysis {
            total_addressable_market: tam,
            serviceable_addressable_market: sam,
            serviceable_obtainable_market: som,
            market_growth_rate: md.growth_rate,
            competitive_advantage_period: advantage_months,
            execution_cost: cost,
        },
        execution_plan: phases,
        market_data: md.clone(),
        technical_requirements: tr.clone(),
        execution: None,
        created_ms: at_ms,
        updated_ms: at_ms,
        version: 1,
    }
}

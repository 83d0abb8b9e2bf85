//! Portfolio mathematics, pure: the performance and risk figures of a
//! series of daily position values, and the rebalancing solvers (equal
//! weight, minimum variance, risk parity) under position-size, risk and
//! turnover constraints. Every definition is in `docs/revenue.md`; the
//! figures are `f64` (statistics, not money — amounts stay `Decimal`).

/// Days a year, for annualising daily figures (revenue accrues every day).
pub const DAYS_A_YEAR: f64 = 365.0;
/// Confidence of the historical VaR and CVaR (one day).
pub const VAR_CONFIDENCE: f64 = 0.95;

/// Simple returns of a value series: `v[t] / v[t−1] − 1` (0 where the
/// previous value is not positive).
pub fn returns(values: &[f64]) -> Vec<f64> {
    values
        .windows(2)
        .map(|w| if w[0] > 0.0 { w[1] / w[0] - 1.0 } else { 0.0 })
        .collect()
}

pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// Sample standard deviation (n − 1); 0 for fewer than two points.
pub fn std_dev(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let m = mean(xs);
    (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

/// Pearson correlation; `None` when either side does not vary.
pub fn correlation(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len().min(b.len());
    if n < 2 {
        return None;
    }
    let (ma, mb) = (mean(&a[..n]), mean(&b[..n]));
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (da, db) = (a[i] - ma, b[i] - mb);
        sab += da * db;
        saa += da * da;
        sbb += db * db;
    }
    (saa > 0.0 && sbb > 0.0).then(|| sab / (saa * sbb).sqrt())
}

/// Sample covariance matrix of several return series (rows: series).
pub fn covariance(series: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = series.len();
    let len = series.iter().map(Vec::len).min().unwrap_or(0);
    let means: Vec<f64> = series.iter().map(|s| mean(&s[..len])).collect();
    let mut c = vec![vec![0.0; n]; n];
    if len < 2 {
        return c;
    }
    for i in 0..n {
        for j in i..n {
            let v = (0..len)
                .map(|t| (series[i][t] - means[i]) * (series[j][t] - means[j]))
                .sum::<f64>()
                / (len - 1) as f64;
            c[i][j] = v;
            c[j][i] = v;
        }
    }
    c
}

/// Largest fall from a running peak, as a fraction of the peak.
pub fn max_drawdown(values: &[f64]) -> f64 {
    let (mut peak, mut worst) = (f64::MIN, 0.0f64);
    for &v in values {
        peak = peak.max(v);
        if peak > 0.0 {
            worst = worst.max((peak - v) / peak);
        }
    }
    worst
}

/// Historical one-day VaR and CVaR at `confidence`, as fractions of value
/// (losses positive): the `k`-th worst return, `k = ⌊(1 − confidence)·n⌋`,
/// and the mean of the `k + 1` worst. `None` without returns.
pub fn var_cvar(returns: &[f64], confidence: f64) -> Option<(f64, f64)> {
    if returns.is_empty() {
        return None;
    }
    let mut sorted = returns.to_vec();
    sorted.sort_by(f64::total_cmp);
    let k = (((1.0 - confidence) * sorted.len() as f64).floor() as usize).min(sorted.len() - 1);
    let var = (-sorted[k]).max(0.0);
    let cvar = (-mean(&sorted[..=k])).max(0.0);
    Some((var, cvar))
}

/// Σ w² of weights (Herfindahl–Hirschman).
pub fn herfindahl(weights: &[f64]) -> f64 {
    weights.iter().map(|w| w * w).sum()
}

/// Mean pairwise correlation of the series that vary; `None` under two.
pub fn average_correlation(series: &[Vec<f64>]) -> Option<f64> {
    let mut sum = 0.0;
    let mut pairs = 0usize;
    for i in 0..series.len() {
        for j in i + 1..series.len() {
            if let Some(c) = correlation(&series[i], &series[j]) {
                sum += c;
                pairs += 1;
            }
        }
    }
    (pairs > 0).then(|| sum / pairs as f64)
}

fn mat_vec(m: &[Vec<f64>], v: &[f64]) -> Vec<f64> {
    m.iter()
        .map(|row| row.iter().zip(v).map(|(a, b)| a * b).sum())
        .collect()
}

/// `wᵀ Σ w`.
pub fn variance(cov: &[Vec<f64>], w: &[f64]) -> f64 {
    mat_vec(cov, w).iter().zip(w).map(|(a, b)| a * b).sum()
}

/// Each position's share of the portfolio's variance: `wᵢ (Σw)ᵢ / wᵀΣw`
/// (they sum to 1; all 0 when the variance is 0).
pub fn risk_contributions(cov: &[Vec<f64>], w: &[f64]) -> Vec<f64> {
    let sw = mat_vec(cov, w);
    let total: f64 = sw.iter().zip(w).map(|(a, b)| a * b).sum();
    w.iter()
        .zip(&sw)
        .map(|(wi, si)| if total > 0.0 { wi * si / total } else { 0.0 })
        .collect()
}

/// Rebalancing strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    EqualWeight,
    MinVariance,
    RiskParity,
}

impl Strategy {
    pub const ALL: [Strategy; 3] = [
        Strategy::RiskParity,
        Strategy::EqualWeight,
        Strategy::MinVariance,
    ];

    pub fn parse(text: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::EqualWeight => "equal_weight",
            Strategy::MinVariance => "min_variance",
            Strategy::RiskParity => "risk_parity",
        }
    }
}

/// Rebalancing constraints (weights are fractions of the portfolio).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Constraints {
    pub max_position_size: f64,
    pub min_position_size: f64,
    /// Annualised volatility the result may have at most.
    pub target_risk: Option<f64>,
    /// Most of the portfolio that may change hands: ½ Σ |target − current|.
    pub turnover_limit: Option<f64>,
}

impl Default for Constraints {
    fn default() -> Self {
        Constraints {
            max_position_size: 1.0,
            min_position_size: 0.0,
            target_risk: None,
            turnover_limit: None,
        }
    }
}

/// Which constraint cannot be met, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Infeasible {
    pub constraint: &'static str,
    pub message: String,
}

fn infeasible(constraint: &'static str, message: String) -> Infeasible {
    Infeasible {
        constraint,
        message,
    }
}

/// Tolerance of the constraint checks.
pub const TOLERANCE: f64 = 1e-9;

/// The point of `{lo ≤ w ≤ hi, Σ w = 1}` nearest to `v`: `wᵢ = clip(vᵢ −
/// λ)`, with λ found by bisection (Σ clip is monotone in λ).
pub fn project(v: &[f64], lo: f64, hi: f64) -> Vec<f64> {
    let sum = |l: f64| v.iter().map(|x| (x - l).clamp(lo, hi)).sum::<f64>();
    let (min, max) = v
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
    let (mut a, mut b) = (min - hi - 1.0, max - lo + 1.0);
    for _ in 0..100 {
        let m = 0.5 * (a + b);
        if sum(m) > 1.0 {
            a = m;
        } else {
            b = m;
        }
    }
    let l = 0.5 * (a + b);
    v.iter().map(|x| (x - l).clamp(lo, hi)).collect()
}

/// Minimum variance under the box and budget constraints: accelerated
/// projected gradient (FISTA, restarted whenever the objective rises) with
/// step 1/L, L the largest eigenvalue of 2Σ by power iteration.
pub fn min_variance(cov: &[Vec<f64>], lo: f64, hi: f64) -> Vec<f64> {
    let n = cov.len();
    let mut v = vec![1.0 / (n as f64).sqrt(); n];
    let mut eigen = 0.0f64;
    for _ in 0..50 {
        let next = mat_vec(cov, &v);
        let norm = next.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm <= 0.0 {
            break;
        }
        eigen = norm;
        v = next.into_iter().map(|x| x / norm).collect();
    }
    // A little over the estimate: power iteration approaches from below.
    let step = 1.0 / (2.0 * 1.1 * eigen).max(1e-300);
    let mut w = project(&vec![1.0 / n as f64; n], lo, hi);
    let mut y = w.clone();
    let mut t = 1.0f64;
    let mut last = variance(cov, &w);
    let mut restarted = false;
    for _ in 0..5_000 {
        let g = mat_vec(cov, &y);
        let next = project(
            &y.iter()
                .zip(&g)
                .map(|(yi, gi)| yi - step * 2.0 * gi)
                .collect::<Vec<_>>(),
            lo,
            hi,
        );
        let value = variance(cov, &next);
        let moved: f64 = next.iter().zip(&w).map(|(a, b)| (a - b).abs()).sum();
        if value > last {
            if restarted {
                break; // not even a plain step helps: converged to rounding
            }
            // Momentum overshot: restart from the last iterate.
            restarted = true;
            t = 1.0;
            y = w.clone();
            continue;
        }
        restarted = false;
        let t_next = (1.0 + (1.0 + 4.0 * t * t).sqrt()) / 2.0;
        y = next
            .iter()
            .zip(&w)
            .map(|(a, b)| a + (t - 1.0) / t_next * (a - b))
            .collect();
        w = next;
        t = t_next;
        last = value;
        if moved < 1e-10 {
            break;
        }
    }
    w
}

/// Equal risk contributions (no bounds): cyclical coordinate descent on
/// `½ yᵀΣy − (1/n) Σ ln yᵢ`, whose minimiser normalised to sum 1 has
/// `wᵢ(Σw)ᵢ` equal for all i. Σ gets a ridge of 10⁻¹⁰ of its largest
/// variance: on a singular Σ (a riskless mix of positions) the objective
/// has no minimum, and a zero-variance position could never reach its share.
pub fn risk_parity(cov: &[Vec<f64>]) -> Vec<f64> {
    let n = cov.len();
    let scale = (0..n).map(|i| cov[i][i]).fold(0.0, f64::max).max(1e-300);
    let normalised = |ridge: f64| -> Vec<Vec<f64>> {
        (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| cov[i][j] / scale + if i == j { ridge } else { 0.0 })
                    .collect()
            })
            .collect()
    };
    // As given first (a ridge would tilt the contributions when the
    // portfolio's variance is far below the largest position's); with a
    // ridge only if that does not converge (Σ singular).
    let (y, converged) = equal_risk(&normalised(1e-300));
    let y = if converged && y.iter().all(|v| v.is_finite() && *v > 0.0) {
        y
    } else {
        equal_risk(&normalised(1e-10)).0
    };
    let sum: f64 = y.iter().sum();
    y.iter().map(|v| v / sum).collect()
}

/// Minimises `½ yᵀCy − (1/n) Σ ln yᵢ`; whether the contributions came
/// within 10⁻¹² of equal.
fn equal_risk(c: &[Vec<f64>]) -> (Vec<f64>, bool) {
    let n = c.len();
    let budget = 1.0 / n as f64;
    let mut y: Vec<f64> = (0..n).map(|i| 1.0 / c[i][i].sqrt().max(1e-150)).collect();
    // Cyclical coordinate descent gets close cheaply; Newton's method
    // (quadratic convergence) finishes where Σ is ill-conditioned and the
    // sweeps crawl — up to 400 positions (it costs n³ a step).
    let sweeps = (2e8 / (n * n) as f64).clamp(50.0, 20_000.0) as usize;
    let converged = |y: &[f64]| {
        risk_contributions(c, y)
            .iter()
            .all(|r| (r - budget).abs() < 1e-12)
    };
    for sweep in 0..sweeps {
        for i in 0..n {
            let b: f64 = (0..n).filter(|j| *j != i).map(|j| c[i][j] * y[j]).sum();
            let a = c[i][i];
            y[i] = (-b + (b * b + 4.0 * a * budget).sqrt()) / (2.0 * a);
        }
        if !y.iter().all(|v| v.is_finite()) {
            return (y, false);
        }
        if sweep % 10 == 9 && converged(&y) {
            return (y, true);
        }
    }
    if n <= 400 {
        for _ in 0..50 {
            if converged(&y) {
                return (y, true);
            }
            newton_step(c, budget, &mut y);
        }
    }
    let done = converged(&y);
    (y, done)
}

/// One damped Newton step on `½ yᵀCy − b Σ ln yᵢ` (gradient `Cy − b/y`,
/// Hessian `C + diag(b/y²)`, positive definite), staying in `y > 0`.
fn newton_step(c: &[Vec<f64>], budget: f64, y: &mut [f64]) {
    let n = y.len();
    let cy = mat_vec(c, y);
    let g: Vec<f64> = (0..n).map(|i| cy[i] - budget / y[i]).collect();
    let mut h: Vec<Vec<f64>> = c.to_vec();
    for i in 0..n {
        h[i][i] += budget / (y[i] * y[i]);
    }
    let Some(d) = cholesky_solve(h, &g) else {
        return;
    };
    // Backtracking on the gradient's norm: near the optimum the objective's
    // changes drown in rounding, its gradient's do not.
    let norm = |y: &[f64]| -> f64 {
        let cy = mat_vec(c, y);
        (0..y.len()).map(|i| (cy[i] - budget / y[i]).powi(2)).sum()
    };
    let (g0, mut t) = (norm(y), 1.0);
    for _ in 0..60 {
        let next: Vec<f64> = y.iter().zip(&d).map(|(a, b)| a - t * b).collect();
        if next.iter().all(|v| *v > 0.0) && norm(&next) < g0 {
            y.copy_from_slice(&next);
            return;
        }
        t *= 0.5;
    }
}

/// Solves `A x = b` for symmetric positive definite `A` (Cholesky).
fn cholesky_solve(mut a: Vec<Vec<f64>>, b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    for j in 0..n {
        let d = a[j][j] - a[j][..j].iter().map(|x| x * x).sum::<f64>();
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        a[j][j] = d;
        for i in j + 1..n {
            let s = a[i][j]
                - a[i][..j]
                    .iter()
                    .zip(&a[j][..j])
                    .map(|(x, y)| x * y)
                    .sum::<f64>();
            a[i][j] = s / d;
        }
    }
    let mut x = b.to_vec();
    for i in 0..n {
        for k in 0..i {
            x[i] -= a[i][k] * x[k];
        }
        x[i] /= a[i][i];
    }
    for i in (0..n).rev() {
        for k in i + 1..n {
            x[i] -= a[k][i] * x[k];
        }
        x[i] /= a[i][i];
    }
    Some(x)
}

/// The annualised volatility of weights `w`.
pub fn volatility(cov: &[Vec<f64>], w: &[f64]) -> f64 {
    (variance(cov, w).max(0.0) * DAYS_A_YEAR).sqrt()
}

/// `a + t (b − a)`.
fn blend(a: &[f64], b: &[f64], t: f64) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + t * (y - x)).collect()
}

/// ½ Σ |b − a|.
pub fn turnover(a: &[f64], b: &[f64]) -> f64 {
    0.5 * a.iter().zip(b).map(|(x, y)| (y - x).abs()).sum::<f64>()
}

/// Target weights for `strategy` from `current` weights and the daily
/// return covariance, honouring every constraint, or which one cannot be:
/// the strategy's weights (risk parity and equal weight projected onto the
/// position-size bounds), blended toward the minimum-variance portfolio just
/// enough to meet `target_risk`, then moved from `current` only as far as
/// `turnover_limit` allows; the result is checked against every constraint.
pub fn rebalance(
    strategy: Strategy,
    cov: &[Vec<f64>],
    current: &[f64],
    c: &Constraints,
) -> Result<Vec<f64>, Infeasible> {
    let n = cov.len();
    let (lo, hi) = (c.min_position_size, c.max_position_size);
    if n == 0 {
        return Err(infeasible(
            "positions",
            "there are no active positions to rebalance".into(),
        ));
    }
    if !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) || lo > hi {
        return Err(infeasible(
            "min_position_size",
            "position sizes must satisfy 0 ≤ min_position_size ≤ max_position_size ≤ 1".into(),
        ));
    }
    if hi * (n as f64) < 1.0 - TOLERANCE {
        return Err(infeasible(
            "max_position_size",
            format!(
                "{n} positions of at most {hi} cannot hold the whole portfolio (need max_position_size ≥ {:.6})",
                1.0 / n as f64
            ),
        ));
    }
    if lo * (n as f64) > 1.0 + TOLERANCE {
        return Err(infeasible(
            "min_position_size",
            format!(
                "{n} positions of at least {lo} exceed the portfolio (need min_position_size ≤ {:.6})",
                1.0 / n as f64
            ),
        ));
    }
    let mut w = match strategy {
        Strategy::EqualWeight => project(&vec![1.0 / n as f64; n], lo, hi),
        Strategy::MinVariance => min_variance(cov, lo, hi),
        Strategy::RiskParity => {
            let rp = risk_parity(cov);
            if rp
                .iter()
                .all(|x| *x >= lo - TOLERANCE && *x <= hi + TOLERANCE)
            {
                rp
            } else {
                project(&rp, lo, hi)
            }
        }
    };
    if let Some(target) = c.target_risk {
        if volatility(cov, &w) > target + TOLERANCE {
            let floor = min_variance(cov, lo, hi);
            let least = volatility(cov, &floor);
            if least > target + TOLERANCE {
                return Err(infeasible(
                    "target_risk",
                    format!("the least risky portfolio within the position sizes has volatility {least:.6}, above target_risk {target}"),
                ));
            }
            // Volatility is convex along the segment: bisect the smallest
            // step toward the floor that meets the target.
            let (mut a, mut b) = (0.0, 1.0);
            for _ in 0..100 {
                let m = 0.5 * (a + b);
                if volatility(cov, &blend(&w, &floor, m)) > target {
                    a = m;
                } else {
                    b = m;
                }
            }
            w = blend(&w, &floor, b);
        }
    }
    if let Some(limit) = c.turnover_limit {
        let wanted = turnover(current, &w);
        if wanted > limit {
            w = blend(current, &w, limit / wanted);
        }
    }
    check(cov, current, &w, c)?;
    Ok(w)
}

/// Every constraint, checked on the result.
fn check(cov: &[Vec<f64>], current: &[f64], w: &[f64], c: &Constraints) -> Result<(), Infeasible> {
    let limited = c
        .turnover_limit
        .is_some_and(|l| turnover(current, w) >= l - TOLERANCE);
    let blame = |own: &'static str| if limited { "turnover_limit" } else { own };
    if let Some(x) = w.iter().find(|x| **x > c.max_position_size + 1e-7) {
        return Err(infeasible(
            blame("max_position_size"),
            format!("a position would keep weight {x:.6} above max_position_size {} within turnover_limit", c.max_position_size),
        ));
    }
    if let Some(x) = w.iter().find(|x| **x < c.min_position_size - 1e-7) {
        return Err(infeasible(
            blame("min_position_size"),
            format!("a position would keep weight {x:.6} below min_position_size {} within turnover_limit", c.min_position_size),
        ));
    }
    if let Some(t) = c.target_risk {
        let v = volatility(cov, w);
        if v > t + 1e-7 {
            return Err(infeasible(
                blame("target_risk"),
                format!("volatility {v:.6} would stay above target_risk {t} within turnover_limit"),
            ));
        }
    }
    Ok(())
}

//! Chinchilla approach 2: isoFLOP parabolas.
//!
//! Runs are grouped by compute budget; within a budget, loss is fitted as a
//! parabola in ln N and its vertex is the budget's optimal N*. Power laws
//! N* ∝ C^a and D* ∝ C^b are then fitted by least squares in log-log space.
//!
//! Budgets are floats (C = 6 N D of rounded N and D, or digitised from a
//! plot), so runs whose compute lies within a relative tolerance of a group's
//! smallest budget form one group. The group's budget is the geometric mean of
//! its members' compute.

use serde::Serialize;

use crate::data::Observation;
use crate::error::{FitError, Result};

/// Settings for [`fit_approach2`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IsoFlopOptions {
    /// Runs with compute within `(1 + rel_tol)` of a group's smallest compute
    /// belong to that group.
    pub rel_tol: f64,
    /// Fewest runs (with distinct N) needed to fit a parabola.
    pub min_points: usize,
}

impl Default for IsoFlopOptions {
    fn default() -> Self {
        IsoFlopOptions {
            rel_tol: 0.1,
            min_points: 3,
        }
    }
}

/// The optimum found on one isoFLOP curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BudgetOptimum {
    pub compute: f64,
    pub n_points: usize,
    pub n_opt: f64,
    pub d_opt: f64,
    pub loss_opt: f64,
}

/// Why a budget group gave no optimum.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedBudget {
    pub compute: f64,
    pub n_points: usize,
    pub reason: &'static str,
}

/// A power law y = coef * C^exponent fitted in log-log space.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PowerLaw {
    pub coef: f64,
    pub exponent: f64,
}

impl PowerLaw {
    pub fn eval(&self, compute: f64) -> f64 {
        self.coef * compute.powf(self.exponent)
    }
}

/// Approach-2 result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Approach2Fit {
    pub options: IsoFlopOptions,
    pub budgets: Vec<BudgetOptimum>,
    pub skipped: Vec<SkippedBudget>,
    /// N*(C) = coef C^a.
    pub n_opt: PowerLaw,
    /// D*(C) = coef C^b.
    pub d_opt: PowerLaw,
    pub a: f64,
    pub b: f64,
}

/// Group observations by compute budget (see the module docs). Groups come
/// out in increasing compute.
pub fn group_by_budget(obs: &[Observation], rel_tol: f64) -> Vec<Vec<Observation>> {
    let mut sorted = obs.to_vec();
    sorted.sort_by(|x, y| x.compute().total_cmp(&y.compute()));
    let mut groups: Vec<Vec<Observation>> = Vec::new();
    let mut start = f64::NAN;
    for o in sorted {
        let c = o.compute();
        match groups.last_mut() {
            Some(g) if c <= start * (1.0 + rel_tol) => g.push(o),
            _ => {
                start = c;
                groups.push(vec![o]);
            }
        }
    }
    groups
}

/// Fit approach 2. Fails when fewer than two budgets yield an optimum: then
/// the data are not an isoFLOP design and there is nothing to regress.
pub fn fit_approach2(obs: &[Observation], opts: &IsoFlopOptions) -> Result<Approach2Fit> {
    if !(opts.rel_tol.is_finite() && opts.rel_tol >= 0.0) {
        return Err(FitError::InvalidOption("rel_tol must be >= 0".into()));
    }
    if opts.min_points < 3 {
        return Err(FitError::InvalidOption(
            "a parabola needs min_points >= 3".into(),
        ));
    }
    let mut budgets = Vec::new();
    let mut skipped = Vec::new();
    for group in group_by_budget(obs, opts.rel_tol) {
        match budget_optimum(&group, opts.min_points) {
            Ok(b) => budgets.push(b),
            Err(reason) => skipped.push(SkippedBudget {
                compute: geometric_mean_compute(&group),
                n_points: group.len(),
                reason,
            }),
        }
    }
    if budgets.len() < 2 {
        return Err(FitError::NotApplicable(format!(
            "approach 2 needs at least 2 compute budgets with >= {} runs and an interior \
             loss minimum; found {}",
            opts.min_points,
            budgets.len()
        )));
    }
    let log_c: Vec<f64> = budgets.iter().map(|b| b.compute.ln()).collect();
    let fit = |ys: Vec<f64>| -> Result<PowerLaw> {
        let (slope, intercept) = linear_fit(&log_c, &ys).ok_or_else(|| {
            FitError::NotApplicable("approach 2: all budgets have the same compute".into())
        })?;
        Ok(PowerLaw {
            coef: intercept.exp(),
            exponent: slope,
        })
    };
    let n_opt = fit(budgets.iter().map(|b| b.n_opt.ln()).collect())?;
    let d_opt = fit(budgets.iter().map(|b| b.d_opt.ln()).collect())?;
    Ok(Approach2Fit {
        options: *opts,
        a: n_opt.exponent,
        b: d_opt.exponent,
        n_opt,
        d_opt,
        budgets,
        skipped,
    })
}

fn geometric_mean_compute(group: &[Observation]) -> f64 {
    let sum: f64 = group.iter().map(|o| o.compute().ln()).sum();
    (sum / group.len() as f64).exp()
}

/// Vertex of the least-squares parabola loss ~ ln N for one budget.
fn budget_optimum(
    group: &[Observation],
    min_points: usize,
) -> std::result::Result<BudgetOptimum, &'static str> {
    let mut xs: Vec<f64> = group.iter().map(|o| o.n.ln()).collect();
    let ys: Vec<f64> = group.iter().map(|o| o.loss).collect();
    let mut distinct = xs.clone();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    if group.len() < min_points || distinct.len() < 3 {
        return Err("too few runs with distinct N");
    }
    // Centre ln N: the normal equations of a parabola in raw ln N (~20) are
    // badly conditioned.
    let centre = xs.iter().sum::<f64>() / xs.len() as f64;
    xs.iter_mut().for_each(|x| *x -= centre);
    let [c0, c1, c2] = quadratic_fit(&xs, &ys).ok_or("degenerate parabola fit")?;
    if c2 <= 0.0 {
        return Err("parabola opens downwards (no minimum)");
    }
    let vertex = -c1 / (2.0 * c2);
    // A vertex outside the sampled N range is an extrapolation, not a
    // measured optimum.
    let (lo, hi) = (distinct[0] - centre, distinct[distinct.len() - 1] - centre);
    if vertex < lo || vertex > hi {
        return Err("minimum outside the sampled range of N");
    }
    let compute = geometric_mean_compute(group);
    let n_opt = (vertex + centre).exp();
    Ok(BudgetOptimum {
        compute,
        n_points: group.len(),
        n_opt,
        d_opt: compute / (6.0 * n_opt),
        loss_opt: c0 + c1 * vertex + c2 * vertex * vertex,
    })
}

/// Least-squares y = c0 + c1 x + c2 x^2 via the 3x3 normal equations.
fn quadratic_fit(xs: &[f64], ys: &[f64]) -> Option<[f64; 3]> {
    let mut m = [[0.0; 4]; 3];
    for (&x, &y) in xs.iter().zip(ys) {
        let p = [1.0, x, x * x];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] += p[i] * p[j];
            }
            m[i][3] += p[i] * y;
        }
    }
    solve3(m)
}

/// Gaussian elimination with partial pivoting on an augmented 3x4 matrix.
fn solve3(mut m: [[f64; 4]; 3]) -> Option<[f64; 3]> {
    let scale = m.iter().flatten().fold(0.0f64, |acc, v| acc.max(v.abs()));
    for col in 0..3 {
        let pivot = (col..3).max_by(|&i, &j| m[i][col].abs().total_cmp(&m[j][col].abs()))?;
        if m[pivot][col].abs() <= 1e-12 * scale {
            return None;
        }
        m.swap(col, pivot);
        let pivot_row = m[col];
        for row in m.iter_mut().skip(col + 1) {
            let f = row[col] / pivot_row[col];
            for (v, p) in row.iter_mut().zip(pivot_row).skip(col) {
                *v -= f * p;
            }
        }
    }
    let mut x = [0.0; 3];
    for row in (0..3).rev() {
        let tail: f64 = (row + 1..3).map(|k| m[row][k] * x[k]).sum();
        x[row] = (m[row][3] - tail) / m[row][row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// Ordinary least squares y = slope x + intercept.
pub(crate) fn linear_fit(xs: &[f64], ys: &[f64]) -> Option<(f64, f64)> {
    let n = xs.len() as f64;
    let mx = xs.iter().sum::<f64>() / n;
    let my = ys.iter().sum::<f64>() / n;
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    Some((slope, my - slope * mx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::ScalingLaw;

    #[test]
    fn quadratic_fit_is_exact_on_a_parabola() {
        let xs = [-2.0, -1.0, 0.5, 1.0, 3.0];
        let ys: Vec<f64> = xs.iter().map(|x| 1.5 - 0.25 * x + 0.75 * x * x).collect();
        let [c0, c1, c2] = quadratic_fit(&xs, &ys).unwrap();
        assert!((c0 - 1.5).abs() < 1e-12 && (c1 + 0.25).abs() < 1e-12 && (c2 - 0.75).abs() < 1e-12);
        assert!(quadratic_fit(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_none());
    }

    #[test]
    fn grouping_respects_tolerance() {
        let obs: Vec<Observation> = [1.0, 1.05, 1.09, 1.2, 2.0, 2.1]
            .iter()
            .map(|&c| Observation {
                n: 1.0,
                d: c / 6.0,
                loss: 1.0,
            })
            .collect();
        let sizes: Vec<usize> = group_by_budget(&obs, 0.1).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![3, 1, 2]);
    }

    /// On isoFLOP slices of an exact Chinchilla law, approach 2 recovers the
    /// law's allocation exponents (up to the parabola approximation).
    #[test]
    fn recovers_exponents_of_a_known_law() {
        let law = ScalingLaw {
            e: 1.8,
            a: 480.0,
            b: 2100.0,
            alpha: 0.35,
            beta: 0.37,
        };
        let mut obs = Vec::new();
        for k in 0..6 {
            let c = 1e19 * 4f64.powi(k);
            let opt = crate::allocation::ComputeOptimal::from_law(&law).unwrap();
            let n0 = opt.n_opt(c);
            // Points spread symmetrically in ln N around the optimum.
            for j in -4..=4 {
                let n = n0 * (0.25 * j as f64).exp();
                let d = c / (6.0 * n);
                obs.push(Observation {
                    n,
                    d,
                    loss: law.predict(n, d),
                });
            }
        }
        let fit = fit_approach2(&obs, &IsoFlopOptions::default()).unwrap();
        assert_eq!(fit.budgets.len(), 6);
        let want_a = law.beta / (law.alpha + law.beta);
        assert!((fit.a - want_a).abs() < 0.01, "a = {} want {want_a}", fit.a);
        assert!((fit.a + fit.b - 1.0).abs() < 1e-9);
    }

    #[test]
    fn too_few_budgets_is_an_error() {
        let obs = vec![
            Observation {
                n: 1e8,
                d: 1e9,
                loss: 3.0,
            };
            2
        ];
        assert!(fit_approach2(&obs, &IsoFlopOptions::default()).is_err());
    }
}

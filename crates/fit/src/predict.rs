//! Predictions and held-out checks: the scaling study fits small runs and
//! asks how well the law extrapolates to larger ones.

use serde::Serialize;

use crate::approach3::{fit_approach3, Approach3Fit, FitOptions};
use crate::data::Observation;
use crate::error::{FitError, Result};
use crate::objective::ScalingLaw;

/// Predicted loss L(n, d) = E + A / n^alpha + B / d^beta.
pub fn predict(law: &ScalingLaw, n: f64, d: f64) -> f64 {
    law.predict(n, d)
}

/// One held-out point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HeldOutPoint {
    pub n: f64,
    pub d: f64,
    pub loss: f64,
    pub predicted: f64,
    /// (predicted - loss) / loss.
    pub rel_error: f64,
}

/// How well a law predicts observations it was not fitted on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldOutReport {
    pub points: Vec<HeldOutPoint>,
    pub mean_abs_rel_error: f64,
    pub max_abs_rel_error: f64,
}

/// Relative errors of `law` on `test`.
pub fn evaluate(law: &ScalingLaw, test: &[Observation]) -> Result<HeldOutReport> {
    if test.is_empty() {
        return Err(FitError::TooFewObservations { needed: 1, got: 0 });
    }
    let points: Vec<HeldOutPoint> = test
        .iter()
        .map(|o| {
            let predicted = law.predict(o.n, o.d);
            HeldOutPoint {
                n: o.n,
                d: o.d,
                loss: o.loss,
                predicted,
                rel_error: (predicted - o.loss) / o.loss,
            }
        })
        .collect();
    let abs = points.iter().map(|p| p.rel_error.abs());
    Ok(HeldOutReport {
        mean_abs_rel_error: abs.clone().sum::<f64>() / points.len() as f64,
        max_abs_rel_error: abs.fold(0.0, f64::max),
        points,
    })
}

/// Fit approach 3 on the observations where `is_train` holds and evaluate on
/// the rest (e.g. `|o| o.n < 1e9` to extrapolate to the largest models).
pub fn held_out_check(
    obs: &[Observation],
    is_train: impl Fn(&Observation) -> bool,
    opts: &FitOptions,
) -> Result<(Approach3Fit, HeldOutReport)> {
    let (train, test): (Vec<Observation>, Vec<Observation>) = obs.iter().partition(|o| is_train(o));
    let fit = fit_approach3(&train, opts)?;
    let report = evaluate(&fit.law, &test)?;
    Ok((fit, report))
}

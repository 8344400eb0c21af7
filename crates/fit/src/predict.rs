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

/// The central `level` interval (e.g. 0.9 for 5–95 %) of the losses that
/// bootstrap laws predict at (n, d): a confidence band for the fitted law.
/// `None` without laws or for a level outside (0, 1).
pub fn prediction_band(laws: &[ScalingLaw], n: f64, d: f64, level: f64) -> Option<(f64, f64)> {
    if laws.is_empty() || !(level > 0.0 && level < 1.0) {
        return None;
    }
    let mut v: Vec<f64> = laws.iter().map(|l| l.predict(n, d)).collect();
    v.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    Some((quantile(&v, tail), quantile(&v, 1.0 - tail)))
}

/// Linear-interpolated quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos.fract());
    match sorted.get(i + 1) {
        Some(next) => sorted[i] + frac * (next - sorted[i]),
        None => sorted[i],
    }
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
        // A NaN (a law that cannot predict there) must show in the max as
        // it does in the mean: `f64::max` would pass over it.
        max_abs_rel_error: abs.fold(0.0, |m, e| if e.is_nan() || e > m { e } else { m }),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn law(e: f64) -> ScalingLaw {
        ScalingLaw {
            e,
            a: 0.0,
            b: 0.0,
            alpha: 0.5,
            beta: 0.5,
        }
    }

    #[test]
    fn band_is_the_central_interval_of_the_predictions() {
        // Predictions are E = 0, 1, ..., 10: the 90 % band is [0.5, 9.5].
        let laws: Vec<ScalingLaw> = (0..=10).map(|e| law(e as f64)).collect();
        let (lo, hi) = prediction_band(&laws, 1e6, 1e9, 0.9).unwrap();
        assert!(
            (lo - 0.5).abs() < 1e-12 && (hi - 9.5).abs() < 1e-12,
            "{lo} {hi}"
        );
        let (lo, hi) = prediction_band(&laws[..1], 1e6, 1e9, 0.9).unwrap();
        assert_eq!((lo, hi), (0.0, 0.0));
        assert!(prediction_band(&[], 1.0, 1.0, 0.9).is_none());
        assert!(prediction_band(&laws, 1.0, 1.0, 1.0).is_none());
    }

    #[test]
    fn held_out_errors_keep_a_nan() {
        let obs = |loss| Observation {
            n: 1e6,
            d: 1e9,
            loss,
        };
        let r = evaluate(&law(2.5), &[obs(2.0), obs(5.0)]).unwrap();
        assert_eq!(r.max_abs_rel_error, 0.5);
        assert!((r.mean_abs_rel_error - 0.375).abs() < 1e-12);
        // One point without a relative error (0 / 0: loss 0, predicted 0):
        // the max says so wherever that point falls, as the mean does.
        for test in [[obs(0.0), obs(2.0)], [obs(2.0), obs(0.0)]] {
            let r = evaluate(&law(0.0), &test).unwrap();
            assert!(r.max_abs_rel_error.is_nan() && r.mean_abs_rel_error.is_nan());
        }
    }
}

//! Bootstrap standard errors for the approach-3 parameters.
//!
//! Each resample draws n observations with replacement and refits. A resample
//! is represented by per-point multiplicities (weights), which is exactly the
//! summed objective over the resampled points.
//!
//! Starts: by default each refit starts from the full-data optimum plus the
//! grid starts that led to the best full-data fits (`Best(k)`). Resample
//! optima are small perturbations of the full-data optimum (standard errors of
//! a few percent), so a local L-BFGS run from there finds them, and the extra
//! starts guard against a resample whose best basin moved. Re-running the full
//! 4500-point grid per resample (`FullGrid`) costs ~1000x more for the same
//! answer on Chinchilla-like data; it is kept for suspicious cases.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use crate::allocation::ComputeOptimal;
use crate::approach3::{fit_starts, Approach3Fit, FitOptions};
use crate::data::Observation;
use crate::error::{FitError, Result};
use crate::objective::{LogData, ScalingLaw, Theta};

/// Where each bootstrap refit starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BootstrapStarts {
    /// The full-data optimum and the `k` grid starts that reached the lowest
    /// full-data objectives.
    Best(usize),
    /// Every point of the grid (slow: one full grid fit per resample).
    FullGrid,
}

/// Bootstrap settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BootstrapOptions {
    pub resamples: usize,
    pub seed: u64,
    pub starts: BootstrapStarts,
}

impl Default for BootstrapOptions {
    fn default() -> Self {
        BootstrapOptions {
            resamples: 200,
            seed: 0,
            starts: BootstrapStarts::Best(4),
        }
    }
}

/// Standard errors (sample standard deviations over resamples).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ParamErrors {
    #[serde(rename = "E")]
    pub e: f64,
    #[serde(rename = "A")]
    pub a: f64,
    #[serde(rename = "B")]
    pub b: f64,
    pub alpha: f64,
    pub beta: f64,
    /// Of the compute-optimal exponent a = beta / (alpha + beta).
    pub a_exponent: f64,
    /// Of b = alpha / (alpha + beta).
    pub b_exponent: f64,
}

/// Bootstrap outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bootstrap {
    pub options: BootstrapOptions,
    /// Resamples whose refit converged (the SEs use these).
    pub successful: usize,
    pub failed: usize,
    pub standard_errors: ParamErrors,
    /// Mean over resamples, to compare with the full-data fit.
    pub mean: ScalingLaw,
    /// Every converged resample's law, for prediction bands
    /// ([`crate::predict::prediction_band`]).
    #[serde(skip)]
    pub laws: Vec<ScalingLaw>,
}

/// Run the bootstrap around the full-data fit `full`.
pub fn bootstrap(
    obs: &[Observation],
    full: &Approach3Fit,
    fit_opts: &FitOptions,
    opts: &BootstrapOptions,
) -> Result<Bootstrap> {
    if opts.resamples < 2 {
        return Err(FitError::InvalidOption(
            "the bootstrap needs at least 2 resamples".into(),
        ));
    }
    let starts: Vec<Theta> = match opts.starts {
        BootstrapStarts::Best(k) => std::iter::once(full.theta)
            .chain(full.top.iter().take(k).map(|r| r.start))
            .collect(),
        BootstrapStarts::FullGrid => fit_opts.grid.starts(),
    };
    let n = obs.len();
    let laws: Vec<Option<ScalingLaw>> = (0..opts.resamples)
        .into_par_iter()
        .map(|i| {
            // One stream per resample: results do not depend on how rayon
            // schedules the resamples.
            let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
            rng.set_stream(i as u64);
            let mut counts = vec![0.0; n];
            for _ in 0..n {
                counts[rng.gen_range(0..n)] += 1.0;
            }
            let data = LogData::weighted(obs, &counts);
            match fit_starts(&data, &starts, fit_opts) {
                Ok(fit) => Ok(Some(fit.law)),
                Err(FitError::NoConvergence) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .collect::<Result<_>>()?;
    let ok: Vec<ScalingLaw> = laws.iter().flatten().copied().collect();
    if ok.len() < 2 {
        return Err(FitError::NoConvergence);
    }
    let column = |f: &dyn Fn(&ScalingLaw) -> f64| ok.iter().map(f).collect::<Vec<f64>>();
    let exponent = |l: &ScalingLaw| ComputeOptimal::from_law(l).map_or(f64::NAN, |c| c.a);
    let a_exp = column(&exponent);
    let se_a_exp = std_dev(&a_exp);
    Ok(Bootstrap {
        options: *opts,
        successful: ok.len(),
        failed: laws.len() - ok.len(),
        standard_errors: ParamErrors {
            e: std_dev(&column(&|l| l.e)),
            a: std_dev(&column(&|l| l.a)),
            b: std_dev(&column(&|l| l.b)),
            alpha: std_dev(&column(&|l| l.alpha)),
            beta: std_dev(&column(&|l| l.beta)),
            a_exponent: se_a_exp,
            // b = 1 - a, so the two exponents share one standard error.
            b_exponent: se_a_exp,
        },
        mean: ScalingLaw {
            e: mean(&column(&|l| l.e)),
            a: mean(&column(&|l| l.a)),
            b: mean(&column(&|l| l.b)),
            alpha: mean(&column(&|l| l.alpha)),
            beta: mean(&column(&|l| l.beta)),
        },
        laws: ok,
    })
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// A standard error for reports: `e` to `precision` digits (in scientific
/// notation with `sci`), or "unbounded" when it is not finite, which is what
/// an overflowing coefficient in some resample gives (`B = exp(b)` with `b`
/// in the hundreds: the data do not pin the parameter down).
pub fn show_error(e: f64, precision: usize, sci: bool) -> String {
    match (e.is_finite(), sci) {
        (false, _) => "unbounded".into(),
        (true, true) => format!("{e:.precision$e}"),
        (true, false) => format!("{e:.precision$}"),
    }
}

/// Sample standard deviation (n - 1 denominator).
fn std_dev(xs: &[f64]) -> f64 {
    let m = mean(xs);
    let ss: f64 = xs.iter().map(|x| (x - m) * (x - m)).sum();
    (ss / (xs.len() as f64 - 1.0)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_that_overflowed_read_unbounded() {
        assert_eq!(show_error(0.01234, 3, false), "0.012");
        assert_eq!(show_error(12345.0, 2, true), "1.23e4");
        assert_eq!(show_error(f64::NAN, 3, false), "unbounded");
        assert_eq!(show_error(f64::INFINITY, 3, true), "unbounded");
        assert!(!std_dev(&[1.0, f64::INFINITY, 2.0]).is_finite());
    }

    #[test]
    fn std_dev_matches_definition() {
        let xs = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        // Population sd is 2; the sample sd is 2 * sqrt(8/7).
        assert!((std_dev(&xs) - 2.0 * (8.0f64 / 7.0).sqrt()).abs() < 1e-12);
    }
}

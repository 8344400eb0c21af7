//! Everything a `frugal fit` run produces, as one serialisable report plus a
//! human-readable table.

use std::fmt;
use std::time::Instant;

use serde::Serialize;

use crate::allocation::{AllocationPoint, ComputeOptimal};
use crate::approach2::{fit_approach2, Approach2Fit, IsoFlopOptions};
use crate::approach3::{fit_approach3, Approach3Fit, FitOptions};
use crate::bootstrap::{bootstrap, show_error, Bootstrap, BootstrapOptions};
use crate::data::{exclude_top_loss, Observation};
use crate::error::{FitError, Result};

/// What to run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportOptions {
    /// Drop this many highest-loss observations first (Besiroglu et al. drop 5).
    pub exclude_top_loss: usize,
    pub fit: FitOptions,
    /// `None` skips the bootstrap.
    pub bootstrap: Option<BootstrapOptions>,
    pub isoflop: IsoFlopOptions,
}

/// Budgets at which the report tabulates the compute-optimal allocation.
pub const EXAMPLE_BUDGETS: [f64; 4] = [1e20, 1e22, 5.76e23, 1e25];

/// The full result of a fit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FitReport {
    pub n_observations_total: usize,
    pub excluded_top_loss: usize,
    pub n_observations: usize,
    pub huber_delta: f64,
    pub approach3: Approach3Fit,
    /// Wall time of the grid fit.
    pub grid_seconds: f64,
    pub bootstrap: Option<Bootstrap>,
    pub compute_optimal: Option<ComputeOptimal>,
    /// The allocation at [`EXAMPLE_BUDGETS`] (5.76e23 is Chinchilla's budget).
    pub allocation_examples: Vec<AllocationPoint>,
    pub approach2: Option<Approach2Fit>,
    /// Why approach 2 was not applicable, when it was not.
    pub approach2_note: Option<String>,
}

/// Run approach 3 (with optional bootstrap), the allocation, and approach 2.
pub fn fit_report(obs: &[Observation], opts: &ReportOptions) -> Result<FitReport> {
    let data = exclude_top_loss(obs, opts.exclude_top_loss);
    let started = Instant::now();
    let approach3 = fit_approach3(&data, &opts.fit)?;
    let grid_seconds = started.elapsed().as_secs_f64();
    let bootstrap = opts
        .bootstrap
        .as_ref()
        .map(|b| bootstrap(&data, &approach3, &opts.fit, b))
        .transpose()?;
    let compute_optimal = ComputeOptimal::from_law(&approach3.law);
    let allocation_examples = compute_optimal
        .map(|c| EXAMPLE_BUDGETS.iter().map(|&b| c.at(b)).collect())
        .unwrap_or_default();
    let (approach2, approach2_note) = match fit_approach2(&data, &opts.isoflop) {
        Ok(fit) => (Some(fit), None),
        Err(e @ FitError::NotApplicable(_)) => (None, Some(e.to_string())),
        Err(e) => return Err(e),
    };
    Ok(FitReport {
        n_observations_total: obs.len(),
        excluded_top_loss: obs.len() - data.len(),
        n_observations: data.len(),
        huber_delta: opts.fit.huber_delta,
        approach3,
        grid_seconds,
        bootstrap,
        compute_optimal,
        allocation_examples,
        approach2,
        approach2_note,
    })
}

impl FitReport {
    /// Pretty-printed JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| FitError::InvalidOption(e.to_string()))
    }
}

impl fmt::Display for FitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fit = &self.approach3;
        let law = &fit.law;
        writeln!(
            f,
            "Chinchilla approach 3: L(N, D) = E + A/N^alpha + B/D^beta"
        )?;
        writeln!(
            f,
            "  {} observations ({} of {} dropped as highest-loss), Huber delta {:e}, summed",
            self.n_observations,
            self.excluded_top_loss,
            self.n_observations_total,
            self.huber_delta
        )?;
        let se = self.bootstrap.as_ref().map(|b| b.standard_errors);
        let row = |f: &mut fmt::Formatter<'_>, name: &str, v: f64, e: Option<f64>| match e {
            Some(e) => writeln!(f, "  {name:<6} {v:>12.4} ± {}", show_error(e, 4, false)),
            None => writeln!(f, "  {name:<6} {v:>12.4}"),
        };
        row(f, "E", law.e, se.map(|s| s.e))?;
        row(f, "A", law.a, se.map(|s| s.a))?;
        row(f, "B", law.b, se.map(|s| s.b))?;
        row(f, "alpha", law.alpha, se.map(|s| s.alpha))?;
        row(f, "beta", law.beta, se.map(|s| s.beta))?;
        writeln!(
            f,
            "  objective {:.10e}  ({} of {} starts converged, grid fit {:.2} s)",
            fit.objective, fit.n_converged, fit.n_starts, self.grid_seconds
        )?;
        if let Some(b) = &self.bootstrap {
            writeln!(
                f,
                "  ± are bootstrap standard errors over {} resamples (seed {}, {} failed)",
                b.successful, b.options.seed, b.failed
            )?;
        }
        match &self.compute_optimal {
            Some(c) => {
                writeln!(
                    f,
                    "Compute-optimal allocation: N* = G (C/6)^a, D* = (C/6)/N*"
                )?;
                let se_a = se.map_or(String::new(), |s| {
                    format!(" ± {}", show_error(s.a_exponent, 4, false))
                });
                writeln!(f, "  a = {:.4}{se_a}, b = {:.4}, G = {:.4e}", c.a, c.b, c.g)?;
                for p in &self.allocation_examples {
                    writeln!(
                        f,
                        "  C = {:.2e}: N* = {:.3e}, D* = {:.3e} ({:.1} tokens/param)",
                        p.compute, p.n_opt, p.d_opt, p.tokens_per_param
                    )?;
                }
            }
            None => writeln!(
                f,
                "Compute-optimal allocation undefined (alpha or beta <= 0)"
            )?,
        }
        match (&self.approach2, &self.approach2_note) {
            (Some(a2), _) => {
                writeln!(
                    f,
                    "Approach 2 (isoFLOP parabolas, budgets grouped within {:.0}%):",
                    a2.options.rel_tol * 100.0
                )?;
                writeln!(
                    f,
                    "  N* ∝ C^{:.4}, D* ∝ C^{:.4} from {} budgets ({} skipped)",
                    a2.a,
                    a2.b,
                    a2.budgets.len(),
                    a2.skipped.len()
                )?;
                for b in &a2.budgets {
                    writeln!(
                        f,
                        "  C = {:.2e} ({:>2} runs): N* = {:.3e}, D* = {:.3e}, L* = {:.4}",
                        b.compute, b.n_points, b.n_opt, b.d_opt, b.loss_opt
                    )?;
                }
            }
            (None, Some(note)) => writeln!(f, "Approach 2 not applicable: {note}")?,
            (None, None) => {}
        }
        Ok(())
    }
}

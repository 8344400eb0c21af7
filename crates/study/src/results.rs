//! A study's results: final losses per (N, D), SWA vs raw, the fit, and
//! `report.md`.

use crate::local::is_done;
use crate::plan::{Family, Job, JobAction, Plan};
use crate::{Result, StudyError};
use frugal_fit::{fit_approach3, held_out_check, ComputeOptimal, FitOptions, Observation};
use frugal_train::metrics::{self, METRICS_FILE};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// One (N, D) point: a cooldown branch or a cosine run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub id: String,
    pub size: String,
    pub family: Family,
    pub n: usize,
    pub d: u64,
    pub flops: f64,
    pub loss: f64,
}

/// SWA of a constant-LR run against its raw weights at the same step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SwaPoint {
    pub id: String,
    pub step: u64,
    pub raw: f64,
    pub swa: f64,
}

/// Everything `fit` and `report` use.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub points: Vec<Point>,
    pub swa: Vec<SwaPoint>,
    /// FLOPs of the finished jobs, per family.
    pub flops_run: [f64; 2],
}

fn records(job: &Job, study_dir: &Path) -> Result<Vec<serde_json::Value>> {
    Ok(metrics::read(&study_dir.join(&job.out).join(METRICS_FILE))?)
}

/// The validation loss logged at a job's final step.
fn final_val(job: &Job, study_dir: &Path, key: &str) -> Result<Option<f64>> {
    Ok(records(job, study_dir)?
        .iter()
        .rev()
        .find(|r| r["step"].as_u64() == Some(job.final_step))
        .and_then(|r| r[key].as_f64()))
}

/// Reads the finished jobs' final losses.
pub fn collect(plan: &Plan, study_dir: &Path) -> Result<Results> {
    let mut points = Vec::new();
    let mut swa = Vec::new();
    let mut flops_run = [0.0, 0.0];
    for job in plan.jobs.iter().filter(|j| is_done(j, study_dir)) {
        flops_run[(job.family == Family::Cosine) as usize] += job.flops;
        if job.point {
            if let Some(loss) = final_val(job, study_dir, "val_loss")? {
                points.push(Point {
                    id: job.id.clone(),
                    size: job.size.clone(),
                    family: job.family,
                    n: job.params,
                    d: job.total_tokens,
                    flops: job.total_flops,
                    loss,
                });
            }
        } else if matches!(job.action, JobAction::Train { .. }) {
            let raw = final_val(job, study_dir, "val_loss")?;
            let avg = final_val(job, study_dir, "val_loss_swa")?;
            if let (Some(raw), Some(avg)) = (raw, avg) {
                swa.push(SwaPoint {
                    id: job.id.clone(),
                    step: job.final_step,
                    raw,
                    swa: avg,
                });
            }
        }
    }
    Ok(Results {
        points,
        swa,
        flops_run,
    })
}

/// The fit of one family, and the law fitted without the largest size
/// checked on that size.
#[derive(Debug, Clone, Serialize)]
pub struct FamilyFit {
    pub family: Family,
    pub points: usize,
    pub fit: frugal_fit::Approach3Fit,
    pub compute_optimal: Option<ComputeOptimal>,
    pub held_out: Option<frugal_fit::HeldOutReport>,
}

pub fn fit_family(results: &Results, family: Family) -> Result<FamilyFit> {
    let obs: Vec<Observation> = results
        .points
        .iter()
        .filter(|p| p.family == family)
        .map(|p| Observation {
            n: p.n as f64,
            d: p.d as f64,
            loss: p.loss,
        })
        .collect();
    if obs.len() < 5 {
        return Err(StudyError::Spec(format!(
            "{family:?}: {} finished points, a fit needs at least 5",
            obs.len()
        )));
    }
    let opts = FitOptions::default();
    let fit = fit_approach3(&obs, &opts)?;
    let largest = obs.iter().map(|o| o.n).fold(0.0, f64::max);
    let smaller = obs.iter().filter(|o| o.n < largest).count();
    let held_out = if smaller >= 5 {
        Some(held_out_check(&obs, |o| o.n < largest, &opts)?.1)
    } else {
        None
    };
    Ok(FamilyFit {
        family,
        points: obs.len(),
        compute_optimal: ComputeOptimal::from_law(&fit.law),
        fit,
        held_out,
    })
}

/// `report.md`: compute, the diagonal comparison, SWA, fits.
pub fn report_markdown(plan: &Plan, results: &Results, fits: &[FamilyFit]) -> String {
    let mut s = String::from("# Scaling study report\n\n## Compute\n\n");
    let pw = plan.family_flops(Family::Wsd);
    let pc = plan.family_flops(Family::Cosine);
    let [rw, rc] = results.flops_run;
    let _ = writeln!(
        s,
        "| | wsd FLOPs | cosine FLOPs | saving |\n|---|---|---|---|"
    );
    let saving = |w: f64, c: f64| {
        if w > 0.0 && c > 0.0 {
            format!("{:.1} %", 100.0 * (1.0 - w / c))
        } else {
            "-".into()
        }
    };
    let _ = writeln!(s, "| planned | {pw:.3e} | {pc:.3e} | {} |", saving(pw, pc));
    let _ = writeln!(s, "| run | {rw:.3e} | {rc:.3e} | {} |", saving(rw, rc));
    s.push_str("\n## Cooldown vs cosine at equal (N, D)\n\n");
    s.push_str(
        "| size | N | D | cooldown | cosine | cooldown − cosine |\n|---|---|---|---|---|---|\n",
    );
    let (mut le, mut pairs, mut worst) = (0, 0, 0.0f64);
    for w in results.points.iter().filter(|p| p.family == Family::Wsd) {
        if let Some(c) = results
            .points
            .iter()
            .find(|c| c.family == Family::Cosine && c.n == w.n && c.d == w.d)
        {
            let gap = w.loss - c.loss;
            pairs += 1;
            le += (gap <= 0.0) as usize;
            if gap.abs() > worst.abs() {
                worst = gap;
            }
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.4} | {:.4} | {:+.4} |",
                w.size, w.n, w.d, w.loss, c.loss, gap
            );
        }
    }
    let _ = writeln!(
        s,
        "\nCooldown ≤ cosine at {le} of {pairs} points; largest gap {worst:+.4} nats.\n"
    );
    if !results.swa.is_empty() {
        s.push_str("## SWA on the constant-LR runs\n\n| run | step | raw | SWA | SWA − raw |\n|---|---|---|---|---|\n");
        for p in &results.swa {
            let _ = writeln!(
                s,
                "| {} | {} | {:.4} | {:.4} | {:+.4} |",
                p.id,
                p.step,
                p.raw,
                p.swa,
                p.swa - p.raw
            );
        }
        s.push('\n');
    }
    for f in fits {
        let l = &f.fit.law;
        let _ = writeln!(
            s,
            "## Fit: {:?} ({} points)\n\nL(N, D) = {:.4} + {:.4e}/N^{:.4} + {:.4e}/D^{:.4} (objective {:.3e})\n",
            f.family, f.points, l.e, l.a, l.alpha, l.b, l.beta, f.fit.objective
        );
        if let Some(h) = &f.held_out {
            let _ = writeln!(
                s,
                "Fitted without the largest size, predicting it: mean |relative error| {:.2} %, max {:.2} %.\n",
                100.0 * h.mean_abs_rel_error,
                100.0 * h.max_abs_rel_error
            );
        }
        if let Some(co) = &f.compute_optimal {
            s.push_str("| C (FLOPs) | N* | D* |\n|---|---|---|\n");
            for c in [1e15, 1e16, 1e17, 1e18] {
                let _ = writeln!(s, "| {c:.0e} | {:.3e} | {:.3e} |", co.n_opt(c), co.d_opt(c));
            }
            s.push('\n');
        }
    }
    s
}

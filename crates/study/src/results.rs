//! A study's results: final losses per (N, D), SWA vs raw, and the fits.

use crate::local::is_done;
use crate::plan::{Family, Job, JobAction, Plan};
use crate::{Result, StudyError};
use frugal_fit::{
    fit_approach3, held_out_check, Bootstrap, BootstrapOptions, ComputeOptimal, FitOptions,
    HeldOutReport, Observation, ScalingLaw,
};
use frugal_train::metrics::{self, METRICS_FILE};
use serde::Serialize;
use std::path::Path;

/// Where an (N, D) point's loss comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A cooldown branch of a constant-LR run (the wsd family).
    Cooldown,
    /// A cosine run of its own.
    Cosine,
    /// The SWA average of a constant-LR run at the budget's step, no cooldown.
    Swa,
}

impl Source {
    pub const ALL: [Source; 3] = [Source::Cooldown, Source::Cosine, Source::Swa];

    pub fn label(self) -> &'static str {
        match self {
            Source::Cooldown => "wsd cooldowns",
            Source::Cosine => "cosine",
            Source::Swa => "SWA of the constant runs",
        }
    }

    /// A short name for file names and CSV columns.
    pub fn key(self) -> &'static str {
        match self {
            Source::Cooldown => "wsd",
            Source::Cosine => "cosine",
            Source::Swa => "swa",
        }
    }
}

/// One (N, D) point: a cooldown branch, a cosine run, or SWA at a budget.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub id: String,
    pub size: String,
    pub source: Source,
    pub n: usize,
    pub d: u64,
    pub flops: f64,
    pub loss: f64,
}

/// A constant-LR run at one budget's step: raw weights, their SWA average,
/// and the cooldown branch that ends there.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SwaPoint {
    pub id: String,
    pub step: u64,
    pub raw: f64,
    pub swa: f64,
    pub cooldown: Option<f64>,
}

/// Everything `fit` and `report` use.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub points: Vec<Point>,
    pub swa: Vec<SwaPoint>,
    /// FLOPs of the finished jobs, per family.
    pub flops_run: [f64; 2],
}

impl Results {
    pub fn of(&self, source: Source) -> impl Iterator<Item = &Point> {
        self.points.iter().filter(move |p| p.source == source)
    }

    /// (cooldown, cosine) pairs at equal (N, D).
    pub fn diagonal(&self) -> Vec<(&Point, &Point)> {
        self.of(Source::Cooldown)
            .filter_map(|w| {
                let c = self.of(Source::Cosine).find(|c| c.n == w.n && c.d == w.d)?;
                Some((w, c))
            })
            .collect()
    }
}

fn records(job: &Job, study_dir: &Path) -> Result<Vec<serde_json::Value>> {
    Ok(metrics::read(&study_dir.join(&job.out).join(METRICS_FILE))?)
}

/// A value logged at `step` in a run's metrics.
fn logged(records: &[serde_json::Value], step: u64, key: &str) -> Option<f64> {
    records
        .iter()
        .rev()
        .find(|r| r["step"].as_u64() == Some(step) && r.get(key).is_some())
        .and_then(|r| r[key].as_f64())
}

/// Reads the finished jobs' final losses, and the SWA losses of the
/// constant runs at every budget's step.
pub fn collect(plan: &Plan, study_dir: &Path) -> Result<Results> {
    let mut points = Vec::new();
    let mut swa = Vec::new();
    let mut flops_run = [0.0, 0.0];
    let done: Vec<&Job> = plan.jobs.iter().filter(|j| is_done(j, study_dir)).collect();
    for job in &done {
        flops_run[(job.family == Family::Cosine) as usize] += job.flops;
        if !job.point {
            continue;
        }
        if let Some(loss) = logged(&records(job, study_dir)?, job.final_step, "val_loss") {
            let source = match job.family {
                Family::Wsd => Source::Cooldown,
                Family::Cosine => Source::Cosine,
            };
            points.push(point(job, source, job.total_tokens, job.total_flops, loss));
        }
    }
    // SWA: the constant run's average at each branch's final step, beside its
    // raw weights there (the run itself keeps going, so both are logged).
    for parent in done
        .iter()
        .filter(|j| j.family == Family::Wsd && matches!(j.action, JobAction::Train { .. }))
    {
        let recs = records(parent, study_dir)?;
        let branches = plan.jobs.iter().filter(
            |j| matches!(&j.action, JobAction::Cooldown { parent: p, .. } if *p == parent.id),
        );
        for b in branches {
            let (Some(raw), Some(avg)) = (
                logged(&recs, b.final_step, "val_loss"),
                logged(&recs, b.final_step, "val_loss_swa"),
            ) else {
                continue;
            };
            let cooldown = points.iter().find(|p| p.id == b.id).map(|p| p.loss);
            swa.push(SwaPoint {
                id: parent.id.clone(),
                step: b.final_step,
                raw,
                swa: avg,
                cooldown,
            });
            let flops = parent.flops * b.final_step as f64 / parent.final_step as f64;
            let mut p = point(parent, Source::Swa, b.total_tokens, flops, avg);
            p.id = format!("{}-swa-{}", parent.id, b.final_step);
            points.push(p);
        }
    }
    Ok(Results {
        points,
        swa,
        flops_run,
    })
}

fn point(job: &Job, source: Source, d: u64, flops: f64, loss: f64) -> Point {
    Point {
        id: job.id.clone(),
        size: job.size.clone(),
        source,
        n: job.params,
        d,
        flops,
        loss,
    }
}

/// The law fitted to one source's points, with its bootstrap and the law
/// fitted without the largest size, checked on that size.
#[derive(Debug, Clone, Serialize)]
pub struct FamilyFit {
    pub source: Source,
    pub points: usize,
    pub fit: frugal_fit::Approach3Fit,
    pub compute_optimal: Option<ComputeOptimal>,
    pub bootstrap: Option<Bootstrap>,
    pub held_out: Option<HeldOut>,
}

/// A law fitted on every size but the largest, and its errors there.
#[derive(Debug, Clone, Serialize)]
pub struct HeldOut {
    /// Parameters of the held-out (largest) size.
    pub n: usize,
    pub law: ScalingLaw,
    pub report: HeldOutReport,
}

/// Fits approach 3 to one source's points; `bootstrap` resamples (0 = none)
/// give standard errors and the confidence band of the report's law plot.
pub fn fit_source(results: &Results, source: Source, bootstrap: usize) -> Result<FamilyFit> {
    let obs: Vec<Observation> = results
        .of(source)
        .map(|p| Observation {
            n: p.n as f64,
            d: p.d as f64,
            loss: p.loss,
        })
        .collect();
    if obs.len() < 5 {
        return Err(StudyError::Spec(format!(
            "{}: {} finished points, a fit needs at least 5",
            source.label(),
            obs.len()
        )));
    }
    let opts = FitOptions::default();
    let fit = fit_approach3(&obs, &opts)?;
    let largest = results.of(source).map(|p| p.n).max().unwrap_or(0);
    let smaller = obs.iter().filter(|o| o.n < largest as f64).count();
    let held_out = if smaller >= 5 {
        let (f, report) = held_out_check(&obs, |o| o.n < largest as f64, &opts)?;
        Some(HeldOut {
            n: largest,
            law: f.law,
            report,
        })
    } else {
        None
    };
    let bootstrap = match bootstrap {
        0 => None,
        b => {
            let bo = BootstrapOptions {
                resamples: b.max(2),
                ..BootstrapOptions::default()
            };
            Some(frugal_fit::bootstrap(&obs, &fit, &opts, &bo)?)
        }
    };
    Ok(FamilyFit {
        source,
        points: obs.len(),
        compute_optimal: ComputeOptimal::from_law(&fit.law),
        fit,
        bootstrap,
        held_out,
    })
}

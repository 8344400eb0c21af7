//! The study's work graph, as plain data.
//!
//! A [`Plan`] is a list of [`Job`]s, each a `frugal train` run or a `frugal
//! cooldown` branch with the checkpoint it must wait for. Nothing here knows
//! how jobs are executed, so a cluster executor can consume the same plan.

use crate::spec::StudySpec;
use crate::{Result, StudyError};
use frugal_model::flops::training_flops;
use frugal_schedule::CooldownShape;
use frugal_train::checkpoint::{checkpoints_dir, step_dir_name};
use frugal_train::config::{AveragingSection, ScheduleKind};
use frugal_train::TrainConfig;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Wsd,
    Cosine,
}

/// What a job executes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum JobAction {
    /// `frugal train --config CONFIG --out OUT`.
    Train { config: Box<TrainConfig> },
    /// `frugal cooldown --from PARENT/checkpoints/step-N --steps K ...`.
    Cooldown {
        parent: String,
        from_step: u64,
        steps: u64,
        shape: CooldownShape,
        final_factor: f64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    pub id: String,
    pub size: String,
    pub family: Family,
    pub action: JobAction,
    /// Run directory, relative to the study directory.
    pub out: PathBuf,
    /// Checkpoint directory (relative) that must exist before the job starts.
    pub needs: Option<PathBuf>,
    /// The step the job's run ends at (complete when that checkpoint exists).
    pub final_step: u64,
    /// Tokens the job itself trains on.
    pub tokens: u64,
    /// FLOPs the job itself spends.
    pub flops: f64,
    /// Whether the job's final loss is an (N, D) point of the study.
    pub point: bool,
    /// Model parameters N.
    pub params: usize,
    /// Tokens seen by the model at the end of the job (D of its point).
    pub total_tokens: u64,
    /// Compute behind that point, including the parent's share.
    pub total_flops: f64,
}

impl Job {
    /// The checkpoint that marks the job as finished.
    pub fn final_checkpoint(&self, study_dir: &Path) -> PathBuf {
        checkpoints_dir(&study_dir.join(&self.out)).join(step_dir_name(self.final_step))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub jobs: Vec<Job>,
}

/// Steps of a budget: tokens over tokens per step, at least one.
fn steps_for(tokens: f64, per_step: u64) -> u64 {
    ((tokens / per_step as f64).round() as u64).max(1)
}

impl Plan {
    /// Builds the graph. `vocab` is the dataset's vocabulary size.
    pub fn build(spec: &StudySpec, overrides: &[String], vocab: usize) -> Result<Self> {
        let mut jobs = Vec::new();
        for size in &spec.sizes {
            let base = spec.run_config(size, overrides)?;
            let model = base.model_config(vocab)?;
            let params = model.param_count();
            let per_step = base.tokens_per_step();
            let seq = base.train.seq_len;
            let flops = |steps: u64| training_flops(&model, seq, (steps * per_step) as f64);
            let mut budgets: Vec<u64> = if spec.budgets.tokens.is_empty() {
                spec.budgets
                    .tokens_per_param
                    .iter()
                    .map(|k| steps_for(k * params as f64, per_step))
                    .collect()
            } else {
                spec.budgets
                    .tokens
                    .iter()
                    .map(|t| steps_for(*t, per_step))
                    .collect()
            };
            budgets.sort();
            budgets.dedup();
            let warmup = base.schedule.warmup_steps;
            if budgets[0] <= warmup {
                return Err(StudyError::Spec(format!(
                    "size {}: the smallest budget ({} steps) is not longer than the warmup ({warmup})",
                    size.name, budgets[0]
                )));
            }
            let max = *budgets.last().unwrap_or(&1);
            if spec.wants("wsd") {
                let w = &spec.wsd;
                let id = format!("{}-const", size.name);
                // Branch points: floor(fraction·S) cooldown steps, as WSD does.
                let points: Vec<(u64, u64)> = budgets
                    .iter()
                    .map(|&s| {
                        let k = ((w.cooldown_fraction * s as f64).floor() as u64).max(1);
                        (s - k, k)
                    })
                    .collect();
                let mut cfg = base.clone();
                cfg.train.steps = max;
                cfg.train.lr = w.lr;
                cfg.schedule.kind = ScheduleKind::Constant;
                cfg.checkpoint.at = points.iter().map(|p| p.0).collect();
                cfg.averaging = AveragingSection {
                    swa: w.swa.clone(),
                    ema: None,
                };
                let cfg = revalidate(cfg)?;
                let out = PathBuf::from("runs").join(&id);
                jobs.push(Job {
                    id: id.clone(),
                    size: size.name.clone(),
                    family: Family::Wsd,
                    action: JobAction::Train {
                        config: Box::new(cfg),
                    },
                    out: out.clone(),
                    needs: None,
                    final_step: max,
                    tokens: max * per_step,
                    flops: flops(max),
                    point: false,
                    params,
                    total_tokens: max * per_step,
                    total_flops: flops(max),
                });
                for (n, k) in points {
                    let bid = format!("{}-wsd-{}", size.name, n + k);
                    jobs.push(Job {
                        id: bid.clone(),
                        size: size.name.clone(),
                        family: Family::Wsd,
                        action: JobAction::Cooldown {
                            parent: id.clone(),
                            from_step: n,
                            steps: k,
                            shape: w.cooldown_shape,
                            final_factor: w.final_factor,
                        },
                        out: PathBuf::from("runs").join(&bid),
                        needs: Some(checkpoints_dir(&out).join(step_dir_name(n))),
                        final_step: n + k,
                        tokens: k * per_step,
                        flops: flops(k),
                        point: true,
                        params,
                        total_tokens: (n + k) * per_step,
                        total_flops: flops(n + k),
                    });
                }
            }
            if spec.wants("cosine") {
                for &s in &budgets {
                    let id = format!("{}-cos-{s}", size.name);
                    let mut cfg = base.clone();
                    cfg.train.steps = s;
                    cfg.train.lr = spec.cosine.lr;
                    cfg.schedule.kind = ScheduleKind::Cosine;
                    cfg.schedule.cosine_final = spec.cosine.final_factor;
                    cfg.averaging = AveragingSection::default();
                    jobs.push(Job {
                        id: id.clone(),
                        size: size.name.clone(),
                        family: Family::Cosine,
                        action: JobAction::Train {
                            config: Box::new(revalidate(cfg)?),
                        },
                        out: PathBuf::from("runs").join(&id),
                        needs: None,
                        final_step: s,
                        tokens: s * per_step,
                        flops: flops(s),
                        point: true,
                        params,
                        total_tokens: s * per_step,
                        total_flops: flops(s),
                    });
                }
            }
        }
        Ok(Self { jobs })
    }

    /// FLOPs spent by a family's jobs.
    pub fn family_flops(&self, family: Family) -> f64 {
        self.jobs
            .iter()
            .filter(|j| j.family == family)
            .map(|j| j.flops)
            .sum()
    }

    /// `1 − wsd/cosine`: the fraction of the cosine grid's compute saved.
    pub fn saving(&self) -> Option<f64> {
        let (w, c) = (
            self.family_flops(Family::Wsd),
            self.family_flops(Family::Cosine),
        );
        (w > 0.0 && c > 0.0).then(|| 1.0 - w / c)
    }

    pub fn get(&self, id: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.id == id)
    }

    /// The graph and the compute per family, for `frugal study plan`.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for j in &self.jobs {
            let what = match &j.action {
                JobAction::Train { config } => format!(
                    "train {:?} {} steps, lr {}",
                    config.schedule.kind, j.final_step, config.train.lr
                )
                .to_lowercase(),
                JobAction::Cooldown {
                    parent,
                    from_step,
                    steps,
                    shape,
                    ..
                } => format!("cooldown {shape} {steps} steps from {parent} @ step {from_step}"),
            };
            let _ = writeln!(
                s,
                "{:<22} N={:<9} D={:<11} {:.3e} FLOPs  {}",
                j.id, j.params, j.total_tokens, j.flops, what
            );
        }
        let (w, c) = (
            self.family_flops(Family::Wsd),
            self.family_flops(Family::Cosine),
        );
        let _ = writeln!(s, "\nFLOPs  wsd {w:.4e}  cosine {c:.4e}");
        if let Some(saving) = self.saving() {
            let _ = writeln!(
                s,
                "wsd saves {:.1} % of the cosine grid's compute",
                100.0 * saving
            );
        }
        s
    }
}

/// Checks a derived config the way a run would.
fn revalidate(cfg: TrainConfig) -> Result<TrainConfig> {
    Ok(TrainConfig::from_toml(&cfg.to_toml(), &[])?)
}

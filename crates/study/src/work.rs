//! The commands that execute a [`Plan`], shared by every executor.
//!
//! Both the local pool and the Slurm executor run a job as the same `frugal`
//! subcommand; the Slurm one additionally cuts a constant-LR run into
//! segments that end at its branch points, so that each branch can depend
//! on the segment that writes its checkpoint (see docs/cluster.md).

use crate::plan::{Job, JobAction, Plan};
use crate::{Result, StudyError};
use frugal_train::checkpoint::{checkpoints_dir, step_dir_name, STATE_FILE};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// One executable unit: a whole job, or the part of a training run that
/// ends at `end_step`.
#[derive(Debug, Clone, PartialEq)]
pub struct Task<'a> {
    /// `JOB` for a whole job, `JOB.to-STEP` for a segment.
    pub name: String,
    pub job: &'a Job,
    /// The step this task trains up to.
    pub end_step: u64,
    /// Index (into the task list) of the task that must succeed first.
    pub after: Option<usize>,
}

impl Task<'_> {
    pub fn is_segment(&self) -> bool {
        self.end_step != self.job.final_step
    }

    /// Finished when the checkpoint at `end_step` is complete.
    pub fn is_done(&self, study_dir: &Path) -> bool {
        checkpoints_dir(&study_dir.join(&self.job.out))
            .join(step_dir_name(self.end_step))
            .join(STATE_FILE)
            .is_file()
    }
}

/// The plan as tasks in dependency order (a task's `after` comes before it).
///
/// With `segmented`, every training run that branches are taken from is cut
/// at the branch points: segment k resumes from the checkpoint segment k−1
/// wrote, and a branch depends on the segment ending at its branch step.
/// Without, each job is one task (the local pool waits for checkpoint
/// files instead).
pub fn tasks(plan: &Plan, segmented: bool) -> Result<Vec<Task<'_>>> {
    let mut out: Vec<Task> = Vec::new();
    for job in &plan.jobs {
        match &job.action {
            JobAction::Train { .. } => {
                let mut ends: Vec<u64> = if segmented {
                    branch_steps(plan, &job.id)
                } else {
                    Vec::new()
                };
                ends.retain(|&s| s > 0 && s < job.final_step);
                ends.push(job.final_step);
                ends.sort();
                ends.dedup();
                let whole = ends.len() == 1;
                for end in ends {
                    let after = match out.last() {
                        Some(t) if !whole && t.job.id == job.id => Some(out.len() - 1),
                        _ => None,
                    };
                    let name = if whole {
                        job.id.clone()
                    } else {
                        format!("{}.to-{end}", job.id)
                    };
                    out.push(Task {
                        name,
                        job,
                        end_step: end,
                        after,
                    });
                }
            }
            JobAction::Cooldown {
                parent, from_step, ..
            } => {
                let after = if segmented {
                    let i = out
                        .iter()
                        .position(|t| t.job.id == *parent && t.end_step == *from_step)
                        .ok_or_else(|| StudyError::Job {
                            job: job.id.clone(),
                            message: format!(
                                "no task of {parent} ends at step {from_step} (is the parent listed first?)"
                            ),
                        })?;
                    Some(i)
                } else {
                    None
                };
                out.push(Task {
                    name: job.id.clone(),
                    job,
                    end_step: job.final_step,
                    after,
                });
            }
        }
    }
    Ok(out)
}

/// Steps of `parent` that cooldown branches start from.
fn branch_steps(plan: &Plan, parent: &str) -> Vec<u64> {
    plan.jobs
        .iter()
        .filter_map(|j| match &j.action {
            JobAction::Cooldown {
                parent: p,
                from_step,
                ..
            } if p == parent => Some(*from_step),
            _ => None,
        })
        .collect()
}

/// Where a training job's config is written (by [`write_configs`]).
pub fn config_path(study_dir: &Path, job: &Job) -> PathBuf {
    study_dir.join("configs").join(format!("{}.toml", job.id))
}

/// Writes `configs/JOB.toml` for every training job (unchanged files are
/// left alone, so a job already reading one never sees a rewrite).
pub fn write_configs(plan: &Plan, study_dir: &Path) -> Result<()> {
    let dir = study_dir.join("configs");
    std::fs::create_dir_all(&dir).map_err(|e| StudyError::io(&dir, e))?;
    for job in &plan.jobs {
        if let JobAction::Train { config } = &job.action {
            let path = config_path(study_dir, job);
            let text = config.to_toml();
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                frugal_train::fsutil::write_atomic(&path, text.as_bytes())?;
            }
        }
    }
    Ok(())
}

/// The `frugal` arguments (after the global `--threads`) that run `task`:
/// `train`, `study segment` (a training run up to a branch point) or
/// `cooldown`. `device` is passed as `--device` when given.
pub fn task_args(
    task: &Task,
    plan: &Plan,
    study_dir: &Path,
    device: Option<&str>,
) -> Result<Vec<OsString>> {
    let job = task.job;
    let out = study_dir.join(&job.out);
    let mut a: Vec<OsString> = Vec::new();
    match &job.action {
        JobAction::Train { .. } => {
            if task.is_segment() {
                a.extend(["study".into(), "segment".into()]);
            } else {
                a.push("train".into());
            }
            a.push("--config".into());
            a.push(config_path(study_dir, job).into());
            if task.is_segment() {
                a.push("--until".into());
                a.push(task.end_step.to_string().into());
            }
        }
        JobAction::Cooldown {
            parent,
            from_step,
            steps,
            shape,
            final_factor,
        } => {
            let p = plan.get(parent).ok_or_else(|| StudyError::Job {
                job: job.id.clone(),
                message: format!("unknown parent {parent}"),
            })?;
            let from = checkpoints_dir(&study_dir.join(&p.out)).join(step_dir_name(*from_step));
            a.extend([
                "cooldown".into(),
                "--from".into(),
                from.into(),
                "--steps".into(),
                steps.to_string().into(),
                "--shape".into(),
                shape.name().into(),
                "--final-factor".into(),
                final_factor.to_string().into(),
            ]);
        }
    }
    a.push("--out".into());
    a.push(out.into());
    if let Some(d) = device {
        a.push("--device".into());
        a.push(d.into());
    }
    a.push("--quiet".into());
    Ok(a)
}

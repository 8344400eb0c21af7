//! A local worker pool for a [`Plan`]: each job is a `frugal train` or
//! `frugal cooldown` subprocess. Jobs whose final checkpoint exists are
//! skipped; the others are (re)started, and the trainer resumes them from
//! their latest checkpoint. A branch starts once its parent's checkpoint
//! exists, so cooldowns run while the long constant-LR run goes on.

use crate::plan::{Job, Plan};
use crate::work::{self, Task};
use crate::{Result, StudyError};
use frugal_train::checkpoint::STATE_FILE;
use frugal_train::metrics::METRICS_FILE;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to run jobs.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// The `frugal` binary (normally `std::env::current_exe()`).
    pub exe: PathBuf,
    pub jobs: usize,
    /// `--threads` for each subprocess (None: the binary's default).
    pub threads_per_job: Option<usize>,
    /// Print a status line at most this often.
    pub progress_every: Duration,
}

/// What happened to each job.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RunReport {
    pub skipped: Vec<String>,
    pub ran: Vec<String>,
}

pub fn is_done(job: &Job, study_dir: &Path) -> bool {
    job.final_checkpoint(study_dir).join(STATE_FILE).is_file()
}

/// The step a job has reached (its last metrics line), for progress.
pub fn progress_of(job: &Job, study_dir: &Path) -> u64 {
    let path = study_dir.join(&job.out).join(METRICS_FILE);
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            let last = t.lines().rev().find(|l| !l.trim().is_empty())?.to_string();
            serde_json::from_str::<serde_json::Value>(&last).ok()?["step"].as_u64()
        })
        .unwrap_or(0)
}

fn command(job: &Job, study_dir: &Path, plan: &Plan, opts: &LocalOptions) -> Result<Command> {
    let mut c = Command::new(&opts.exe);
    if let Some(t) = opts.threads_per_job {
        c.arg("--threads").arg(t.to_string());
    }
    // The local pool waits for checkpoint files, so every job is one task.
    let task = Task {
        name: job.id.clone(),
        job,
        end_step: job.final_step,
        after: None,
    };
    c.args(work::task_args(&task, plan, study_dir, None)?);
    Ok(c)
}

/// Runs every unfinished job of the plan; returns when all are done or
/// one fails (the running ones are then waited for, not killed).
pub fn run(plan: &Plan, study_dir: &Path, opts: &LocalOptions) -> Result<RunReport> {
    let logs = study_dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| StudyError::io(&logs, e))?;
    work::write_configs(plan, study_dir)?;
    let mut report = RunReport::default();
    let mut pending: Vec<&Job> = Vec::new();
    for j in &plan.jobs {
        if is_done(j, study_dir) {
            report.skipped.push(j.id.clone());
        } else {
            pending.push(j);
        }
    }
    let mut running: BTreeMap<String, (Child, &Job)> = BTreeMap::new();
    let mut failure: Option<StudyError> = None;
    let mut last_print = Instant::now()
        .checked_sub(opts.progress_every)
        .unwrap_or_else(Instant::now);
    let total = plan.jobs.len();
    loop {
        // Reap finished children.
        let ids: Vec<String> = running.keys().cloned().collect();
        for id in ids {
            let Some((child, job)) = running.get_mut(&id) else {
                continue;
            };
            if let Some(status) = child.try_wait().map_err(|e| StudyError::io(&job.out, e))? {
                let job = *job;
                running.remove(&id);
                if status.success() && is_done(job, study_dir) {
                    report.ran.push(id);
                } else if failure.is_none() {
                    failure = Some(StudyError::Job {
                        job: id.clone(),
                        message: format!(
                            "{status}; see {}",
                            logs.join(format!("{id}.log")).display()
                        ),
                    });
                }
            }
        }
        // Start what is ready.
        if failure.is_none() {
            let mut i = 0;
            while i < pending.len() && running.len() < opts.jobs.max(1) {
                let job = pending[i];
                let ready = job
                    .needs
                    .as_ref()
                    .is_none_or(|n| study_dir.join(n).join(STATE_FILE).is_file());
                if !ready {
                    i += 1;
                    continue;
                }
                pending.remove(i);
                let log_path = logs.join(format!("{}.log", job.id));
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log_path)
                    .map_err(|e| StudyError::io(&log_path, e))?;
                let err = log.try_clone().map_err(|e| StudyError::io(&log_path, e))?;
                let child = command(job, study_dir, plan, opts)?
                    .stdin(Stdio::null())
                    .stdout(log)
                    .stderr(err)
                    .spawn()
                    .map_err(|e| StudyError::io(&opts.exe, e))?;
                running.insert(job.id.clone(), (child, job));
            }
        }
        if running.is_empty() {
            if let Some(e) = failure {
                return Err(e);
            }
            if pending.is_empty() {
                break;
            }
            // Nothing runs and nothing can start: a parent never produced
            // the checkpoint a branch waits for.
            return Err(StudyError::Job {
                job: pending[0].id.clone(),
                message: "its parent checkpoint never appeared".into(),
            });
        }
        if last_print.elapsed() >= opts.progress_every {
            last_print = Instant::now();
            let done = report.skipped.len() + report.ran.len();
            let now: Vec<String> = running
                .values()
                .map(|(_, j)| format!("{} {}/{}", j.id, progress_of(j, study_dir), j.final_step))
                .collect();
            let mut err = std::io::stderr();
            let _ = writeln!(
                err,
                "study: {done}/{total} done, {} waiting | running: {}",
                pending.len(),
                now.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(report)
}

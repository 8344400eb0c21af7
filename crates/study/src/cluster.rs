//! The Slurm executor for a [`Plan`], and the status of a study's jobs.
//!
//! Every task of [`work::tasks`] (segmented) becomes one batch job in
//! `STUDY/slurm/TASK.sbatch`; a segment depends (`afterok`) on the previous
//! segment of its run, and a cooldown branch on the segment that writes its
//! checkpoint. Submitting again skips finished tasks (their checkpoint
//! exists) and tasks whose job is still queued or running, and submits the
//! rest, so a re-run after failures resubmits only what is missing.

use crate::local::progress_of;
use crate::plan::Plan;
use crate::slurm::{self, JobState, SbatchOptions, Script, Submissions};
use crate::work::{self, Task};
use crate::{Result, StudyError};
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct SlurmOptions {
    /// The `frugal` binary the jobs run (on the shared filesystem).
    pub exe: PathBuf,
    /// `--threads` of each job (and its `--cpus-per-task`).
    pub threads_per_job: usize,
    /// `--device` for each job (e.g. `cuda` when GPUs are requested).
    pub device: Option<String>,
    pub sbatch: SbatchOptions,
    /// Write the scripts, submit nothing.
    pub dry_run: bool,
}

/// What a submission did, by task name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubmitReport {
    /// (task, job id; empty in a dry run).
    pub submitted: Vec<(String, String)>,
    /// Tasks whose earlier job is still queued or running.
    pub queued: Vec<String>,
    pub finished: Vec<String>,
    pub scripts: PathBuf,
}

/// `STUDY/slurm`: scripts and `jobs.json`.
pub fn slurm_dir(study_dir: &Path) -> PathBuf {
    study_dir.join("slurm")
}

/// The batch script of one task (pure: the plan, paths and options only).
pub fn task_script(
    task: &Task,
    plan: &Plan,
    study_dir: &Path,
    opts: &SlurmOptions,
) -> Result<String> {
    let mut args: Vec<OsString> = vec!["--threads".into(), opts.threads_per_job.to_string().into()];
    args.extend(work::task_args(
        task,
        plan,
        study_dir,
        opts.device.as_deref(),
    )?);
    let command = format!("exec {}", slurm::shell_line(&opts.exe, &args));
    let log = study_dir.join("logs").join(format!("{}.log", task.job.id));
    let sb = SbatchOptions {
        cpus: opts.threads_per_job,
        ..opts.sbatch.clone()
    };
    Ok(slurm::render(
        &Script {
            job_name: &format!("frugal-{}", task.name),
            log: &log,
            workdir: study_dir,
            array: None,
            command: &command,
        },
        &sb,
    ))
}

/// Submits what is missing. `study_dir` must be absolute (jobs run elsewhere).
pub fn submit(plan: &Plan, study_dir: &Path, opts: &SlurmOptions) -> Result<SubmitReport> {
    if !study_dir.is_absolute() {
        return Err(StudyError::Slurm(format!(
            "the study directory must be an absolute path, not {}",
            study_dir.display()
        )));
    }
    let dir = slurm_dir(study_dir);
    let logs = study_dir.join("logs");
    for d in [&dir, &logs] {
        std::fs::create_dir_all(d).map_err(|e| StudyError::io(d, e))?;
    }
    work::write_configs(plan, study_dir)?;
    let tasks = work::tasks(plan, true)?;
    let mut record = Submissions::load(&dir)?;
    let queue = if opts.dry_run {
        HashMap::new()
    } else {
        slurm::queue()?
    };
    let mut report = SubmitReport {
        scripts: dir.clone(),
        ..Default::default()
    };
    // Per task: the job id later tasks depend on, and whether it is new.
    let mut ids: Vec<Option<(String, bool)>> = Vec::with_capacity(tasks.len());
    for task in &tasks {
        if task.is_done(study_dir) {
            report.finished.push(task.name.clone());
            ids.push(None);
            continue;
        }
        let dep = task.after.and_then(|i| ids[i].clone());
        let old = record
            .jobs
            .get(&task.name)
            .filter(|id| queue.get(*id).is_some_and(JobState::is_active))
            .cloned();
        if let Some(old) = old {
            if dep.as_ref().is_none_or(|d| !d.1) {
                report.queued.push(task.name.clone());
                ids.push(Some((old, false)));
                continue;
            }
            // Its dependency was just resubmitted: the old job waits on a
            // job that failed and would be cancelled; replace it now.
            slurm::scancel(&[old])?;
        }
        let script = dir.join(format!("{}.sbatch", task.name));
        let text = task_script(task, plan, study_dir, opts)?;
        std::fs::write(&script, text).map_err(|e| StudyError::io(&script, e))?;
        if opts.dry_run {
            report.submitted.push((task.name.clone(), String::new()));
            ids.push(Some((String::new(), true)));
            continue;
        }
        let after: Vec<String> = dep.into_iter().map(|d| d.0).collect();
        let id = slurm::sbatch(&script, &after)?;
        record.jobs.insert(task.name.clone(), id.clone());
        record.save(&dir)?;
        report.submitted.push((task.name.clone(), id.clone()));
        ids.push(Some((id, true)));
    }
    Ok(report)
}

/// Where a plan job stands.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStatus {
    pub id: String,
    /// `done`, `running`, `pending`, `failed`, `partial` (stopped midway,
    /// no job queued), `not started`.
    pub state: &'static str,
    pub step: u64,
    pub final_step: u64,
    /// The Slurm job and its state, or where to look.
    pub detail: String,
}

/// The status of every job from the run directories and, for a study
/// submitted to Slurm, the scheduler's view. `queue` is `None` where Slurm
/// cannot be asked (a local study, or no `squeue`).
pub fn status(
    plan: &Plan,
    study_dir: &Path,
    record: &Submissions,
    queue: Option<&HashMap<String, JobState>>,
    accounting: &HashMap<String, JobState>,
) -> Result<Vec<JobStatus>> {
    let tasks = work::tasks(plan, true)?;
    let mut out = Vec::new();
    for job in &plan.jobs {
        let step = progress_of(job, study_dir);
        let log = format!("logs/{}.log", job.id);
        let mut st = JobStatus {
            id: job.id.clone(),
            state: "not started",
            step,
            final_step: job.final_step,
            detail: String::new(),
        };
        if crate::local::is_done(job, study_dir) {
            st.state = "done";
            st.step = job.final_step;
            out.push(st);
            continue;
        }
        // The first unfinished task of the job is the one that matters.
        let task = tasks
            .iter()
            .find(|t| t.job.id == job.id && !t.is_done(study_dir));
        let submitted = task.and_then(|t| record.jobs.get(&t.name).map(|id| (t, id)));
        if step > 0 {
            st.state = "partial";
        }
        let Some((task, id)) = submitted else {
            if !record.jobs.is_empty() {
                st.detail = "not submitted".into();
            }
            out.push(st);
            continue;
        };
        let known = queue.and_then(|q| q.get(id)).or_else(|| accounting.get(id));
        match known {
            Some(js) if js.is_active() => {
                st.state = if js.state == "PENDING" {
                    "pending"
                } else {
                    "running"
                };
                st.detail = format!("job {id} ({}) {}", task.name, js.state);
                if js.state == "PENDING" && !js.reason.is_empty() && js.reason != "None" {
                    st.detail.push_str(&format!(" ({})", js.reason));
                }
            }
            Some(js) => {
                st.state = "failed";
                st.detail = format!("job {id} ({}) {}; see {log}", task.name, js.state);
            }
            None if queue.is_some() => {
                st.state = "failed";
                st.detail = format!(
                    "job {id} ({}) is no longer queued and did not finish; see {log}",
                    task.name
                );
            }
            None => st.detail = format!("job {id} ({}), state unknown", task.name),
        }
        out.push(st);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::StudySpec;

    fn plan() -> Plan {
        let spec = StudySpec::from_toml(
            r#"
families = ["wsd", "cosine"]
[[size]]
name = "a"
d_model = 16
n_layers = 1
n_heads = 2
[budgets]
tokens = [1280, 2560]
[wsd]
lr = 2e-3
[base]
data = { dataset = "/data/ds" }
train = { seq_len = 32, batch_size = 4 }
schedule = { warmup_steps = 2 }
"#,
        )
        .unwrap();
        Plan::build(&spec, &[], 512).unwrap()
    }

    fn opts() -> SlurmOptions {
        SlurmOptions {
            exe: "/opt/frugal".into(),
            threads_per_job: 2,
            device: None,
            sbatch: SbatchOptions {
                partition: Some("p".into()),
                ..Default::default()
            },
            dry_run: true,
        }
    }

    #[test]
    fn segments_and_dependencies() {
        let p = plan();
        let t = work::tasks(&p, true).unwrap();
        let names: Vec<(&str, Option<usize>)> =
            t.iter().map(|t| (t.name.as_str(), t.after)).collect();
        // 10 and 20 steps: branch points 8 and 16 cut the 20-step constant run.
        assert_eq!(
            names,
            vec![
                ("a-const.to-8", None),
                ("a-const.to-16", Some(0)),
                ("a-const.to-20", Some(1)),
                ("a-wsd-10", Some(0)),
                ("a-wsd-20", Some(1)),
                ("a-cos-10", None),
                ("a-cos-20", None),
            ]
        );
        // Unsegmented: one task per job, no dependencies.
        let u = work::tasks(&p, false).unwrap();
        assert_eq!(u.len(), p.jobs.len());
        assert!(u.iter().all(|t| t.after.is_none() && !t.is_segment()));
    }

    #[test]
    fn scripts_run_the_shared_commands() {
        let p = plan();
        let t = work::tasks(&p, true).unwrap();
        let s = Path::new("/s");
        let seg = task_script(&t[1], &p, s, &opts()).unwrap();
        assert!(
            seg.contains("#SBATCH --job-name=frugal-a-const.to-16\n"),
            "{seg}"
        );
        assert!(seg.contains("#SBATCH --output=/s/logs/a-const.log\n"));
        assert!(seg.contains("#SBATCH --cpus-per-task=2\n#SBATCH --partition=p\n"));
        assert!(seg.ends_with(
            "exec /opt/frugal --threads 2 study segment --config /s/configs/a-const.toml \
             --until 16 --out /s/runs/a-const --quiet\n"
        ));
        let last = task_script(&t[2], &p, s, &opts()).unwrap();
        assert!(last.ends_with(
            "exec /opt/frugal --threads 2 train --config /s/configs/a-const.toml \
             --out /s/runs/a-const --quiet\n"
        ));
        let br = task_script(&t[3], &p, s, &opts()).unwrap();
        assert!(br.ends_with(
            "exec /opt/frugal --threads 2 cooldown --from /s/runs/a-const/checkpoints/step-0000008 \
             --steps 2 --shape 1-sqrt --final-factor 0 --out /s/runs/a-wsd-10 --quiet\n"
        ));
        let gpu = SlurmOptions {
            device: Some("cuda".into()),
            sbatch: SbatchOptions {
                gpus: 1,
                ..Default::default()
            },
            ..opts()
        };
        let cos = task_script(&t[5], &p, s, &gpu).unwrap();
        assert!(cos.contains("#SBATCH --gpus=1\n"));
        assert!(cos.ends_with("--out /s/runs/a-cos-10 --device cuda --quiet\n"));
    }

    #[test]
    fn dry_run_writes_every_script_and_submits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = plan();
        let r = submit(&p, dir.path(), &opts()).unwrap();
        assert_eq!(r.submitted.len(), 7);
        for (name, id) in &r.submitted {
            assert!(id.is_empty());
            assert!(dir.path().join(format!("slurm/{name}.sbatch")).is_file());
        }
        assert!(dir.path().join("configs/a-const.toml").is_file());
        assert!(!Submissions::path(&slurm_dir(dir.path())).exists());
        assert!(submit(&p, Path::new("rel"), &opts()).is_err());
    }

    #[test]
    fn status_from_queue_and_record() {
        let dir = tempfile::tempdir().unwrap();
        let p = plan();
        let mut rec = Submissions::default();
        rec.jobs.insert("a-const.to-8".into(), "5".into());
        rec.jobs.insert("a-wsd-10".into(), "6".into());
        rec.jobs.insert("a-cos-10".into(), "7".into());
        let q = slurm::parse_squeue("5|RUNNING|None\n6|PENDING|Dependency\n7|CANCELLED|None\n");
        let s = status(&p, dir.path(), &rec, Some(&q), &HashMap::new()).unwrap();
        let get = |id: &str| s.iter().find(|x| x.id == id).unwrap();
        assert_eq!(get("a-const").state, "running");
        assert_eq!(get("a-wsd-10").state, "pending");
        assert!(get("a-wsd-10").detail.contains("(Dependency)"));
        assert_eq!(get("a-cos-10").state, "failed");
        assert!(get("a-cos-10").detail.contains("CANCELLED"));
        assert_eq!(get("a-cos-20").state, "not started");
        assert_eq!(get("a-cos-20").detail, "not submitted");
        // A job the controller forgot and that did not finish has failed.
        let s = status(&p, dir.path(), &rec, Some(&HashMap::new()), &HashMap::new()).unwrap();
        assert_eq!(s[0].state, "failed");
        // Without Slurm: the run directories only.
        let s = status(
            &p,
            dir.path(),
            &Submissions::default(),
            None,
            &HashMap::new(),
        )
        .unwrap();
        assert!(s
            .iter()
            .all(|x| x.state == "not started" && x.detail.is_empty()));
    }
}

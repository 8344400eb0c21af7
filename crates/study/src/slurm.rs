//! The Slurm layer: sbatch scripts (rendered by a pure function), `sbatch`
//! submission, and job states from `squeue` (and `sacct` where accounting
//! is enabled). frugal has no distributed runtime of its own: it writes one
//! batch script per unit of work and lets Slurm order them with
//! dependencies. Used by the study executor ([`crate::cluster`]) and by
//! `frugal prolong score --executor slurm`.

use crate::{Result, StudyError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Resources and pass-through options for every script.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SbatchOptions {
    pub partition: Option<String>,
    pub account: Option<String>,
    /// GPUs per job (`--gpus`); 0 requests none.
    pub gpus: u32,
    /// Wall-time limit (`--time`, Slurm syntax, e.g. `2:00:00`).
    pub time: Option<String>,
    /// CPUs per job (`--cpus-per-task`).
    pub cpus: usize,
    /// Further `#SBATCH` options, verbatim (e.g. `--qos=high`).
    pub extra: Vec<String>,
}

/// One batch script.
#[derive(Debug, Clone, PartialEq)]
pub struct Script<'a> {
    pub job_name: &'a str,
    /// `--output` (appended to, so every attempt of a run shares one log).
    pub log: &'a Path,
    /// Working directory of the job.
    pub workdir: &'a Path,
    /// `--array` spec (`0-3`, `1,3`) for array jobs.
    pub array: Option<&'a str>,
    /// The command line, already shell-quoted (see [`shell_line`]).
    pub command: &'a str,
}

/// The batch script: `#SBATCH` header, a log line per attempt, the command.
/// `--kill-on-invalid-dep` makes Slurm cancel a job whose dependency failed
/// (instead of leaving it pending forever), so a re-run sees it as missing.
pub fn render(s: &Script, o: &SbatchOptions) -> String {
    let mut t = String::from("#!/bin/bash\n");
    let mut opt = |line: String| {
        let _ = writeln!(t, "#SBATCH {line}");
    };
    opt(format!("--job-name={}", s.job_name));
    opt(format!("--output={}", s.log.display()));
    opt("--open-mode=append".into());
    opt(format!("--chdir={}", s.workdir.display()));
    opt("--kill-on-invalid-dep=yes".into());
    opt("--nodes=1".into());
    opt("--ntasks=1".into());
    opt(format!("--cpus-per-task={}", o.cpus.max(1)));
    if let Some(a) = s.array {
        opt(format!("--array={a}"));
    }
    if let Some(p) = &o.partition {
        opt(format!("--partition={p}"));
    }
    if let Some(a) = &o.account {
        opt(format!("--account={a}"));
    }
    if o.gpus > 0 {
        opt(format!("--gpus={}", o.gpus));
    }
    if let Some(time) = &o.time {
        opt(format!("--time={time}"));
    }
    for e in &o.extra {
        opt(e.clone());
    }
    t.push_str("set -euo pipefail\n");
    t.push_str(
        "echo \"== slurm job ${SLURM_JOB_ID}${SLURM_ARRAY_TASK_ID:+ task $SLURM_ARRAY_TASK_ID} on $(hostname) at $(date -u +%FT%TZ)\"\n",
    );
    t.push_str(s.command);
    t.push('\n');
    t
}

/// A word for `bash`: kept bare when it is plainly safe, else single-quoted.
pub fn shell_quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if safe {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `exe args...` as one shell line.
pub fn shell_line<S: AsRef<OsStr>>(exe: &Path, args: &[S]) -> String {
    let mut words = vec![shell_quote(exe.as_os_str())];
    words.extend(args.iter().map(|a| shell_quote(a.as_ref())));
    words.join(" ")
}

fn missing(tool: &str, e: std::io::Error) -> StudyError {
    if e.kind() == std::io::ErrorKind::NotFound {
        StudyError::Slurm(format!(
            "`{tool}` not found: is Slurm installed and on PATH? (--dry-run writes the scripts without submitting)"
        ))
    } else {
        StudyError::Slurm(format!("cannot run `{tool}`: {e}"))
    }
}

/// Submits `script`, after every job in `after` succeeded; returns the id.
pub fn sbatch(script: &Path, after: &[String]) -> Result<String> {
    let mut c = Command::new("sbatch");
    c.arg("--parsable");
    if !after.is_empty() {
        c.arg(format!("--dependency=afterok:{}", after.join(":")));
    }
    let out = c.arg(script).output().map_err(|e| missing("sbatch", e))?;
    if !out.status.success() {
        return Err(StudyError::Slurm(format!(
            "sbatch {} failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    // `--parsable` prints `ID` or `ID;CLUSTER`.
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(StudyError::Slurm(format!(
            "sbatch {}: unexpected output '{}'",
            script.display(),
            text.trim()
        )));
    }
    Ok(id)
}

/// Cancels jobs (used for a pending job whose dependency was resubmitted).
pub fn scancel(ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let out = Command::new("scancel")
        .args(ids)
        .output()
        .map_err(|e| missing("scancel", e))?;
    if !out.status.success() {
        return Err(StudyError::Slurm(format!(
            "scancel {} failed: {}",
            ids.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// A job (or array task, `ID_TASK`) as the scheduler reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    /// `PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, `CANCELLED`, …
    pub state: String,
    /// Why it is pending (`Dependency`, `Resources`, …).
    pub reason: String,
}

impl JobState {
    /// Still going to run (or running). A job pending on a dependency that
    /// can never be met is about to be cancelled, so it counts as gone.
    pub fn is_active(&self) -> bool {
        let waiting = matches!(
            self.state.as_str(),
            "PENDING"
                | "RUNNING"
                | "CONFIGURING"
                | "COMPLETING"
                | "SUSPENDED"
                | "REQUEUED"
                | "REQUEUE_HOLD"
                | "REQUEUE_FED"
                | "RESIZING"
                | "SIGNALING"
                | "STAGE_OUT"
        );
        waiting && self.reason != "DependencyNeverSatisfied"
    }
}

/// Parses `squeue -h -r -o '%i|%T|%r'` lines.
pub fn parse_squeue(text: &str) -> HashMap<String, JobState> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().splitn(3, '|');
            let id = f.next()?.trim();
            let state = f.next()?.trim();
            let reason = f.next().unwrap_or("").trim();
            (!id.is_empty()).then(|| {
                (
                    id.to_string(),
                    JobState {
                        state: state.to_string(),
                        reason: reason.to_string(),
                    },
                )
            })
        })
        .collect()
}

/// This user's jobs known to the controller: queued ones, and finished ones
/// for `MinJobAge` after they end. Array tasks appear one per line.
pub fn queue() -> Result<HashMap<String, JobState>> {
    let out = Command::new("squeue")
        .args(["--me", "-h", "-r", "-t", "all", "-o", "%i|%T|%r"])
        .output()
        .map_err(|e| missing("squeue", e))?;
    if !out.status.success() {
        return Err(StudyError::Slurm(format!(
            "squeue failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(parse_squeue(&String::from_utf8_lossy(&out.stdout)))
}

/// Final states from `sacct` for jobs the controller has forgotten; empty
/// where accounting is disabled (the run directories then tell the rest).
pub fn accounting(ids: &[String]) -> HashMap<String, JobState> {
    if ids.is_empty() {
        return HashMap::new();
    }
    let out = Command::new("sacct")
        .args(["-n", "-P", "-X", "-o", "JobID,State", "-j"])
        .arg(ids.join(","))
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| {
                let (id, state) = l.split_once('|')?;
                // `CANCELLED by 0` → `CANCELLED`.
                let state = state.split_whitespace().next()?.to_string();
                Some((
                    id.to_string(),
                    JobState {
                        state,
                        reason: String::new(),
                    },
                ))
            })
            .collect(),
        _ => HashMap::new(),
    }
}

/// The job ids submitted for each unit of work, in `DIR/jobs.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Submissions {
    /// Task name → the last Slurm job id submitted for it.
    pub jobs: BTreeMap<String, String>,
}

impl Submissions {
    pub const FILE: &'static str = "jobs.json";

    pub fn path(dir: &Path) -> PathBuf {
        dir.join(Self::FILE)
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let p = Self::path(dir);
        match std::fs::read(&p) {
            Ok(b) => Ok(serde_json::from_slice(&b)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(StudyError::io(&p, e)),
        }
    }

    /// Saved after every submission, so ids survive a crash of the submitter.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| StudyError::io(dir, e))?;
        let bytes = serde_json::to_vec_pretty(self)?;
        frugal_train::fsutil::write_atomic(&Self::path(dir), &bytes)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_has_resources_and_quoted_command() {
        let line = shell_line(
            Path::new("/opt/frugal bin/frugal"),
            &["--threads", "2", "train", "--out", "/s/runs/it's"],
        );
        assert_eq!(
            line,
            "'/opt/frugal bin/frugal' --threads 2 train --out '/s/runs/it'\\''s'"
        );
        let o = SbatchOptions {
            partition: Some("gpu".into()),
            account: Some("proj".into()),
            gpus: 1,
            time: Some("1:00:00".into()),
            cpus: 2,
            extra: vec!["--qos=high".into()],
        };
        let s = render(
            &Script {
                job_name: "frugal-a-const.to-8",
                log: Path::new("/s/logs/a-const.log"),
                workdir: Path::new("/s"),
                array: None,
                command: &line,
            },
            &o,
        );
        let want = "#!/bin/bash
#SBATCH --job-name=frugal-a-const.to-8
#SBATCH --output=/s/logs/a-const.log
#SBATCH --open-mode=append
#SBATCH --chdir=/s
#SBATCH --kill-on-invalid-dep=yes
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=2
#SBATCH --partition=gpu
#SBATCH --account=proj
#SBATCH --gpus=1
#SBATCH --time=1:00:00
#SBATCH --qos=high
set -euo pipefail
";
        assert!(s.starts_with(want), "{s}");
        assert!(s.ends_with(&format!("{line}\n")), "{s}");
        // No GPU line without GPUs, an array line for arrays.
        let s = render(
            &Script {
                job_name: "x",
                log: Path::new("/l"),
                workdir: Path::new("/"),
                array: Some("1,3"),
                command: "true",
            },
            &SbatchOptions::default(),
        );
        assert!(!s.contains("--gpus") && !s.contains("--partition"));
        assert!(s.contains("#SBATCH --array=1,3\n"), "{s}");
        assert!(s.contains("--cpus-per-task=1"));
    }

    #[test]
    fn squeue_states() {
        let q = parse_squeue(
            "12|RUNNING|None\n13|PENDING|Dependency\n14|PENDING|DependencyNeverSatisfied\n15_2|CANCELLED|None\n\n",
        );
        assert_eq!(q.len(), 4);
        assert!(q["12"].is_active() && q["13"].is_active());
        assert!(!q["14"].is_active(), "a dead dependency counts as gone");
        assert!(!q["15_2"].is_active());
        assert_eq!(q["13"].reason, "Dependency");
    }

    #[test]
    fn submissions_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Submissions::load(dir.path()).unwrap(),
            Submissions::default()
        );
        let mut s = Submissions::default();
        s.jobs.insert("a-const.to-8".into(), "17".into());
        s.save(&dir.path().join("slurm")).unwrap();
        assert_eq!(Submissions::load(&dir.path().join("slurm")).unwrap(), s);
    }
}

//! The Slurm side of `frugal study run|status` and `frugal prolong score`:
//! options, submission and status printing. Scripts and dependencies are
//! built by frugal-study (`cluster`, `slurm`); merging by frugal-prolong.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use frugal_prolong::input::InputOptions;
use frugal_prolong::merge;
use frugal_study::cluster::{self, SlurmOptions};
use frugal_study::plan::Plan;
use frugal_study::slurm::{self, SbatchOptions, Script, Submissions};
use frugal_train::{TrainConfig, Trainer};
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Executor {
    /// Subprocesses on this machine.
    Local,
    /// Batch jobs submitted with sbatch (see docs/cluster.md).
    Slurm,
}

/// Options of `--executor slurm`.
#[derive(Args, Clone, Debug, Default)]
pub struct SlurmArgs {
    /// Slurm partition of every job.
    #[arg(long)]
    pub partition: Option<String>,
    /// Slurm account charged.
    #[arg(long)]
    pub account: Option<String>,
    /// GPUs per job (`--gpus`); jobs then train on `--device cuda`.
    #[arg(long, default_value_t = 0)]
    pub gpus_per_run: u32,
    /// Wall-time limit per job (Slurm syntax, e.g. 4:00:00).
    #[arg(long)]
    pub time: Option<String>,
    /// Extra sbatch option for every job, e.g. --sbatch-arg=--qos=high (repeatable).
    #[arg(long = "sbatch-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// Write the sbatch scripts without submitting them.
    #[arg(long)]
    pub dry_run: bool,
}

impl SlurmArgs {
    fn sbatch(&self, cpus: usize) -> SbatchOptions {
        SbatchOptions {
            partition: self.partition.clone(),
            account: self.account.clone(),
            gpus: self.gpus_per_run,
            time: self.time.clone(),
            cpus,
            extra: self.sbatch_args.clone(),
        }
    }

    /// Whether any Slurm-only option was given (refused with the local executor).
    pub fn any(&self) -> bool {
        self.partition.is_some()
            || self.account.is_some()
            || self.gpus_per_run > 0
            || self.time.is_some()
            || !self.sbatch_args.is_empty()
            || self.dry_run
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))
}

/// `frugal study run --executor slurm`.
pub fn submit_study(plan: &Plan, out: &Path, threads: usize, s: &SlurmArgs) -> Result<()> {
    if s.gpus_per_run > 1 {
        eprintln!(
            "note: each run trains on one GPU (no data-parallel training yet, see docs/cluster.md); \
             requesting {} per job anyway",
            s.gpus_per_run
        );
    }
    let out = absolute(out)?;
    let opts = SlurmOptions {
        exe: std::env::current_exe()?,
        threads_per_job: threads,
        device: (s.gpus_per_run > 0).then(|| "cuda".to_string()),
        sbatch: s.sbatch(threads),
        dry_run: s.dry_run,
    };
    let r = cluster::submit(plan, &out, &opts)?;
    if !r.finished.is_empty() {
        eprintln!("already finished: {}", r.finished.join(" "));
    }
    if !r.queued.is_empty() {
        eprintln!("still queued or running: {}", r.queued.join(" "));
    }
    for (task, id) in &r.submitted {
        if s.dry_run {
            println!("would submit {task}");
        } else {
            println!("submitted {task} as job {id}");
        }
    }
    eprintln!(
        "study: {} jobs {}, {} queued or running, {} finished; scripts in {}, logs in {}",
        r.submitted.len(),
        if s.dry_run {
            "written (dry run)"
        } else {
            "submitted"
        },
        r.queued.len(),
        r.finished.len(),
        r.scripts.display(),
        out.join("logs").display()
    );
    Ok(())
}

/// `frugal study status`: one line per job, and counts.
pub fn study_status(plan: &Plan, out: &Path) -> Result<()> {
    let record = Submissions::load(&cluster::slurm_dir(out))?;
    let queue = if record.jobs.is_empty() {
        None
    } else {
        match slurm::queue() {
            Ok(q) => Some(q),
            Err(e) => {
                eprintln!("warning: {e}; showing the run directories only");
                None
            }
        }
    };
    let missing: Vec<String> = record
        .jobs
        .values()
        .filter(|id| queue.as_ref().is_some_and(|q| !q.contains_key(*id)))
        .cloned()
        .collect();
    let acct = slurm::accounting(&missing);
    let st = cluster::status(plan, out, &record, queue.as_ref(), &acct)?;
    let mut counts = std::collections::BTreeMap::new();
    for s in &st {
        *counts.entry(s.state).or_insert(0usize) += 1;
        println!(
            "{:<22} {:<11} {:>7}/{:<7} {}",
            s.id, s.state, s.step, s.final_step, s.detail
        );
    }
    let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    println!("{} jobs: {}", st.len(), summary.join(", "));
    Ok(())
}

/// `frugal study segment`: a training run up to step `until` (a Slurm
/// segment). The trainer stops there as if the run ended: it evaluates and
/// checkpoints at `until` (a branch point, checkpointed anyway); the next
/// segment resumes from that checkpoint bit-identically.
pub fn segment(config: &Path, out: &Path, until: u64, device: &str, quiet: bool) -> Result<()> {
    let cfg = TrainConfig::from_file(config, &[])?;
    let device = crate::device::parse(device)?;
    let mut trainer = Trainer::open(cfg, out, &device)
        .with_context(|| format!("cannot start the run in {}", out.display()))?;
    super::train::copy_tokenizer(&trainer)?;
    if until == 0 || until > trainer.total_steps {
        bail!(
            "--until {until} is outside the run's 1..={} steps",
            trainer.total_steps
        );
    }
    trainer.total_steps = until;
    eprintln!(
        "segment of {}: steps {}..{until} of {}",
        out.display(),
        trainer.state.step,
        trainer.cfg.train.steps
    );
    let s = trainer.run(!quiet && std::io::stderr().is_terminal())?;
    println!("done: step {} | tokens {}", s.steps, s.tokens);
    Ok(())
}

/// Where `prolong score --executor slurm` keeps scripts, logs and job ids.
fn prolong_dir(output: &Path) -> PathBuf {
    let stem = output
        .file_stem()
        .map_or("scores".into(), |s| s.to_string_lossy().into_owned());
    output.with_file_name(format!("{stem}.slurm"))
}

/// Options of ours that the array tasks must not see (`--flag` or
/// `--flag=value`; the bool is whether a separate value follows).
const OWN_OPTIONS: [(&str, bool); 10] = [
    ("--executor", true),
    ("--shards", true),
    ("--partition", true),
    ("--account", true),
    ("--gpus-per-run", true),
    ("--time", true),
    ("--sbatch-arg", true),
    ("--dry-run", false),
    ("--output", true),
    ("--shard", true),
];

/// The submitting command line minus the executor's own options, so every
/// scoring option (present and future) reaches the array tasks unchanged.
pub fn task_args(raw: &[OsString]) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut it = raw.iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        let own = OWN_OPTIONS.iter().find(|(name, _)| {
            s == *name || s.strip_prefix(name).is_some_and(|r| r.starts_with('='))
        });
        match own {
            Some((name, takes_value)) => {
                if *takes_value && s == *name {
                    it.next();
                }
            }
            None => out.push(a.clone()),
        }
    }
    out
}

pub struct ProlongSubmit<'a> {
    /// `frugal` arguments as given (without the binary).
    pub raw_args: Vec<OsString>,
    pub inputs: &'a [PathBuf],
    pub input: &'a InputOptions,
    pub output: &'a Path,
    pub shards: usize,
    pub slurm: &'a SlurmArgs,
}

/// `frugal prolong score --executor slurm --shards N`: an array job of the
/// shards that are not complete, then a merge job after them.
pub fn submit_prolong(p: &ProlongSubmit) -> Result<()> {
    let n = p.shards;
    if n == 0 {
        bail!("--shards must be ≥ 1");
    }
    if p.slurm.gpus_per_run > 0 {
        bail!("ProLong scoring runs on the CPU; --gpus-per-run is for studies");
    }
    let exe = std::env::current_exe()?;
    let cwd = std::env::current_dir()?;
    let output = absolute(p.output)?;
    let dir = prolong_dir(&output);
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let threads: usize = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let sb = p.slurm.sbatch(threads);

    let checks = merge::check(p.inputs, p.input, &output, n)?;
    let mut record = Submissions::load(&dir)?;
    let queue = if p.slurm.dry_run {
        Default::default()
    } else {
        slurm::queue()?
    };
    let active = |record: &Submissions, key: &str| {
        record
            .jobs
            .get(key)
            .filter(|id| queue.get(*id).is_some_and(|s| s.is_active()))
            .cloned()
    };
    let mut running: Vec<String> = Vec::new();
    let mut todo: Vec<usize> = Vec::new();
    for c in checks.iter().filter(|c| !c.is_complete()) {
        match active(&record, &format!("shard-{}", c.index)) {
            Some(id) => running.push(id),
            None => todo.push(c.index),
        }
    }
    if todo.is_empty() && running.is_empty() {
        let s = merge::merge(p.inputs, p.input, &output, n)?;
        println!(
            "all {n} shards are complete; merged {} documents into {}",
            s.documents,
            output.display()
        );
        return Ok(());
    }

    let mut deps = running.clone();
    if !todo.is_empty() {
        let mut args = task_args(&p.raw_args);
        if !args
            .iter()
            .any(|a| a == "--threads" || a.to_string_lossy().starts_with("--threads="))
        {
            args.insert(0, threads.to_string().into());
            args.insert(0, "--threads".into());
        }
        let prefix = output.with_file_name(merge::shard_prefix(&output));
        let command = format!(
            "exec {} --shard \"$SLURM_ARRAY_TASK_ID/{n}\" --output {}\"$SLURM_ARRAY_TASK_ID-of-{n}.jsonl\"",
            slurm::shell_line(&exe, &args),
            slurm::shell_quote(prefix.as_os_str())
        );
        let array: Vec<String> = todo.iter().map(|i| i.to_string()).collect();
        let array = array.join(",");
        let script = dir.join("score.sbatch");
        let text = slurm::render(
            &Script {
                job_name: "frugal-prolong-score",
                log: &logs.join("shard-%a.log"),
                workdir: &cwd,
                array: Some(&array),
                command: &command,
            },
            &sb,
        );
        std::fs::write(&script, text).with_context(|| format!("writing {}", script.display()))?;
        if p.slurm.dry_run {
            println!("would submit shards {array} of {n}: {}", script.display());
        } else {
            let id = slurm::sbatch(&script, &[])?;
            for i in &todo {
                record
                    .jobs
                    .insert(format!("shard-{i}"), format!("{id}_{i}"));
            }
            record.save(&dir)?;
            println!("submitted shards {array} of {n} as array job {id}");
            deps.push(id);
        }
    }
    if !running.is_empty() {
        println!("still queued or running: {}", running.join(" "));
    }

    // The merge, once every shard job succeeded.
    let mut margs: Vec<OsString> = vec!["prolong".into(), "merge".into(), "--input".into()];
    margs.extend(p.inputs.iter().map(|i| i.clone().into_os_string()));
    margs.extend([
        "--output".into(),
        output.clone().into_os_string(),
        "--shards".into(),
        n.to_string().into(),
        "--text-field".into(),
        p.input.text_field.clone().into(),
        "--max-bytes".into(),
        p.input.max_bytes.to_string().into(),
    ]);
    if let Some(f) = &p.input.id_field {
        margs.extend(["--id-field".into(), f.into()]);
    }
    let script = dir.join("merge.sbatch");
    let text = slurm::render(
        &Script {
            job_name: "frugal-prolong-merge",
            log: &logs.join("merge.log"),
            workdir: &cwd,
            array: None,
            command: &format!("exec {}", slurm::shell_line(&exe, &margs)),
        },
        &SbatchOptions { cpus: 1, ..sb },
    );
    std::fs::write(&script, text).with_context(|| format!("writing {}", script.display()))?;
    if p.slurm.dry_run {
        println!("would submit the merge: {}", script.display());
        return Ok(());
    }
    if let Some(old) = active(&record, "merge") {
        // It waits on jobs that failed; the new one waits on their replacements.
        slurm::scancel(&[old])?;
    }
    let id = slurm::sbatch(&script, &deps)?;
    record.jobs.insert("merge".into(), id.clone());
    record.save(&dir)?;
    println!(
        "submitted the merge as job {id}; logs in {}; `frugal prolong merge` checks and merges by hand",
        logs.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_options_are_dropped_from_task_arguments() {
        let raw: Vec<OsString> = [
            "--threads",
            "2",
            "prolong",
            "score",
            "--input",
            "a.jsonl",
            "--executor",
            "slurm",
            "--shards=4",
            "--output",
            "o.jsonl",
            "--sbatch-arg=--qos=x",
            "--dry-run",
            "--chunk-size",
            "16",
            "--shard",
            "0/1",
            "--partition",
            "p",
            "--time",
            "1:00",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let got: Vec<String> = task_args(&raw)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            got,
            [
                "--threads",
                "2",
                "prolong",
                "score",
                "--input",
                "a.jsonl",
                "--chunk-size",
                "16"
            ]
        );
        assert_eq!(
            prolong_dir(Path::new("/x/scores.jsonl")),
            PathBuf::from("/x/scores.slurm")
        );
    }
}

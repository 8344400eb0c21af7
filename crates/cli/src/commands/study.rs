//! `frugal study plan|run|status|fit|report`: scaling studies from a spec.

use super::cluster::{self, Executor, SlurmArgs};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use frugal_data::dataset::Dataset;
use frugal_study::local::{self, LocalOptions};
use frugal_study::plan::Plan;
use frugal_study::StudySpec;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args, Clone)]
pub struct StudyArgs {
    /// The study description (TOML).
    #[arg(long)]
    pub spec: PathBuf,
    /// Study directory: runs/, configs/, logs/, plan.json, fit.json, report.md.
    #[arg(long)]
    pub out: PathBuf,
    /// Override a value of the spec's [base] run config (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub overrides: Vec<String>,
}

#[derive(Subcommand)]
pub enum StudyCommand {
    /// Print the run graph, FLOPs per family and the saving of wsd over cosine.
    Plan(StudyArgs),
    /// Execute the graph with a local worker pool or on Slurm (re-run to
    /// resume: only what is missing is run or submitted again).
    Run {
        #[command(flatten)]
        args: StudyArgs,
        /// Jobs at once (local executor).
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// CPU threads per job (default: cores / jobs locally, 1 on Slurm).
        #[arg(long)]
        threads_per_job: Option<usize>,
        /// Where the jobs run.
        #[arg(long, value_enum, default_value_t = Executor::Local)]
        executor: Executor,
        #[command(flatten)]
        slurm: SlurmArgs,
    },
    /// Pending, running, done or failed per job (run directories, squeue/sacct).
    Status(StudyArgs),
    /// Train a run up to a step (a segment of a Slurm study; internal).
    #[command(hide = true)]
    Segment {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        until: u64,
        #[arg(long, default_value = "cpu")]
        device: String,
        #[arg(long)]
        quiet: bool,
    },
    /// Fit the scaling law to the finished (N, D) points; writes fit.json.
    Fit(StudyArgs),
    /// Write report.md (and points.csv, fit.json).
    Report(StudyArgs),
}

pub fn run(c: StudyCommand) -> Result<()> {
    match c {
        StudyCommand::Plan(a) => {
            let plan = load_plan(&a)?;
            print!("{}", plan.describe());
            Ok(())
        }
        StudyCommand::Run {
            args,
            jobs,
            threads_per_job,
            executor,
            slurm,
        } => match executor {
            Executor::Local => {
                if slurm.any() {
                    anyhow::bail!("--partition/--account/--gpus-per-run/--time/--sbatch-arg/--dry-run need --executor slurm");
                }
                run_study(&args, jobs, threads_per_job).map(|_| ())
            }
            Executor::Slurm => {
                let plan = load_plan(&args)?;
                cluster::submit_study(&plan, &args.out, threads_per_job.unwrap_or(1), &slurm)
            }
        },
        StudyCommand::Status(a) => cluster::study_status(&load_plan(&a)?, &a.out),
        StudyCommand::Segment {
            config,
            out,
            until,
            device,
            quiet,
        } => cluster::segment(&config, &out, until, &device, quiet),
        StudyCommand::Fit(a) => {
            let plan = load_plan(&a)?;
            let spec = StudySpec::from_file(&a.spec)?;
            let (fits, skipped) = frugal_study::report::fit(&plan, &a.out, &spec.fit)?;
            for line in skipped {
                eprintln!("{line}");
            }
            for f in &fits {
                let l = &f.fit.law;
                println!(
                    "{}: {} points  E {:.4}  A {:.4e}  B {:.4e}  alpha {:.4}  beta {:.4}",
                    f.source.label(),
                    f.points,
                    l.e,
                    l.a,
                    l.b,
                    l.alpha,
                    l.beta
                );
            }
            Ok(())
        }
        StudyCommand::Report(a) => {
            let path = report(&a)?;
            println!("report: {}", path.display());
            Ok(())
        }
    }
}

/// Builds the plan and records it as plan.json in the study directory.
pub fn load_plan(a: &StudyArgs) -> Result<Plan> {
    let spec = StudySpec::from_file(&a.spec)?;
    let first = spec.run_config(&spec.sizes[0], &a.overrides)?;
    let ds = Dataset::open(&first.data.dataset)
        .with_context(|| format!("opening the dataset {}", first.data.dataset.display()))?;
    let plan = Plan::build(&spec, &a.overrides, ds.meta.vocab_size as usize)?;
    std::fs::create_dir_all(&a.out)?;
    std::fs::write(a.out.join("plan.json"), serde_json::to_vec_pretty(&plan)?)?;
    Ok(plan)
}

pub fn run_study(a: &StudyArgs, jobs: usize, threads: Option<usize>) -> Result<local::RunReport> {
    let plan = load_plan(a)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let opts = LocalOptions {
        exe: std::env::current_exe()?,
        jobs,
        threads_per_job: Some(threads.unwrap_or((cores / jobs.max(1)).max(1))),
        progress_every: Duration::from_secs(5),
    };
    let r = local::run(&plan, &a.out, &opts)?;
    if !r.skipped.is_empty() {
        eprintln!("already finished: {}", r.skipped.join(" "));
    }
    eprintln!(
        "study: {} jobs run, {} already finished",
        r.ran.len(),
        r.skipped.len()
    );
    Ok(r)
}

/// Writes report.md, points.csv, fit.json and the figures; returns report.md's path.
pub fn report(a: &StudyArgs) -> Result<PathBuf> {
    let plan = load_plan(a)?;
    let spec = StudySpec::from_file(&a.spec)?;
    Ok(frugal_study::report::write_report(
        &plan, &a.out, &spec.fit,
    )?)
}

/// The tiny study of `frugal demo`: three one-layer sizes, three budgets,
/// WSD branches and a cosine grid (a few minutes on two cores).
pub const DEMO_SPEC: &str = r#"
families = ["wsd", "cosine"]
[[size]]
name = "d16"
d_model = 16
n_layers = 1
n_heads = 2
[[size]]
name = "d32"
d_model = 32
n_layers = 1
n_heads = 2
[[size]]
name = "d48"
d_model = 48
n_layers = 1
n_heads = 2
[budgets]
tokens = [16384, 32768, 65536]
[wsd]
lr = 4e-3
cooldown_fraction = 0.2
cooldown_shape = "1-sqrt"
swa = { interval = 4, horizon = 32 }
[cosine]
lr = 8e-3
[fit]
include_swa = true
[base]
data = { dataset = "DATASET" }
train = { seq_len = 64, batch_size = 8, log_every = 8 }
schedule = { warmup_steps = 8 }
eval = { every = 16, batches = 4 }
checkpoint = { every = 64 }
"#;

/// The demo's spec with `dataset` written in, so that `frugal study status |
/// report --spec` on the demo's files work without a --set.
fn demo_spec(dataset: &Path) -> String {
    let quoted = toml::Value::String(dataset.display().to_string()).to_string();
    DEMO_SPEC.replace("\"DATASET\"", &quoted)
}

/// Runs the demo study in `dir` on `dataset`; returns the report's path.
pub fn demo(dir: &Path, dataset: &Path) -> Result<PathBuf> {
    let spec = dir.join("study-demo.toml");
    std::fs::write(&spec, demo_spec(dataset))?;
    let a = StudyArgs {
        spec,
        out: dir.join("study-demo"),
        overrides: Vec::new(),
    };
    print!("{}", load_plan(&a)?.describe());
    run_study(&a, 2, Some(1))?;
    report(&a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_spec_names_its_dataset() {
        let dataset = Path::new("/tmp/a \"quoted\" dir\\with\\backslashes");
        let spec = frugal_study::spec::StudySpec::from_toml(&demo_spec(dataset)).unwrap();
        let data = spec.base["data"]["dataset"].as_str().unwrap();
        assert_eq!(Path::new(data), dataset);
    }
}

//! `frugal cooldown`: branch a cooldown off a run's checkpoint.

use crate::device;
use anyhow::{Context, Result};
use clap::Args;
use frugal_schedule::CooldownShape;
use frugal_train::branch::{self, BranchSpec};
use frugal_train::Trainer;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Args)]
pub struct CooldownArgs {
    /// Checkpoint to branch from: RUN_DIR/checkpoints/step-N.
    #[arg(long)]
    pub from: PathBuf,
    /// Cooldown length in optimizer steps.
    #[arg(long)]
    pub steps: u64,
    /// Decay shape: 1-sqrt | linear | cosine | mirror-cosine | square | exp.
    #[arg(long, default_value = "1-sqrt")]
    pub shape: CooldownShape,
    /// Final LR as a fraction of the peak (exp needs > 0).
    #[arg(long, default_value_t = 0.0)]
    pub final_factor: f64,
    /// Branch directory; re-running with the same arguments resumes it.
    #[arg(long)]
    pub out: PathBuf,
    /// cpu, cuda or cuda:N (CUDA needs the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Matmul dtype of the branch (default: the parent run's train.precision)
    #[arg(long, value_name = "f32|bf16")]
    pub dtype: Option<frugal_model::Precision>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(a: &CooldownArgs) -> Result<()> {
    let spec = BranchSpec {
        from: a.from.clone(),
        steps: a.steps,
        shape: a.shape,
        final_factor: a.final_factor,
    };
    let mut cfg = branch::prepare(&spec, &a.out)
        .with_context(|| format!("cannot branch from {}", a.from.display()))?;
    if let Some(p) = a.dtype {
        cfg.train.precision = p;
    }
    let device = device::parse(&a.device)?;
    let mut trainer = Trainer::open(cfg, &a.out, &device)
        .with_context(|| format!("cannot start the branch in {}", a.out.display()))?;
    eprintln!(
        "cooldown branch: {} {} steps from step {} to step {}",
        a.shape,
        a.steps,
        trainer.total_steps - a.steps,
        trainer.total_steps
    );
    let s = trainer.run(!a.quiet && std::io::stderr().is_terminal())?;
    println!(
        "done: step {} | tokens {} | val loss {}",
        s.steps,
        s.tokens,
        s.final_val_loss
            .map(|v| format!("{v:.4}"))
            .unwrap_or("-".into())
    );
    Ok(())
}

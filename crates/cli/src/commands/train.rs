use crate::device;
use anyhow::{Context, Result};
use clap::Args;
use frugal_train::{TrainConfig, Trainer};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Args)]
pub struct TrainArgs {
    /// Run description (TOML): [model], [data], [train], [schedule], [eval], [checkpoint].
    #[arg(long)]
    pub config: PathBuf,
    /// Override a config value, e.g. --set train.lr=3e-4 (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Run directory; an existing run there is resumed from its latest checkpoint.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Matmul dtype: f32, or bf16 with f32 master weights, AdamW state, norms,
    /// softmax and loss (the same as --set train.precision=…)
    #[arg(long, value_name = "f32|bf16")]
    pub dtype: Option<frugal_model::Precision>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(a: &TrainArgs) -> Result<()> {
    let mut overrides = a.overrides.clone();
    if let Some(p) = a.dtype {
        overrides.push(format!("train.precision={p}"));
    }
    let cfg = TrainConfig::from_file(&a.config, &overrides)?;
    let device = device::parse(&a.device)?;
    let mut trainer = Trainer::open(cfg, &a.out, &device)
        .with_context(|| format!("cannot start the run in {}", a.out.display()))?;
    copy_tokenizer(&trainer)?;
    let c = &trainer.model_config;
    eprintln!(
        "model: {} parameters (d {}, {} layers, {} heads, vocab {}); {} steps of {} tokens",
        c.param_count(),
        c.d_model,
        c.n_layers,
        c.n_heads,
        c.vocab_size,
        trainer.total_steps,
        trainer.cfg.tokens_per_step()
    );
    if trainer.state.step > 0 {
        eprintln!("resuming from step {}", trainer.state.step);
    }
    let show = !a.quiet && std::io::stderr().is_terminal();
    let s = trainer.run(show)?;
    println!(
        "done: step {} | tokens {} | train loss {} | val loss {} | {:.0} tok/s",
        s.steps,
        s.tokens,
        s.final_train_loss
            .map(|v| format!("{v:.4}"))
            .unwrap_or("-".into()),
        s.final_val_loss
            .map(|v| format!("{v:.4}"))
            .unwrap_or("-".into()),
        s.tokens_per_second
    );
    Ok(())
}

/// Keeps the tokenizer beside the run so checkpoints can be used alone.
pub fn copy_tokenizer(trainer: &Trainer) -> Result<()> {
    let src = trainer
        .dataset()
        .dir
        .join(frugal_data::dataset::TOKENIZER_FILE);
    let dst = trainer.run_dir.join("tokenizer.json");
    if !dst.exists() {
        std::fs::copy(&src, &dst).with_context(|| format!("copying {}", src.display()))?;
    }
    Ok(())
}

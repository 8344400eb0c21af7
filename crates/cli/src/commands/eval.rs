use crate::device;
use anyhow::{Context, Result};
use clap::Args;
use frugal_data::batch::fixed_eval_batches;
use frugal_data::dataset::Dataset;
use frugal_model::Llama;
use frugal_train::checkpoint::run_dir_of;
use frugal_train::trainer::{evaluate, CONFIG_FILE};
use frugal_train::weights::{load_model, WeightChoice};
use frugal_train::TrainConfig;
use std::path::PathBuf;

#[derive(Args)]
pub struct EvalArgs {
    /// A checkpoint directory (RUN_DIR/checkpoints/step-NNNNNNN), or a run
    /// directory for its latest checkpoint.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Which weights: raw (trained), ema, swa (the SWA window at this step)
    /// or swa:K (the mean of the last K finished SWA windows).
    #[arg(long, default_value = "raw", value_name = "raw|ema|swa|swa:K")]
    pub weights: WeightChoice,
    /// Dataset directory (default: the one the run trained on).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Number of validation batches (default: the run's eval.batches).
    #[arg(long)]
    pub batches: Option<usize>,
    /// cpu, cuda or cuda:N (CUDA needs the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Matmul dtype: f32, or bf16 (weights, norms, softmax and loss stay f32);
    /// default: the run's train.precision, so the loss matches training's.
    #[arg(long, value_name = "f32|bf16")]
    pub dtype: Option<frugal_model::Precision>,
}

/// The run's config, found beside a checkpoint.
pub fn run_config(ckpt: &std::path::Path) -> Result<TrainConfig> {
    let run = run_dir_of(ckpt).context("checkpoint path has no run directory above it")?;
    Ok(TrainConfig::from_file(&run.join(CONFIG_FILE), &[])?)
}

pub fn run(a: &EvalArgs) -> Result<()> {
    let device = device::parse(&a.device)?;
    let checkpoint = super::checkpoint_arg(&a.checkpoint)?;
    let (config, params) = load_model(&checkpoint, a.weights, &device)?;
    let cfg = run_config(&checkpoint)?;
    let ds_dir = a.dataset.clone().unwrap_or(cfg.data.dataset.clone());
    let ds =
        Dataset::open(&ds_dir).with_context(|| format!("opening dataset {}", ds_dir.display()))?;
    if ds.meta.vocab_size as usize != config.vocab_size {
        anyhow::bail!(
            "dataset vocabulary {} does not match the model's {}",
            ds.meta.vocab_size,
            config.vocab_size
        );
    }
    let n = a.batches.unwrap_or(cfg.eval.batches);
    let batches = fixed_eval_batches(&ds.val, cfg.train.seq_len, cfg.train.batch_size, n)?;
    let model =
        Llama::new(&config, &params)?.with_precision(a.dtype.unwrap_or(cfg.train.precision));
    let loss = evaluate(&model, &batches, cfg.train.seq_len, &device)?;
    let tokens: usize = batches.iter().map(|b| b.inputs.len()).sum();
    let record = serde_json::json!({
        "checkpoint": checkpoint.display().to_string(),
        "weights": a.weights.to_string(),
        "val_loss": loss,
        "perplexity": loss.exp(),
        "tokens": tokens,
    });
    println!("{record}");
    Ok(())
}

use anyhow::{Context, Result};
use candle_core::Device;
use clap::{Args, Subcommand};
use frugal_model::hf::to_hf_config;
use frugal_train::checkpoint::run_dir_of;
use frugal_train::weights::{load_model, WeightChoice};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ExportCommand {
    /// A Hugging Face Llama directory (config.json, model.safetensors, tokenizer.json).
    Hf(HfArgs),
}

#[derive(Args)]
pub struct HfArgs {
    /// A checkpoint directory (RUN_DIR/checkpoints/step-NNNNNNN), or a run
    /// directory for its latest checkpoint.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Which weights: raw (trained), ema, swa (the SWA window at this step)
    /// or swa:K (the mean of the last K finished SWA windows).
    #[arg(long, default_value = "raw", value_name = "raw|ema|swa|swa:K")]
    pub weights: WeightChoice,
    /// Directory to write config.json, model.safetensors and tokenizer.json into.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(c: ExportCommand) -> Result<()> {
    match c {
        ExportCommand::Hf(a) => export_hf(&a),
    }
}

fn export_hf(a: &HfArgs) -> Result<()> {
    let checkpoint = super::checkpoint_arg(&a.checkpoint)?;
    let (config, params) = load_model(&checkpoint, a.weights, &Device::Cpu)?;
    let run = run_dir_of(&checkpoint).context("checkpoint path has no run directory above it")?;
    let tok_path = run.join("tokenizer.json");
    let tok = frugal_data::tokenizer::load(&tok_path)?;
    let eot = frugal_data::tokenizer::eot_id(&tok).ok();
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let hf = to_hf_config(&config, eot, eot)?;
    std::fs::write(a.out.join("config.json"), serde_json::to_vec_pretty(&hf)?)
        .with_context(|| format!("writing {}", a.out.join("config.json").display()))?;
    // Names are already Hugging Face's; a tied head is simply absent.
    params.save(&a.out.join("model.safetensors"))?;
    std::fs::copy(&tok_path, a.out.join("tokenizer.json")).context("copying tokenizer.json")?;
    let tok_cfg = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": frugal_data::tokenizer::EOT,
        "bos_token": frugal_data::tokenizer::EOT,
        "add_bos_token": false,
        "model_max_length": config.max_seq_len,
    });
    std::fs::write(
        a.out.join("tokenizer_config.json"),
        serde_json::to_vec_pretty(&tok_cfg)?,
    )?;
    println!(
        "wrote {} ({} parameters)",
        a.out.display(),
        config.param_count()
    );
    Ok(())
}

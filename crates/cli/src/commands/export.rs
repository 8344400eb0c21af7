use anyhow::{Context, Result};
use candle_core::Device;
use clap::{Args, Subcommand};
use frugal_data::tokenizer::Tokenizer;
use frugal_model::gguf::GgufTokenizer;
use frugal_model::gguf_export::{gguf_bytes, GgufWeights};
use frugal_model::hf::to_hf_config;
use frugal_model::{LlamaConfig, ParamStore};
use frugal_train::weights::WeightChoice;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ExportCommand {
    /// A Hugging Face Llama directory (config.json, model.safetensors, tokenizer.json).
    Hf(HfArgs),
    /// A GGUF file for llama.cpp (architecture llama, the tokenizer in its metadata).
    Gguf(GgufArgs),
}

/// The model to export.
#[derive(Args)]
pub struct Source {
    /// A checkpoint directory (RUN_DIR/checkpoints/step-NNNNNNN), or a run
    /// directory for its latest checkpoint.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Which weights: raw (trained), ema, swa (the SWA window at this step)
    /// or swa:K (the mean of the last K finished SWA windows).
    #[arg(long, default_value = "raw", value_name = "raw|ema|swa|swa:K")]
    pub weights: WeightChoice,
}

#[derive(Args)]
pub struct HfArgs {
    #[command(flatten)]
    pub source: Source,
    /// Directory to write config.json, model.safetensors and tokenizer.json into.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct GgufArgs {
    #[command(flatten)]
    pub source: Source,
    /// Type of the weight matrices (the norms stay f32).
    #[arg(long, default_value = "f32", value_name = "f32|f16|q8_0")]
    pub dtype: GgufWeights,
    /// The .gguf file to write.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(c: ExportCommand) -> Result<()> {
    match c {
        ExportCommand::Hf(a) => export_hf(&a),
        ExportCommand::Gguf(a) => export_gguf(&a),
    }
}

/// The model, its run's tokenizer, and that tokenizer's path.
fn load(s: &Source) -> Result<(LlamaConfig, ParamStore, Tokenizer, PathBuf)> {
    super::load_checkpoint(&s.checkpoint, s.weights, &Device::Cpu)
}

fn export_gguf(a: &GgufArgs) -> Result<()> {
    let (config, params, tok, _) = load(&a.source)?;
    let vocab = frugal_data::tokenizer::bpe_vocabulary(&tok)?;
    let eot = frugal_data::tokenizer::eot_id(&tok).ok();
    let tokenizer = GgufTokenizer {
        model: "gpt2".into(),
        tokens: vocab.tokens,
        merges: vocab.merges,
        // llama.cpp's token types: 1 normal, 3 control.
        token_types: vocab
            .special
            .iter()
            .map(|&s| if s { 3 } else { 1 })
            .collect(),
        pre: "gpt-2".into(),
        bos: eot,
        eos: eot,
        unk: None,
    };
    let name = a
        .source
        .checkpoint
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "frugal".into());
    let bytes = gguf_bytes(&config, &params.tensors(), &tokenizer, a.dtype, &name)?;
    frugal_data::atomic::write_bytes(&a.out, &bytes)?;
    println!(
        "wrote {} ({} parameters, {:.1} MB)",
        a.out.display(),
        config.param_count(),
        bytes.len() as f64 / 1e6
    );
    Ok(())
}

fn export_hf(a: &HfArgs) -> Result<()> {
    let (config, params, tok, tok_path) = load(&a.source)?;
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

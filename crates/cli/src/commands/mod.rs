pub mod bench;
pub mod cluster;
pub mod cooldown;
pub mod data;
pub mod demo;
pub mod eval;
pub mod export;
pub mod fit;
pub mod generate;
pub mod pcm;
pub mod pcm_sd15;
pub mod prolong;
pub mod study;
pub mod tokenizer;
pub mod train;

/// The checkpoint a `--checkpoint` argument names: a checkpoint directory,
/// or a run directory for its latest complete checkpoint (said on stderr,
/// so the user knows which step the numbers are from).
pub fn checkpoint_arg(path: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let (dir, latest) = frugal_train::checkpoint::resolve(path)?;
    if latest {
        eprintln!(
            "using {}, the latest checkpoint of {}",
            dir.display(),
            path.display()
        );
    }
    Ok(dir)
}

/// A `--checkpoint` argument's model (see [`checkpoint_arg`]) with the chosen
/// weights, its run's tokenizer, and that tokenizer's path.
pub fn load_checkpoint(
    path: &std::path::Path,
    weights: frugal_train::weights::WeightChoice,
    device: &candle_core::Device,
) -> anyhow::Result<(
    frugal_model::LlamaConfig,
    frugal_model::ParamStore,
    frugal_data::tokenizer::Tokenizer,
    std::path::PathBuf,
)> {
    use anyhow::Context;
    let checkpoint = checkpoint_arg(path)?;
    let (config, params) = frugal_train::weights::load_model(&checkpoint, weights, device)?;
    let run = frugal_train::checkpoint::run_dir_of(&checkpoint)
        .context("checkpoint path has no run directory above it")?;
    let tok_path = run.join("tokenizer.json");
    let tok = frugal_data::tokenizer::load(&tok_path)?;
    Ok((config, params, tok, tok_path))
}

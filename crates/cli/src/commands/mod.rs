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

//! `frugal demo`: the whole engine on a fresh machine in a few minutes.

use super::generate::{generate, GenerateArgs};
use anyhow::{Context, Result};
use clap::Args;
use frugal_data::cache::cache_dir;
use frugal_data::dataset::{Dataset, META_FILE};
use frugal_train::{TrainConfig, Trainer};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The demo's run description (the same file as examples/tiny.toml).
const TINY: &str = include_str!("../../../../examples/tiny.toml");

#[derive(Args)]
pub struct DemoArgs {
    /// Working directory (default: CACHE/demo).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Training steps for the tiny model.
    #[arg(long, default_value_t = 400)]
    pub steps: u64,
    /// Tokenizer vocabulary.
    #[arg(long, default_value_t = 4096)]
    pub vocab: usize,
    /// Run only the PCM section (Fashion-MNIST teacher → 4-phase PCM → grid).
    #[arg(long)]
    pub pcm_only: bool,
}

pub fn run(a: &DemoArgs) -> Result<()> {
    let t0 = Instant::now();
    let dir = a.dir.clone().unwrap_or_else(|| cache_dir().join("demo"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    if a.pcm_only {
        pcm_section(&dir, true)?;
        return Ok(());
    }
    section("1/3 data: the default corpus (Shakespeare, State of the Union, GCIDE)");
    let dataset_dir = prepare_data(&dir, a.vocab)?;
    section("2/3 training a tiny Llama (WSD schedule, 1-sqrt cooldown)");
    let run_dir = dir.join(format!("run-micro-{}", a.steps));
    let cfg = TrainConfig::from_toml(
        TINY,
        &[
            format!("data.dataset={:?}", dataset_dir.display().to_string()),
            format!("train.steps={}", a.steps),
        ],
    )?;
    let mut trainer = Trainer::open(cfg, &run_dir, &candle_core::Device::Cpu)?;
    super::train::copy_tokenizer(&trainer)?;
    println!(
        "model: {} parameters, {} steps of {} tokens -> {}",
        trainer.model_config.param_count(),
        trainer.total_steps,
        trainer.cfg.tokens_per_step(),
        run_dir.display()
    );
    let s = trainer.run(std::io::stderr().is_terminal())?;
    println!(
        "validation loss {:.4} (perplexity {:.1}) after {} tokens at {:.0} tok/s",
        s.final_val_loss.unwrap_or(f64::NAN),
        s.final_val_loss.unwrap_or(f64::NAN).exp(),
        s.tokens,
        s.tokens_per_second
    );
    section("3/3 what it learned");
    let ckpt = frugal_train::checkpoint::latest(&run_dir)?
        .context("the run left no checkpoint")?
        .1;
    for prompt in ["ROMEO:", "The President"] {
        let text = generate(&GenerateArgs {
            checkpoint: Some(ckpt.clone()),
            model: None,
            tokenizer: None,
            prompt: prompt.into(),
            max_tokens: 60,
            temperature: 0.8,
            top_k: 40,
            seed: 0,
            device: "cpu".into(),
            dtype: None,
            ignore_eot: false,
            weights: Default::default(),
        })?;
        println!("--- {prompt}\n{text}\n");
    }
    section("study: a tiny scaling study (WSD + cooldown branches vs a cosine grid)");
    let report = super::study::demo(&dir, &dataset_dir)?;
    println!("study report: {}", report.display());
    section("prolong: long-dependency scores of real documents (SmolLM2-135M scorer)");
    super::prolong::demo(&dir)?;
    pcm_section(&dir, false)?;
    println!("demo finished in {:.0} s", t0.elapsed().as_secs_f64());
    Ok(())
}

/// The PCM section in-process (`--pcm-only`), or, from the full demo, as
/// `frugal --threads 1 demo --pcm-only`: the tiny U-Net's ops are too small
/// to gain from threads (measured 2.6× slower with 2 threads than with 1 on
/// the loaded 2-core machine), and the thread count is fixed per process.
fn pcm_section(dir: &Path, in_process: bool) -> Result<()> {
    if in_process {
        section("pcm: a 4-phase Phased Consistency Model distilled on Fashion-MNIST (smoke demo)");
        super::pcm::demo(dir)?;
        return Ok(());
    }
    let exe = std::env::current_exe().context("locating the frugal binary")?;
    let status = std::process::Command::new(exe)
        .args(["--threads", "1", "demo", "--pcm-only", "--dir"])
        .arg(dir)
        .status()
        .context("starting the PCM demo")?;
    if !status.success() {
        anyhow::bail!("the PCM demo section failed ({status})");
    }
    Ok(())
}

fn section(title: &str) {
    println!("\n== {title}");
}

/// Fetches the default corpus, trains the tokenizer and tokenises once;
/// later runs reuse the cached dataset.
fn prepare_data(dir: &Path, vocab: usize) -> Result<PathBuf> {
    let ds_dir = dir.join(format!("dataset-{vocab}"));
    if ds_dir.join(META_FILE).exists() {
        let ds = Dataset::open(&ds_dir)?;
        println!(
            "cached: {} train / {} validation tokens in {}",
            ds.meta.train.n_tokens,
            ds.meta.val.n_tokens,
            ds_dir.display()
        );
        return Ok(ds_dir);
    }
    let docs = frugal_data::corpus::load("default")?;
    let chars: usize = docs.iter().map(|d| d.text.len()).sum();
    println!(
        "{} documents, {:.1} M characters",
        docs.len(),
        chars as f64 / 1e6
    );
    // Train the tokenizer on an even sample of ~12 MB across all sources.
    let stride = (chars / 12_000_000).max(1);
    let sample: Vec<&str> = docs
        .iter()
        .enumerate()
        .filter(|(i, _)| i % stride == 0)
        .map(|(_, d)| d.text.as_str())
        .collect();
    let tok_path = dir.join(format!("tokenizer-{vocab}.json"));
    let t = Instant::now();
    frugal_data::tokenizer::train_bpe(sample, vocab, &tok_path)?;
    println!(
        "tokenizer: vocab {vocab} in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let meta = frugal_data::dataset::prepare(docs, &tok_path, &ds_dir, 0.02, 0)?;
    println!(
        "tokenised: {} train / {} validation tokens in {:.0} s",
        meta.train.n_tokens,
        meta.val.n_tokens,
        t.elapsed().as_secs_f64()
    );
    Ok(ds_dir)
}

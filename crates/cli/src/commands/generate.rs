use crate::device;
use anyhow::{bail, Context, Result};
use candle_core::{Tensor, D};
use clap::Args;
use frugal_model::llama::KvCache;
use frugal_model::Llama;
use frugal_train::checkpoint::{load_model, run_dir_of};
use rand::{Rng, SeedableRng};
use std::path::PathBuf;

#[derive(Args)]
pub struct GenerateArgs {
    /// A checkpoint directory (RUN_DIR/checkpoints/step-NNNNNNN), or a run
    /// directory for its latest checkpoint.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Text to continue.
    #[arg(long)]
    pub prompt: String,
    /// Tokens to generate (at most what the model's context leaves).
    #[arg(long, default_value_t = 100)]
    pub max_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    pub temperature: f64,
    /// Sample among the k most likely tokens (0 = all).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cpu, cuda or cuda:N (CUDA needs the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Matmul dtype: f32, or bf16 (weights, norms, softmax and loss stay f32)
    #[arg(long, value_name = "f32|bf16")]
    pub dtype: Option<frugal_model::Precision>,
}

pub fn run(a: &GenerateArgs) -> Result<()> {
    let text = generate(a)?;
    println!("{text}");
    Ok(())
}

/// Prompt + continuation as text.
pub fn generate(a: &GenerateArgs) -> Result<String> {
    if !(a.temperature.is_finite() && a.temperature >= 0.0) {
        bail!(
            "--temperature must be a finite number >= 0 (0 = greedy), got {}",
            a.temperature
        );
    }
    let device = device::parse(&a.device)?;
    let checkpoint = super::checkpoint_arg(&a.checkpoint)?;
    let (config, params) = load_model(&checkpoint, &device)?;
    let run = run_dir_of(&checkpoint).context("checkpoint path has no run directory above it")?;
    let tok = frugal_data::tokenizer::load(&run.join("tokenizer.json"))?;
    let prompt = frugal_data::tokenizer::encode(&tok, &a.prompt)?;
    if prompt.is_empty() {
        bail!("the prompt is empty after tokenisation");
    }
    let model = Llama::new(&config, &params)?.with_precision(a.dtype.unwrap_or_default());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed);
    let mut cache = KvCache::default();
    let mut out = prompt.clone();
    let mut next_input = prompt;
    let room = config.max_seq_len.saturating_sub(out.len());
    if room == 0 {
        bail!(
            "the prompt is {} tokens and the model's context is {}: no room to generate",
            out.len(),
            config.max_seq_len
        );
    }
    let budget = room.min(a.max_tokens);
    if budget < a.max_tokens {
        eprintln!(
            "note: generating {budget} tokens, not {}: the prompt takes {} of the model's {}-token context",
            a.max_tokens,
            out.len(),
            config.max_seq_len
        );
    }
    for _ in 0..budget {
        let x = Tensor::from_slice(&next_input, (1, next_input.len()), &device)?;
        let h = model.hidden(&x, Some(&mut cache))?;
        let last = h.narrow(1, next_input.len() - 1, 1)?;
        let logits =
            frugal_model::llama::linear_in(&last, model.output_weight(), model.precision())?
                .flatten_all()?
                .to_dtype(candle_core::DType::F32)?;
        let id = sample(&logits, a.temperature, a.top_k, &mut rng)?;
        out.push(id);
        next_input = vec![id];
    }
    Ok(frugal_data::tokenizer::decode(&tok, &out)?)
}

fn sample(logits: &Tensor, temperature: f64, top_k: usize, rng: &mut impl Rng) -> Result<u32> {
    if temperature <= 0.0 {
        return Ok(logits.argmax(D::Minus1)?.to_scalar::<u32>()?);
    }
    let mut v: Vec<(usize, f32)> = logits.to_vec1::<f32>()?.into_iter().enumerate().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    if top_k > 0 {
        v.truncate(top_k);
    }
    let max = v[0].1 as f64;
    let weights: Vec<f64> = v
        .iter()
        .map(|(_, l)| ((*l as f64 - max) / temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut r = rng.gen::<f64>() * total;
    for ((id, _), w) in v.iter().zip(&weights) {
        r -= w;
        if r <= 0.0 {
            return Ok(*id as u32);
        }
    }
    Ok(v[v.len() - 1].0 as u32)
}

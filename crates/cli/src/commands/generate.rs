use crate::device;
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor, D};
use clap::Args;
use frugal_data::tokenizer::Tokenizer;
use frugal_model::llama::KvCache;
use frugal_model::Llama;
use frugal_train::weights::WeightChoice;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::path::PathBuf;

#[derive(Args)]
pub struct GenerateArgs {
    /// A checkpoint directory (RUN_DIR/checkpoints/step-NNNNNNN), or a run
    /// directory for its latest checkpoint.
    #[arg(long, required_unless_present = "model", conflicts_with = "model")]
    pub checkpoint: Option<PathBuf>,
    /// Instead of a checkpoint: a GGUF file (Llama, Qwen2 or Qwen3) or a
    /// Hugging Face directory, with the tokenizer it carries.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// With --model: a tokenizer.json to use instead of the one the model
    /// carries (for a GGUF whose pre-tokenizer frugal does not build).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Which weights of a checkpoint: raw (trained), ema, swa (the SWA window
    /// at this step) or swa:K (the mean of the last K finished SWA windows).
    #[arg(long, default_value = "raw", value_name = "raw|ema|swa|swa:K")]
    pub weights: WeightChoice,
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
    /// Go on past the end-of-text token (which training puts after every
    /// document) instead of stopping there.
    #[arg(long)]
    pub ignore_eot: bool,
}

/// Prints the prompt and the continuation as it is sampled.
pub fn run(a: &GenerateArgs) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    generate_streaming(a, |piece| {
        stdout.write_all(piece.as_bytes())?;
        Ok(stdout.flush()?)
    })?;
    writeln!(stdout)?;
    Ok(())
}

/// Prompt + continuation as text.
pub fn generate(a: &GenerateArgs) -> Result<String> {
    generate_streaming(a, |_| Ok(()))
}

/// [`generate`], handing each new piece of text to `emit` as it is sampled
/// (the prompt first); the pieces add up to the returned text.
pub fn generate_streaming(
    a: &GenerateArgs,
    emit: impl FnMut(&str) -> Result<()>,
) -> Result<String> {
    if !(a.temperature.is_finite() && a.temperature >= 0.0) {
        bail!(
            "--temperature must be a finite number >= 0 (0 = greedy), got {}",
            a.temperature
        );
    }
    let device = device::parse(&a.device)?;
    let (model, tok, eos) = load(a, &device)?;
    let model = model.with_precision(a.dtype.unwrap_or_default());
    let config = &model.config;
    let prompt = frugal_data::tokenizer::encode(&tok, &a.prompt)?;
    if prompt.is_empty() {
        bail!("the prompt is empty after tokenisation");
    }
    let room = config.max_seq_len.saturating_sub(prompt.len());
    if room == 0 {
        bail!(
            "the prompt is {} tokens and the model's context is {}: no room to generate",
            prompt.len(),
            config.max_seq_len
        );
    }
    let budget = room.min(a.max_tokens);
    if budget < a.max_tokens {
        eprintln!(
            "note: generating at most {budget} tokens, not {}: the prompt takes {} of the model's {}-token context",
            a.max_tokens,
            prompt.len(),
            config.max_seq_len
        );
    }
    let eot = if a.ignore_eot { None } else { eos };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed);
    let mut cache = KvCache::default();
    let next = |input: &[u32]| -> Result<u32> {
        let x = Tensor::from_slice(input, (1, input.len()), &device)?;
        let h = model.hidden(&x, Some(&mut cache))?;
        let last = h.narrow(1, input.len() - 1, 1)?;
        let logits =
            frugal_model::llama::linear_in(&last, model.output_weight(), model.precision())?
                .flatten_all()?
                .to_dtype(candle_core::DType::F32)?;
        sample(&logits, a.temperature, a.top_k, &mut rng)
    };
    let (text, ended) = continue_text(&tok, prompt, budget, eot, next, emit)?;
    if ended {
        eprintln!("note: stopped at the end-of-text token (--ignore-eot goes on)");
    }
    Ok(text)
}

/// The model, cut off from autograd (a KV cache would otherwise keep every
/// step's graph alive), its tokenizer (a checkpoint's run's, or the one a
/// GGUF file or Hugging Face directory carries) and its end-of-text token.
fn load(a: &GenerateArgs, device: &Device) -> Result<(Llama, Tokenizer, Option<u32>)> {
    let Some(path) = &a.checkpoint else {
        let path = a.model.as_ref().context("give --checkpoint or --model")?;
        if a.weights != WeightChoice::Raw {
            bail!("--weights chooses among a frugal checkpoint's averages, not --model's");
        }
        let s = frugal_prolong::model::load_scorer(path, a.tokenizer.as_deref(), device)?;
        let eos = s.eos.or(frugal_data::tokenizer::eot_id(&s.tokenizer).ok());
        return Ok((s.model, s.tokenizer, eos));
    };
    if a.tokenizer.is_some() {
        bail!("--tokenizer replaces a --model's tokenizer; a checkpoint uses its run's");
    }
    let (config, params, tok, _) = super::load_checkpoint(path, a.weights, device)?;
    let eos = frugal_data::tokenizer::eot_id(&tok).ok();
    Ok((Llama::new(&config, &params)?.detached(), tok, eos))
}

/// Extends `prompt` by up to `budget` tokens from `next` (given the tokens
/// not yet fed to the model), stopping before `eot`; gives the text and
/// whether `eot` ended it. The text is shown as it grows: a piece is
/// emitted once the decoded text extends what was shown and does not end
/// inside a character (byte-level tokens can split one; the decoder shows
/// the half as U+FFFD).
fn continue_text(
    tok: &Tokenizer,
    prompt: Vec<u32>,
    budget: usize,
    eot: Option<u32>,
    mut next: impl FnMut(&[u32]) -> Result<u32>,
    mut emit: impl FnMut(&str) -> Result<()>,
) -> Result<(String, bool)> {
    let decode = |ids: &[u32]| frugal_data::tokenizer::decode(tok, ids);
    let mut shown = String::new();
    let mut show = |text: String, last: bool| -> Result<()> {
        let whole = last || !text.ends_with('\u{FFFD}');
        if whole && text.starts_with(&shown) && text.len() > shown.len() {
            emit(&text[shown.len()..])?;
            shown = text;
        }
        Ok(())
    };
    let mut out = prompt;
    show(decode(&out)?, false)?;
    let (mut fed, mut ended) = (0, false);
    for _ in 0..budget {
        let id = next(&out[fed..])?;
        fed = out.len();
        if Some(id) == eot {
            ended = true;
            break;
        }
        out.push(id);
        show(decode(&out)?, false)?;
    }
    let text = decode(&out)?;
    show(text.clone(), true)?;
    Ok((text, ended))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-level BPE with `<|endoftext|>`, trained on a few lines.
    fn tokenizer(dir: &std::path::Path) -> frugal_data::tokenizer::Tokenizer {
        let texts = ["the cat sat on the mat", "a dog and a cat"];
        frugal_data::tokenizer::train_bpe(texts, 300, &dir.join("tok.json")).unwrap()
    }

    #[test]
    fn streams_pieces_that_add_up_and_stops_at_end_of_text() {
        let tmp = tempfile::tempdir().unwrap();
        let tok = tokenizer(tmp.path());
        let ids = |t: &str| frugal_data::tokenizer::encode(&tok, t).unwrap();
        let eot = frugal_data::tokenizer::eot_id(&tok).unwrap();
        // A continuation with a character split over two byte-level tokens
        // (é is two bytes; the vocabulary has no token for "é!"), then the
        // end of text and more that must not be shown.
        let bytes = ids(" é!");
        let half = [ids("the cat"), bytes[..bytes.len() - 2].to_vec()].concat();
        let half = frugal_data::tokenizer::decode(&tok, &half).unwrap();
        assert!(half.ends_with('\u{FFFD}'), "the test splits é: {half:?}");
        let mut script = bytes.clone();
        script.extend([eot]);
        script.extend(ids(" never"));
        let (mut fed, mut pieces) = (Vec::new(), Vec::new());
        let mut it = script.into_iter();
        let text = continue_text(
            &tok,
            ids("the cat"),
            20,
            Some(eot),
            |input| {
                fed.push(input.to_vec());
                Ok(it.next().unwrap())
            },
            |p| {
                pieces.push(p.to_string());
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(text, ("the cat é!".to_string(), true));
        let text = text.0;
        assert_eq!(pieces.concat(), text);
        assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{pieces:?}");
        // The prompt once, then each sampled token alone (the KV cache holds
        // the rest); the end-of-text token is not fed.
        assert_eq!(fed[0], ids("the cat"));
        assert_eq!(fed.len(), 1 + bytes.len());
        assert!(fed[1..].iter().all(|f| f.len() == 1));

        // Without an end-of-text token it runs to the budget.
        let mut it = [eot, eot, eot].into_iter();
        let text = continue_text(
            &tok,
            ids("a"),
            3,
            None,
            |_| Ok(it.next().unwrap()),
            |_| Ok(()),
        );
        assert_eq!(
            text.unwrap(),
            (
                frugal_data::tokenizer::decode(&tok, &[ids("a"), vec![eot; 3]].concat()).unwrap(),
                false
            )
        );
    }
}

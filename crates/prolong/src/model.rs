//! The scorer: a causal LM with its tokenizer, from a GGUF file, a Hugging
//! Face directory or a frugal checkpoint.

use crate::{ProlongError, Result};
use candle_core::Device;
use frugal_model::gguf::{load_gguf, GgufTokenizer};
use frugal_model::{Llama, ParamStore};
use frugal_train::weights::WeightChoice;
use std::path::Path;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::SplitDelimiterBehavior;
use tokenizers::{AddedToken, Tokenizer};

/// A model ready to score, and the tokenizer that came with it.
pub struct Scorer {
    pub model: Llama,
    pub tokenizer: Tokenizer,
    /// What was loaded, for records, logs and an output's settings: the
    /// model's absolute path (a run directory as the checkpoint it stood
    /// for), the weight average read instead of the trained weights, and the
    /// `tokenizer` that replaced its own, if any.
    pub source: String,
    /// The token the model ends a text with, where its files say: a GGUF's
    /// `tokenizer.ggml.eos_token_id`, config.json's `eos_token_id` (the first
    /// of a list), or a frugal run's end-of-text token.
    pub eos: Option<u32>,
}

impl std::fmt::Debug for Scorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scorer")
            .field("source", &self.source)
            .finish()
    }
}

fn err(path: &Path, m: impl std::fmt::Display) -> ProlongError {
    ProlongError::Model(format!("{}: {m}", path.display()))
}

/// Loads `path`: a `.gguf` file, a Hugging Face directory (Llama, Qwen2 or Qwen3)
/// with `config.json` + `*.safetensors` + `tokenizer.json`, a frugal checkpoint directory
/// (`state.json` + `model.safetensors`), or a frugal run directory (its latest
/// checkpoint). The tokenizer is `tokenizer` when given, else the GGUF's own,
/// else a `tokenizer.json` in the directory, its parent, or a checkpoint's run
/// directory (where `frugal train` keeps it).
pub fn load_scorer(path: &Path, tokenizer: Option<&Path>, device: &Device) -> Result<Scorer> {
    load_scorer_weights(path, tokenizer, WeightChoice::Raw, device)
}

/// [`load_scorer`] with a frugal checkpoint's weight average instead of its
/// trained weights (`frugal_train::weights`); anything but
/// [`WeightChoice::Raw`] is refused for a GGUF file or Hugging Face directory.
pub fn load_scorer_weights(
    path: &Path,
    tokenizer: Option<&Path>,
    weights: WeightChoice,
    device: &Device,
) -> Result<Scorer> {
    let mut scorer = load_model_and_tokenizer(path, tokenizer, weights, device)?;
    if weights != WeightChoice::Raw {
        scorer.source = format!("{} ({weights} weights)", scorer.source);
    }
    if let Some(t) = tokenizer {
        scorer.source = format!("{} with tokenizer {}", scorer.source, absolute(t));
    }
    Ok(scorer)
}

/// `path` made absolute with symbolic links resolved, where it exists: the
/// same model named two ways is one [`Scorer::source`].
fn absolute(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

fn load_model_and_tokenizer(
    path: &Path,
    tokenizer: Option<&Path>,
    weights: WeightChoice,
    device: &Device,
) -> Result<Scorer> {
    let source = absolute(path);
    let hf_dir = path.join("config.json").is_file() && !path.join("state.json").is_file();
    if weights != WeightChoice::Raw && (path.is_file() || hf_dir) {
        return Err(err(
            path,
            format!(
                "--weights {weights} chooses among a frugal checkpoint's averages; this is not one"
            ),
        ));
    }
    if path.is_file() {
        let g = load_gguf(path, device)?;
        let tok = match tokenizer {
            Some(t) => load_tokenizer(t)?,
            None => gguf_tokenizer(&g.tokenizer).map_err(|m| err(path, m))?,
        };
        let params = ParamStore::from_tensors(&g.config, g.tensors, &source)?;
        let model = Llama::new(&g.config, &params)?.detached();
        return Ok(Scorer {
            model,
            tokenizer: tok,
            source,
            eos: g.tokenizer.eos,
        });
    }
    if !path.is_dir() {
        return Err(err(path, "no such model file or directory"));
    }
    let checkpoint = if hf_dir {
        None
    } else {
        // A checkpoint, or a run directory for its latest one.
        let (dir, _) = frugal_train::checkpoint::resolve(path).map_err(|_| {
            err(
                path,
                "neither a Hugging Face directory (config.json), a frugal checkpoint \
                 (state.json) nor a frugal run directory with checkpoints",
            )
        })?;
        Some(dir)
    };
    let find_tok = |dirs: &[Option<&Path>]| -> Result<Tokenizer> {
        if let Some(t) = tokenizer {
            return load_tokenizer(t);
        }
        for dir in dirs.iter().flatten() {
            let t = dir.join("tokenizer.json");
            if t.is_file() {
                return load_tokenizer(&t);
            }
        }
        Err(err(
            path,
            "no tokenizer.json beside the model (use --tokenizer)",
        ))
    };
    if let Some(dir) = checkpoint {
        let (config, params) =
            frugal_train::weights::load_model(&dir, weights, device).map_err(|e| err(&dir, e))?;
        let model = Llama::new(&config, &params)?.detached();
        let run = frugal_train::checkpoint::run_dir_of(&dir);
        let tokenizer = find_tok(&[Some(&dir), dir.parent(), run.as_deref()])?;
        return Ok(Scorer {
            model,
            eos: frugal_data::tokenizer::eot_id(&tokenizer).ok(),
            tokenizer,
            source: absolute(&dir),
        });
    }
    // Llama, Qwen2 or Qwen3; parts frugal's model lacks are refused there
    // rather than silently dropped.
    let (config, tensors) = frugal_model::hf::load_hf_dir(path, device)?;
    let params = ParamStore::from_tensors(&config, tensors, &source)?;
    let model = Llama::new(&config, &params)?.detached();
    Ok(Scorer {
        model,
        tokenizer: find_tok(&[Some(path), path.parent()])?,
        source,
        eos: config_eos(path),
    })
}

/// config.json's `eos_token_id`: one id, or the first of a list.
fn config_eos(dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let eos = &json["eos_token_id"];
    let id = eos.as_u64().or_else(|| eos.get(0)?.as_u64())?;
    u32::try_from(id).ok()
}

fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    frugal_data::tokenizer::load(path).map_err(|e| err(path, e))
}

/// Qwen2's split pattern (transformers' `Qwen2Converter`; llama.cpp's
/// `LLAMA_VOCAB_PRE_TYPE_QWEN2` spells the case-insensitive group out):
/// unlike GPT-2's, digits are split one by one and a letter run takes one
/// leading non-letter with it.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Llama 3's split pattern (its `tokenizer.json`; llama.cpp's
/// `LLAMA_VOCAB_PRE_TYPE_LLAMA3`): Qwen2's, with digits in runs of up to three.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pre-tokenizer a GGUF vocabulary was trained with, from
/// `tokenizer.ggml.pre` by llama.cpp's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pre {
    /// GPT-2's pattern (what transformers' GGUF converter gives every file).
    Gpt2,
    /// Every digit its own piece, then GPT-2's pattern: SmolLM2's
    /// `tokenizer.json` (`Digits` then `ByteLevel`), llama.cpp's `smollm`.
    /// transformers' GGUF converter gives these vocabularies GPT-2's pattern
    /// alone, which splits a run of spaces before a digit into one-space
    /// tokens the model never saw.
    Smollm,
    /// NFC, then [`QWEN2_SPLIT`].
    Qwen2,
    /// [`LLAMA3_SPLIT`], and whole pieces found in the vocabulary taken as
    /// they are (BPE's `ignore_merges`, as Llama 3's tokenizer and llama.cpp do).
    Llama3,
}

impl Pre {
    /// The pre-tokenizer llama.cpp runs for `pre`, by llama.cpp's grouping of
    /// names (`llama-vocab.cpp`); `None` for a name frugal does not build,
    /// rather than a guess that would give other ids than the model's.
    fn of(pre: &str) -> Option<Self> {
        Some(match pre {
            // Absent (files from before llama.cpp wrote it): what
            // transformers' converter gives every file.
            "" => Self::Gpt2,
            "gpt-2" | "phi-2" | "mpt" | "olmo" | "jais" | "trillion" | "granite-docling"
            | "gigachat" | "a.x-4.0" | "mellum" | "exaone4" | "modern-bert" | "roberta-bpe"
            | "jina-es" | "jina-de" | "jina-v1-en" | "jina-v2-es" | "jina-v2-de"
            | "jina-v2-code" => Self::Gpt2,
            // NFC is Qwen2's own normalizer; llama.cpp's other names for
            // Qwen2's split may not share it, so they are not guessed.
            "qwen2" | "deepseek-r1-qwen" => Self::Qwen2,
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" | "jina-v5-nano" => Self::Llama3,
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" | "mellum2" => Self::Smollm,
            _ => return None,
        })
    }
}

/// The byte-level BPE tokenizer described by GGUF metadata, so that it gives
/// the ids the model was trained on: control tokens are special tokens, and
/// the pre-tokenizer is [`Pre`]'s. For GPT-2 and Qwen2 vocabularies this is
/// the tokenizer transformers' GGUF converter builds. For Llama 3's
/// (`llama-bpe`) and SmolLM2's (`smollm`) it is the model's own, as
/// llama.cpp runs it; transformers' converter gives those GPT-2's pattern
/// instead, which splits digits, whitespace and contractions differently.
pub fn gguf_tokenizer(g: &GgufTokenizer) -> std::result::Result<Tokenizer, String> {
    if g.model != "gpt2" {
        return Err(format!(
            "GGUF tokenizer model '{}' is not supported (only byte-level BPE 'gpt2'); pass --tokenizer",
            g.model
        ));
    }
    let pre = Pre::of(&g.pre).ok_or_else(|| {
        format!(
            "GGUF pre-tokenizer '{}' (tokenizer.ggml.pre) is not one frugal builds \
             (it builds GPT-2's, Qwen2's, Llama 3's and SmolLM2's splits); \
             pass --tokenizer with the model's tokenizer.json",
            g.pre
        )
    })?;
    let vocab: tokenizers::models::bpe::Vocab = g
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let merges: Vec<(String, String)> = g
        .merges
        .iter()
        .filter_map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true)
        .fuse_unk(true)
        .ignore_merges(pre == Pre::Llama3)
        .build()
        .map_err(|e| e.to_string())?;
    let mut tok = Tokenizer::new(bpe);
    let split = |pattern: &str| -> std::result::Result<_, String> {
        let split = Split::new(
            SplitPattern::Regex(pattern.into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| e.to_string())?;
        Ok(Sequence::new(vec![
            split.into(),
            ByteLevel::new(false, false, false).into(),
        ]))
    };
    match pre {
        Pre::Gpt2 => {
            tok.with_pre_tokenizer(Some(ByteLevel::new(false, false, true)));
        }
        Pre::Smollm => {
            tok.with_pre_tokenizer(Some(Sequence::new(vec![
                Digits::new(true).into(),
                ByteLevel::new(false, true, true).into(),
            ])));
        }
        Pre::Qwen2 => {
            tok.with_normalizer(Some(NFC));
            tok.with_pre_tokenizer(Some(split(QWEN2_SPLIT)?));
        }
        Pre::Llama3 => {
            tok.with_pre_tokenizer(Some(split(LLAMA3_SPLIT)?));
        }
    }
    tok.with_decoder(Some(ByteLevel::new(false, false, true)));
    let special: Vec<AddedToken> = g
        .tokens
        .iter()
        .zip(&g.token_types)
        .filter(|(_, &ty)| ty == 3)
        .map(|(t, _)| AddedToken::from(t.clone(), true))
        .collect();
    tok.add_special_tokens(&special);
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-level vocabulary of the letters and digits of "a 12", with
    /// merges for "ĠĠ" and "12", under the pre-tokenizer `pre`.
    fn vocab(pre: &str) -> GgufTokenizer {
        let tokens = ["a", "Ġ", "1", "2", "ĠĠ", "12"];
        GgufTokenizer {
            model: "gpt2".into(),
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
            merges: vec!["Ġ Ġ".into(), "1 2".into()],
            token_types: vec![1; tokens.len()],
            pre: pre.into(),
            ..Default::default()
        }
    }

    fn ids(pre: &str, text: &str) -> Vec<u32> {
        let tok = gguf_tokenizer(&vocab(pre)).unwrap();
        tok.encode(text, false).unwrap().get_ids().to_vec()
    }

    #[test]
    fn each_family_splits_digits_and_spaces_its_own_way() {
        // GPT-2: " 12" is one piece, so "12" merges and the spaces do not.
        assert_eq!(ids("gpt-2", "a  12"), [0, 1, 1, 5]);
        assert_eq!(ids("", "a  12"), [0, 1, 1, 5]);
        // SmolLM2: digits first, so "  " is one piece and "12" is not.
        assert_eq!(ids("smollm", "a  12"), [0, 4, 2, 3]);
        assert_eq!(ids("starcoder", "a  12"), [0, 4, 2, 3]);
        // Llama 3: digits in runs of up to three, spaces apart.
        assert_eq!(ids("falcon3", "a  12"), [0, 1, 1, 5]);
    }

    #[test]
    fn an_unknown_pre_tokenizer_is_refused_with_the_way_out() {
        let e = gguf_tokenizer(&vocab("tekken")).unwrap_err();
        assert!(e.contains("'tekken'") && e.contains("--tokenizer"), "{e}");
    }
}

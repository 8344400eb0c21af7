//! Byte-level BPE tokenizers (GPT-2 style) with the Hugging Face
//! `tokenizers` crate, so the `tokenizer.json` we write loads anywhere.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::io::IsTerminal;
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::AddedToken;

pub use tokenizers::Tokenizer;

/// The document separator; [`train_bpe`] gives it id 0.
pub const EOT: &str = "<|endoftext|>";

/// End-of-text spellings tried by [`eot_id`] on tokenizers we did not train.
const EOT_CANDIDATES: [&str; 5] = [EOT, "<|end_of_text|>", "</s>", "<eos>", "<|eot_id|>"];

/// Largest vocabulary whose ids fit the u16 shard format.
pub const U16_VOCAB_LIMIT: usize = 1 << 16;

/// 256 byte symbols plus the end-of-text token: the smallest useful vocabulary.
const MIN_VOCAB: usize = 257;

/// Trains a byte-level BPE tokenizer on `texts` and saves it to `out`
/// (`tokenizer.json` format).
///
/// The initial alphabet is all 256 byte symbols, so any input encodes
/// without unknown tokens; merges need a pair frequency of at least 2; the
/// pre-tokenizer adds no prefix space, so `decode(encode(s)) == s`.
/// A small corpus may yield fewer than `vocab_size` tokens.
pub fn train_bpe<I, S>(texts: I, vocab_size: usize, out: &Path) -> Result<Tokenizer>
where
    I: IntoIterator<Item = S>,
    I::IntoIter: Send,
    S: AsRef<str> + Send,
{
    if vocab_size < MIN_VOCAB {
        return Err(Error::InvalidArgument(format!(
            "vocab_size {vocab_size} is below {MIN_VOCAB} (256 bytes + {EOT})"
        )));
    }
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .special_tokens(vec![AddedToken::from(EOT, true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .show_progress(std::io::stderr().is_terminal())
        .build()
        .into();
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    tokenizer
        .train(&mut trainer, texts.into_iter())
        .map_err(Error::tokenizer)?;
    save(&tokenizer, out)?;
    Ok(tokenizer)
}

/// Loads any Hugging Face `tokenizer.json`.
///
/// Truncation and padding settings are dropped: documents are encoded
/// whole for pre-training, and a `max_length` left in a downloaded file
/// would otherwise cut every document silently.
pub fn load(path: &Path) -> Result<Tokenizer> {
    if !path.is_file() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "tokenizer file not found"),
        ));
    }
    let mut tokenizer = Tokenizer::from_file(path)
        .map_err(|e| Error::Tokenizer(format!("cannot load {}: {e}", path.display())))?;
    tokenizer
        .with_truncation(None)
        .map_err(Error::tokenizer)?
        .with_padding(None);
    Ok(tokenizer)
}

/// Saves `tokenizer` as compact JSON, atomically. The bytes written are
/// exactly those hashed by [`sha256`].
pub fn save(tokenizer: &Tokenizer, path: &Path) -> Result<()> {
    let json = tokenizer.to_string(false).map_err(Error::tokenizer)?;
    crate::atomic::write_bytes(path, json.as_bytes())
}

/// Hex SHA-256 of the tokenizer's compact JSON: identifies the exact
/// tokenizer a shard was made with.
pub fn sha256(tokenizer: &Tokenizer) -> Result<String> {
    let json = tokenizer.to_string(false).map_err(Error::tokenizer)?;
    Ok(hex(&Sha256::digest(json.as_bytes())))
}

/// Token ids of `text`, without added special tokens.
pub fn encode(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    let enc = tokenizer.encode(text, false).map_err(Error::tokenizer)?;
    Ok(enc.get_ids().to_vec())
}

/// Text of `ids`, keeping special tokens so documents stay visibly separated.
pub fn decode(tokenizer: &Tokenizer, ids: &[u32]) -> Result<String> {
    tokenizer.decode(ids, false).map_err(Error::tokenizer)
}

/// The id of the end-of-text token: `<|endoftext|>` or another common
/// spelling of it (`</s>`, `<|end_of_text|>`, ...).
pub fn eot_id(tokenizer: &Tokenizer) -> Result<u32> {
    EOT_CANDIDATES
        .iter()
        .find_map(|t| tokenizer.token_to_id(t))
        .ok_or_else(|| {
            Error::Tokenizer(format!(
                "no end-of-text token (tried {})",
                EOT_CANDIDATES.join(", ")
            ))
        })
}

/// A byte-level BPE vocabulary as the flat lists llama.cpp's GGUF metadata
/// holds (`tokenizer.ggml.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpeVocabulary {
    /// Every token, by id.
    pub tokens: Vec<String>,
    /// Merge rules in rank order, as `"left right"`.
    pub merges: Vec<String>,
    /// Whether each token is a special (added) token such as [`EOT`].
    pub special: Vec<bool>,
}

/// The vocabulary of a byte-level BPE tokenizer with GPT-2's pre-tokenizer
/// and no normalizer, what [`train_bpe`] makes. Other tokenizers are refused:
/// llama.cpp's `gpt2` tokenizer would split their text otherwise.
pub fn bpe_vocabulary(tokenizer: &Tokenizer) -> Result<BpeVocabulary> {
    let text = tokenizer.to_string(false).map_err(Error::tokenizer)?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(Error::tokenizer)?;
    let refuse = |why: &str| {
        Error::Tokenizer(format!(
            "only a byte-level BPE with GPT-2's pre-tokenizer (what `frugal tokenizer train` \
             makes) can be written as a GGUF vocabulary: {why}"
        ))
    };
    let (model, pre) = (&json["model"], &json["pre_tokenizer"]);
    if model["type"] != "BPE" {
        return Err(refuse("the model is not BPE"));
    }
    let gpt2 =
        pre["type"] == "ByteLevel" && pre["use_regex"] != false && pre["add_prefix_space"] != true;
    if !gpt2 {
        return Err(refuse("the pre-tokenizer is not GPT-2's byte-level one"));
    }
    if !json["normalizer"].is_null() {
        return Err(refuse("it has a normalizer"));
    }
    let mut by_id: Vec<Option<(String, bool)>> = Vec::new();
    let mut put = |token: &str, id: Option<u64>, special: bool| -> Result<()> {
        let Some(id) = id.map(|i| i as usize) else {
            return Err(refuse(&format!("token {token:?} has no id")));
        };
        if by_id.len() <= id {
            by_id.resize(id + 1, None);
        }
        let special = special || by_id[id].as_ref().is_some_and(|t| t.1);
        by_id[id] = Some((token.to_string(), special));
        Ok(())
    };
    for (token, id) in model["vocab"].as_object().into_iter().flatten() {
        put(token, id.as_u64(), false)?;
    }
    for added in json["added_tokens"].as_array().into_iter().flatten() {
        let content = added["content"].as_str().unwrap_or_default();
        put(content, added["id"].as_u64(), added["special"] == true)?;
    }
    let mut vocab = BpeVocabulary {
        tokens: Vec::new(),
        merges: Vec::new(),
        special: Vec::new(),
    };
    for (id, entry) in by_id.into_iter().enumerate() {
        let Some((token, special)) = entry else {
            return Err(refuse(&format!("no token has id {id}")));
        };
        vocab.tokens.push(token);
        vocab.special.push(special);
    }
    // `"a b"`, or `["a", "b"]` as tokenizers writes them since 0.20.
    for merge in model["merges"].as_array().into_iter().flatten() {
        let rule = match (merge.as_str(), merge.as_array()) {
            (Some(rule), _) => rule.to_string(),
            (_, Some(pair)) if pair.len() == 2 => {
                format!(
                    "{} {}",
                    pair[0].as_str().unwrap_or_default(),
                    pair[1].as_str().unwrap_or_default()
                )
            }
            _ => return Err(refuse(&format!("unreadable merge {merge}"))),
        };
        vocab.merges.push(rule);
    }
    Ok(vocab)
}

/// Vocabulary size including added tokens: what a model's embedding needs.
pub fn vocab_size(tokenizer: &Tokenizer) -> usize {
    tokenizer.get_vocab_size(true)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

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

/// Vocabulary size including added tokens: what a model's embedding needs.
pub fn vocab_size(tokenizer: &Tokenizer) -> usize {
    tokenizer.get_vocab_size(true)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

//! Tokenised corpora as flat little-endian token files, memory-mapped, so
//! training reads no text and pays no tokenisation cost per step.

use crate::documents::Document;
use crate::error::{Error, Result};
use crate::tokenizer::{self, Tokenizer};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Documents are tokenised in groups of about this many bytes of text:
/// enough for `encode_batch` to keep every core busy, small enough that the
/// intermediate `Encoding`s (~100 bytes per token) stay well under a GB.
const CHUNK_BYTES: usize = 4 << 20;

/// Width of one stored token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    U16,
    U32,
}

impl Dtype {
    /// u16 when every id of a `vocab_size` vocabulary fits, halving disk and
    /// page-cache use; u32 otherwise.
    pub fn for_vocab(vocab_size: usize) -> Self {
        if vocab_size <= tokenizer::U16_VOCAB_LIMIT {
            Dtype::U16
        } else {
            Dtype::U32
        }
    }

    /// Bytes per token.
    pub fn size(self) -> usize {
        match self {
            Dtype::U16 => 2,
            Dtype::U32 => 4,
        }
    }
}

/// The sidecar `PATH.json` describing a shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    pub dtype: Dtype,
    pub n_tokens: u64,
    pub n_docs: u64,
    pub vocab_size: u64,
    pub eot_id: u32,
    /// SHA-256 of the tokenizer's compact JSON (see [`tokenizer::sha256`]).
    pub tokenizer_sha256: String,
}

/// Where the metadata of the shard at `path` lives: `PATH.json`.
pub fn meta_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".json");
    PathBuf::from(s)
}

/// Tokenises `docs` (in parallel), joins them with the end-of-text id
/// between documents and writes the tokens to `path` plus `PATH.json`,
/// both atomically.
pub fn write_shard(tokenizer: &Tokenizer, docs: &[Document], path: &Path) -> Result<ShardMeta> {
    if docs.is_empty() {
        return Err(Error::EmptyCorpus(format!(
            "no documents to write to {}",
            path.display()
        )));
    }
    if tokenizer.get_truncation().is_some() || tokenizer.get_padding().is_some() {
        return Err(Error::InvalidArgument(
            "the tokenizer truncates or pads, which would cut or pad documents; \
             load it with tokenizer::load, which drops both"
                .into(),
        ));
    }
    let vocab_size = tokenizer::vocab_size(tokenizer);
    let dtype = Dtype::for_vocab(vocab_size);
    let eot_id = tokenizer::eot_id(tokenizer)?;
    let total_bytes: usize = docs.iter().map(|d| d.text.len()).sum();
    let progress = progress_bar(total_bytes as u64);
    let mut n_tokens: u64 = 0;
    crate::atomic::write_with(path, |w| {
        let mut buf: Vec<u8> = Vec::new();
        for (chunk_start, chunk) in chunks_by_bytes(docs, CHUNK_BYTES) {
            let texts: Vec<&str> = chunk.iter().map(|d| d.text.as_str()).collect();
            let encodings = tokenizer
                .encode_batch(texts, false)
                .map_err(Error::tokenizer)?;
            buf.clear();
            for (i, enc) in encodings.iter().enumerate() {
                if chunk_start + i > 0 {
                    push_token(&mut buf, eot_id, dtype, path)?;
                }
                for &id in enc.get_ids() {
                    push_token(&mut buf, id, dtype, path)?;
                }
            }
            n_tokens += (buf.len() / dtype.size()) as u64;
            w.write_all(&buf).map_err(|e| Error::io(path, e))?;
            progress.inc(chunk.iter().map(|d| d.text.len() as u64).sum());
        }
        Ok(())
    })?;
    progress.finish_and_clear();
    let meta = ShardMeta {
        dtype,
        n_tokens,
        n_docs: docs.len() as u64,
        vocab_size: vocab_size as u64,
        eot_id,
        tokenizer_sha256: tokenizer::sha256(tokenizer)?,
    };
    crate::atomic::write_json(&meta_path(path), &meta)?;
    Ok(meta)
}

/// Consecutive runs of documents of about `budget` bytes (at least one
/// document each), with the index of each run's first document.
fn chunks_by_bytes(docs: &[Document], budget: usize) -> Vec<(usize, &[Document])> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, doc) in docs.iter().enumerate() {
        bytes += doc.text.len();
        if bytes >= budget {
            out.push((start, &docs[start..=i]));
            start = i + 1;
            bytes = 0;
        }
    }
    if start < docs.len() {
        out.push((start, &docs[start..]));
    }
    out
}

fn push_token(buf: &mut Vec<u8>, id: u32, dtype: Dtype, path: &Path) -> Result<()> {
    match dtype {
        Dtype::U16 => {
            let small = u16::try_from(id).map_err(|_| Error::Shard {
                path: path.to_path_buf(),
                message: format!("token id {id} does not fit u16"),
            })?;
            buf.extend_from_slice(&small.to_le_bytes());
        }
        Dtype::U32 => buf.extend_from_slice(&id.to_le_bytes()),
    }
    Ok(())
}

/// A progress bar on stderr, hidden when stderr is not a terminal (logs, CI).
fn progress_bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if std::io::stderr().is_terminal() {
        if let Ok(style) =
            ProgressStyle::with_template("tokenising {wide_bar} {bytes}/{total_bytes} {eta}")
        {
            bar.set_style(style);
        }
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}

/// A read-only, memory-mapped token file.
#[derive(Debug)]
pub struct TokenShard {
    path: PathBuf,
    meta: ShardMeta,
    /// `None` for an empty shard: a zero-length file cannot be mapped.
    map: Option<Mmap>,
}

impl TokenShard {
    /// Maps the shard at `path` after checking its length against `PATH.json`.
    pub fn open(path: &Path) -> Result<Self> {
        let meta: ShardMeta = crate::atomic::read_json(&meta_path(path))?;
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let actual = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let expected = meta.n_tokens.checked_mul(meta.dtype.size() as u64);
        if expected != Some(actual) {
            return Err(Error::Shard {
                path: path.to_path_buf(),
                message: format!(
                    "file has {actual} bytes but its meta says {} {:?} tokens; rebuild the shard",
                    meta.n_tokens, meta.dtype
                ),
            });
        }
        if meta.dtype == Dtype::U16 && meta.vocab_size > tokenizer::U16_VOCAB_LIMIT as u64 {
            return Err(Error::Shard {
                path: path.to_path_buf(),
                message: format!("u16 tokens cannot hold a vocabulary of {}", meta.vocab_size),
            });
        }
        let map = if actual == 0 {
            None
        } else {
            // SAFETY: the mapping is read-only; shards are written once to a
            // temporary file and renamed into place, never modified in place.
            Some(unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?)
        };
        Ok(TokenShard {
            path: path.to_path_buf(),
            meta,
            map,
        })
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.meta.n_tokens as usize
    }

    /// True when the shard holds no token.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shard's metadata.
    pub fn meta(&self) -> &ShardMeta {
        &self.meta
    }

    /// The token file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tokens `start .. start + len`.
    pub fn get(&self, start: usize, len: usize) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(len);
        self.extend_into(start, len, &mut out)?;
        Ok(out)
    }

    /// Appends tokens `start .. start + len` to `out` (no allocation when
    /// `out` has room): what the batch sampler uses.
    pub fn extend_into(&self, start: usize, len: usize, out: &mut Vec<u32>) -> Result<()> {
        let end = start.checked_add(len).filter(|&e| e <= self.len());
        let Some(end) = end else {
            return Err(Error::Shard {
                path: self.path.clone(),
                message: format!(
                    "range {start}..{start}+{len} is outside its {} tokens",
                    self.len()
                ),
            });
        };
        let Some(map) = &self.map else {
            return Ok(()); // empty shard, empty range
        };
        let size = self.meta.dtype.size();
        let bytes = &map[start * size..end * size];
        match self.meta.dtype {
            Dtype::U16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| u32::from(u16::from_le_bytes([b[0], b[1]]))),
            ),
            Dtype::U32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(len: usize) -> Document {
        Document {
            id: String::new(),
            text: "x".repeat(len),
        }
    }

    #[test]
    fn chunks_cover_all_documents_in_order() {
        let docs: Vec<Document> = [3, 5, 1, 9, 2, 2].iter().map(|&n| doc(n)).collect();
        let chunks = chunks_by_bytes(&docs, 6);
        let starts: Vec<usize> = chunks.iter().map(|c| c.0).collect();
        let lens: Vec<usize> = chunks.iter().map(|c| c.1.len()).collect();
        assert_eq!(starts, vec![0, 2, 4]);
        assert_eq!(lens, vec![2, 2, 2]);
    }

    #[test]
    fn dtype_follows_vocab_size() {
        assert_eq!(Dtype::for_vocab(65_536), Dtype::U16);
        assert_eq!(Dtype::for_vocab(65_537), Dtype::U32);
    }
}

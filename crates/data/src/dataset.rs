//! A prepared data set: a directory with train/validation token shards and
//! the tokenizer that made them, checked against each other on open.

use crate::documents::Document;
use crate::error::{Error, Result};
use crate::shard::{self, ShardMeta, TokenShard};
use crate::split::train_val_split;
use crate::tokenizer::{self, Tokenizer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const TRAIN_FILE: &str = "train.bin";
pub const VAL_FILE: &str = "val.bin";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const META_FILE: &str = "dataset.json";

/// Contents of `dataset.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetMeta {
    pub train: ShardMeta,
    pub val: ShardMeta,
    pub val_fraction: f64,
    pub seed: u64,
    pub tokenizer_sha256: String,
    pub vocab_size: u64,
    pub eot_id: u32,
    /// Ids of the validation documents, so the split can be audited.
    pub val_doc_ids: Vec<String>,
}

/// Splits `docs` by document, tokenises both sides with the tokenizer at
/// `tokenizer_path` and writes `out_dir/{train.bin, val.bin, tokenizer.json,
/// dataset.json}`. `dataset.json` is written last: its presence means the
/// directory is complete.
pub fn prepare(
    docs: Vec<Document>,
    tokenizer_path: &Path,
    out_dir: &Path,
    val_fraction: f64,
    seed: u64,
) -> Result<DatasetMeta> {
    if docs.len() < 2 {
        return Err(Error::InvalidArgument(format!(
            "a train/validation split needs at least 2 documents, got {}",
            docs.len()
        )));
    }
    let tok = tokenizer::load(tokenizer_path)?;
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let (train_docs, val_docs) = train_val_split(docs, val_fraction, seed);
    tokenizer::save(&tok, &out_dir.join(TOKENIZER_FILE))?;
    let train = shard::write_shard(&tok, &train_docs, &out_dir.join(TRAIN_FILE))?;
    let val = shard::write_shard(&tok, &val_docs, &out_dir.join(VAL_FILE))?;
    let meta = DatasetMeta {
        tokenizer_sha256: train.tokenizer_sha256.clone(),
        vocab_size: train.vocab_size,
        eot_id: train.eot_id,
        train,
        val,
        val_fraction,
        seed,
        val_doc_ids: val_docs.into_iter().map(|d| d.id).collect(),
    };
    crate::atomic::write_json(&out_dir.join(META_FILE), &meta)?;
    Ok(meta)
}

/// An opened data set directory.
#[derive(Debug)]
pub struct Dataset {
    pub dir: PathBuf,
    pub meta: DatasetMeta,
    pub train: TokenShard,
    pub val: TokenShard,
    pub tokenizer: Tokenizer,
}

impl Dataset {
    /// Opens a directory written by [`prepare`], checking that both shards
    /// were made by the tokenizer stored beside them.
    pub fn open(dir: &Path) -> Result<Self> {
        let meta: DatasetMeta = crate::atomic::read_json(&dir.join(META_FILE))?;
        let tok = tokenizer::load(&dir.join(TOKENIZER_FILE))?;
        let sha = tokenizer::sha256(&tok)?;
        let train = TokenShard::open(&dir.join(TRAIN_FILE))?;
        let val = TokenShard::open(&dir.join(VAL_FILE))?;
        for s in [&train, &val] {
            if s.meta().tokenizer_sha256 != sha {
                return Err(Error::Shard {
                    path: s.path().to_path_buf(),
                    message: format!(
                        "made with tokenizer {} but {} is {sha}; re-run prepare",
                        s.meta().tokenizer_sha256,
                        TOKENIZER_FILE
                    ),
                });
            }
        }
        Ok(Dataset {
            dir: dir.to_path_buf(),
            meta,
            train,
            val,
            tokenizer: tok,
        })
    }
}

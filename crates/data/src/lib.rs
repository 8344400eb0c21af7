//! Data for frugal: real corpora fetched from package registries, local
//! document loading, byte-level BPE tokenizers, memory-mapped token shards
//! and a deterministic, resumable batch order.
//!
//! The usual path: [`corpus::load`] (or [`documents::load_documents`]) →
//! [`tokenizer::train_bpe`] → [`dataset::prepare`] → [`dataset::Dataset::open`]
//! → [`batch::BatchSampler`].

pub mod atomic;
pub mod batch;
pub mod cache;
pub mod corpus;
pub mod dataset;
pub mod documents;
pub mod error;
#[cfg(feature = "parquet")]
mod parquet_reader;
pub mod shard;
pub mod split;
pub mod tokenizer;

pub use batch::{fixed_eval_batches, Batch, BatchSampler};
pub use dataset::{Dataset, DatasetMeta};
pub use documents::{load_documents, Document};
pub use error::{Error, Result};
pub use shard::{write_shard, ShardMeta, TokenShard};
pub use split::train_val_split;

//! ProLong (Chen et al., ACL 2024): long-dependency scores of documents from
//! a causal LM's perplexities, and selection of a corpus by score.
//!
//! * [`lds`]: the formulas (DST, DDI, DSP, LDS) as pure functions.
//! * [`sampling`]: chunking and pair sampling.
//! * [`model`]: the scorer (GGUF, Hugging Face directory, frugal checkpoint).
//! * [`engine`]: batched perplexities with prefix KV-cache reuse.
//! * [`input`]: documents from JSONL/text/directories, bad records kept as errors.
//! * [`run`]: the resumable, sharded scoring loop and its output records.
//! * [`merge`]: checks sharded outputs and merges them, each document once.
//! * [`settings`]: what an output was scored with, so runs and shards do not mix.
//! * [`select`]: keep the top documents by score.
//! * [`heatmap`]: PNG heatmaps of the normalised ΔPPL (DST) matrix.

pub mod engine;
pub mod error;
pub mod heatmap;
pub mod input;
pub mod lds;
pub mod merge;
pub mod model;
#[cfg(feature = "parquet")]
pub mod parquet_out;
pub mod run;
pub mod sampling;
pub mod select;
pub mod settings;

pub use error::ProlongError;

pub type Result<T> = std::result::Result<T, ProlongError>;

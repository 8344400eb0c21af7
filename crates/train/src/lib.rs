//! Training: AdamW, the step loop, crash-safe checkpoints and metrics.
//!
//! * [`config`]: the TOML run description and `--set` overrides.
//! * [`optim`]: AdamW (PyTorch semantics) and global-norm clipping.
//! * [`checkpoint`]: atomic checkpoint directories and their discovery.
//! * [`metrics`]: `metrics.jsonl`, truncated on resume so a resumed run's
//!   file is byte-identical to an uninterrupted one.
//! * [`trainer`]: the loop that ties them together.
//! * [`averaging`]: windowed SWA and EMA of the weights, checkpointed.
//! * [`branch`]: cooldown branches continuing a run from a checkpoint.
//! * [`weights`]: a checkpoint's trained or averaged weights, for reading.

pub mod averaging;
pub mod branch;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod fsutil;
pub mod metrics;
pub mod optim;
pub mod trainer;
pub mod weights;

pub use config::TrainConfig;
pub use error::TrainError;
pub use trainer::{RunSummary, Trainer};

pub type Result<T> = std::result::Result<T, TrainError>;

//! Typed errors of frugal-pcm.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PcmError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A data file exists but is not what it claims to be.
    #[error("{path}: {message}")]
    BadData { path: PathBuf, message: String },
    /// A data set that should be on disk is not.
    #[error("{0}")]
    MissingData(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    // Boxed: the engine's errors are large and would make every Result so.
    #[error("tensor error: {0}")]
    Candle(Box<candle_core::Error>),
    #[error(transparent)]
    Train(Box<frugal_train::TrainError>),
    #[error(transparent)]
    Data(Box<frugal_data::Error>),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A LoRA key that cannot be merged (unknown format, missing target, shapes).
    #[error("LoRA key {key}: {message}")]
    LoraKey { key: String, message: String },
    #[error("tokenizer {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("training diverged at step {step}: loss is {loss}")]
    Diverged { step: u64, loss: f64 },
}

impl From<candle_core::Error> for PcmError {
    fn from(e: candle_core::Error) -> Self {
        PcmError::Candle(Box::new(e))
    }
}

impl From<frugal_train::TrainError> for PcmError {
    fn from(e: frugal_train::TrainError) -> Self {
        PcmError::Train(Box::new(e))
    }
}

impl From<frugal_data::Error> for PcmError {
    fn from(e: frugal_data::Error) -> Self {
        PcmError::Data(Box::new(e))
    }
}

impl PcmError {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        PcmError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
    pub fn bad(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        PcmError::BadData {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }
    pub fn ckpt(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        PcmError::Checkpoint {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }
    pub fn arg(message: impl Into<String>) -> Self {
        PcmError::InvalidArgument(message.into())
    }
}

pub type Result<T> = std::result::Result<T, PcmError>;

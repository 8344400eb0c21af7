/// Everything that can go wrong building, loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("invalid model config: {0}")]
    InvalidConfig(String),
    #[error("unknown model preset '{name}' (known: {known})")]
    UnknownPreset { name: String, known: String },
    #[error("parameter '{name}' is missing from {source_name}")]
    MissingParam { name: String, source_name: String },
    #[error(
        "{source_name} holds {names:?}, which this model config has no place for \
         (a part of the model its config does not state?)"
    )]
    UnexpectedParams {
        names: Vec<String>,
        source_name: String,
    },
    #[error("parameter '{name}' has shape {found:?} but this model needs {expected:?} (checkpoint from a different model shape?)")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid safetensors file: {message}")]
    Safetensors { path: String, message: String },
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl ModelError {
    /// As a candle error, for code that runs inside candle's custom-op
    /// traits (which return candle's `Result`).
    pub fn into_candle(self) -> candle_core::Error {
        match self {
            Self::Candle(e) => e,
            other => candle_core::Error::Msg(other.to_string()),
        }
    }

    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// Everything that can go wrong scoring or selecting.
#[derive(Debug, thiserror::Error)]
pub enum ProlongError {
    #[error("model: {0}")]
    Model(String),
    #[error(transparent)]
    Engine(#[from] frugal_model::ModelError),
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("input: {0}")]
    Input(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid option: {0}")]
    Options(String),
    /// An output's recorded settings (`OUTPUT.settings.json`) against a run's.
    #[error("{0}")]
    Settings(String),
}

impl ProlongError {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

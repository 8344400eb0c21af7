/// Everything that can stop a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] frugal_model::ModelError),
    #[error(transparent)]
    Data(#[from] frugal_data::Error),
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Schedule(#[from] frugal_schedule::ScheduleError),
    #[error("config: {0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: String, message: String },
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("training diverged at step {step}: loss is {loss}")]
    Diverged { step: u64, loss: f32 },
}

impl TrainError {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
    pub fn ckpt(path: impl AsRef<std::path::Path>, message: impl Into<String>) -> Self {
        Self::Checkpoint {
            path: path.as_ref().display().to_string(),
            message: message.into(),
        }
    }
}

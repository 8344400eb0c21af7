/// Everything that can stop a study command.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error("study spec: {0}")]
    Spec(String),
    #[error(transparent)]
    Train(Box<frugal_train::TrainError>),
    #[error(transparent)]
    Model(Box<frugal_model::ModelError>),
    #[error(transparent)]
    Data(Box<frugal_data::Error>),
    #[error(transparent)]
    Fit(Box<frugal_fit::FitError>),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{path}: {source}")]
    Chart {
        path: String,
        #[source]
        source: crate::chart::ChartError,
    },
    #[error("job {job} failed: {message}")]
    Job { job: String, message: String },
    #[error("slurm: {0}")]
    Slurm(String),
}

/// The wrapped library errors are boxed to keep `Result`s small.
macro_rules! boxed_from {
    ($($variant:ident($ty:ty)),*) => {$(
        impl From<$ty> for StudyError {
            fn from(e: $ty) -> Self {
                Self::$variant(Box::new(e))
            }
        }
    )*};
}

boxed_from!(
    Train(frugal_train::TrainError),
    Model(frugal_model::ModelError),
    Data(frugal_data::Error),
    Fit(frugal_fit::FitError)
);

impl StudyError {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, StudyError>;

//! Typed errors. Every bad input (file, column, value, option) maps to one of
//! these so callers (the CLI, the scaling-study code) can report it; nothing in
//! this crate panics on user data.

use std::path::PathBuf;

/// Errors raised while loading data or fitting.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("malformed CSV in {path}: {source}")]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },

    #[error("{path}, line {line}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },

    #[error("invalid column mapping {spec:?}: {reason}")]
    InvalidColumns { spec: String, reason: String },

    #[error("{path}: missing column {column:?} (available: {available})")]
    MissingColumn {
        path: PathBuf,
        column: String,
        available: String,
    },

    #[error("{path}, line {line}, column {column:?}: {reason} (got {value:?})")]
    BadValue {
        path: PathBuf,
        line: usize,
        column: String,
        value: String,
        reason: &'static str,
    },

    #[error("need at least {needed} observations, got {got}")]
    TooFewObservations { needed: usize, got: usize },

    #[error("invalid option: {0}")]
    InvalidOption(String),

    #[error("{0}")]
    NotApplicable(String),

    #[error("optimizer error: {0}")]
    Optimizer(String),

    #[error("no start of the L-BFGS grid converged to a finite objective")]
    NoConvergence,
}

/// Crate-wide result alias.
pub type Result<T> = std::result::Result<T, FitError>;

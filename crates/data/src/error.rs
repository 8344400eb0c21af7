//! One error type for the crate, so callers (the trainer, the CLI) can match
//! on what went wrong and print a message that says how to fix it.

use std::path::PathBuf;

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while fetching, reading, tokenising or
/// batching data. Every variant names the file, package or argument at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system operation failed on `path`.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A line (1-based) of a text or JSON file could not be understood.
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },

    /// A JSON file (manifest, shard meta, dataset meta) could not be read.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// The inputs held no document with any text.
    #[error("empty corpus: {0}")]
    EmptyCorpus(String),

    /// `name` is not in the corpus registry.
    #[error("unknown corpus `{name}`; known corpora: {known}")]
    UnknownCorpus { name: String, known: String },

    /// The package client needed to fetch a corpus is not installed.
    #[error("cannot fetch `{corpus}`: the program `{client}` was not found. {hint}")]
    ClientMissing {
        corpus: String,
        client: String,
        hint: String,
    },

    /// The package client ran but failed (no network, registry error, ...).
    #[error("cannot fetch `{corpus}`: `{command}` failed ({status}): {stderr}\n{hint}")]
    ClientFailed {
        corpus: String,
        command: String,
        status: String,
        stderr: String,
        hint: String,
    },

    /// apt does not know the pinned Debian package: its lists are missing or stale.
    #[error(
        "cannot fetch `{corpus}`: apt-get does not know {package}; run `apt-get update` once \
         (as root) and retry. {hint}"
    )]
    PackageNotFound {
        corpus: String,
        package: String,
        hint: String,
    },

    /// A downloaded package file is not the one that was pinned.
    #[error(
        "checksum mismatch for {path}: expected sha256 {expected}, got {actual}; the package \
         changed or the download is corrupt, so it was not used"
    )]
    ChecksumMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    /// An archive lacks a member the corpus needs.
    #[error("{path}: no member matching `{member}`")]
    MissingMember { path: PathBuf, member: String },

    /// Training, loading or running a tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// A token shard is inconsistent with its metadata or was read out of range.
    #[error("shard {path}: {message}")]
    Shard { path: PathBuf, message: String },

    /// An argument is out of its valid range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Wraps a JSON error with the path it concerns.
    pub(crate) fn json(path: impl Into<PathBuf>, source: serde_json::Error) -> Self {
        Error::Json {
            path: path.into(),
            source,
        }
    }

    /// Converts a `tokenizers` error (a boxed trait object) into ours.
    pub(crate) fn tokenizer(err: impl std::fmt::Display) -> Self {
        Error::Tokenizer(err.to_string())
    }
}

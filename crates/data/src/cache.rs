//! Where fetched corpora, models and data sets live on disk.

use std::path::PathBuf;

/// The cache root: `$FRUGAL_CACHE` if set, else `$XDG_CACHE_HOME/frugal`,
/// else `~/.cache/frugal` (and `./.cache/frugal` when no home is known).
///
/// Empty variables count as unset, as the XDG specification asks.
pub fn cache_dir() -> PathBuf {
    resolve(
        std::env::var_os("FRUGAL_CACHE"),
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
    )
}

/// The pure part of [`cache_dir`], so it can be tested without touching the
/// process environment (which tests running in parallel share).
fn resolve(
    frugal: Option<std::ffi::OsString>,
    xdg: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> PathBuf {
    let non_empty = |v: Option<std::ffi::OsString>| v.filter(|s| !s.is_empty());
    if let Some(dir) = non_empty(frugal) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = non_empty(xdg) {
        return PathBuf::from(dir).join("frugal");
    }
    match non_empty(home) {
        Some(home) => PathBuf::from(home).join(".cache").join("frugal"),
        None => PathBuf::from(".cache").join("frugal"),
    }
}

#[cfg(test)]
mod tests {
    use super::resolve;
    use std::path::PathBuf;

    #[test]
    fn precedence_is_frugal_then_xdg_then_home() {
        let s = |x: &str| Some(x.into());
        assert_eq!(resolve(s("/a"), s("/x"), s("/h")), PathBuf::from("/a"));
        assert_eq!(resolve(None, s("/x"), s("/h")), PathBuf::from("/x/frugal"));
        assert_eq!(
            resolve(s(""), s(""), s("/h")),
            PathBuf::from("/h/.cache/frugal")
        );
        assert_eq!(resolve(None, None, None), PathBuf::from(".cache/frugal"));
    }
}

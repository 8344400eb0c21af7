//! The GNU Collaborative International Dictionary of English (Webster 1913
//! and WordNet) from its dictd files, as plain text.
//!
//! `gcide.index` lists each headword with the base64 offset and length of
//! its entry in the decompressed `gcide.dict.dz`; several headwords can
//! share one entry. Entries are cut out in file order, stripped of dictd
//! markup and grouped [`ENTRIES_PER_DOC`] to a document, so a split by
//! document still spreads validation text over the whole alphabet.

use crate::documents::Document;
use crate::error::{Error, Result};
use std::path::Path;

/// Entries per document: a few hundred (~100 KB of text) gives ~420
/// documents, fine-grained enough for a 1-5 % validation split.
pub const ENTRIES_PER_DOC: usize = 300;

/// Reads `gcide.dict.dz` and `gcide.index` into documents `gcide-0000`, ...
pub fn documents(dict_dz: &Path, index: &Path) -> Result<Vec<Document>> {
    let data = super::archive::read_gz(dict_dz)?;
    let index_text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let spans = parse_index(&index_text, index, data.len())?;
    let entries: Vec<String> = spans
        .iter()
        .map(|&(offset, len)| strip_markup(&String::from_utf8_lossy(&data[offset..offset + len])))
        .filter(|e| !e.is_empty())
        .collect();
    Ok(entries
        .chunks(ENTRIES_PER_DOC)
        .enumerate()
        .map(|(i, chunk)| Document {
            id: format!("gcide-{i:04}"),
            text: chunk.join("\n\n"),
        })
        .collect())
}

/// Distinct (offset, length) spans of dictionary entries, in file order,
/// without the `00-database-*` entries (dictd metadata and licence text).
fn parse_index(text: &str, path: &Path, data_len: usize) -> Result<Vec<(usize, usize)>> {
    let mut spans = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let bad = |message: &str| Error::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            message: message.to_string(),
        };
        let mut fields = line.split('\t');
        let (Some(word), Some(off), Some(len)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(bad("expected `headword<TAB>offset<TAB>length`"));
        };
        let (Some(off), Some(len)) = (decode_base64(off), decode_base64(len)) else {
            return Err(bad("offset or length is not dictd base64"));
        };
        if off.checked_add(len).is_none_or(|end| end > data_len) {
            return Err(bad("entry lies outside the dictionary data"));
        }
        if !word.starts_with("00-") {
            spans.push((off, len));
        }
    }
    spans.sort_unstable();
    spans.dedup();
    Ok(spans)
}

/// dictd's base64 numbers: big-endian digits over `A-Za-z0-9+/`.
fn decode_base64(s: &str) -> Option<usize> {
    if s.is_empty() {
        return None;
    }
    s.bytes().try_fold(0usize, |acc, b| {
        let digit = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc.checked_mul(64)?.checked_add(usize::from(digit))
    })
}

/// Plain text of one entry: pronunciations (`\Af*fect"\`), cross-reference
/// braces and source tags (`[1913 Webster]`) go; character entities
/// (`[=a]`, `[ae]`, `[alpha]`) become letters; lines left empty by the
/// removals go; runs of blank lines shrink to one.
pub fn strip_markup(entry: &str) -> String {
    let mut out = String::with_capacity(entry.len());
    let mut blank_run = true; // suppress leading blank lines
    for line in entry.lines() {
        let cleaned = strip_line(line);
        let cleaned = cleaned.trim_end();
        if cleaned.trim().is_empty() {
            if !line.trim().is_empty() || blank_run {
                continue; // only markup, or a second blank line
            }
            blank_run = true;
            out.push('\n');
        } else {
            blank_run = false;
            out.push_str(cleaned);
            out.push('\n');
        }
    }
    out.trim_end().to_string()
}

fn strip_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        let after = &rest[c.len_utf8()..];
        match c {
            '\\' => {
                // A pronunciation runs to the next backslash on the line.
                rest = match after.find('\\') {
                    Some(end) => {
                        trim_trailing_space(&mut out);
                        &after[end + 1..]
                    }
                    None => after,
                };
            }
            '{' | '}' => rest = after,
            '[' => match after.find(']').filter(|&end| end <= 40) {
                Some(end) => {
                    let inner = &after[..end];
                    if is_source_tag(inner) {
                        trim_trailing_space(&mut out);
                        rest = &after[end + 1..];
                    } else if let Some(text) = entity(inner) {
                        out.push_str(&text);
                        rest = &after[end + 1..];
                    } else {
                        out.push('[');
                        rest = after;
                    }
                }
                None => {
                    out.push('[');
                    rest = after;
                }
            },
            _ => {
                out.push(c);
                rest = after;
            }
        }
    }
    out
}

fn trim_trailing_space(out: &mut String) {
    while out.ends_with(' ') {
        out.pop();
    }
}

/// Tags naming where a definition came from, e.g. `[1913 Webster]`,
/// `[WordNet 1.5 +PJC]`, `[RDH]`.
fn is_source_tag(inner: &str) -> bool {
    const SOURCES: [&str; 4] = ["Webster", "WordNet", "PJC", "Century Dict"];
    SOURCES.iter().any(|s| inner.contains(s))
        || ((2..=4).contains(&inner.len()) && inner.bytes().all(|b| b.is_ascii_uppercase()))
}

/// The text of a character entity, or `None` when `inner` is ordinary
/// bracketed text such as `[Obs.]` or `[it]`.
fn entity(inner: &str) -> Option<String> {
    if let Some(named) = NAMED.iter().find(|(k, _)| *k == inner) {
        return Some(named.1.to_string());
    }
    // A letter or two with accent marks: ['e], [=a], [a^], [=oo], [,c].
    const MARKS: &str = "=-'`\"^~.,*";
    let stripped = inner.trim_start_matches(|c| MARKS.contains(c));
    let stripped = stripped.trim_end_matches('^');
    let marked = stripped.len() < inner.len();
    let letters =
        (1..=2).contains(&stripped.len()) && stripped.bytes().all(|b| b.is_ascii_alphabetic());
    (marked && letters).then(|| stripped.to_string())
}

/// Named entities of the GCIDE dictd conversion.
const NAMED: [(&str, &str); 53] = [
    ("ae", "æ"),
    ("AE", "Æ"),
    ("oe", "œ"),
    ("OE", "Œ"),
    ("eth", "ð"),
    ("thorn", "þ"),
    ("yogh", "ȝ"),
    ("imac", "ī"),
    ("aum", "ä"),
    ("asl", "a"),
    ("add", "a"),
    ("udd", "u"),
    ("ng", "ng"),
    ("th", "th"),
    ("root", "√"),
    ("deg", "°"),
    ("sect", "§"),
    ("pounds", "£"),
    ("middot", "·"),
    ("para", "¶"),
    ("dagger", "†"),
    ("dag", "†"),
    ("times", "×"),
    ("div", "÷"),
    ("divby", "÷"),
    ("nbsp", " "),
    ("ldquo", "“"),
    ("ldqo", "“"),
    ("rdquo", "”"),
    ("rarr", "→"),
    ("min", "′"),
    ("sec", "″"),
    ("flat", "♭"),
    ("sharp", "♯"),
    ("hand", "☞"),
    ("alpha", "α"),
    ("beta", "β"),
    ("gamma", "γ"),
    ("delta", "δ"),
    ("epsilon", "ε"),
    ("zeta", "ζ"),
    ("eta", "η"),
    ("theta", "θ"),
    ("iota", "ι"),
    ("kappa", "κ"),
    ("lambda", "λ"),
    ("mu", "μ"),
    ("nu", "ν"),
    ("pi", "π"),
    ("rho", "ρ"),
    ("sigma", "σ"),
    ("tau", "τ"),
    ("phi", "φ"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_stripped_to_plain_text() {
        let entry = "Affear \\Af*fear\"\\, v. t. [OE. aferen, AS. [=a]f?ran. See\n   {Afeard}.]\n   To frighten. [Obs.] --Spenser.\n   [1913 Webster]\n\n\n   Caf['e] [ae]on [alpha]. [WordNet 1.5 +PJC]\n";
        let want = "Affear, v. t. [OE. aferen, AS. af?ran. See\n   Afeard.]\n   To frighten. [Obs.] --Spenser.\n\n   Cafe æon α.";
        assert_eq!(strip_markup(entry), want);
    }

    #[test]
    fn ordinary_brackets_survive() {
        assert_eq!(strip_markup("[it] [R.] [-] a[b"), "[it] [R.] [-] a[b");
    }

    #[test]
    fn index_gives_sorted_distinct_spans_without_metadata() {
        let index = "00-database-info\tA\tC\nb\tK\tC\na\tE\tC\nalias\tE\tC\n";
        let spans = parse_index(index, Path::new("i"), 100).unwrap();
        assert_eq!(spans, vec![(4, 2), (10, 2)]);
        assert_eq!(decode_base64("Kj"), Some(10 * 64 + 35));
        let bad = parse_index("a\tE\n", Path::new("i"), 100);
        assert!(matches!(bad, Err(Error::Parse { line: 1, .. })));
        let outside = parse_index("a\tB/\tC\n", Path::new("i"), 100);
        assert!(matches!(outside, Err(Error::Parse { .. })));
    }
}

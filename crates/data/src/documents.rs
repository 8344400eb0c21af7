//! Reading documents from plain local files, so that everything downstream
//! (tokenizer training, sharding) works the same for registry corpora and
//! for a user's own text.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One unit of text. The train/validation split is made by document, so a
/// document should be a self-contained piece (a play, a speech, a chapter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    pub id: String,
    pub text: String,
}

/// File extensions taken when a directory is walked.
const DIR_EXTENSIONS: [&str; 3] = ["txt", "md", "rst"];

/// Loads documents from `paths`, in order:
/// - a directory: every `.txt`/`.md`/`.rst` file below it, recursively, in
///   sorted path order, one document per file (id = the file's path);
/// - a `.jsonl` file (including a cached `docs.jsonl`): one document per
///   non-blank line, text from `text_field`, id from an `"id"` field when
///   present, else `file:line`;
/// - any other file: one document (id = its path).
///
/// Documents whose text is blank are skipped; no document at all is an error.
pub fn load_documents(paths: &[PathBuf], text_field: &str) -> Result<Vec<Document>> {
    let mut docs = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            for file in walk_dir(path)? {
                push_text_file(&file, &mut docs)?;
            }
        } else if has_extension(path, "jsonl") {
            read_jsonl(path, text_field, &mut docs)?;
        } else if has_extension(path, "parquet") {
            read_parquet(path, text_field, &mut docs)?;
        } else {
            push_text_file(path, &mut docs)?;
        }
    }
    if docs.is_empty() {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(Error::EmptyCorpus(format!(
            "no text found in [{}]",
            names.join(", ")
        )));
    }
    Ok(docs)
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// All text files below `dir`, sorted so the corpus order (and with it the
/// shard contents) does not depend on the file system's listing order.
fn walk_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&d, e))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
            if kind.is_dir() {
                stack.push(path);
            } else if DIR_EXTENSIONS.iter().any(|ext| has_extension(&path, ext)) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn push_text_file(path: &Path, docs: &mut Vec<Document>) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        line: line_of_offset(e.as_bytes(), e.utf8_error().valid_up_to()),
        message: "not valid UTF-8".into(),
    })?;
    if !text.trim().is_empty() {
        docs.push(Document {
            id: path.display().to_string(),
            text,
        });
    }
    Ok(())
}

fn line_of_offset(bytes: &[u8], offset: usize) -> usize {
    1 + bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

fn read_jsonl(path: &Path, text_field: &str, docs: &mut Vec<Document>) -> Result<()> {
    let content = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    for (i, line) in content.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let parse_err = |message: String| Error::Parse {
            path: path.to_path_buf(),
            line: line_no,
            message,
        };
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| parse_err(format!("invalid JSON: {e}")))?;
        let text = match value.get(text_field) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(_) => return Err(parse_err(format!("field `{text_field}` is not a string"))),
            None => return Err(parse_err(format!("no field `{text_field}`"))),
        };
        let id = match value.get("id") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => format!("{}:{line_no}", path.display()),
        };
        if !text.trim().is_empty() {
            docs.push(Document { id, text });
        }
    }
    Ok(())
}

#[cfg(feature = "parquet")]
fn read_parquet(path: &Path, text_field: &str, docs: &mut Vec<Document>) -> Result<()> {
    crate::parquet_reader::read(path, text_field, docs)
}

#[cfg(not(feature = "parquet"))]
fn read_parquet(path: &Path, _text_field: &str, _docs: &mut Vec<Document>) -> Result<()> {
    Err(Error::InvalidArgument(format!(
        "{}: reading Parquet needs frugal-data built with the `parquet` feature",
        path.display()
    )))
}

/// Writes documents as JSON lines (`{"id": ..., "text": ...}`) atomically.
pub fn write_jsonl(path: &Path, docs: &[Document]) -> Result<()> {
    use std::io::Write;
    crate::atomic::write_with(path, |w| {
        for doc in docs {
            serde_json::to_writer(&mut *w, doc).map_err(|e| Error::json(path, e))?;
            w.write_all(b"\n").map_err(|e| Error::io(path, e))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_round_trip_keeps_ids_and_text() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("docs.jsonl");
        let docs = vec![
            Document {
                id: "a".into(),
                text: "line one\n\"quoted\"".into(),
            },
            Document {
                id: "b".into(),
                text: "ünïcode".into(),
            },
        ];
        write_jsonl(&p, &docs).unwrap();
        assert_eq!(load_documents(&[p], "text").unwrap(), docs);
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.txt");
        std::fs::write(&p, b"ok\nok\nbad \xff byte\n").unwrap();
        match load_documents(&[p], "text") {
            Err(Error::Parse { line, .. }) => assert_eq!(line, 3),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }
}

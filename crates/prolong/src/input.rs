//! Documents to score, read one at a time. A bad record (invalid JSON or
//! UTF-8, a missing field, an oversized line) becomes an error for that
//! document alone, so one broken line never stops a shard.

use crate::{ProlongError, Result};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// How records are read.
#[derive(Debug, Clone)]
pub struct InputOptions {
    pub text_field: String,
    /// JSON field used as the id; default `path:line`.
    pub id_field: Option<String>,
    /// Longer lines/files are errors (not read into a string).
    pub max_bytes: usize,
}

impl Default for InputOptions {
    fn default() -> Self {
        Self {
            text_field: "text".into(),
            id_field: None,
            max_bytes: 16 << 20,
        }
    }
}

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// Short, stable kind for counting: `invalid_json`, `invalid_utf8`,
    /// `missing_field`, `too_long`, `io`.
    pub kind: &'static str,
    pub message: String,
}

/// One input record.
#[derive(Debug, Clone, PartialEq)]
pub struct RawDoc {
    pub id: String,
    pub text: std::result::Result<String, RecordError>,
}

fn rec_err(kind: &'static str, message: impl Into<String>) -> RecordError {
    RecordError {
        kind,
        message: message.into(),
    }
}

const TEXT_EXTENSIONS: [&str; 4] = ["txt", "md", "rst", "text"];

/// Calls `f` on every record of `paths` in a fixed order (directories in
/// sorted path order); `f` returns `false` to stop early.
pub fn for_each_doc(
    paths: &[PathBuf],
    opt: &InputOptions,
    f: &mut dyn FnMut(RawDoc) -> Result<bool>,
) -> Result<()> {
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| ProlongError::io(p, e))?;
        let files = if meta.is_dir() {
            walk(p)?
        } else {
            vec![p.clone()]
        };
        for file in files {
            if !read_file(&file, opt, f)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| ProlongError::io(&d, e))? {
            let p = e.map_err(|e| ProlongError::io(&d, e))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| TEXT_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn ext_is(p: &Path, e: &str) -> bool {
    p.extension()
        .and_then(|x| x.to_str())
        .is_some_and(|x| x.eq_ignore_ascii_case(e))
}

fn read_file(
    path: &Path,
    opt: &InputOptions,
    f: &mut dyn FnMut(RawDoc) -> Result<bool>,
) -> Result<bool> {
    let name = path.display().to_string();
    if ext_is(path, "jsonl") {
        return read_jsonl(path, opt, f);
    }
    if ext_is(path, "parquet") {
        // Parquet support lives in frugal-data (feature `parquet`); a file it
        // cannot read is one error record.
        return match frugal_data::load_documents(&[path.to_path_buf()], &opt.text_field) {
            Ok(docs) => {
                for (k, d) in docs.into_iter().enumerate() {
                    if !f(RawDoc {
                        id: format!("{name}:{k}"),
                        text: Ok(d.text),
                    })? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Err(e) => f(RawDoc {
                id: name,
                text: Err(rec_err("io", e.to_string())),
            }),
        };
    }
    let text = match std::fs::metadata(path) {
        Ok(m) if m.len() as usize > opt.max_bytes => Err(rec_err(
            "too_long",
            format!("{} bytes > limit {}", m.len(), opt.max_bytes),
        )),
        Ok(_) => match std::fs::read(path) {
            Ok(b) => String::from_utf8(b).map_err(|e| rec_err("invalid_utf8", e.to_string())),
            Err(e) => Err(rec_err("io", e.to_string())),
        },
        Err(e) => Err(rec_err("io", e.to_string())),
    };
    f(RawDoc { id: name, text })
}

fn read_jsonl(
    path: &Path,
    opt: &InputOptions,
    f: &mut dyn FnMut(RawDoc) -> Result<bool>,
) -> Result<bool> {
    let file = std::fs::File::open(path).map_err(|e| ProlongError::io(path, e))?;
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    loop {
        buf.clear();
        line_no += 1;
        // Read at most max_bytes + 1 of the line; the rest of an oversized
        // line is skipped without being held in memory.
        let n = (&mut r)
            .take(opt.max_bytes as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| ProlongError::io(path, e))?;
        if n == 0 {
            return Ok(true);
        }
        let mut too_long = false;
        if buf.last() != Some(&b'\n') && n > opt.max_bytes {
            too_long = true;
            skip_line(&mut r).map_err(|e| ProlongError::io(path, e))?;
        }
        let default_id = format!("{}:{line_no}", path.display());
        if !too_long && buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let doc = if too_long {
            RawDoc {
                id: default_id,
                text: Err(rec_err(
                    "too_long",
                    format!("line longer than {} bytes", opt.max_bytes),
                )),
            }
        } else {
            parse_line(&buf, default_id, opt)
        };
        if !f(doc)? {
            return Ok(false);
        }
    }
}

fn skip_line(r: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let (done, used) = {
            let b = r.fill_buf()?;
            if b.is_empty() {
                return Ok(());
            }
            match b.iter().position(|&c| c == b'\n') {
                Some(k) => (true, k + 1),
                None => (false, b.len()),
            }
        };
        r.consume(used);
        if done {
            return Ok(());
        }
    }
}

fn parse_line(line: &[u8], default_id: String, opt: &InputOptions) -> RawDoc {
    let s = match std::str::from_utf8(line) {
        Ok(s) => s,
        Err(e) => {
            return RawDoc {
                id: default_id,
                text: Err(rec_err("invalid_utf8", e.to_string())),
            }
        }
    };
    let v: serde_json::Value = match serde_json::from_str(s) {
        Ok(v) => v,
        Err(e) => {
            return RawDoc {
                id: default_id,
                text: Err(rec_err("invalid_json", e.to_string())),
            }
        }
    };
    let id = opt
        .id_field
        .as_ref()
        .and_then(|k| v.get(k))
        .map(|x| match x {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or(default_id);
    let text = match v.get(&opt.text_field) {
        Some(serde_json::Value::String(t)) => Ok(t.clone()),
        Some(_) => Err(rec_err(
            "missing_field",
            format!("field '{}' is not a string", opt.text_field),
        )),
        None => Err(rec_err(
            "missing_field",
            format!("no field '{}'", opt.text_field),
        )),
    };
    RawDoc { id, text }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn bad_records_are_errors_not_failures() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.jsonl");
        let mut f = std::fs::File::create(&p).unwrap();
        writeln!(f, r#"{{"text": "hello", "id": 7}}"#).unwrap();
        writeln!(f, "not json").unwrap();
        f.write_all(b"{\"text\": \"\xff\xfe\"}\n").unwrap();
        writeln!(f, r#"{{"body": "x"}}"#).unwrap();
        writeln!(f).unwrap();
        writeln!(f, r#"{{"text": "{}"}}"#, "y".repeat(200)).unwrap();
        writeln!(f, r#"{{"text": "last"}}"#).unwrap();
        drop(f);
        let opt = InputOptions {
            id_field: Some("id".into()),
            max_bytes: 100,
            ..Default::default()
        };
        let mut got = Vec::new();
        for_each_doc(std::slice::from_ref(&p), &opt, &mut |d| {
            got.push(d);
            Ok(true)
        })
        .unwrap();
        let kinds: Vec<&str> = got
            .iter()
            .map(|d| d.text.as_ref().err().map(|e| e.kind).unwrap_or("ok"))
            .collect();
        assert_eq!(
            kinds,
            [
                "ok",
                "invalid_json",
                "invalid_utf8",
                "missing_field",
                "too_long",
                "ok"
            ]
        );
        assert_eq!(got[0].id, "7");
        assert_eq!(got[5].text.as_deref().unwrap(), "last");
        assert!(got[5].id.ends_with("a.jsonl:7"), "{}", got[5].id);
    }

    #[test]
    fn directories_are_walked_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b.txt"), "b").unwrap();
        std::fs::write(dir.path().join("a.md"), "a").unwrap();
        std::fs::write(dir.path().join("c.bin"), "c").unwrap();
        std::fs::write(dir.path().join("d.txt"), b"\xff").unwrap();
        let mut got = Vec::new();
        for_each_doc(
            &[dir.path().to_path_buf()],
            &InputOptions::default(),
            &mut |d| {
                got.push(d);
                Ok(true)
            },
        )
        .unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].text.as_deref().unwrap(), "a");
        assert_eq!(got[1].text.as_ref().unwrap_err().kind, "invalid_utf8");
        assert_eq!(got[2].text.as_deref().unwrap(), "b");
    }
}

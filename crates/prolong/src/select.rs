//! Keeping the best-scoring documents (the paper trains on the top 50 %).

use crate::run::ScoreRecord;
use crate::{ProlongError, Result};
use std::io::{BufRead, BufReader};
use std::path::Path;

/// Which documents to keep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Keep {
    /// The top fraction (0, 1] by LDS.
    TopFraction(f64),
    /// The top `n` by LDS.
    TopCount(usize),
    /// Every document with LDS ≥ x.
    MinLds(f64),
}

impl Keep {
    /// `50%`, `0.5` (a fraction) or `1000` (a count).
    pub fn parse_top(s: &str) -> Result<Self> {
        let bad = || ProlongError::Options(format!("--top '{s}': want N, a fraction or P%"));
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(bad());
            }
            return Ok(Keep::TopFraction(p / 100.0));
        }
        if let Ok(n) = s.parse::<usize>() {
            return Ok(Keep::TopCount(n));
        }
        match s.parse::<f64>() {
            Ok(f) if f > 0.0 && f <= 1.0 => Ok(Keep::TopFraction(f)),
            _ => Err(bad()),
        }
    }
}

/// Whether `path` names a Parquet file (by extension).
pub fn is_parquet(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// Every record of a scores file (JSONL, or Parquet by extension), error
/// records included.
pub fn read_records(path: &Path) -> Result<Vec<ScoreRecord>> {
    if is_parquet(path) {
        return read_parquet(path);
    }
    let f = std::fs::File::open(path).map_err(|e| ProlongError::io(path, e))?;
    let mut out = Vec::new();
    for (k, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| ProlongError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let r: ScoreRecord = serde_json::from_str(&line)
            .map_err(|e| ProlongError::Input(format!("{}:{}: {e}", path.display(), k + 1)))?;
        out.push(r);
    }
    Ok(out)
}

/// Scored records (status `ok`) of a scores file; error records are skipped.
pub fn read_scores(path: &Path) -> Result<Vec<ScoreRecord>> {
    let mut out = read_records(path)?;
    out.retain(|r| r.status == "ok" && r.lds.is_some());
    Ok(out)
}

#[cfg(feature = "parquet")]
fn read_parquet(path: &Path) -> Result<Vec<ScoreRecord>> {
    crate::parquet_out::read(path)
}

#[cfg(feature = "parquet")]
fn write_parquet(path: &Path, records: &[ScoreRecord]) -> Result<()> {
    crate::parquet_out::write(path, records)
}

#[cfg(not(feature = "parquet"))]
fn read_parquet(path: &Path) -> Result<Vec<ScoreRecord>> {
    Err(no_parquet(path))
}

#[cfg(not(feature = "parquet"))]
fn write_parquet(path: &Path, _records: &[ScoreRecord]) -> Result<()> {
    Err(no_parquet(path))
}

#[cfg(not(feature = "parquet"))]
fn no_parquet(path: &Path) -> ProlongError {
    ProlongError::Options(format!(
        "{}: Parquet needs frugal-prolong built with the `parquet` feature",
        path.display()
    ))
}

/// The kept records, best first (ties in input order).
pub fn select(mut records: Vec<ScoreRecord>, keep: Keep) -> Vec<ScoreRecord> {
    let score = |r: &ScoreRecord| r.lds.unwrap_or(f64::NEG_INFINITY);
    records.sort_by(|a, b| score(b).total_cmp(&score(a)));
    let n = match keep {
        Keep::TopFraction(f) => ((records.len() as f64) * f).round() as usize,
        Keep::TopCount(n) => n,
        Keep::MinLds(x) => records.iter().take_while(|r| score(r) >= x).count(),
    };
    records.truncate(n.min(records.len()));
    records
}

/// Fills the `text` of records that lack it from the inputs they were scored
/// from (same id options as the scoring run). Returns how many records still
/// have no text (ids not found in the inputs, or unreadable documents).
pub fn fill_text(
    records: &mut [ScoreRecord],
    inputs: &[std::path::PathBuf],
    opt: &crate::input::InputOptions,
) -> Result<usize> {
    let mut want: std::collections::HashMap<String, usize> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.text.is_none())
        .map(|(k, r)| (r.id.clone(), k))
        .collect();
    if want.is_empty() {
        return Ok(0);
    }
    crate::input::for_each_doc(inputs, opt, &mut |doc| {
        if let (Some(k), Ok(text)) = (want.get(&doc.id).copied(), doc.text) {
            records[k].text = Some(text);
            want.remove(&doc.id);
        }
        // Stop reading once every wanted text is found.
        Ok(!want.is_empty())
    })?;
    Ok(want.len())
}

/// Records as JSONL lines.
pub fn jsonl_bytes(records: &[ScoreRecord]) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    for r in records {
        serde_json::to_writer(&mut buf, r).map_err(|e| ProlongError::Input(e.to_string()))?;
        buf.push(b'\n');
    }
    Ok(buf)
}

/// Writes records atomically as JSONL, or as Parquet when `path` ends in
/// `.parquet`.
pub fn write_records(path: &Path, records: &[ScoreRecord]) -> Result<()> {
    if is_parquet(path) {
        return write_parquet(path, records);
    }
    frugal_data::atomic::write_bytes(path, &jsonl_bytes(records)?)
        .map_err(|e| ProlongError::Input(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, lds: f64) -> ScoreRecord {
        ScoreRecord {
            id: id.into(),
            status: "ok".into(),
            lds: Some(lds),
            tokens: 0,
            chunks: 0,
            pairs: 0,
            counted: 0,
            error: None,
            text: None,
        }
    }

    #[test]
    fn top_and_min() {
        let rs = vec![rec("a", 1.0), rec("b", 5.0), rec("c", 3.0), rec("d", 0.0)];
        let ids = |v: Vec<ScoreRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(
            ids(select(rs.clone(), Keep::parse_top("50%").unwrap())),
            ["b", "c"]
        );
        assert_eq!(
            ids(select(rs.clone(), Keep::parse_top("3").unwrap())),
            ["b", "c", "a"]
        );
        assert_eq!(ids(select(rs.clone(), Keep::MinLds(1.0))), ["b", "c", "a"]);
        assert_eq!(ids(select(rs, Keep::parse_top("0.25").unwrap())), ["b"]);
        assert!(Keep::parse_top("0%").is_err());
        assert!(Keep::parse_top("x").is_err());
    }

    #[test]
    fn text_is_filled_from_the_inputs_and_records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.jsonl");
        std::fs::write(&input, "{\"text\": \"first\"}\n{\"text\": \"second\"}\n").unwrap();
        let id = |line: usize| format!("{}:{line}", input.display());
        let mut kept = vec![rec(&id(2), 2.0), rec("elsewhere", 1.0)];
        let missing = fill_text(
            &mut kept,
            std::slice::from_ref(&input),
            &crate::input::InputOptions::default(),
        )
        .unwrap();
        assert_eq!(missing, 1);
        assert_eq!(kept[0].text.as_deref(), Some("second"));
        assert_eq!(kept[1].text, None);

        let out = dir.path().join("sel.jsonl");
        write_records(&out, &kept).unwrap();
        assert_eq!(read_records(&out).unwrap(), kept);
    }
}

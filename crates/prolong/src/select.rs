//! Keeping the best-scoring documents (the paper trains on the top 50 %).

use crate::run::ScoreRecord;
use crate::{ProlongError, Result};
use std::io::{BufRead, BufReader, Write};
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

/// Scored records (status `ok`) of a scores file; error records are skipped.
pub fn read_scores(path: &Path) -> Result<Vec<ScoreRecord>> {
    let f = std::fs::File::open(path).map_err(|e| ProlongError::io(path, e))?;
    let mut out = Vec::new();
    for (k, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| ProlongError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let r: ScoreRecord = serde_json::from_str(&line)
            .map_err(|e| ProlongError::Input(format!("{}:{}: {e}", path.display(), k + 1)))?;
        if r.status == "ok" && r.lds.is_some() {
            out.push(r);
        }
    }
    Ok(out)
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

/// Writes records as JSONL.
pub fn write_jsonl(path: &Path, records: &[ScoreRecord]) -> Result<()> {
    let mut buf = Vec::new();
    for r in records {
        serde_json::to_writer(&mut buf, r).map_err(|e| ProlongError::Input(e.to_string()))?;
        buf.push(b'\n');
    }
    let mut f = std::fs::File::create(path).map_err(|e| ProlongError::io(path, e))?;
    f.write_all(&buf).map_err(|e| ProlongError::io(path, e))
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
}

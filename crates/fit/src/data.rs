//! Loading (N, D, loss) observations from CSV or JSONL.
//!
//! Scaling-law data comes in two shapes: with the token count D directly, or
//! with the training compute C (the digitised Chinchilla data has `Training
//! FLOP`). With C we use the standard approximation C = 6 N D, so D = C / (6 N).

use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{FitError, Result};

/// One training run: parameters `n`, training tokens `d`, final loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub n: f64,
    pub d: f64,
    pub loss: f64,
}

impl Observation {
    /// Training compute under the C = 6 N D approximation.
    pub fn compute(&self) -> f64 {
        6.0 * self.n * self.d
    }
}

/// What the middle column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Middle {
    /// Training tokens D.
    Tokens,
    /// Training compute C in FLOPs; D is derived as C / (6 N).
    Compute,
}

/// Which columns (CSV header names or JSONL keys) hold N, D-or-C and loss.
///
/// Written as `"N,D,loss"`. The middle name is read as compute C when it is
/// prefixed `C=`, is exactly `C`, or contains "flop" (any case), so that the
/// Chinchilla file works as `"Model Size,Training FLOP,loss"`; a `D=` prefix
/// forces tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Columns {
    pub n: String,
    pub middle: String,
    pub middle_kind: Middle,
    pub loss: String,
}

impl Columns {
    /// Parse a mapping such as `"N,D,loss"` or `"Model Size,C=Training FLOP,loss"`.
    pub fn parse(spec: &str) -> Result<Self> {
        let invalid = |reason: &str| FitError::InvalidColumns {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = spec.split(',').map(str::trim).collect();
        if parts.len() != 3 {
            return Err(invalid(
                "expected three comma-separated names: N,D-or-C,loss",
            ));
        }
        if parts.iter().any(|p| p.is_empty()) {
            return Err(invalid("column names must not be empty"));
        }
        let (middle_kind, middle) = if let Some(name) = parts[1].strip_prefix("C=") {
            (Middle::Compute, name.trim())
        } else if let Some(name) = parts[1].strip_prefix("D=") {
            (Middle::Tokens, name.trim())
        } else if parts[1] == "C" || parts[1].to_lowercase().contains("flop") {
            (Middle::Compute, parts[1])
        } else {
            (Middle::Tokens, parts[1])
        };
        if middle.is_empty() {
            return Err(invalid("column names must not be empty"));
        }
        Ok(Columns {
            n: parts[0].to_string(),
            middle: middle.to_string(),
            middle_kind,
            loss: parts[2].to_string(),
        })
    }

    /// Column names in file order: N, D-or-C, loss.
    fn names(&self) -> [&str; 3] {
        [&self.n, &self.middle, &self.loss]
    }

    /// Turn the three raw (validated, positive) values into an observation.
    fn observation(&self, [n, mid, loss]: [f64; 3]) -> Observation {
        let d = match self.middle_kind {
            Middle::Tokens => mid,
            Middle::Compute => mid / (6.0 * n),
        };
        Observation { n, d, loss }
    }
}

impl Default for Columns {
    fn default() -> Self {
        Columns {
            n: "N".into(),
            middle: "D".into(),
            middle_kind: Middle::Tokens,
            loss: "loss".into(),
        }
    }
}

impl FromStr for Columns {
    type Err = FitError;
    fn from_str(s: &str) -> Result<Self> {
        Columns::parse(s)
    }
}

/// Load observations from `path`: JSONL when the extension is `.jsonl` or
/// `.ndjson`, CSV (with a header row) otherwise.
pub fn load_observations(path: impl AsRef<Path>, columns: &Columns) -> Result<Vec<Observation>> {
    let path = path.as_ref();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let obs = match ext.as_deref() {
        Some("jsonl") | Some("ndjson") => load_jsonl(path, columns)?,
        _ => load_csv(path, columns)?,
    };
    if obs.is_empty() {
        return Err(FitError::TooFewObservations { needed: 1, got: 0 });
    }
    Ok(obs)
}

fn load_csv(path: &Path, columns: &Columns) -> Result<Vec<Observation>> {
    let csv_err = |source| FitError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(|source| FitError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(file);
    let headers = reader.headers().map_err(csv_err)?.clone();
    let mut idx = [0usize; 3];
    for (slot, name) in idx.iter_mut().zip(columns.names()) {
        *slot = headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| FitError::MissingColumn {
                path: path.to_path_buf(),
                column: name.to_string(),
                available: headers.iter().collect::<Vec<_>>().join(", "),
            })?;
    }
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_err)?;
        // csv reports 1-based file lines, header included: what an editor shows.
        let line = record.position().map_or(0, |p| p.line() as usize);
        let mut vals = [0.0; 3];
        for ((v, &i), name) in vals.iter_mut().zip(&idx).zip(columns.names()) {
            let raw = record.get(i).unwrap_or("");
            *v = parse_positive(raw, path, line, name)?;
        }
        out.push(columns.observation(vals));
    }
    Ok(out)
}

fn load_jsonl(path: &Path, columns: &Columns) -> Result<Vec<Observation>> {
    let text = std::fs::read_to_string(path).map_err(|source| FitError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, raw_line) in text.lines().enumerate() {
        let line = i + 1;
        if raw_line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(raw_line).map_err(|source| FitError::Json {
                path: path.to_path_buf(),
                line,
                source,
            })?;
        let bad = |column: &str, value: String, reason| FitError::BadValue {
            path: path.to_path_buf(),
            line,
            column: column.to_string(),
            value,
            reason,
        };
        let obj = value
            .as_object()
            .ok_or_else(|| bad("", raw_line.to_string(), "expected a JSON object"))?;
        let mut vals = [0.0; 3];
        for (v, name) in vals.iter_mut().zip(columns.names()) {
            *v = match obj.get(name) {
                None => return Err(bad(name, String::new(), "missing key")),
                Some(serde_json::Value::Number(x)) => {
                    parse_positive(&x.to_string(), path, line, name)?
                }
                // Numbers written as strings ("1e9") are common in exports.
                Some(serde_json::Value::String(s)) => parse_positive(s, path, line, name)?,
                Some(other) => return Err(bad(name, other.to_string(), "not a number")),
            };
        }
        out.push(columns.observation(vals));
    }
    Ok(out)
}

/// Every quantity in a scaling law is a positive real: we take logs of all.
fn parse_positive(raw: &str, path: &Path, line: usize, column: &str) -> Result<f64> {
    let bad = |reason| FitError::BadValue {
        path: path.to_path_buf(),
        line,
        column: column.to_string(),
        value: raw.to_string(),
        reason,
    };
    let x: f64 = raw.trim().parse().map_err(|_| bad("not a number"))?;
    if !x.is_finite() {
        return Err(bad("not finite"));
    }
    if x <= 0.0 {
        return Err(bad("must be positive"));
    }
    Ok(x)
}

/// Drop the `k` observations with the highest loss, keeping the others in
/// their original order. Besiroglu et al. drop the 5 highest-loss Chinchilla
/// points (tiny models far off the law). Ties are broken by position.
pub fn exclude_top_loss(obs: &[Observation], k: usize) -> Vec<Observation> {
    if k == 0 {
        return obs.to_vec();
    }
    let mut order: Vec<usize> = (0..obs.len()).collect();
    order.sort_by(|&i, &j| obs[j].loss.total_cmp(&obs[i].loss).then(i.cmp(&j)));
    let mut dropped = vec![false; obs.len()];
    for &i in order.iter().take(k) {
        dropped[i] = true;
    }
    obs.iter()
        .zip(dropped)
        .filter(|(_, d)| !d)
        .map(|(o, _)| *o)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_columns_variants() {
        let c = Columns::parse("N,D,loss").unwrap();
        assert_eq!(c, Columns::default());
        let c = Columns::parse("Model Size, Training FLOP ,loss").unwrap();
        assert_eq!(c.middle, "Training FLOP");
        assert_eq!(c.middle_kind, Middle::Compute);
        let c = Columns::parse("N,C,loss").unwrap();
        assert_eq!(c.middle_kind, Middle::Compute);
        let c = Columns::parse("params,C=compute,l").unwrap();
        assert_eq!(
            (c.middle.as_str(), c.middle_kind),
            ("compute", Middle::Compute)
        );
        let c = Columns::parse("N,D=flops_tokens,loss").unwrap();
        assert_eq!(c.middle_kind, Middle::Tokens);
        assert!(Columns::parse("N,D").is_err());
        assert!(Columns::parse("N,,loss").is_err());
        assert!(Columns::parse("N,C=,loss").is_err());
    }

    #[test]
    fn compute_column_becomes_tokens() {
        let c = Columns::parse("N,C,loss").unwrap();
        let o = c.observation([1e9, 6e19, 2.5]);
        assert!((o.d - 1e10).abs() < 1e-3);
        assert!((o.compute() - 6e19).abs() / 6e19 < 1e-15);
    }

    #[test]
    fn exclude_top_loss_keeps_order() {
        let obs: Vec<Observation> = [3.0, 5.0, 1.0, 5.0, 2.0]
            .iter()
            .map(|&loss| Observation {
                n: 1.0,
                d: 1.0,
                loss,
            })
            .collect();
        let kept = exclude_top_loss(&obs, 2);
        let losses: Vec<f64> = kept.iter().map(|o| o.loss).collect();
        assert_eq!(losses, vec![3.0, 1.0, 2.0]);
        assert_eq!(exclude_top_loss(&obs, 0).len(), 5);
        assert!(exclude_top_loss(&obs, 9).is_empty());
    }
}

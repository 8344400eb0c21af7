//! Merging sharded score files (`--shard I/N` runs, e.g. the tasks of a
//! Slurm array job) into one output, after checking that every shard is
//! complete and every input document is in the result exactly once.
//!
//! A shard run skips ids repeated within its shard, but an id repeated in
//! the input can land in two shards; the merge keeps the record of the shard
//! of its first occurrence, the one a single unsharded run would keep.

use crate::input::{for_each_doc, InputOptions, RawDoc};
use crate::{ProlongError, Result};
use serde::Deserialize;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Shard `i` of `n` of `output`: `DIR/STEM.shard-I-of-N.jsonl`.
pub fn shard_path(output: &Path, i: usize, n: usize) -> PathBuf {
    output.with_file_name(format!("{}{}-of-{n}.jsonl", shard_prefix(output), i))
}

/// The file name of a shard up to its index (`STEM.shard-`), so a shell can
/// append `$SLURM_ARRAY_TASK_ID-of-N.jsonl`.
pub fn shard_prefix(output: &Path) -> String {
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scores".into());
    format!("{stem}.shard-")
}

/// One shard file against the input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShardCheck {
    pub index: usize,
    pub path: PathBuf,
    pub exists: bool,
    /// Distinct input documents this shard must score.
    pub expected: usize,
    /// Of those, how many are in the file.
    pub present: usize,
    /// The last line has no newline (a run killed mid-write).
    pub torn: bool,
    /// Ids in the file that are not input documents of this shard, or
    /// appear twice: the file belongs to another input or sharding.
    pub foreign: Vec<String>,
}

impl ShardCheck {
    pub fn is_complete(&self) -> bool {
        self.exists && !self.torn && self.foreign.is_empty() && self.present == self.expected
    }
}

/// For each distinct input id, the shard of its first occurrence; and the
/// ids each shard must hold (every id whose ordinal falls in it).
struct Expected {
    first: HashMap<String, usize>,
    order: Vec<String>,
    per_shard: Vec<HashMap<String, ()>>,
}

fn expected(inputs: &[PathBuf], opt: &InputOptions, n: usize) -> Result<Expected> {
    let mut e = Expected {
        first: HashMap::new(),
        order: Vec::new(),
        per_shard: vec![HashMap::new(); n],
    };
    let mut ordinal = 0usize;
    for_each_doc(inputs, opt, &mut |doc: RawDoc| {
        let shard = ordinal % n;
        ordinal += 1;
        if !e.first.contains_key(&doc.id) {
            e.first.insert(doc.id.clone(), shard);
            e.order.push(doc.id.clone());
        }
        e.per_shard[shard].insert(doc.id, ());
        Ok(true)
    })?;
    Ok(e)
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

/// Reads a shard's lines: `(id, line)` per complete line, and whether the
/// file ends in a torn line.
fn read_shard(path: &Path, each: &mut dyn FnMut(String, &[u8]) -> Result<()>) -> Result<bool> {
    let f = std::fs::File::open(path).map_err(|e| ProlongError::io(path, e))?;
    let mut r = BufReader::new(f);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = r
            .read_until(b'\n', &mut line)
            .map_err(|e| ProlongError::io(path, e))?;
        if n == 0 {
            return Ok(false);
        }
        if line.last() != Some(&b'\n') {
            return Ok(true);
        }
        let rec: IdOnly = serde_json::from_slice(&line).map_err(|e| {
            ProlongError::Input(format!("{}: not a score record ({e})", path.display()))
        })?;
        each(rec.id, &line)?;
    }
}

fn check_with(e: &Expected, output: &Path, n: usize) -> Result<Vec<ShardCheck>> {
    let mut out = Vec::with_capacity(n);
    for (i, want) in e.per_shard.iter().enumerate() {
        let path = shard_path(output, i, n);
        let mut c = ShardCheck {
            index: i,
            path: path.clone(),
            exists: path.is_file(),
            expected: want.len(),
            ..Default::default()
        };
        if c.exists {
            let mut seen: HashMap<String, ()> = HashMap::new();
            c.torn = read_shard(&path, &mut |id, _| {
                if !want.contains_key(&id) || seen.insert(id.clone(), ()).is_some() {
                    c.foreign.push(id);
                } else {
                    c.present += 1;
                }
                Ok(())
            })?;
        }
        out.push(c);
    }
    Ok(out)
}

/// Checks the `n` shard files of `output` against the input.
pub fn check(
    inputs: &[PathBuf],
    opt: &InputOptions,
    output: &Path,
    n: usize,
) -> Result<Vec<ShardCheck>> {
    if n == 0 {
        return Err(ProlongError::Options("--shards must be ≥ 1".into()));
    }
    check_with(&expected(inputs, opt, n)?, output, n)
}

/// What [`merge`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeSummary {
    pub documents: usize,
    /// Records dropped because the same id was scored in an earlier shard.
    pub repeated: usize,
}

/// Writes `output` from its `n` complete shards (atomically: temp file,
/// fsync, rename), one record per distinct input id, in input order.
/// Refuses, naming the shards to re-run, when any shard is incomplete.
pub fn merge(
    inputs: &[PathBuf],
    opt: &InputOptions,
    output: &Path,
    n: usize,
) -> Result<MergeSummary> {
    if n == 0 {
        return Err(ProlongError::Options("--shards must be ≥ 1".into()));
    }
    let e = expected(inputs, opt, n)?;
    let checks = check_with(&e, output, n)?;
    let bad: Vec<String> = checks
        .iter()
        .filter(|c| !c.is_complete())
        .map(describe)
        .collect();
    if !bad.is_empty() {
        return Err(ProlongError::Input(format!(
            "cannot merge: {} (re-run those shards; they resume)",
            bad.join("; ")
        )));
    }
    // Shards scored with other settings would mix two kinds of score.
    let paths: Vec<PathBuf> = checks.iter().map(|c| c.path.clone()).collect();
    let agreed = crate::settings::agreed(&paths)?;
    // Each kept line, by the input position of its id.
    let pos: HashMap<&str, usize> = e
        .order
        .iter()
        .enumerate()
        .map(|(k, id)| (id.as_str(), k))
        .collect();
    let mut lines: Vec<Option<Vec<u8>>> = vec![None; e.order.len()];
    let mut repeated = 0;
    for c in &checks {
        read_shard(&c.path, &mut |id, line| {
            // Checked above; a shard still being written could differ.
            let (Some(&k), Some(&first)) = (pos.get(id.as_str()), e.first.get(&id)) else {
                return Err(ProlongError::Input(format!(
                    "{}: {id} is not an input document (is a shard still running?)",
                    c.path.display()
                )));
            };
            if first == c.index {
                lines[k] = Some(line.to_vec());
            } else {
                repeated += 1;
            }
            Ok(())
        })?;
    }
    if let Some(k) = lines.iter().position(Option::is_none) {
        return Err(ProlongError::Input(format!(
            "cannot merge: document {} has no record",
            e.order[k]
        )));
    }
    let tmp = output.with_file_name(format!(
        ".{}.merge-tmp",
        output
            .file_name()
            .map_or("scores".into(), |s| s.to_string_lossy())
    ));
    {
        let f = std::fs::File::create(&tmp).map_err(|e| ProlongError::io(&tmp, e))?;
        let mut w = BufWriter::new(f);
        for l in lines.iter().flatten() {
            w.write_all(l).map_err(|e| ProlongError::io(&tmp, e))?;
        }
        let f = w
            .into_inner()
            .map_err(|e| ProlongError::io(&tmp, e.into_error()))?;
        f.sync_all().map_err(|e| ProlongError::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, output).map_err(|e| ProlongError::io(output, e))?;
    if let Some(d) = output.parent().and_then(|d| std::fs::File::open(d).ok()) {
        let _ = d.sync_all();
    }
    if let Some(s) = agreed {
        crate::settings::write(output, &s)?;
    }
    Ok(MergeSummary {
        documents: e.order.len(),
        repeated,
    })
}

/// One line on what is wrong with a shard.
pub fn describe(c: &ShardCheck) -> String {
    if !c.exists {
        return format!("shard {} has no output ({})", c.index, c.path.display());
    }
    let mut s = format!(
        "shard {} holds {} of {} documents",
        c.index, c.present, c.expected
    );
    if c.torn {
        s.push_str(", ends in a torn line");
    }
    if let Some(id) = c.foreign.first() {
        s.push_str(&format!(
            ", {} records not of this input/shard (e.g. {id})",
            c.foreign.len()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, lds: f64) -> String {
        format!("{{\"id\":\"{id}\",\"status\":\"ok\",\"lds\":{lds}}}\n")
    }

    #[test]
    fn merge_checks_completeness_and_keeps_each_id_once() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.jsonl");
        // Ids a b c a d: "a" repeats at ordinal 3 (shard 1 of 2).
        let ids = ["a", "b", "c", "a", "d"];
        let text: String = ids
            .iter()
            .map(|i| format!("{{\"id\":\"{i}\",\"text\":\"x\"}}\n"))
            .collect();
        std::fs::write(&input, text).unwrap();
        let opt = InputOptions {
            id_field: Some("id".into()),
            ..Default::default()
        };
        let out = dir.path().join("scores.jsonl");
        let inputs = vec![input];
        assert_eq!(
            shard_path(&out, 1, 2),
            dir.path().join("scores.shard-1-of-2.jsonl")
        );
        // Shard 0: ordinals 0, 2, 4 = a c d; shard 1: 1, 3 = b a.
        std::fs::write(shard_path(&out, 0, 2), rec("a", 1.0) + &rec("c", 3.0)).unwrap();
        let c = check(&inputs, &opt, &out, 2).unwrap();
        assert_eq!((c[0].present, c[0].expected), (2, 3));
        assert!(!c[1].exists);
        let err = merge(&inputs, &opt, &out, 2).unwrap_err().to_string();
        assert!(
            err.contains("shard 0 holds 2 of 3") && err.contains("shard 1 has no output"),
            "{err}"
        );
        assert!(!out.exists());

        std::fs::write(
            shard_path(&out, 0, 2),
            rec("a", 1.0) + &rec("c", 3.0) + &rec("d", 4.0),
        )
        .unwrap();
        // A torn line makes the shard incomplete.
        std::fs::write(shard_path(&out, 1, 2), rec("b", 2.0) + "{\"id\":\"a\"").unwrap();
        assert!(check(&inputs, &opt, &out, 2).unwrap()[1].torn);
        assert!(merge(&inputs, &opt, &out, 2).is_err());
        std::fs::write(shard_path(&out, 1, 2), rec("b", 2.0) + &rec("a", 9.0)).unwrap();
        let s = merge(&inputs, &opt, &out, 2).unwrap();
        assert_eq!(
            s,
            MergeSummary {
                documents: 4,
                repeated: 1
            }
        );
        // Input order, "a" from its first shard.
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            rec("a", 1.0) + &rec("b", 2.0) + &rec("c", 3.0) + &rec("d", 4.0)
        );
        // A record of another input is refused.
        std::fs::write(
            shard_path(&out, 1, 2),
            rec("b", 2.0) + &rec("a", 9.0) + &rec("zz", 0.0),
        )
        .unwrap();
        let err = merge(&inputs, &opt, &out, 2).unwrap_err().to_string();
        assert!(err.contains("e.g. zz"), "{err}");
    }
}

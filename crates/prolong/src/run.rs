//! The scoring loop: read, shard, tokenise, batch documents through the
//! engine, write one record per document. The output is append-only and
//! synced after every group; on start the ids already in it are skipped and
//! a torn last line is cut, so a killed run continues where it stopped and
//! every document ends up in the output exactly once.

use crate::engine::{perplexities, DocWork, EngineOptions};
use crate::heatmap;
use crate::input::{for_each_doc, InputOptions, RawDoc};
use crate::lds::{lds, LdsParams, PairPpl};
use crate::model::Scorer;
use crate::sampling::{chunks, doc_rng, pairs, FewPairs};
use crate::select::{jsonl_bytes, read_records, write_records};
use crate::settings::{self, ScoreSettings};
use crate::{ProlongError, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What DDI's distance is divided by (minus one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distance {
    /// window / chunk size chunks (the reference).
    Window,
    /// The document's own chunk count.
    Document,
}

#[derive(Debug, Clone)]
pub struct ScoreOptions {
    pub chunk_size: usize,
    pub window: usize,
    pub threshold: f64,
    /// Pairs per document; negative = all.
    pub sample_pairs: i64,
    pub seed: u64,
    pub compat: bool,
    pub distance: Distance,
    /// `(index, count)`: this run scores documents with ordinal % count == index.
    pub shard: (usize, usize),
    pub keep_text: bool,
    pub input: InputOptions,
    pub engine: EngineOptions,
    /// Chunks batched through the engine together (across documents).
    pub group_chunks: usize,
    /// Write PNG heatmaps of the DST matrix of some documents.
    pub heatmaps: Option<Heatmaps>,
}

/// `--heatmaps DIR --every K`: documents whose input ordinal is a multiple
/// of `every` (0, K, 2K, … counted over all inputs, so sharding does not
/// change which) get `DIR/{ordinal}-{id}.png`.
#[derive(Debug, Clone, PartialEq)]
pub struct Heatmaps {
    pub dir: PathBuf,
    pub every: usize,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        Self {
            chunk_size: 128,
            window: 32768,
            threshold: 0.1,
            sample_pairs: 500,
            seed: 11,
            compat: false,
            distance: Distance::Window,
            shard: (0, 1),
            keep_text: false,
            input: InputOptions::default(),
            engine: EngineOptions::default(),
            group_chunks: 256,
            heatmaps: None,
        }
    }
}

/// One output line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreRecord {
    pub id: String,
    /// `ok`, or the error kind (`invalid_json`, `too_short`, …).
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lds: Option<f64>,
    #[serde(default)]
    pub tokens: usize,
    #[serde(default)]
    pub chunks: usize,
    #[serde(default)]
    pub pairs: usize,
    /// Pairs above the DST threshold.
    #[serde(default)]
    pub counted: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// Counts for the run (this invocation; `already_done` from earlier ones).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub scored: usize,
    pub errors: BTreeMap<String, usize>,
    pub already_done: usize,
    pub other_shards: usize,
    pub tokens: usize,
    pub forward_tokens: usize,
    pub seconds: f64,
}

/// Progress after each group.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub docs: usize,
    pub tokens: usize,
    pub seconds: f64,
}

struct Pending {
    /// Position among all input documents (for `--every`).
    ordinal: usize,
    id: String,
    text: String,
    tokens: usize,
    work: DocWork,
}

impl ScoreOptions {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(ProlongError::Options(m.into()));
        if self.chunk_size < 2 {
            return bad("--chunk-size must be ≥ 2");
        }
        if self.window < 2 * self.chunk_size {
            return bad("--window must hold at least two chunks");
        }
        if self.shard.1 == 0 || self.shard.0 >= self.shard.1 {
            return bad("--shard I/N needs 0 ≤ I < N");
        }
        if self.sample_pairs == 0 || self.sample_pairs < -1 {
            return bad("--sample-pairs must be > 0 or -1 (all)");
        }
        if !self.threshold.is_finite() {
            return bad("--threshold must be finite");
        }
        if self.heatmaps.as_ref().is_some_and(|h| h.every == 0) {
            return bad("--every must be ≥ 1");
        }
        Ok(())
    }

    fn max_chunks(&self) -> usize {
        self.window / self.chunk_size
    }
}

/// Scores `inputs` into `output`, resuming from what it holds. A `.parquet`
/// output is written once, atomically, at the end: while running, records go
/// to the JSONL journal [`journal_path`] (resumable like any JSONL output),
/// which is then converted and removed. Re-running over a finished Parquet
/// output (with more inputs, say) first moves its records back into a
/// journal, so nothing is scored twice.
pub fn score(
    scorer: &Scorer,
    inputs: &[PathBuf],
    output: &Path,
    opt: &ScoreOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Summary> {
    opt.validate()?;
    if opt.chunk_size + opt.chunk_size > scorer.model.config.max_seq_len {
        return Err(ProlongError::Options(format!(
            "two chunks of {} exceed the model's context {}",
            opt.chunk_size, scorer.model.config.max_seq_len
        )));
    }
    // Before anything is written: a resumed run must score as it was begun.
    settings::claim(output, &ScoreSettings::of(scorer, opt))?;
    if !crate::select::is_parquet(output) {
        return score_jsonl(scorer, inputs, output, opt, progress);
    }
    let journal = journal_path(output);
    if !journal.exists() && output.exists() {
        // write_records is atomic, so a kill here leaves no half journal.
        write_records(&journal, &read_records(output)?)?;
    }
    let summary = score_jsonl(scorer, inputs, &journal, opt, progress)?;
    write_records(output, &read_records(&journal)?)?;
    std::fs::remove_file(&journal).map_err(|e| ProlongError::io(&journal, e))?;
    Ok(summary)
}

/// Where `score` keeps the records of a Parquet output while it runs.
pub fn journal_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".partial.jsonl");
    PathBuf::from(name)
}

fn score_jsonl(
    scorer: &Scorer,
    inputs: &[PathBuf],
    output: &Path,
    opt: &ScoreOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Summary> {
    let done = recover_output(output)?;
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(output)
        .map_err(|e| ProlongError::io(output, e))?;
    let start = Instant::now();
    let mut sum = Summary::default();
    let mut pending: Vec<Pending> = Vec::new();
    let mut records: Vec<ScoreRecord> = Vec::new();
    let mut ordinal = 0usize;
    let mut seen = HashSet::new();

    let mut flush = |pending: &mut Vec<Pending>,
                     records: &mut Vec<ScoreRecord>,
                     sum: &mut Summary|
     -> Result<()> {
        records.extend(score_group(scorer, pending, opt, sum)?);
        pending.clear();
        if records.is_empty() {
            return Ok(());
        }
        out.write_all(&jsonl_bytes(records)?)
            .map_err(|e| ProlongError::io(output, e))?;
        out.sync_data().map_err(|e| ProlongError::io(output, e))?;
        records.clear();
        sum.seconds = start.elapsed().as_secs_f64();
        progress(Progress {
            docs: sum.scored + sum.errors.values().sum::<usize>(),
            tokens: sum.tokens,
            seconds: sum.seconds,
        });
        Ok(())
    };

    for_each_doc(inputs, &opt.input, &mut |doc: RawDoc| {
        let k = ordinal;
        ordinal += 1;
        if k % opt.shard.1 != opt.shard.0 {
            sum.other_shards += 1;
            return Ok(true);
        }
        if done.contains(&doc.id) || !seen.insert(doc.id.clone()) {
            // Done in an earlier run (or a repeated id: scored once).
            sum.already_done += 1;
            return Ok(true);
        }
        let text = match doc.text {
            Ok(t) => t,
            Err(e) => {
                *sum.errors.entry(e.kind.to_string()).or_default() += 1;
                records.push(error_record(doc.id, e.kind, e.message, None));
                return Ok(true);
            }
        };
        match prepare(scorer, &doc.id, &text, opt) {
            Ok(work) => {
                let tokens = work.1;
                pending.push(Pending {
                    ordinal: k,
                    id: doc.id,
                    text,
                    tokens,
                    work: work.0,
                });
            }
            Err((kind, msg)) => {
                *sum.errors.entry(kind.to_string()).or_default() += 1;
                let keep = opt.keep_text.then_some(text);
                records.push(error_record(doc.id, kind, msg, keep));
            }
        }
        let chunks: usize = pending.iter().map(|p| p.work.chunks.len()).sum();
        if chunks >= opt.group_chunks || records.len() >= 64 {
            flush(&mut pending, &mut records, &mut sum)?;
        }
        Ok(true)
    })?;
    flush(&mut pending, &mut records, &mut sum)?;
    sum.seconds = start.elapsed().as_secs_f64();
    Ok(sum)
}

fn error_record(id: String, kind: &str, msg: String, text: Option<String>) -> ScoreRecord {
    ScoreRecord {
        id,
        status: kind.to_string(),
        error: Some(msg),
        text,
        ..ScoreRecord::default()
    }
}

/// Tokens, chunks and pairs of one document, or why it cannot be scored.
fn prepare(
    scorer: &Scorer,
    id: &str,
    text: &str,
    opt: &ScoreOptions,
) -> std::result::Result<(DocWork, usize), (&'static str, String)> {
    if text.trim().is_empty() {
        return Err(("empty", "empty text".into()));
    }
    let ids = scorer
        .tokenizer
        .encode(text, false)
        .map_err(|e| ("tokenizer", e.to_string()))?
        .get_ids()
        .to_vec();
    let mut rng = doc_rng(opt.seed, id);
    let ch = chunks(&ids, opt.chunk_size, opt.max_chunks(), &mut rng);
    let few = if opt.compat {
        FewPairs::Skip
    } else {
        FewPairs::UseAll
    };
    let pr = pairs(ch.len(), opt.sample_pairs, few, &mut rng);
    // The reference gives such documents LDS 0 silently; in compat mode
    // that is the number to reproduce, otherwise it is reported.
    if ch.len() < 2 && !opt.compat {
        return Err((
            "too_short",
            format!(
                "{} tokens: fewer than two chunks of {}",
                ids.len(),
                opt.chunk_size
            ),
        ));
    }
    Ok((
        DocWork {
            chunks: ch,
            pairs: pr,
        },
        ids.len(),
    ))
}

fn score_group(
    scorer: &Scorer,
    pending: &[Pending],
    opt: &ScoreOptions,
    sum: &mut Summary,
) -> Result<Vec<ScoreRecord>> {
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let works: Vec<DocWork> = pending.iter().map(|p| p.work.clone()).collect();
    let ppl = perplexities(&scorer.model, &works, &opt.engine)?;
    let mut out = Vec::with_capacity(pending.len());
    for (p, r) in pending.iter().zip(ppl) {
        let n = p.work.chunks.len();
        let scale = match (opt.compat, opt.distance) {
            (true, _) | (false, Distance::Window) => (opt.max_chunks() as f64 - 1.0).max(1.0),
            (false, Distance::Document) => (n as f64 - 1.0).max(1.0),
        };
        let params = LdsParams {
            threshold: opt.threshold,
            distance_scale: scale,
            compat: opt.compat,
        };
        let pp: Vec<PairPpl> = p
            .work
            .pairs
            .iter()
            .zip(&r.pair)
            .map(|(&(i, j), &ppl)| PairPpl { i, j, ppl })
            .collect();
        let res = lds(&r.single, &pp, &params);
        sum.tokens += p.tokens;
        sum.forward_tokens += (n + p.work.pairs.len()) * opt.chunk_size;
        let text = opt.keep_text.then(|| p.text.clone());
        if !res.lds.is_finite() {
            *sum.errors.entry("non_finite".into()).or_default() += 1;
            out.push(error_record(
                p.id.clone(),
                "non_finite",
                format!("LDS {}", res.lds),
                text,
            ));
            continue;
        }
        if let Some(h) = opt.heatmaps.as_ref().filter(|h| p.ordinal % h.every == 0) {
            let path = h.dir.join(heatmap::file_name(p.ordinal, &p.id));
            heatmap::write_heatmap(
                &path,
                &p.id,
                res.lds,
                n,
                &p.work.pairs,
                &res.dst,
                opt.threshold,
            )?;
        }
        sum.scored += 1;
        out.push(ScoreRecord {
            id: p.id.clone(),
            status: "ok".into(),
            lds: Some(res.lds),
            tokens: p.tokens,
            chunks: n,
            pairs: p.work.pairs.len(),
            counted: res.counted,
            error: None,
            text,
        });
    }
    Ok(out)
}

/// Ids already in `path` (creating nothing); a last line without its
/// newline (a write cut by a kill) is removed first.
pub fn recover_output(path: &Path) -> Result<HashSet<String>> {
    let mut done = HashSet::new();
    let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    else {
        return Ok(done);
    };
    let mut good = 0u64;
    {
        let mut r = BufReader::new(&mut f);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = r
                .read_until(b'\n', &mut line)
                .map_err(|e| ProlongError::io(path, e))?;
            if n == 0 || line.last() != Some(&b'\n') {
                break;
            }
            #[derive(Deserialize)]
            struct Id {
                id: String,
            }
            match serde_json::from_slice::<Id>(&line) {
                Ok(r) => {
                    done.insert(r.id);
                }
                Err(e) => {
                    return Err(ProlongError::Input(format!(
                        "{}: existing output line is not a score record ({e}); refusing to append",
                        path.display()
                    )))
                }
            }
            good += n as u64;
        }
    }
    let len = f
        .seek(SeekFrom::End(0))
        .map_err(|e| ProlongError::io(path, e))?;
    if len != good {
        f.set_len(good).map_err(|e| ProlongError::io(path, e))?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_output_is_cut_and_ids_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("o.jsonl");
        std::fs::write(&p, "{\"id\":\"a\",\"status\":\"ok\"}\n{\"id\":\"b\",\"status\":\"ok\"}\n{\"id\":\"c\",\"sta").unwrap();
        let done = recover_output(&p).unwrap();
        assert_eq!(done.len(), 2);
        assert!(done.contains("a") && done.contains("b"));
        assert!(std::fs::read_to_string(&p).unwrap().ends_with("\"ok\"}\n"));
        assert!(recover_output(&dir.path().join("none.jsonl"))
            .unwrap()
            .is_empty());
    }
}

//! Perplexities of chunks alone and of chunk pairs, computed cheaply:
//!
//! * the single pass over every chunk keeps its keys/values, and a pair
//!   `(i | j)` runs only chunk `i`'s 128 tokens on top of chunk `j`'s cache
//!   (the reference recomputes chunk `j` for every pair: 2× the work);
//! * only the 127 needed positions go through the output head, and only the
//!   target's log-probability is kept (no `[B, 256, V]` logits);
//! * chunks and pairs of several documents share batches.

use crate::{ProlongError, Result};
use candle_core::{Device, IndexOp, Tensor};
use frugal_model::llama::{linear_in, KvCache};
use frugal_model::Llama;
use frugal_model::Precision;
use rayon::prelude::*;

/// One document's chunks and the pairs `(i, j)` to score.
#[derive(Debug, Clone, Default)]
pub struct DocWork {
    pub chunks: Vec<Vec<u32>>,
    pub pairs: Vec<(usize, usize)>,
}

/// Perplexities for one document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DocPpl {
    pub single: Vec<f64>,
    /// In the order of [`DocWork::pairs`].
    pub pair: Vec<f64>,
}

/// Batch sizes (in sequences of one chunk) and the output head's row block.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    pub single_batch: usize,
    pub pair_batch: usize,
    /// Rows of `[rows, V]` logits formed at once (memory bound).
    pub head_rows: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            single_batch: 16,
            pair_batch: 16,
            head_rows: 1024,
        }
    }
}

/// Scores a group of documents; all chunks must have the same length ≥ 2.
pub fn perplexities(model: &Llama, docs: &[DocWork], opt: &EngineOptions) -> Result<Vec<DocPpl>> {
    let dev = model.output_weight().device().clone();
    let all: Vec<&Vec<u32>> = docs.iter().flat_map(|d| d.chunks.iter()).collect();
    let Some(len) = all.first().map(|c| c.len()) else {
        return Ok(docs.iter().map(|_| DocPpl::default()).collect());
    };
    if len < 2 || all.iter().any(|c| c.len() != len) {
        return Err(ProlongError::Input(
            "chunks must share one length ≥ 2".into(),
        ));
    }
    // Single pass, keeping every chunk's keys/values.
    let mut single = Vec::with_capacity(all.len());
    let mut segments: Vec<KvCache> = Vec::new();
    for batch in all.chunks(opt.single_batch.max(1)) {
        let mut cache = KvCache::default();
        single.extend(chunk_ppls(model, batch, Some(&mut cache), &dev, opt)?);
        segments.push(cache);
    }
    let cache = concat_caches(&segments)?;
    drop(segments);

    // Pairs of every document, in one list of (global j, global i).
    let mut offsets = Vec::with_capacity(docs.len());
    let mut work: Vec<(usize, usize)> = Vec::new();
    let mut base = 0;
    for d in docs {
        offsets.push(base);
        work.extend(d.pairs.iter().map(|&(i, j)| (base + j, base + i)));
        base += d.chunks.len();
    }
    let mut pair = Vec::with_capacity(work.len());
    for batch in work.chunks(opt.pair_batch.max(1)) {
        let js: Vec<u32> = batch.iter().map(|&(j, _)| j as u32).collect();
        let js = Tensor::new(js.as_slice(), &dev)?;
        let mut prefix = KvCache {
            layers: cache
                .layers
                .iter()
                .map(|(k, v)| Ok((k.index_select(&js, 0)?, v.index_select(&js, 0)?)))
                .collect::<Result<_>>()?,
        };
        let suffixes: Vec<&Vec<u32>> = batch.iter().map(|&(_, i)| all[i]).collect();
        pair.extend(chunk_ppls(model, &suffixes, Some(&mut prefix), &dev, opt)?);
    }

    let mut out = Vec::with_capacity(docs.len());
    let mut k = 0;
    for (d, &off) in docs.iter().zip(&offsets) {
        out.push(DocPpl {
            single: single[off..off + d.chunks.len()].to_vec(),
            pair: pair[k..k + d.pairs.len()].to_vec(),
        });
        k += d.pairs.len();
    }
    Ok(out)
}

/// exp(mean NLL of tokens 1.. of each chunk), running the chunks after
/// whatever `cache` holds (and appending to it).
fn chunk_ppls(
    model: &Llama,
    chunks: &[&Vec<u32>],
    cache: Option<&mut KvCache>,
    dev: &Device,
    opt: &EngineOptions,
) -> Result<Vec<f64>> {
    let (b, t) = (chunks.len(), chunks[0].len());
    let ids: Vec<u32> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    let ids = Tensor::from_vec(ids, (b, t), dev)?;
    let h = model.hidden(&ids, cache)?;
    // Positions 0..t-1 predict tokens 1..t; the last position is unused.
    let d = h.dim(2)?;
    let h = h
        .i((.., ..t - 1, ..))?
        .contiguous()?
        .reshape((b * (t - 1), d))?;
    let targets: Vec<u32> = chunks.iter().flat_map(|c| c[1..].iter().copied()).collect();
    let lp = target_log_probs(
        &h,
        model.output_weight(),
        model.precision(),
        &targets,
        opt.head_rows,
    )?;
    Ok(lp
        .chunks(t - 1)
        .map(|row| {
            let nll: f64 = row.iter().map(|&x| -f64::from(x)).sum();
            (nll / row.len() as f64).exp()
        })
        .collect())
}

/// `log softmax(h·Wᵀ)[target]` per row, the logits formed `block` rows at a
/// time and reduced on the fly.
pub fn target_log_probs(
    h: &Tensor,
    w: &Tensor,
    precision: Precision,
    targets: &[u32],
    block: usize,
) -> Result<Vec<f32>> {
    let rows = h.dim(0)?;
    let v = w.dim(0)?;
    let mut out = Vec::with_capacity(rows);
    let mut start = 0;
    while start < rows {
        let n = block.max(1).min(rows - start);
        let logits = linear_in(&h.narrow(0, start, n)?, w, precision)?;
        let flat = logits.flatten_all()?.to_vec1::<f32>()?;
        let tg = &targets[start..start + n];
        let part: Vec<f32> = flat
            .par_chunks(v)
            .zip(tg.par_iter())
            .map(|(row, &t)| {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum: f32 = row.iter().map(|x| (x - max).exp()).sum();
                row.get(t as usize).copied().unwrap_or(f32::NAN) - max - sum.ln()
            })
            .collect();
        out.extend(part);
        start += n;
    }
    Ok(out)
}

/// One cache over all chunks: the segments' layers joined on the batch dim.
fn concat_caches(segments: &[KvCache]) -> Result<KvCache> {
    let Some(first) = segments.first() else {
        return Ok(KvCache::default());
    };
    let mut layers = Vec::with_capacity(first.layers.len());
    for l in 0..first.layers.len() {
        let ks: Vec<&Tensor> = segments.iter().map(|s| &s.layers[l].0).collect();
        let vs: Vec<&Tensor> = segments.iter().map(|s| &s.layers[l].1).collect();
        layers.push((Tensor::cat(&ks, 0)?, Tensor::cat(&vs, 0)?));
    }
    Ok(KvCache { layers })
}

//! Deterministic, resumable batch order.
//!
//! The shard is cut into non-overlapping windows of `seq_len + 1` tokens
//! (inputs are the first `seq_len`, targets the last `seq_len`). Epoch `e`
//! visits every window once, in a permutation that depends only on
//! `(seed, e)`. A cursor counts sequences consumed since training began, so
//! the batch at cursor `k` is a pure function of `(seed, k)`: a resumed run
//! that restores the cursor sees bit-identical batches.

use crate::error::{Error, Result};
use crate::shard::TokenShard;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `batch_size` sequences of `seq_len` tokens, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
    /// The cursor to pass for the following batch.
    pub next_cursor: u64,
}

/// Draws training batches from a shard of `shard_len` tokens.
#[derive(Debug, Clone)]
pub struct BatchSampler {
    shard_len: usize,
    seq_len: usize,
    batch_size: usize,
    seed: u64,
    windows: u64,
    /// The permutation of the last epoch used, to avoid reshuffling on
    /// every batch (a shuffle costs O(windows)).
    cached: Option<(u64, Vec<u64>)>,
}

impl BatchSampler {
    /// Fails when a size is zero or the shard is shorter than one window.
    pub fn new(shard_len: usize, seq_len: usize, batch_size: usize, seed: u64) -> Result<Self> {
        let windows = window_count(shard_len, seq_len)?;
        if batch_size == 0 {
            return Err(Error::InvalidArgument("batch_size must be positive".into()));
        }
        Ok(BatchSampler {
            shard_len,
            seq_len,
            batch_size,
            seed,
            windows: windows as u64,
            cached: None,
        })
    }

    /// Number of windows, i.e. sequences per epoch.
    pub fn windows_per_epoch(&self) -> u64 {
        self.windows
    }

    /// The window index (in units of `seq_len + 1` tokens) of the sequence
    /// at `cursor`.
    pub fn window_at(&mut self, cursor: u64) -> u64 {
        let epoch = cursor / self.windows;
        let pos = (cursor % self.windows) as usize;
        self.permutation(epoch)[pos]
    }

    /// The batch starting at `cursor`; it may span an epoch boundary.
    pub fn batch(&mut self, shard: &TokenShard, cursor: u64) -> Result<Batch> {
        if shard.len() != self.shard_len {
            return Err(Error::InvalidArgument(format!(
                "sampler was built for {} tokens but the shard has {}",
                self.shard_len,
                shard.len()
            )));
        }
        let mut windows = Vec::with_capacity(self.batch_size);
        for i in 0..self.batch_size as u64 {
            let c = cursor
                .checked_add(i)
                .ok_or_else(|| Error::InvalidArgument(format!("cursor {cursor} overflows")))?;
            windows.push(self.window_at(c));
        }
        let mut batch = read_windows(shard, self.seq_len, &windows)?;
        batch.next_cursor = cursor.saturating_add(self.batch_size as u64);
        Ok(batch)
    }

    fn permutation(&mut self, epoch: u64) -> &[u64] {
        let fresh = !matches!(&self.cached, Some((e, _)) if *e == epoch);
        if fresh {
            self.cached = Some((epoch, permutation(self.windows, self.seed, epoch)));
        }
        match &self.cached {
            Some((_, perm)) => perm,
            None => &[],
        }
    }
}

/// `n_batches` validation batches over windows spread evenly across the
/// shard: the same every call, so evaluation losses are comparable across
/// steps and runs. When the shard has fewer windows than requested
/// sequences, windows repeat (each at most once more than any other).
pub fn fixed_eval_batches(
    shard: &TokenShard,
    seq_len: usize,
    batch_size: usize,
    n_batches: usize,
) -> Result<Vec<Batch>> {
    let windows = window_count(shard.len(), seq_len)? as u128;
    if batch_size == 0 {
        return Err(Error::InvalidArgument("batch_size must be positive".into()));
    }
    let wanted = (batch_size as u128) * (n_batches as u128);
    let mut out = Vec::with_capacity(n_batches);
    for b in 0..n_batches {
        let picks: Vec<u64> = (0..batch_size)
            .map(|i| {
                let j = (b * batch_size + i) as u128;
                (j * windows / wanted) as u64
            })
            .collect();
        let mut batch = read_windows(shard, seq_len, &picks)?;
        batch.next_cursor = ((b + 1) * batch_size) as u64;
        out.push(batch);
    }
    Ok(out)
}

fn window_count(shard_len: usize, seq_len: usize) -> Result<usize> {
    if seq_len == 0 {
        return Err(Error::InvalidArgument("seq_len must be positive".into()));
    }
    let window = seq_len
        .checked_add(1)
        .ok_or_else(|| Error::InvalidArgument(format!("seq_len {seq_len} is too large")))?;
    if shard_len < window {
        return Err(Error::InvalidArgument(format!(
            "the shard has {shard_len} tokens, fewer than one window of seq_len + 1 = {window}"
        )));
    }
    Ok(shard_len / window)
}

fn read_windows(shard: &TokenShard, seq_len: usize, windows: &[u64]) -> Result<Batch> {
    let window = seq_len + 1;
    let mut inputs = Vec::with_capacity(windows.len() * seq_len);
    let mut targets = Vec::with_capacity(windows.len() * seq_len);
    let mut buf = Vec::with_capacity(window);
    for &w in windows {
        buf.clear();
        shard.extend_into(w as usize * window, window, &mut buf)?;
        inputs.extend_from_slice(&buf[..seq_len]);
        targets.extend_from_slice(&buf[1..]);
    }
    Ok(Batch {
        inputs,
        targets,
        next_cursor: 0,
    })
}

/// The order of windows in `epoch`: a Fisher-Yates shuffle driven by
/// ChaCha8 seeded with `seed` on stream `epoch`. Written out here (rather
/// than `SliceRandom::shuffle`) so the order cannot change with a `rand`
/// upgrade: resumed runs depend on it bit for bit.
pub fn permutation(n: u64, seed: u64, epoch: u64) -> Vec<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch);
    let mut perm: Vec<u64> = (0..n).collect();
    for i in (1..perm.len()).rev() {
        let j = uniform_below(&mut rng, i as u64 + 1) as usize;
        perm.swap(i, j);
    }
    perm
}

/// An unbiased integer in `0..bound` (`bound > 0`) by rejection sampling.
fn uniform_below(rng: &mut ChaCha8Rng, bound: u64) -> u64 {
    // Reject the top partial block of 2^64 so every residue is equally likely.
    let zone = u64::MAX - (u64::MAX % bound);
    loop {
        let x = rng.next_u64();
        if x < zone {
            return x % bound;
        }
    }
}

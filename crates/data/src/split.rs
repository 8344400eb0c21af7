//! Train/validation split by document.
//!
//! Splitting by document (not by token position) keeps validation text
//! unseen during training. Each document's side depends only on its id and
//! the seed, so adding or removing other documents never moves it.

use crate::documents::Document;
use sha2::{Digest, Sha256};

/// Splits `docs` into (train, validation), each keeping the input order.
///
/// A document goes to validation when a hash of (seed, id) falls below
/// `val_fraction` (clamped to [0, 1]; NaN counts as 0). With two or more
/// documents each side gets at least one: the document with the smallest
/// hash moves to an empty validation side, the one with the largest to an
/// empty training side.
pub fn train_val_split(
    docs: Vec<Document>,
    val_fraction: f64,
    seed: u64,
) -> (Vec<Document>, Vec<Document>) {
    let fraction = if val_fraction.is_nan() {
        0.0
    } else {
        val_fraction.clamp(0.0, 1.0)
    };
    let scores: Vec<f64> = docs.iter().map(|d| unit_hash(seed, &d.id)).collect();
    let mut to_val: Vec<bool> = scores.iter().map(|&u| u < fraction).collect();
    if docs.len() >= 2 {
        if !to_val.iter().any(|&v| v) {
            to_val[argmin(&scores)] = true;
        } else if to_val.iter().all(|&v| v) {
            to_val[argmax(&scores)] = false;
        }
    }
    let mut train = Vec::new();
    let mut val = Vec::new();
    for (doc, is_val) in docs.into_iter().zip(to_val) {
        if is_val {
            val.push(doc);
        } else {
            train.push(doc);
        }
    }
    (train, val)
}

/// A stable hash of (seed, id) mapped to [0, 1). SHA-256 rather than the
/// standard library's hasher, whose output may change between Rust releases.
fn unit_hash(seed: u64, id: &str) -> f64 {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(id.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // 53 bits fill an f64 mantissa exactly.
    (u64::from_le_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

fn argmin(xs: &[f64]) -> usize {
    (0..xs.len())
        .min_by(|&a, &b| xs[a].total_cmp(&xs[b]))
        .unwrap_or(0)
}

fn argmax(xs: &[f64]) -> usize {
    (0..xs.len())
        .max_by(|&a, &b| xs[a].total_cmp(&xs[b]))
        .unwrap_or(0)
}

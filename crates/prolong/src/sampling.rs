//! Cutting a document into chunks and choosing which pairs to score.

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Full chunks of `size` tokens (the last partial one dropped). With more
/// than `max_chunks`, that many are kept at random, in document order.
pub fn chunks(ids: &[u32], size: usize, max_chunks: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<u32>> {
    let all: Vec<Vec<u32>> = ids.chunks_exact(size.max(1)).map(<[u32]>::to_vec).collect();
    if all.len() <= max_chunks {
        return all;
    }
    let mut keep = sample(rng, all.len(), max_chunks).into_vec();
    keep.sort_unstable();
    keep.into_iter().map(|k| all[k].clone()).collect()
}

/// What to do when a document has fewer pairs than the sample size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FewPairs {
    /// Score every pair (frugal's default).
    UseAll,
    /// Score none, so LDS is 0 (the reference).
    Skip,
}

/// Pairs `(i, j)`, `j < i`, of `n` chunks: all of them when `sample_size`
/// is negative, else `sample_size` drawn uniformly without replacement.
/// Returned sorted by `(j, i)` so that pairs sharing a prefix chunk sit
/// together.
pub fn pairs(
    n: usize,
    sample_size: i64,
    few: FewPairs,
    rng: &mut ChaCha8Rng,
) -> Vec<(usize, usize)> {
    let total = n * n.saturating_sub(1) / 2;
    let all = || (0..n).flat_map(|i| (0..i).map(move |j| (i, j)));
    let mut out: Vec<(usize, usize)> = if sample_size < 0 || total == sample_size as usize {
        all().collect()
    } else if total < sample_size as usize {
        match few {
            FewPairs::UseAll => all().collect(),
            FewPairs::Skip => Vec::new(),
        }
    } else {
        // Index k ↦ (i, j) in the reference's listing order (i, then j).
        sample(rng, total, sample_size as usize)
            .into_iter()
            .map(|k| {
                let i = ((1.0 + ((1 + 8 * k) as f64).sqrt()) / 2.0).floor() as usize;
                // Guard the float estimate of the triangular root.
                let i = (i.saturating_sub(1)..=i + 1)
                    .rev()
                    .find(|&i| i * (i - 1) / 2 <= k)
                    .unwrap_or(1);
                (i, k - i * (i - 1) / 2)
            })
            .collect()
    };
    out.sort_unstable_by_key(|&(i, j)| (j, i));
    out
}

/// A generator for one document: the run's seed mixed with the document's
/// id, so a document's sample does not depend on the shard or the order.
pub fn doc_rng(seed: u64, id: &str) -> ChaCha8Rng {
    // FNV-1a: stable across platforms and Rust versions (unlike `Hash`).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    ChaCha8Rng::seed_from_u64(seed ^ h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking_drops_the_partial_chunk_and_keeps_order() {
        let ids: Vec<u32> = (0..10).collect();
        let mut rng = doc_rng(1, "x");
        assert_eq!(
            chunks(&ids, 3, 10, &mut rng),
            vec![vec![0, 1, 2], vec![3, 4, 5], vec![6, 7, 8]]
        );
        let ids: Vec<u32> = (0..100).collect();
        let c = chunks(&ids, 2, 7, &mut rng);
        assert_eq!(c.len(), 7);
        assert!(c.windows(2).all(|w| w[0][0] < w[1][0]));
    }

    #[test]
    fn pair_selection() {
        let mut rng = doc_rng(1, "x");
        let all = pairs(5, -1, FewPairs::UseAll, &mut rng);
        assert_eq!(all.len(), 10);
        assert!(all.iter().all(|&(i, j)| j < i && i < 5));
        assert_eq!(pairs(5, 500, FewPairs::UseAll, &mut rng).len(), 10);
        assert!(pairs(5, 500, FewPairs::Skip, &mut rng).is_empty());
        let s = pairs(40, 500, FewPairs::Skip, &mut rng);
        assert_eq!(s.len(), 500);
        let mut u = s.clone();
        u.dedup();
        assert_eq!(u.len(), 500, "sampled without replacement");
        assert!(s.iter().all(|&(i, j)| j < i && i < 40));
        // Deterministic per (seed, id).
        assert_eq!(
            pairs(40, 50, FewPairs::Skip, &mut doc_rng(3, "a")),
            pairs(40, 50, FewPairs::Skip, &mut doc_rng(3, "a"))
        );
    }
}

use super::common::raw_shard;
use frugal_data::batch::permutation;
use frugal_data::{fixed_eval_batches, BatchSampler, Error, TokenShard};
use std::collections::HashSet;

/// A shard whose token at position i is i, so windows are identifiable.
fn counting_shard(dir: &std::path::Path, n: usize) -> TokenShard {
    let path = dir.join("count.bin");
    let tokens: Vec<u16> = (0..n as u16).collect();
    raw_shard(&path, &tokens);
    TokenShard::open(&path).unwrap()
}

#[test]
fn windows_are_disjoint_and_targets_shift_inputs_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let shard = counting_shard(dir.path(), 1000);
    let mut s = BatchSampler::new(shard.len(), 8, 4, 1).unwrap();
    assert_eq!(s.windows_per_epoch(), 1000 / 9);
    let b = s.batch(&shard, 0).unwrap();
    assert_eq!(b.inputs.len(), 32);
    assert_eq!(b.targets.len(), 32);
    assert_eq!(b.next_cursor, 4);
    for row in 0..4 {
        let inp = &b.inputs[row * 8..(row + 1) * 8];
        let tgt = &b.targets[row * 8..(row + 1) * 8];
        assert_eq!(inp[0] % 9, 0, "rows start at a window boundary");
        for k in 0..8 {
            assert_eq!(inp[k] + 1, tgt[k]);
            assert_eq!(inp[k], inp[0] + k as u32);
        }
    }
}

#[test]
fn every_window_is_seen_exactly_once_per_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let shard = counting_shard(dir.path(), 5 * 101 + 3); // 101 windows of 5, 3 left over
    let mut s = BatchSampler::new(shard.len(), 4, 7, 9).unwrap();
    let n = s.windows_per_epoch();
    assert_eq!(n, 101);
    let mut cursor = 0;
    let mut starts: Vec<u32> = Vec::new();
    while starts.len() < 2 * n as usize {
        let b = s.batch(&shard, cursor).unwrap();
        starts.extend(b.inputs.chunks(4).map(|row| row[0]));
        cursor = b.next_cursor;
    }
    for epoch in starts[..2 * n as usize].chunks(n as usize) {
        let set: HashSet<u32> = epoch.iter().copied().collect();
        assert_eq!(set.len(), n as usize, "a window repeated within an epoch");
        assert!(set.iter().all(|&t| t % 5 == 0 && t < 505));
    }
    // The two epochs use different orders.
    assert_ne!(&starts[..n as usize], &starts[n as usize..2 * n as usize]);
}

#[test]
fn the_batch_at_a_cursor_does_not_depend_on_the_path_taken() {
    let dir = tempfile::tempdir().unwrap();
    let shard = counting_shard(dir.path(), 3000);
    let mut walked = BatchSampler::new(shard.len(), 16, 6, 42).unwrap();
    let n = walked.windows_per_epoch();
    let mut cursor = 0;
    let mut seen = Vec::new();
    for _ in 0..60 {
        let b = walked.batch(&shard, cursor).unwrap();
        seen.push((cursor, b.clone()));
        cursor = b.next_cursor;
    }
    assert!(cursor > 2 * n, "the walk crosses epoch boundaries");
    // A fresh sampler (a resumed run) jumping straight to each cursor, in
    // reverse order, gets identical batches.
    let mut resumed = BatchSampler::new(shard.len(), 16, 6, 42).unwrap();
    for (cursor, batch) in seen.iter().rev() {
        assert_eq!(&resumed.batch(&shard, *cursor).unwrap(), batch);
    }
    // Another seed gives another order.
    let mut other = BatchSampler::new(shard.len(), 16, 6, 43).unwrap();
    assert_ne!(other.batch(&shard, 0).unwrap(), seen[0].1);
}

#[test]
fn the_permutation_is_pinned() {
    // Resumed runs depend on this order bit for bit: a change here breaks
    // every checkpoint's resume, so it must be deliberate.
    assert_eq!(permutation(10, 42, 0), [1, 5, 9, 6, 3, 2, 0, 8, 4, 7]);
    let p = permutation(1000, 7, 3);
    let mut sorted = p.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..1000).collect::<Vec<u64>>());
    assert_ne!(p, permutation(1000, 7, 4));
}

#[test]
fn eval_batches_are_fixed_and_evenly_spaced() {
    let dir = tempfile::tempdir().unwrap();
    let shard = counting_shard(dir.path(), 1000);
    let a = fixed_eval_batches(&shard, 9, 2, 5).unwrap(); // 100 windows, 10 picked
    assert_eq!(a, fixed_eval_batches(&shard, 9, 2, 5).unwrap());
    assert_eq!(a.len(), 5);
    let starts: Vec<u32> = a
        .iter()
        .flat_map(|b| b.inputs.chunks(9).map(|r| r[0]).collect::<Vec<_>>())
        .collect();
    assert_eq!(starts, (0..10).map(|i| i * 100).collect::<Vec<u32>>());

    // More sequences than windows: windows repeat, every batch stays full.
    let many = fixed_eval_batches(&shard, 99, 4, 5).unwrap(); // 10 windows, 20 picked
    assert!(many.iter().all(|b| b.inputs.len() == 4 * 99));
}

#[test]
fn a_shard_shorter_than_one_window_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let shard = counting_shard(dir.path(), 8);
    assert!(matches!(
        BatchSampler::new(8, 8, 1, 0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(BatchSampler::new(9, 8, 1, 0).is_ok());
    assert!(matches!(
        fixed_eval_batches(&shard, 8, 1, 1),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        BatchSampler::new(100, 0, 1, 0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        BatchSampler::new(100, 4, 0, 0),
        Err(Error::InvalidArgument(_))
    ));
    // A sampler used with a shard of another length.
    let mut s = BatchSampler::new(100, 4, 1, 0).unwrap();
    assert!(matches!(s.batch(&shard, 0), Err(Error::InvalidArgument(_))));
}

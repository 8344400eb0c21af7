//! Integration tests of frugal-data on a real text fixture (Acts I-III of
//! Hamlet). One test binary, so the heavy dependencies link once.

mod batch;
mod common;
mod dataset;
mod documents;
mod shard;
mod split;
mod tokenizer;

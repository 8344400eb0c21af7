//! Shared fixtures.

use frugal_data::shard::{meta_path, Dtype, ShardMeta};
use frugal_data::Document;
use std::path::{Path, PathBuf};

pub fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hamlet_acts_1-3.txt")
}

pub fn fixture_text() -> String {
    std::fs::read_to_string(fixture_path()).unwrap()
}

/// The fixture cut into scenes: real documents of uneven length.
pub fn scenes() -> Vec<Document> {
    let text = fixture_text();
    let mut docs: Vec<Document> = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.starts_with("Scene ") && !current.trim().is_empty() {
            docs.push(Document {
                id: format!("scene-{:02}", docs.len()),
                text: std::mem::take(&mut current),
            });
        }
        current.push_str(line);
        current.push('\n');
    }
    docs.push(Document {
        id: format!("scene-{:02}", docs.len()),
        text: current,
    });
    docs
}

/// Writes a u16 shard holding `tokens` with a hand-made meta, for tests
/// that need known token values (token i at position i).
pub fn raw_shard(path: &Path, tokens: &[u16]) -> ShardMeta {
    let bytes: Vec<u8> = tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
    let meta = ShardMeta {
        dtype: Dtype::U16,
        n_tokens: tokens.len() as u64,
        n_docs: 1,
        vocab_size: 65_536,
        eot_id: 0,
        tokenizer_sha256: "test".into(),
    };
    std::fs::write(meta_path(path), serde_json::to_vec(&meta).unwrap()).unwrap();
    meta
}

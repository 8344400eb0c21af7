//! The fixtures of ids a reference tokenizer gave a set of texts
//! (`scripts/*_vocab_fixture.py`), and the check of frugal's GGUF tokenizer
//! against one. Included by path (`#[path]`) by the tests that use it.

use frugal_model::gguf::GgufTokenizer;
use frugal_prolong::model::gguf_tokenizer;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Deserialize)]
struct Expected {
    tokenizer: String,
    texts: Vec<Text>,
}

#[derive(Deserialize)]
struct Text {
    text: String,
    ids: Vec<u32>,
}

/// Every text of `tests/fixtures/NAME/expected.json` gets the recorded ids
/// from `vocab` with its own pre-tokenizer, and decodes back to itself where
/// `decodes`; with GPT-2's pattern instead (what transformers' GGUF converter
/// gives such a file), at least 5 texts get other ids, so the fixture does
/// test the pre-tokenizer.
pub fn check(name: &str, vocab: &GgufTokenizer, decodes: bool) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .join("expected.json");
    let expected: Expected = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    eprintln!("reference: {}", expected.tokenizer);
    let ids = |pre: &str| -> Vec<Vec<u32>> {
        let tok = gguf_tokenizer(&GgufTokenizer {
            pre: pre.into(),
            ..vocab.clone()
        })
        .unwrap();
        expected
            .texts
            .iter()
            .map(|t| {
                let got = tok.encode(t.text.as_str(), false).unwrap();
                if decodes {
                    let back = tok.decode(got.get_ids(), false).unwrap();
                    assert_eq!(back, t.text, "decoding {:?}", t.text);
                }
                got.get_ids().to_vec()
            })
            .collect()
    };
    let own = ids(&vocab.pre);
    for (t, got) in expected.texts.iter().zip(&own) {
        assert_eq!(got, &t.ids, "ids of {:?}", t.text);
    }
    let total: usize = expected.texts.iter().map(|t| t.ids.len()).sum();
    eprintln!(
        "{} texts, {total} ids: all equal to the reference's",
        expected.texts.len()
    );
    let gpt2 = ids("");
    let differ = expected
        .texts
        .iter()
        .zip(&gpt2)
        .filter(|(t, got)| **got != t.ids)
        .count();
    eprintln!(
        "GPT-2's pattern: {differ} of {} texts differ",
        expected.texts.len()
    );
    assert!(
        differ >= 5,
        "only {differ} texts differ under GPT-2's pattern"
    );
}

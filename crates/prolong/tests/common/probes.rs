//! Tokenizer probes recorded by the GGUF fixture scripts: the ids and
//! pre-tokenizer pieces the reference tokenizer gives each string. Included
//! by path (`#[path]`) by the tests that use it.

use frugal_model::gguf::load_gguf;
use frugal_prolong::model::gguf_tokenizer;
use serde::Deserialize;
use std::path::Path;
use tokenizers::{
    Normalizer, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer, Tokenizer,
};

#[derive(Deserialize)]
pub struct Probe {
    pub text: String,
    pub ids: Vec<u32>,
    /// The reference's normalizer and pre-tokenizer output, before BPE.
    pub pieces: Vec<String>,
}

pub fn probes(tokens_json: &Path) -> Vec<Probe> {
    serde_json::from_slice(&std::fs::read(tokens_json).unwrap()).unwrap()
}

/// `tok`'s normalizer and pre-tokenizer applied to `text`.
pub fn pieces(tok: &Tokenizer, text: &str) -> Vec<String> {
    let mut s = PreTokenizedString::from(text);
    if let Some(n) = tok.get_normalizer() {
        s.normalize(|x| n.normalize(x)).unwrap();
    }
    tok.get_pre_tokenizer()
        .unwrap()
        .pre_tokenize(&mut s)
        .unwrap();
    s.get_splits(OffsetReferential::Original, OffsetType::Byte)
        .into_iter()
        .map(|(piece, _, _)| piece.to_string())
        .collect()
}

/// `tok` gives the reference's ids and pre-tokenizer pieces for every probe,
/// and decodes the ids back to the text (NFC-composed where `nfc`).
pub fn assert_matches_reference(tok: &Tokenizer, probes: &[Probe], nfc: bool) {
    for p in probes {
        let got = tok.encode(p.text.as_str(), false).unwrap();
        assert_eq!(got.get_ids(), p.ids, "ids of {:?}", p.text);
        assert_eq!(pieces(tok, &p.text), p.pieces, "pieces of {:?}", p.text);
        let back = tok.decode(got.get_ids(), false).unwrap();
        let expected = if nfc {
            p.text.replace("e\u{301}", "é").replace("a\u{308}", "ä")
        } else {
            p.text.clone()
        };
        assert_eq!(back, expected, "decoding {:?}", p.text);
    }
}

/// How many probes GPT-2's pattern (what a GGUF without a known
/// `tokenizer.ggml.pre` gets) splits otherwise than recorded, for the
/// vocabulary of `gguf`, whose `pre` must be `pre`. Few would mean the probes
/// do not test the file's own pre-tokenizer.
pub fn split_otherwise_by_gpt2(gguf: &Path, pre: &str, probes: &[Probe]) -> usize {
    let mut g = load_gguf(gguf, &candle_core::Device::Cpu)
        .unwrap()
        .tokenizer;
    assert_eq!(g.pre, pre);
    g.pre.clear();
    let gpt2 = gguf_tokenizer(&g).unwrap();
    probes
        .iter()
        .filter(|p| pieces(&gpt2, &p.text) != p.pieces)
        .count()
}

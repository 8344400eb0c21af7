//! frugal's tokenizer for SmolLM2's GGUF vocabulary (`tokenizer.ggml.pre =
//! smollm`) against llama.cpp's own tokenizer on the same file.
//!
//! SmolLM2 was trained with every digit its own piece before GPT-2's
//! byte-level split. transformers' GGUF converter drops the digit split, so a
//! run of spaces before a digit (indentation, aligned tables: every one of the
//! ProLong reference's Vim help documents has some) becomes one-space tokens.
//! The fixture holds the ids llama.cpp gave 29 texts
//! (`scripts/smollm2_vocab_fixture.py`). The GGUF is fetched like the other
//! scorer tests (and the test fails, never skips, without it).

use frugal_model::gguf::load_gguf;

mod common;
#[path = "common/vocab_fixture.rs"]
mod vocab_fixture;

#[test]
fn smollm2_gguf_vocabulary_tokenizes_as_llama_cpp() {
    let vocab = load_gguf(&common::gguf(), &candle_core::Device::Cpu)
        .unwrap()
        .tokenizer;
    assert_eq!(vocab.pre, "smollm");
    vocab_fixture::check("smollm2_vocab", &vocab, true);
}

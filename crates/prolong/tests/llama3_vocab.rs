//! frugal's tokenizer for a Llama 3 GGUF vocabulary against Meta's own Llama 3
//! tokenizer (tiktoken), on the real 128,256-token vocabulary.
//!
//! A Llama 3 GGUF carries the vocabulary as llama.cpp's converter took it from
//! Hugging Face's `tokenizer.json`, which Hugging Face derived from Meta's BPE
//! ranks: the tokens in byte-level form, and as merges every split of a token
//! into two tokens, in the token's rank order. The test builds that from the
//! ranks in `tokenizer.model` (`frugal data fetch llama3-tokenizer`: PyPI
//! `llama-models==0.3.0`), runs it through `gguf_tokenizer` with
//! `tokenizer.ggml.pre = llama-bpe`, and compares the ids with those Meta's
//! tokenizer gave for 18 texts (scripts/llama3_vocab_fixture.py). The
//! fetch needs pip and PyPI; if it fails the test fails, it never skips.

use frugal_model::gguf::GgufTokenizer;
use std::collections::HashMap;
use std::path::PathBuf;

#[path = "common/fetch.rs"]
mod fetch;
#[path = "common/vocab_fixture.rs"]
mod vocab_fixture;

/// `tokenizer.model` from the frugal cache, fetched when absent;
/// `FRUGAL_LLAMA3_TOKENIZER` overrides the path.
fn tokenizer_model() -> PathBuf {
    fetch::cached_file(
        "llama3-tokenizer",
        "tokenizer.model",
        "Meta's Llama 3 tokenizer.model (PyPI llama-models==0.3.0)",
        "FRUGAL_LLAMA3_TOKENIZER",
    )
}

/// The tokens by rank: each line of tiktoken's file is `base64 rank`.
fn ranks(text: &str) -> Vec<Vec<u8>> {
    let mut tokens = Vec::new();
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let (b64, rank) = line.split_once(' ').expect("`base64 rank` lines");
        assert_eq!(rank.trim().parse::<usize>().unwrap(), i, "ranks in order");
        tokens.push(base64::decode(b64).unwrap());
    }
    tokens
}

/// GPT-2's byte-to-character table, in which byte-level BPE vocabularies
/// spell their tokens.
fn byte_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut extra = 0;
    for b in 0..256u32 {
        let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
        let c = if printable {
            b
        } else {
            extra += 1;
            255 + extra
        };
        table[b as usize] = char::from_u32(c).unwrap();
    }
    table
}

/// Meta's special tokens after the 128,000 ranks (llama_models/llama3/tokenizer.py).
fn special_tokens() -> Vec<String> {
    let named = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|reserved_special_token_0|>",
        "<|reserved_special_token_1|>",
        "<|finetune_right_pad_id|>",
        "<|step_id|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eom_id|>",
        "<|eot_id|>",
        "<|python_tag|>",
        "<|image|>",
    ];
    let reserved = (0..256 - named.len()).map(|i| format!("<|reserved_special_token_{}|>", 2 + i));
    named
        .iter()
        .map(|s| s.to_string())
        .chain(reserved)
        .collect()
}

/// What a Llama 3 GGUF's `tokenizer.ggml.*` holds, from the ranks.
fn gguf_vocabulary(ranks: &[Vec<u8>], pre: &str) -> GgufTokenizer {
    let table = byte_chars();
    let spell = |b: &[u8]| -> String { b.iter().map(|&x| table[x as usize]).collect() };
    let rank_of: HashMap<&[u8], usize> = ranks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_slice(), i))
        .collect();
    let mut merges = Vec::new();
    for token in ranks {
        let mut splits: Vec<(usize, usize)> = (1..token.len())
            .filter_map(|k| Some((*rank_of.get(&token[..k])?, *rank_of.get(&token[k..])?)))
            .collect();
        splits.sort_unstable();
        merges.extend(
            splits
                .into_iter()
                .map(|(l, r)| format!("{} {}", spell(&ranks[l]), spell(&ranks[r]))),
        );
    }
    let specials = special_tokens();
    let mut token_types = vec![1; ranks.len()];
    token_types.extend(std::iter::repeat_n(3, specials.len()));
    GgufTokenizer {
        model: "gpt2".into(),
        tokens: ranks.iter().map(|t| spell(t)).chain(specials).collect(),
        merges,
        token_types,
        pre: pre.into(),
        ..Default::default()
    }
}

#[test]
fn llama3_gguf_vocabulary_tokenizes_as_metas_tokenizer() {
    let ranks = ranks(&std::fs::read_to_string(tokenizer_model()).unwrap());
    assert_eq!(ranks.len(), 128_000);
    vocab_fixture::check("llama3_vocab", &gguf_vocabulary(&ranks, "llama-bpe"), true);
}

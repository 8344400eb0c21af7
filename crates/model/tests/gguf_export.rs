//! GGUF export: a model written by `gguf_export` reads back through
//! `load_gguf` (the reader checked against llama.cpp's own converter in
//! `gguf_qwen2.rs` and `llama3.rs`) as the same model: the same config,
//! tensors and tokenizer, and in f32 the same logits to the bit.

use candle_core::{DType, Device, Tensor};
use frugal_model::fused_check::max_abs_gap;
use frugal_model::gguf::{load_gguf, GgufTokenizer};
use frugal_model::gguf_export::{gguf_bytes, GgufWeights};
use frugal_model::{Llama, LlamaConfig, ParamStore};
use std::collections::HashMap;

/// A tiny random Llama with grouped-query attention, its norms drawn away
/// from 1 so that a norm written under another name shows.
fn tiny(tied: bool, d_model: usize) -> (LlamaConfig, HashMap<String, Tensor>) {
    let mut c = LlamaConfig::new(64, d_model, 2, 4);
    c.n_kv_heads = 2;
    c.ffn_hidden = 64;
    c.max_seq_len = 48;
    c.tie_embeddings = tied;
    let params = ParamStore::init(&c, &Device::Cpu, 7).unwrap();
    let mut tensors = params.tensors();
    for (i, t) in tensors.values_mut().enumerate() {
        if t.rank() == 1 {
            let noise = Tensor::randn(0f32, 0.3, t.shape(), &Device::Cpu).unwrap();
            *t = ((&*t + noise).unwrap() * (1.0 + i as f64 / 10.0)).unwrap();
        }
    }
    (c, tensors)
}

fn tokenizer(vocab: usize) -> GgufTokenizer {
    GgufTokenizer {
        model: "gpt2".into(),
        tokens: (0..vocab).map(|i| format!("t{i}")).collect(),
        merges: vec!["t 1".into(), "t 2".into()],
        token_types: (0..vocab).map(|i| if i == 0 { 3 } else { 1 }).collect(),
        pre: "gpt-2".into(),
        bos: Some(0),
        eos: Some(0),
        unk: None,
    }
}

fn write_and_load(
    c: &LlamaConfig,
    t: &HashMap<String, Tensor>,
    w: GgufWeights,
) -> frugal_model::gguf::GgufModel {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    std::fs::write(
        &path,
        gguf_bytes(c, t, &tokenizer(c.vocab_size), w, "tiny").unwrap(),
    )
    .unwrap();
    load_gguf(&path, &Device::Cpu).unwrap()
}

fn max_gap(a: &Tensor, b: &Tensor) -> f32 {
    max_abs_gap(a, b).unwrap()
}

fn logits(c: &LlamaConfig, t: HashMap<String, Tensor>) -> Tensor {
    let params = ParamStore::from_tensors(c, t, "test").unwrap();
    let ids: Vec<u32> = (0..40).map(|i| (i * 7 % 64) as u32).collect();
    let ids = Tensor::from_vec(ids, (1, 40), &Device::Cpu).unwrap();
    Llama::new(c, &params).unwrap().forward(&ids).unwrap()
}

#[test]
fn f32_reads_back_as_the_same_model() {
    for tied in [true, false] {
        let (c, t) = tiny(tied, 32);
        let g = write_and_load(&c, &t, GgufWeights::F32);
        let mut want = c.clone();
        // llama.cpp keeps these as f32.
        want.rms_eps = c.rms_eps as f32 as f64;
        assert_eq!(g.config, want, "tied {tied}");
        assert_eq!(g.tensors.len(), t.len());
        for (name, x) in &t {
            assert_eq!(max_gap(&g.tensors[name], x), 0.0, "{name}");
        }
        let want_tok = tokenizer(64);
        assert_eq!(g.tokenizer.tokens, want_tok.tokens);
        assert_eq!(g.tokenizer.merges, want_tok.merges);
        assert_eq!(g.tokenizer.token_types, want_tok.token_types);
        assert_eq!(
            (g.tokenizer.pre.as_str(), g.tokenizer.eos),
            ("gpt-2", Some(0))
        );
        assert_eq!(
            max_gap(&logits(&c, t.clone()), &logits(&g.config, g.tensors)),
            0.0
        );
    }
}

#[test]
fn f16_and_q8_0_round_weights_only() {
    let (c, t) = tiny(false, 64);
    for (w, bound) in [(GgufWeights::F16, 1e-4), (GgufWeights::Q8_0, 1e-3)] {
        let g = write_and_load(&c, &t, w);
        for (name, x) in &t {
            let gap = max_gap(&g.tensors[name], x);
            if x.rank() == 1 {
                assert_eq!(gap, 0.0, "{w:?} {name}: norms stay f32");
            } else {
                assert!(gap > 0.0 && gap < bound, "{w:?} {name}: {gap}");
            }
        }
        let gap = max_gap(&logits(&c, t.clone()), &logits(&g.config, g.tensors));
        assert!(gap < 0.05, "{w:?}: logits {gap}");
    }
}

#[test]
fn what_llama_cpp_cannot_hold_is_refused() {
    let (mut c, t) = tiny(true, 32);
    // q8_0 blocks of 32 do not fit rows of 48.
    let (c48, t48) = tiny(true, 48);
    let e = gguf_bytes(&c48, &t48, &tokenizer(64), GgufWeights::Q8_0, "x").unwrap_err();
    assert!(e.to_string().contains("model.embed_tokens.weight"), "{e}");
    c.qkv_bias = true;
    let e = gguf_bytes(&c, &t, &tokenizer(64), GgufWeights::F32, "x").unwrap_err();
    assert!(e.to_string().contains("biases"), "{e}");
    let (c, mut t) = tiny(true, 32);
    t.remove("model.layers.1.mlp.up_proj.weight");
    let e = gguf_bytes(&c, &t, &tokenizer(64), GgufWeights::F32, "x").unwrap_err();
    assert!(
        e.to_string().contains("model.layers.1.mlp.up_proj.weight"),
        "{e}"
    );
    assert_eq!(t["model.norm.weight"].dtype(), DType::F32);
}

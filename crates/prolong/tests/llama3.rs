//! Llama 3.1-style RoPE scaling and Llama 3's tokenizer, from a Hugging Face
//! directory and from a GGUF, against transformers.
//!
//! The fixture (scripts/llama3_fixture.py) is a tiny random Llama with
//! `rope_scaling: llama3` (original context 32, so that at head dim 16 every
//! band of the scaling is used) and a byte-level BPE on Llama 3's pipeline,
//! saved by transformers (hf/) and converted to f32 by llama.cpp's own
//! `convert_hf_to_gguf.py` (model.gguf, which stores the scaling as
//! `rope_freqs.weight`). transformers' logits for one text of 179 tokens and
//! its tokenizer's ids and pre-tokenizer pieces for a few strings are the
//! reference.

use candle_core::{DType, Device, Tensor};
use frugal_model::fused_check::{logit_gaps, max_abs_gap};
use frugal_model::gguf::load_gguf;
use frugal_model::hf::load_hf_dir;
use frugal_model::params::load_safetensors;
use frugal_model::rope::{inv_freq, RopeScaling};
use frugal_model::{Llama, LlamaConfig, ParamStore};
use frugal_prolong::model::load_scorer;
use probes::{assert_matches_reference, probes, split_otherwise_by_gpt2};
use std::collections::HashMap;
use std::path::PathBuf;

#[path = "common/probes.rs"]
mod probes;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/llama3")
        .join(name)
}

/// The model of hf/ (config.json + safetensors) and of model.gguf.
fn sources() -> Vec<(&'static str, LlamaConfig, HashMap<String, Tensor>)> {
    let dev = Device::Cpu;
    let (hf, hf_tensors) = load_hf_dir(&fixture("hf"), &dev).unwrap();
    let g = load_gguf(&fixture("model.gguf"), &dev).unwrap();
    vec![("hf", hf, hf_tensors), ("gguf", g.config, g.tensors)]
}

#[test]
fn llama3_rope_scaling_matches_transformers() {
    let dev = Device::Cpu;
    let expected = load_safetensors(&fixture("expected.safetensors"), &dev).unwrap();
    let ids = expected["input_ids"].to_dtype(DType::U32).unwrap();
    let want = &expected["logits"];
    let t = ids.dim(1).unwrap();
    assert!(
        t > 64,
        "the text must run well past the original context 32"
    );
    for (name, config, tensors) in sources() {
        assert!(config.rope_scaling.is_some(), "{name}");
        let params = ParamStore::from_tensors(&config, tensors.clone(), name).unwrap();
        let mut model = Llama::new(&config, &params).unwrap();
        // The cache split lies before the original context ends.
        let gaps = logit_gaps(&mut model, &ids, want, 20).unwrap();
        eprintln!("{name}: max |Δlogit| fused, unfused, cached = {gaps:?}");
        assert!(gaps.iter().all(|g| *g < 1e-4), "{name}: {gaps:?}");

        // Plain RoPE (what frugal ran before, and what ignoring the scaling
        // would give) is visibly wrong: the test can fail.
        let mut plain = config.clone();
        plain.rope_scaling = None;
        let p = ParamStore::from_tensors(&plain, tensors, name).unwrap();
        let wrong = Llama::new(&plain, &p).unwrap().forward(&ids).unwrap();
        let off = max_abs_gap(&wrong, want).unwrap();
        eprintln!("{name} with plain RoPE: max |Δlogit| = {off:e}");
        assert!(off > 1e-2, "{name}: plain RoPE is only {off} off");
    }
}

/// llama.cpp's per-frequency divisors give the inverse frequencies that
/// frugal computes from config.json's four parameters.
#[test]
fn gguf_rope_factors_equal_the_llama3_formula() {
    let sources = sources();
    let (hf, gguf) = (&sources[0].1, &sources[1].1);
    assert!(matches!(hf.rope_scaling, Some(RopeScaling::Llama3 { .. })));
    let Some(RopeScaling::FreqFactors { factors }) = &gguf.rope_scaling else {
        panic!("the GGUF's scaling is {:?}", gguf.rope_scaling);
    };
    // Every band is used: kept (1), interpolated, stretched (8).
    assert!(factors.contains(&1.0));
    assert!(factors.iter().any(|&f| f > 1.0 && f < 8.0));
    assert!(factors.contains(&8.0));
    let hd = hf.head_dim();
    let from_hf = inv_freq(hd, hf.rope_theta, hf.rope_scaling.as_ref());
    let from_gguf = inv_freq(hd, gguf.rope_theta, gguf.rope_scaling.as_ref());
    for (a, b) in from_hf.iter().zip(&from_gguf) {
        assert!((a / b - 1.0).abs() < 1e-6, "{a} vs {b}");
    }
}

#[test]
fn llama3_tokenizer_from_hf_dir_and_gguf_matches_the_original() {
    let dev = Device::Cpu;
    let probes = probes(&fixture("tokens.json"));
    assert!(probes.len() >= 8);
    for path in [fixture("hf"), fixture("model.gguf")] {
        let scorer = load_scorer(&path, None, &dev).unwrap();
        assert_matches_reference(&scorer.tokenizer, &probes, false);
    }
    // GPT-2's pattern (what transformers' GGUF converter gives a `llama-bpe`
    // vocabulary) splits these strings differently.
    let differ = split_otherwise_by_gpt2(&fixture("model.gguf"), "llama-bpe", &probes);
    assert!(differ >= 4, "only {differ} probes tell the patterns apart");
}

//! frugal's Qwen2 (q/k/v biases) against transformers' Qwen2ForCausalLM.
//!
//! The fixture (scripts/qwen2_parity_fixture.py) is a tiny randomly
//! initialised Qwen2 saved by `save_pretrained` (its config.json exactly as
//! transformers writes it), random q/k/v biases and RMSNorm weights, and the
//! logits transformers computed in f32 for random ids.

use candle_core::{DType, Device, Tensor};
use frugal_model::fused_check::logit_gaps;
use frugal_model::hf::from_hf_config;
use frugal_model::params::load_safetensors;
use frugal_model::{Llama, ParamStore};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/qwen2")
        .join(name)
}

/// max |a − b|, NaN when any element is.
fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    frugal_model::fused_check::max_abs_gap(a, b).unwrap()
}

#[test]
fn qwen2_logits_match_transformers_within_1e4() {
    let dev = Device::Cpu;
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("config.json")).unwrap()).unwrap();
    let config = from_hf_config(&json).unwrap();
    assert!(config.qkv_bias && config.tie_embeddings);
    assert!(config.n_kv_heads < config.n_heads);
    assert_eq!(config.rope_theta, 1e6);
    let mut tensors = load_safetensors(&fixture("model.safetensors"), &dev).unwrap();
    tensors.remove("lm_head.weight");
    let bias = tensors["model.layers.0.self_attn.k_proj.bias"].clone();
    assert!(
        bias.abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            > 1.0
    );
    let params = ParamStore::from_tensors(&config, tensors, "fixture").unwrap();
    let reference = load_safetensors(&fixture("logits.safetensors"), &dev).unwrap();
    let ids = reference["input_ids"].to_dtype(DType::U32).unwrap();
    let expected = &reference["logits"];

    let mut model = Llama::new(&config, &params).unwrap();
    // Fused, unfused, and through the KV cache (how ProLong scores pairs).
    let gaps = logit_gaps(&mut model, &ids, expected, 10).unwrap();
    eprintln!("max |Δlogit| fused, unfused, cached = {gaps:?}");
    assert!(gaps.iter().all(|g| *g < 1e-4), "{gaps:?}");
    // Dropping the biases would be visibly wrong: the test can fail.
    let mut plain = config.clone();
    plain.qkv_bias = false;
    let no_bias: std::collections::HashMap<_, _> = params
        .tensors()
        .into_iter()
        .filter(|(k, _)| !k.ends_with(".bias"))
        .collect();
    let p = ParamStore::from_tensors(&plain, no_bias, "fixture").unwrap();
    let wrong = Llama::new(&plain, &p).unwrap().forward(&ids).unwrap();
    assert!(max_abs(&wrong, expected) > 1e-2);
}

//! Qwen3 (per-head q/k norms, heads wider than hidden / heads) from
//! config.json + safetensors and from a GGUF, against transformers.
//!
//! The fixture (scripts/qwen3_fixture.py) is a tiny random
//! `Qwen3ForCausalLM`: 4 heads of 16 over a width of 32, two key/value
//! heads, q/k norm weights drawn away from 1, saved by transformers and
//! converted to f32 by llama.cpp's own `convert_hf_to_gguf.py`, with
//! transformers' logits for 128 tokens.

use candle_core::{DType, Device, Tensor};
use frugal_model::fused_check::{logit_gaps, max_abs_gap};
use frugal_model::gguf::load_gguf;
use frugal_model::hf::{from_hf_config, load_hf_dir, to_hf_config};
use frugal_model::params::load_safetensors;
use frugal_model::{Llama, LlamaConfig, ParamStore};
use std::collections::HashMap;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/qwen3")
        .join(name)
}

/// The model of hf/ (config.json + model.safetensors) and of model.gguf.
fn sources() -> Vec<(&'static str, LlamaConfig, HashMap<String, Tensor>)> {
    let dev = Device::Cpu;
    let (hf, tensors) = load_hf_dir(&fixture("hf"), &dev).unwrap();
    let g = load_gguf(&fixture("model.gguf"), &dev).unwrap();
    vec![("hf", hf, tensors), ("gguf", g.config, g.tensors)]
}

fn logits(config: &LlamaConfig, tensors: &HashMap<String, Tensor>, ids: &Tensor) -> Tensor {
    let params = ParamStore::from_tensors(config, tensors.clone(), "fixture").unwrap();
    Llama::new(config, &params).unwrap().forward(ids).unwrap()
}

#[test]
fn qwen3_matches_transformers_from_config_and_gguf() {
    let dev = Device::Cpu;
    let expected = load_safetensors(&fixture("expected.safetensors"), &dev).unwrap();
    let ids = expected["input_ids"].to_dtype(DType::U32).unwrap();
    let want = &expected["logits"];
    for (name, config, tensors) in sources() {
        assert!(config.qk_norm && !config.qkv_bias, "{name}");
        assert_eq!(
            (config.head_dim(), config.q_dim(), config.d_model),
            (16, 64, 32)
        );
        let params = ParamStore::from_tensors(&config, tensors.clone(), name).unwrap();
        let mut model = Llama::new(&config, &params).unwrap();
        let gaps = logit_gaps(&mut model, &ids, want, 40).unwrap();
        eprintln!("{name}: max |Δlogit| fused, unfused, cached = {gaps:?}");
        assert!(gaps.iter().all(|g| *g < 1e-4), "{name}: {gaps:?}");

        // Without the q/k norms the logits are visibly wrong: the test can
        // fail.
        let mut plain = config.clone();
        plain.qk_norm = false;
        let mut rest = tensors.clone();
        rest.retain(|k, _| !k.ends_with("q_norm.weight") && !k.ends_with("k_norm.weight"));
        let off = max_abs_gap(&logits(&plain, &rest, &ids), want).unwrap();
        eprintln!("{name} without q/k norms: max |Δlogit| = {off:e}");
        assert!(off > 1e-2, "{name}: q/k norms worth only {off}");
    }
}

#[test]
fn qwen3_config_round_trips_and_counts_its_parameters() {
    let (_, config, tensors) = sources().remove(0);
    let json = to_hf_config(&config, None, None).unwrap();
    assert_eq!(json["model_type"], "qwen3");
    assert_eq!(json["head_dim"], 16);
    assert_eq!(from_hf_config(&json).unwrap(), config);
    let stored: usize = tensors.values().map(|t| t.elem_count()).sum();
    assert_eq!(config.param_count(), stored);
    // A frugal checkpoint's config names the head width and the norms.
    let text = serde_json::to_string(&config).unwrap();
    assert!(text.contains("\"head_dim\":16") && text.contains("\"qk_norm\":true"));
    assert_eq!(serde_json::from_str::<LlamaConfig>(&text).unwrap(), config);
}

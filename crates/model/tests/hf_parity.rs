//! frugal's logits equal Hugging Face transformers' on real text.
//!
//! The fixture (scripts/make_hf_parity_fixture.sh) is a small frugal model
//! trained on Hamlet, exported with `frugal export hf`, and the logits that
//! `transformers.AutoModelForCausalLM` computed from that export in f32 on a
//! passage of real text.

use candle_core::{DType, Device};
use frugal_model::hf::from_hf_config;
use frugal_model::params::load_safetensors;
use frugal_model::{Llama, ParamStore};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf_parity")
        .join(name)
}

#[test]
fn logits_match_transformers_within_1e4() {
    let dev = Device::Cpu;
    let config_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("config.json")).unwrap()).unwrap();
    let config = from_hf_config(&config_json).unwrap();
    assert!(
        config.n_kv_heads < config.n_heads,
        "fixture should exercise GQA"
    );
    let params = ParamStore::load(&config, &fixture("model.safetensors"), &dev).unwrap();
    let reference = load_safetensors(&fixture("logits.safetensors"), &dev).unwrap();
    let ids = reference["input_ids"].to_dtype(DType::U32).unwrap();
    let expected = &reference["logits"];
    assert_eq!(ids.dims(), &[1, 64]);

    let mut model = Llama::new(&config, &params).unwrap();
    for fused in [true, false] {
        model.set_fused(fused).unwrap();
        let logits = model.forward(&ids).unwrap();
        assert_eq!(logits.dims(), expected.dims());
        // NaN-aware: candle's `max` would pass over a NaN logit.
        let max = frugal_model::fused_check::max_abs_gap(&logits, expected).unwrap();
        eprintln!("fused={fused}: max |Δlogit| = {max:e}");
        assert!(max < 1e-4, "fused={fused}: max |Δlogit| = {max}");
        // The comparison is not vacuous: logits vary across the vocabulary.
        let spread = expected
            .max_keepdim(2)
            .unwrap()
            .sub(&expected.min_keepdim(2).unwrap())
            .unwrap();
        let spread = spread
            .flatten_all()
            .unwrap()
            .min(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(spread > 1.0, "{spread}");
    }
}

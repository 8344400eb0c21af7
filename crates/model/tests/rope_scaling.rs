//! Linear and YaRN RoPE scaling from `config.json` and from GGUF metadata,
//! against transformers.
//!
//! The fixture (scripts/rope_scaling_fixture.py) holds transformers' own
//! RoPE init functions' output for seven configs (frequencies.json), and two
//! tiny random models with their logits: a Llama with linear scaling and a
//! Qwen2 with YaRN (factor 8 over an original context of 64 that is also its
//! `max_position_embeddings`, as Qwen2.5 ships it), each as the config.json
//! transformers saved and the f32 GGUF llama.cpp's converter made of it.

use candle_core::{DType, Device, Tensor};
use frugal_model::fused_check::{logit_gaps, max_abs_gap};
use frugal_model::gguf::load_gguf;
use frugal_model::hf::from_hf_config;
use frugal_model::params::load_safetensors;
use frugal_model::rope::{inv_freq, RopeScaling};
use frugal_model::{Llama, LlamaConfig, ParamStore};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rope_scaling")
        .join(name)
}

fn attention_factor(c: &LlamaConfig) -> f64 {
    c.rope_scaling
        .as_ref()
        .map_or(1.0, RopeScaling::attention_factor)
}

#[test]
fn frequencies_match_transformers_rope_init_functions() {
    let cases: Vec<Value> =
        serde_json::from_slice(&std::fs::read(fixture("frequencies.json")).unwrap()).unwrap();
    assert_eq!(cases.len(), 7);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let config = from_hf_config(&case["config"]).unwrap();
        let want: Vec<f64> = case["inv_freq"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let hd = config.head_dim();
        let got = inv_freq(hd, config.rope_theta, config.rope_scaling.as_ref());
        assert_eq!(got.len(), want.len(), "{name}");
        let worst = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (f64::from(*g) / w - 1.0).abs())
            .fold(0.0, f64::max);
        eprintln!("{name}: worst relative gap {worst:e}");
        assert!(worst < 1e-6, "{name}: inverse frequencies {worst} apart");
        let scale = case["attention_scaling"].as_f64().unwrap();
        assert!(
            (attention_factor(&config) - scale).abs() < 1e-12,
            "{name}: attention factor {} vs transformers' {scale}",
            attention_factor(&config)
        );
        // Every scaled case moves some frequency, so the check can fail.
        let plain = inv_freq(hd, config.rope_theta, None);
        let moved = plain
            .iter()
            .zip(&got)
            .filter(|(p, g)| *p / *g > 1.01)
            .count();
        assert_eq!(moved > 0, name != "plain", "{name}: {moved} pairs moved");
    }
    // Qwen2.5's switch keeps max_position_embeddings at the original 32K;
    // frugal runs the 128K that YaRN extends it to.
    let qwen = from_hf_config(&cases[0]["config"]).unwrap();
    assert_eq!(qwen.max_seq_len, 131_072);
}

/// The model of `kind`/ from config.json and from model.gguf (the GGUF's
/// tensors for both: they are the saved model's, in f32).
fn sources(kind: &str) -> Vec<(&'static str, LlamaConfig, HashMap<String, Tensor>)> {
    let json: Value =
        serde_json::from_slice(&std::fs::read(fixture(&format!("{kind}/config.json"))).unwrap())
            .unwrap();
    let hf = from_hf_config(&json).unwrap();
    let g = load_gguf(&fixture(&format!("{kind}/model.gguf")), &Device::Cpu).unwrap();
    vec![
        ("config.json", hf, g.tensors.clone()),
        ("gguf", g.config, g.tensors),
    ]
}

fn logits(config: &LlamaConfig, tensors: &HashMap<String, Tensor>, ids: &Tensor) -> Tensor {
    let params = ParamStore::from_tensors(config, tensors.clone(), "fixture").unwrap();
    Llama::new(config, &params).unwrap().forward(ids).unwrap()
}

#[test]
fn scaled_models_match_transformers_from_config_and_gguf() {
    let dev = Device::Cpu;
    let expected = load_safetensors(&fixture("expected.safetensors"), &dev).unwrap();
    let ids = expected["input_ids"].to_dtype(DType::U32).unwrap();
    for kind in ["linear", "yarn"] {
        let want = &expected[&format!("logits_{kind}")];
        let sources = sources(kind);
        for (name, config, tensors) in &sources {
            let scaling = config.rope_scaling.as_ref().unwrap();
            match (kind, scaling) {
                ("linear", RopeScaling::Linear { factor }) => assert_eq!(*factor, 4.0),
                ("yarn", RopeScaling::Yarn { beta_fast, .. }) => {
                    assert_eq!(*beta_fast, 4.0, "{name}: beta_fast read");
                    // 64 positions stated, 8 × 64 run.
                    assert_eq!(config.max_seq_len, 512, "{name}");
                }
                _ => panic!("{kind} from {name}: {scaling:?}"),
            }
            let params = ParamStore::from_tensors(config, tensors.clone(), name).unwrap();
            let mut model = Llama::new(config, &params).unwrap();
            // The cache split lies inside the original context.
            let gaps = logit_gaps(&mut model, &ids, want, 40).unwrap();
            eprintln!("{kind} from {name}: max |Δlogit| fused, unfused, cached = {gaps:?}");
            assert!(
                gaps.iter().all(|g| *g < 1e-4),
                "{kind} from {name}: {gaps:?}"
            );

            // Ignoring the scaling, or YaRN's cos/sin factor, is visibly
            // wrong: the test can fail.
            let mut plain = config.clone();
            plain.rope_scaling = None;
            let off = max_abs_gap(&logits(&plain, tensors, &ids), want).unwrap();
            eprintln!("{kind} from {name} with plain RoPE: max |Δlogit| = {off:e}");
            assert!(off > 1e-2, "{kind} {name}: plain RoPE only {off} off");
            if let RopeScaling::Yarn { .. } = scaling {
                let mut unscaled = config.clone();
                if let Some(RopeScaling::Yarn {
                    attention_factor, ..
                }) = &mut unscaled.rope_scaling
                {
                    *attention_factor = 1.0;
                }
                let off = max_abs_gap(&logits(&unscaled, tensors, &ids), want).unwrap();
                eprintln!("yarn from {name} without its cos/sin factor: {off:e}");
                assert!(off > 1e-2, "yarn {name}: attention factor worth only {off}");
            }
        }
        // Both sources describe one scaling.
        let (a, b) = (&sources[0].1, &sources[1].1);
        let fa = inv_freq(a.head_dim(), a.rope_theta, a.rope_scaling.as_ref());
        let fb = inv_freq(b.head_dim(), b.rope_theta, b.rope_scaling.as_ref());
        assert_eq!(fa, fb, "{kind}");
        assert!((attention_factor(a) - attention_factor(b)).abs() < 1e-6);
    }
}

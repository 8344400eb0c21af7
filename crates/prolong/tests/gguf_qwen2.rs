//! A Qwen2 GGUF as a scorer, against transformers reading the same file.
//!
//! The fixture (scripts/qwen2_gguf_fixture.py) is a tiny random Qwen2 with a
//! byte-level BPE tokenizer built on Qwen2's pipeline, converted to q8_0 by
//! llama.cpp's own `convert_hf_to_gguf.py`. transformers loaded that GGUF
//! (model and tokenizer) and recorded its logits for one text and its ids
//! for strings where Qwen2's pre-tokenizer and GPT-2's disagree.

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device};
use frugal_model::fused_check::max_abs_gap;
use frugal_model::gguf::load_gguf;
use frugal_model::params::load_safetensors;
use frugal_model::ParamStore;
use frugal_prolong::model::load_scorer;
use probes::{assert_matches_reference, split_otherwise_by_gpt2, Probe};
use std::path::PathBuf;
use tokenizers::Tokenizer;

#[path = "common/probes.rs"]
mod probes;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/qwen2_gguf")
        .join(name)
}

fn probes() -> Vec<Probe> {
    probes::probes(&fixture("tokens.json"))
}

/// transformers' ids, pieces and (NFC-composed) decoding for every probe.
fn assert_matches_transformers(tok: &Tokenizer, probes: &[Probe]) {
    assert_matches_reference(tok, probes, true);
}

#[test]
fn qwen2_gguf_logits_match_transformers() {
    let dev = Device::Cpu;
    let scorer = load_scorer(&fixture("model.gguf"), None, &dev).unwrap();
    let c = &scorer.model.config;
    assert!(c.qkv_bias && c.tie_embeddings && c.n_kv_heads < c.n_heads);
    assert_eq!(c.rope_theta, 1e6);

    let expected = load_safetensors(&fixture("expected.safetensors"), &dev).unwrap();
    let ids = expected["input_ids"].to_dtype(DType::U32).unwrap();
    let logits = scorer.model.forward(&ids).unwrap();
    let gap = max_abs_gap(&logits, &expected["logits"]).unwrap();
    eprintln!("max |Δlogit| against transformers on the same GGUF: {gap:e}");
    assert!(gap < 1e-4, "max |Δlogit| = {gap}");

    // The same weights with the q/k rows permuted back as for a `llama`
    // GGUF: llama.cpp does not permute Qwen2's, so this must be wrong.
    let g = load_gguf(&fixture("model.gguf"), &dev).unwrap();
    let mut tensors = g.tensors;
    for (name, t) in tensors.iter_mut() {
        if name.ends_with("q_proj.weight") {
            *t = frugal_model::gguf::unpermute(t, c.n_heads).unwrap();
        } else if name.ends_with("k_proj.weight") {
            *t = frugal_model::gguf::unpermute(t, c.n_kv_heads).unwrap();
        }
    }
    let params = frugal_model::ParamStore::from_tensors(c, tensors, "permuted").unwrap();
    let wrong = frugal_model::Llama::new(c, &params)
        .unwrap()
        .forward(&ids)
        .unwrap();
    assert!(max_abs_gap(&wrong, &expected["logits"]).unwrap() > 1e-2);
}

#[test]
fn qwen2_gguf_tokenizer_matches_transformers() {
    let dev = Device::Cpu;
    let scorer = load_scorer(&fixture("model.gguf"), None, &dev).unwrap();
    let probes = probes();
    assert!(probes.len() >= 5);
    // With 44 merges most splits leave the ids alone, so the helper checks
    // the pre-tokenizer's pieces too; GPT-2's (what a `llama` GGUF gets) must
    // split these strings differently, or the probes would not test Qwen2's.
    assert_matches_transformers(&scorer.tokenizer, &probes);
    let differ = split_otherwise_by_gpt2(&fixture("model.gguf"), "qwen2", &probes);
    assert!(
        differ >= 4,
        "only {differ} probes tell the pre-tokenizers apart"
    );
}

/// The fixture rewritten as `dir/name` with `extra_md` added, `drop`
/// removed and, with `rope_freqs`, a tensor `rope_freqs.weight` of them.
fn variant(
    dir: &std::path::Path,
    name: &str,
    extra_md: &[(&str, Value)],
    drop: &[&str],
    rope_freqs: Option<&[f32]>,
) -> PathBuf {
    let dev = Device::Cpu;
    let mut file = std::fs::File::open(fixture("model.gguf")).unwrap();
    let content = Content::read(&mut file).unwrap();
    let mut md: Vec<(String, Value)> = content
        .metadata
        .clone()
        .into_iter()
        .filter(|(k, _)| !drop.contains(&k.as_str()))
        .collect();
    md.extend(extra_md.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let mut tensors: Vec<(String, QTensor)> = content
        .tensor_infos
        .keys()
        .map(|name| (name.clone(), content.tensor(&mut file, name, &dev).unwrap()))
        .collect();
    if let Some(factors) = rope_freqs {
        let freqs = candle_core::Tensor::new(factors, &dev).unwrap();
        tensors.push((
            "rope_freqs.weight".into(),
            QTensor::quantize(&freqs, GgmlDType::F32).unwrap(),
        ));
    }
    let path = dir.join(name);
    let mut out = std::fs::File::create(&path).unwrap();
    let md: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    gguf_file::write(&mut out, &md, &tensors).unwrap();
    path
}

/// What frugal's model cannot compute is refused with the reason, never
/// run with a silently different RoPE or head layout.
#[test]
fn gguf_features_frugal_lacks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let load = |p: &std::path::Path| {
        load_gguf(p, &Device::Cpu)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    // The rewrite itself loads (so the refusals below are the metadata's).
    let same = variant(dir.path(), "same.gguf", &[], &[], None);
    assert_eq!(load(&same), Ok(()));
    let refused = |md: &[(&str, Value)], freqs: Option<&[f32]>, reason: &str| {
        let err = load(&variant(dir.path(), "refused.gguf", md, &[], freqs)).expect_err(reason);
        assert!(err.contains(reason), "{reason}: {err}");
    };
    // Llama 3.1's frequency factors are run (tests/llama3.rs), but only one
    // per rotated pair (head dim 8 here) and all positive.
    refused(
        &[],
        Some(&[1.0; 3]),
        "3 RoPE frequency factors for head dim 8",
    );
    refused(&[], Some(&[1.0, 0.0, 1.0, 1.0]), "factor 0 must be > 0");
    let ones = variant(dir.path(), "ones.gguf", &[], &[], Some(&[1.0; 4]));
    assert_eq!(load(&ones), Ok(()));
    // Linear and YaRN scaling are run (tests/rope_scaling.rs); the kinds
    // and knobs frugal does not compute are refused.
    let kind = |k: &str| ("qwen2.rope.scaling.type", Value::String(k.into()));
    let factor = ("qwen2.rope.scaling.factor", Value::F32(4.0));
    refused(&[kind("longrope")], None, "RoPE scaling 'longrope'");
    let ext = ("qwen2.rope.scaling.yarn_ext_factor", Value::F32(0.5));
    refused(
        &[kind("yarn"), factor.clone(), ext],
        None,
        "yarn_ext_factor' = 0.5",
    );
    let attn = ("qwen2.rope.scaling.attn_factor", Value::F32(2.0));
    refused(&[attn], None, "attn_factor' = 2");
    refused(
        &[kind("yarn"), factor.clone()],
        Some(&[1.0; 4]),
        "both as rope_freqs.weight and in metadata",
    );
    let partial = ("qwen2.rope.dimension_count", Value::U32(4));
    refused(&[partial], None, "rotary dimensions 4");
    // A key length states the head width (Qwen3's differs from
    // embedding_length / head_count); the value length and rotary
    // dimensions must then agree with it.
    let wide = ("qwen2.attention.value_length", Value::U32(16));
    refused(&[wide], None, "value length 16");
    let rot = ("qwen2.rope.dimension_count", Value::U32(8));
    let key = ("qwen2.attention.key_length", Value::U32(16));
    refused(&[key.clone(), rot], None, "rotary dimensions 8");
    // Alone it is taken at its word, and the q/k/v weights then do not fit.
    let wide_heads = variant(dir.path(), "key.gguf", &[key], &[], None);
    let wide_heads = load_gguf(&wide_heads, &Device::Cpu).unwrap();
    assert_eq!(wide_heads.config.head_dim(), 16);
    let err = ParamStore::from_tensors(&wide_heads.config, wide_heads.tensors, "key.gguf")
        .unwrap_err()
        .to_string();
    assert!(err.contains("q_proj"), "{err}");
    // Matching values are accepted.
    let ok = variant(
        dir.path(),
        "matching.gguf",
        &[
            ("qwen2.rope.dimension_count", Value::U32(8)),
            ("qwen2.rope.scaling.type", Value::String("none".into())),
        ],
        &[],
        None,
    );
    assert_eq!(load(&ok), Ok(()));
    // Not a GGUF file at all.
    let err = load(&fixture("tokens.json")).unwrap_err();
    assert!(err.contains("not a GGUF file"), "{err}");
}

/// A Qwen2 file converted before llama.cpp wrote `tokenizer.ggml.pre` still
/// gets Qwen2's pre-tokenizer, as transformers gives it by architecture.
#[test]
fn qwen2_gguf_without_pre_gets_qwen2_pretokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let old = variant(
        dir.path(),
        "no-pre.gguf",
        &[],
        &["tokenizer.ggml.pre"],
        None,
    );
    let scorer = load_scorer(&old, None, &Device::Cpu).unwrap();
    assert_eq!(
        load_gguf(&old, &Device::Cpu).unwrap().tokenizer.pre,
        "qwen2"
    );
    assert_matches_transformers(&scorer.tokenizer, &probes());
}

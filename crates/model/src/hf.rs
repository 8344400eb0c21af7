//! Hugging Face `config.json` for Llama models, both ways.

use crate::config::{unusual_head_dim, LlamaConfig};
use crate::rope::{self, RopeScaling};
use crate::{ModelError, Result};
use candle_core::{Device, Tensor};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;

/// A Hugging Face model directory's `config.json` ([`from_hf_config`]) and
/// the tensors of all its `*.safetensors` files onto `device`, without
/// `lm_head.weight` where the embedding is tied (transformers saves it
/// anyway in some versions).
pub fn load_hf_dir(dir: &Path, device: &Device) -> Result<(LlamaConfig, HashMap<String, Tensor>)> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| ModelError::io(&cfg_path, e))?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::InvalidConfig(format!("{}: not JSON: {e}", cfg_path.display())))?;
    let config = from_hf_config(&json)
        .map_err(|e| ModelError::InvalidConfig(format!("{}: {e}", cfg_path.display())))?;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| ModelError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ModelError::InvalidConfig(format!(
            "{}: no *.safetensors files",
            dir.display()
        )));
    }
    let mut tensors = HashMap::new();
    for f in files {
        tensors.extend(crate::params::load_safetensors(&f, device)?);
    }
    if config.tie_embeddings {
        tensors.remove("lm_head.weight");
    }
    Ok((config, tensors))
}

/// The `config.json` that `transformers.LlamaForCausalLM` expects, or
/// `Qwen2ForCausalLM` for a config with q/k/v biases (transformers' Llama
/// `attention_bias` would put a bias on o_proj too), or `Qwen3ForCausalLM`
/// for one with q/k norms. Per-frequency RoPE factors (from a GGUF file)
/// have no `config.json` form and are refused.
pub fn to_hf_config(c: &LlamaConfig, bos: Option<u32>, eos: Option<u32>) -> Result<Value> {
    let (arch, model_type) = match (c.qkv_bias, c.qk_norm) {
        (false, false) => ("LlamaForCausalLM", "llama"),
        (true, false) => ("Qwen2ForCausalLM", "qwen2"),
        (false, true) => ("Qwen3ForCausalLM", "qwen3"),
        (true, true) => {
            return Err(ModelError::InvalidConfig(
                "q/k/v biases with q/k norms have no transformers architecture".into(),
            ))
        }
    };
    let mut j = json!({
        "architectures": [arch],
        "model_type": model_type,
        "vocab_size": c.vocab_size,
        "hidden_size": c.d_model,
        "intermediate_size": c.ffn_hidden,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads,
        "head_dim": c.head_dim(),
        "max_position_embeddings": c.max_seq_len,
        "rms_norm_eps": c.rms_eps,
        "rope_theta": c.rope_theta,
        "tie_word_embeddings": c.tie_embeddings,
        "hidden_act": "silu",
        "attention_bias": false,
        "mlp_bias": false,
        "initializer_range": 0.02,
        "torch_dtype": "float32",
        "bos_token_id": bos,
        "eos_token_id": eos,
    });
    match &c.rope_scaling {
        None => {}
        Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        }) => {
            j["rope_scaling"] = json!({
                "rope_type": "llama3",
                "factor": factor,
                "low_freq_factor": low_freq_factor,
                "high_freq_factor": high_freq_factor,
                "original_max_position_embeddings": original_max_position_embeddings,
            })
        }
        Some(RopeScaling::Linear { factor }) => {
            j["rope_scaling"] = json!({"rope_type": "linear", "factor": factor})
        }
        Some(RopeScaling::Yarn {
            factor,
            original_max_position_embeddings,
            beta_fast,
            beta_slow,
            attention_factor,
            truncate,
        }) => {
            j["rope_scaling"] = json!({
                "rope_type": "yarn",
                "factor": factor,
                "original_max_position_embeddings": original_max_position_embeddings,
                "beta_fast": beta_fast,
                "beta_slow": beta_slow,
                "attention_factor": attention_factor,
                "truncate": truncate,
            })
        }
        Some(RopeScaling::FreqFactors { .. }) => {
            return Err(ModelError::InvalidConfig(
                "per-frequency RoPE factors (from a GGUF file) cannot be written to config.json"
                    .into(),
            ))
        }
    }
    Ok(j)
}

/// Reads a Hugging Face `config.json` of the Llama family: Llama (without
/// attention/MLP biases), Qwen2 (q/k/v biases) and Qwen3 (per-head q/k
/// norms), without sliding windows.
/// Anything that would need a part frugal's model lacks is refused, because
/// ignoring it would silently give a different model.
pub fn from_hf_config(v: &Value) -> Result<LlamaConfig> {
    let bad = |m: String| Err(ModelError::InvalidConfig(m));
    let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
    let model_type = v
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or("llama");
    let (qkv_bias, qk_norm) = match model_type {
        "llama" => (false, false),
        "qwen2" => (true, false),
        "qwen3" => (false, true),
        other => {
            return bad(format!(
                "model_type '{other}' is not supported (llama, qwen2, qwen3)"
            ))
        }
    };
    if model_type != "qwen2" && flag("attention_bias") {
        return bad("attention_bias (biases on q/k/v/o) is not supported".into());
    }
    if flag("mlp_bias") {
        return bad("mlp_bias is not supported".into());
    }
    if flag("use_sliding_window") {
        return bad("use_sliding_window is not supported".into());
    }
    if let Some(types) = v.get("layer_types").and_then(Value::as_array) {
        if types.iter().any(|t| t.as_str() != Some("full_attention")) {
            return bad("layer_types other than full_attention are not supported".into());
        }
    }
    if let Some(act) = v.get("hidden_act").and_then(Value::as_str) {
        if act != "silu" {
            return bad(format!("hidden_act '{act}' is not supported (silu)"));
        }
    }
    let get = |k: &str| -> Result<usize> {
        v.get(k)
            .and_then(Value::as_u64)
            .map(|x| x as usize)
            .ok_or_else(|| ModelError::InvalidConfig(format!("config.json lacks integer '{k}'")))
    };
    let n_heads = get("num_attention_heads")?;
    let d_model = get("hidden_size")?;
    // transformers writes head_dim always.
    let stated_head_dim = v.get("head_dim").and_then(Value::as_u64);
    let explicit_head_dim =
        unusual_head_dim(stated_head_dim.map(|hd| hd as usize), d_model, n_heads);
    if let Some(f) = v.get("partial_rotary_factor").and_then(Value::as_f64) {
        if f != 1.0 {
            return bad(format!(
                "partial_rotary_factor {f} (RoPE on part of each head) is not supported"
            ));
        }
    }
    let rope_scaling = rope_scaling(v)?;
    let max_position_embeddings = get("max_position_embeddings")?;
    let c = LlamaConfig {
        vocab_size: get("vocab_size")?,
        d_model,
        n_layers: get("num_hidden_layers")?,
        n_heads,
        n_kv_heads: get("num_key_value_heads").unwrap_or(n_heads),
        ffn_hidden: get("intermediate_size")?,
        // YaRN configs (Qwen2.5's) keep the original length here.
        max_seq_len: rope_scaling.as_ref().map_or(max_position_embeddings, |s| {
            s.context_length(max_position_embeddings)
        }),
        rope_theta: v
            .get("rope_theta")
            .and_then(Value::as_f64)
            .unwrap_or(10_000.0),
        rope_scaling,
        rms_eps: v
            .get("rms_norm_eps")
            .and_then(Value::as_f64)
            .unwrap_or(1e-5),
        tie_embeddings: v
            .get("tie_word_embeddings")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        qkv_bias,
        qk_norm,
        explicit_head_dim,
    };
    c.validate()?;
    Ok(c)
}

/// `rope_scaling`: absent, null or `default` for plain RoPE; `llama3`,
/// `linear` and `yarn` with transformers' defaults for the keys it lets a
/// config leave out. Dynamic NTK, LongRoPE and the rest are refused.
fn rope_scaling(v: &Value) -> Result<Option<RopeScaling>> {
    let Some(r) = v.get("rope_scaling").filter(|r| !r.is_null()) else {
        return Ok(None);
    };
    let kind = r
        .get("rope_type")
        .or_else(|| r.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let lacks = |what: &str, k: &str| {
        ModelError::InvalidConfig(format!("rope_scaling ({kind}) lacks {what} '{k}'"))
    };
    let num = |k: &str| {
        r.get(k)
            .and_then(Value::as_f64)
            .ok_or_else(|| lacks("number", k))
    };
    // Python's `get(k) or default`: absent, null and zero all mean default.
    let num_or = |k: &str, default: f64| {
        r.get(k)
            .and_then(Value::as_f64)
            .filter(|x| *x != 0.0)
            .unwrap_or(default)
    };
    let original = |fallback: Option<u64>| {
        r.get("original_max_position_embeddings")
            .and_then(Value::as_u64)
            .filter(|x| *x != 0)
            .or(fallback)
            .map(|x| x as usize)
            .ok_or_else(|| lacks("integer", "original_max_position_embeddings"))
    };
    match kind {
        "default" => Ok(None),
        "llama3" => Ok(Some(RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: original(None)?,
        })),
        "linear" => Ok(Some(RopeScaling::Linear {
            factor: num("factor")?,
        })),
        "yarn" => {
            let factor = num("factor")?;
            let opt = |k: &str| r.get(k).and_then(Value::as_f64);
            let attention_factor = opt("attention_factor").unwrap_or_else(|| {
                rope::yarn_attention_factor(factor, opt("mscale"), opt("mscale_all_dim"))
            });
            Ok(Some(RopeScaling::Yarn {
                factor,
                // transformers falls back to the config's own length.
                original_max_position_embeddings: original(
                    v.get("max_position_embeddings").and_then(Value::as_u64),
                )?,
                beta_fast: num_or("beta_fast", 32.0),
                beta_slow: num_or("beta_slow", 1.0),
                attention_factor,
                truncate: r.get("truncate").and_then(Value::as_bool).unwrap_or(true),
            }))
        }
        other => Err(ModelError::InvalidConfig(format!(
            "rope_scaling type '{other}' is not supported (llama3, linear, yarn)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut c = LlamaConfig::new(1000, 64, 3, 4);
        c.n_kv_heads = 2;
        let back = from_hf_config(&to_hf_config(&c, Some(0), Some(0)).unwrap()).unwrap();
        assert_eq!(back, c);
        assert!(from_hf_config(&json!({"hidden_size": 8})).is_err());
    }

    #[test]
    fn qwen2_has_qkv_biases_and_round_trips() {
        let mut c = LlamaConfig::new(1000, 64, 3, 4);
        c.n_kv_heads = 2;
        c.qkv_bias = true;
        c.rope_theta = 1e6;
        c.rms_eps = 1e-6;
        let j = to_hf_config(&c, None, None).unwrap();
        assert_eq!(j["model_type"], "qwen2");
        assert_eq!(j["architectures"][0], "Qwen2ForCausalLM");
        assert_eq!(from_hf_config(&j).unwrap(), c);
        // Qwen2 configs as transformers writes them (attention_bias absent).
        let mut q = j.clone();
        q.as_object_mut().unwrap().remove("attention_bias");
        q["use_sliding_window"] = json!(false);
        q["sliding_window"] = json!(4096);
        q["rope_scaling"] = Value::Null;
        assert!(from_hf_config(&q).unwrap().qkv_bias);
    }

    #[test]
    fn unsupported_parts_are_refused() {
        let base = to_hf_config(&LlamaConfig::new(100, 32, 1, 2), None, None).unwrap();
        for (k, val) in [
            ("attention_bias", json!(true)),
            ("mlp_bias", json!(true)),
            ("use_sliding_window", json!(true)),
            (
                "rope_scaling",
                json!({"rope_type": "dynamic", "factor": 4.0}),
            ),
            ("partial_rotary_factor", json!(0.5)),
            ("hidden_act", json!("gelu")),
            ("model_type", json!("gpt2")),
        ] {
            let mut v = base.clone();
            v[k] = val;
            let e = from_hf_config(&v).unwrap_err().to_string();
            assert!(e.contains(k), "{k}: {e}");
        }
        assert!(!from_hf_config(&base).unwrap().qkv_bias);
    }

    #[test]
    fn llama3_rope_scaling_round_trips_and_needs_its_keys() {
        let mut c = LlamaConfig::new(100, 64, 1, 4);
        c.rope_theta = 500_000.0;
        c.rope_scaling = Some(RopeScaling::Llama3 {
            factor: 32.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        });
        let j = to_hf_config(&c, None, None).unwrap();
        assert_eq!(j["rope_scaling"]["rope_type"], "llama3");
        assert_eq!(from_hf_config(&j).unwrap(), c);
        // Older configs name the kind `type`; `default` is plain RoPE.
        let mut old = j.clone();
        let r = old["rope_scaling"].as_object_mut().unwrap();
        r.remove("rope_type");
        r.insert("type".into(), json!("llama3"));
        assert_eq!(from_hf_config(&old).unwrap(), c);
        let mut plain = j.clone();
        plain["rope_scaling"] = json!({"rope_type": "default"});
        assert_eq!(from_hf_config(&plain).unwrap().rope_scaling, None);
        let mut partial = j.clone();
        partial["rope_scaling"]
            .as_object_mut()
            .unwrap()
            .remove("high_freq_factor");
        let e = from_hf_config(&partial).unwrap_err().to_string();
        assert!(e.contains("high_freq_factor"), "{e}");
        c.rope_scaling = Some(RopeScaling::FreqFactors {
            factors: vec![1.0; 8],
        });
        assert!(to_hf_config(&c, None, None).is_err());
    }

    #[test]
    fn yarn_reads_qwen25s_switch_extends_the_context_and_round_trips() {
        let mut c = LlamaConfig::new(100, 64, 1, 4);
        c.qkv_bias = true;
        c.max_seq_len = 32_768;
        let mut j = to_hf_config(&c, None, None).unwrap();
        // As Qwen2.5's model cards say to switch YaRN on.
        j["rope_scaling"] =
            json!({"factor": 4.0, "original_max_position_embeddings": 32768, "type": "yarn"});
        let y = from_hf_config(&j).unwrap();
        assert_eq!(y.max_seq_len, 131_072);
        let Some(RopeScaling::Yarn {
            beta_fast,
            beta_slow,
            attention_factor,
            truncate,
            ..
        }) = y.rope_scaling
        else {
            panic!("{:?}", y.rope_scaling)
        };
        assert_eq!((beta_fast, beta_slow, truncate), (32.0, 1.0, true));
        assert!((attention_factor - 1.138_629_436_111_989).abs() < 1e-12);
        assert_eq!(
            from_hf_config(&to_hf_config(&y, None, None).unwrap()).unwrap(),
            y
        );
        // Without original_max_position_embeddings transformers takes the
        // config's length; an explicit attention_factor wins over mscale.
        let r = j["rope_scaling"].as_object_mut().unwrap();
        r.remove("original_max_position_embeddings");
        r.insert("attention_factor".into(), json!(1.5));
        r.insert("mscale".into(), json!(0.7));
        let z = from_hf_config(&j).unwrap();
        assert_eq!(z.max_seq_len, 131_072);
        assert!(matches!(
            z.rope_scaling,
            Some(RopeScaling::Yarn {
                original_max_position_embeddings: 32_768,
                attention_factor: 1.5,
                ..
            })
        ));
        let mut lin = to_hf_config(&c, None, None).unwrap();
        lin["rope_scaling"] = json!({"type": "linear", "factor": 2.0});
        let l = from_hf_config(&lin).unwrap();
        assert_eq!(l.rope_scaling, Some(RopeScaling::Linear { factor: 2.0 }));
        assert_eq!(l.max_seq_len, 32_768);
        assert_eq!(
            from_hf_config(&to_hf_config(&l, None, None).unwrap()).unwrap(),
            l
        );
    }
}

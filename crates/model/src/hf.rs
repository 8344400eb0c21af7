//! Hugging Face `config.json` for Llama models, both ways.

use crate::config::LlamaConfig;
use crate::{ModelError, Result};
use serde_json::{json, Value};

/// The `config.json` that `transformers.LlamaForCausalLM` expects.
pub fn to_hf_config(c: &LlamaConfig, bos: Option<u32>, eos: Option<u32>) -> Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
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
    })
}

/// Reads a Hugging Face Llama-family `config.json` (Llama, Qwen2-style keys).
pub fn from_hf_config(v: &Value) -> Result<LlamaConfig> {
    let get = |k: &str| -> Result<usize> {
        v.get(k)
            .and_then(Value::as_u64)
            .map(|x| x as usize)
            .ok_or_else(|| ModelError::InvalidConfig(format!("config.json lacks integer '{k}'")))
    };
    let n_heads = get("num_attention_heads")?;
    let d_model = get("hidden_size")?;
    if let Some(hd) = v.get("head_dim").and_then(Value::as_u64) {
        if hd as usize * n_heads != d_model {
            return Err(ModelError::InvalidConfig(format!(
                "head_dim {hd} × heads {n_heads} ≠ hidden_size {d_model} is not supported"
            )));
        }
    }
    let c = LlamaConfig {
        vocab_size: get("vocab_size")?,
        d_model,
        n_layers: get("num_hidden_layers")?,
        n_heads,
        n_kv_heads: get("num_key_value_heads").unwrap_or(n_heads),
        ffn_hidden: get("intermediate_size")?,
        max_seq_len: get("max_position_embeddings")?,
        rope_theta: v
            .get("rope_theta")
            .and_then(Value::as_f64)
            .unwrap_or(10_000.0),
        rms_eps: v
            .get("rms_norm_eps")
            .and_then(Value::as_f64)
            .unwrap_or(1e-5),
        tie_embeddings: v
            .get("tie_word_embeddings")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };
    c.validate()?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut c = LlamaConfig::new(1000, 64, 3, 4);
        c.n_kv_heads = 2;
        let back = from_hf_config(&to_hf_config(&c, Some(0), Some(0))).unwrap();
        assert_eq!(back, c);
        assert!(from_hf_config(&json!({"hidden_size": 8})).is_err());
    }
}

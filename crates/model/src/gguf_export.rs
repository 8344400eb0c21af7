//! Writes a model as a llama.cpp GGUF file, architecture `llama`, laid out
//! as llama.cpp's converter (`convert_hf_to_gguf.py`) lays out a Hugging
//! Face Llama: its tensor names, q and k rows permuted for llama.cpp's
//! interleaved RoPE, no `output.weight` when the head is tied, 1-D tensors
//! (the norms) always in f32, and the hyperparameters and the tokenizer as
//! metadata. [`crate::gguf::load_gguf`] reads such files back, through the
//! same table of tensor names ([`crate::gguf::tensor_names`]).

use crate::config::LlamaConfig;
use crate::gguf::{permute, tensor_names, GgufTokenizer};
use crate::{ModelError, Result};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Tensor;
use std::collections::HashMap;
use std::str::FromStr;

/// The type of the 2-D weights (the norms stay f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GgufWeights {
    #[default]
    F32,
    F16,
    /// 8-bit blocks of 32 with an f16 scale; rows must hold whole blocks.
    Q8_0,
}

impl GgufWeights {
    fn ggml(self) -> GgmlDType {
        match self {
            Self::F32 => GgmlDType::F32,
            Self::F16 => GgmlDType::F16,
            Self::Q8_0 => GgmlDType::Q8_0,
        }
    }
    /// llama.cpp's `general.file_type` (`LLAMA_FTYPE_*`).
    fn file_type(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q8_0 => 7,
        }
    }
}

impl FromStr for GgufWeights {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            "q8_0" => Ok(Self::Q8_0),
            _ => Err(format!(
                "unknown GGUF type '{s}' (expected f32, f16 or q8_0)"
            )),
        }
    }
}

/// The GGUF file of a Llama (`tensors` under Hugging Face names, as
/// [`crate::ParamStore::tensors`] gives them) with `tokenizer`, named `name`.
pub fn gguf_bytes(
    config: &LlamaConfig,
    tensors: &HashMap<String, Tensor>,
    tokenizer: &GgufTokenizer,
    weights: GgufWeights,
    name: &str,
) -> Result<Vec<u8>> {
    refuse_unexportable(config)?;
    let metadata = metadata(config, tokenizer, weights, name);
    let mut qtensors = Vec::new();
    for entry in tensor_names(config, true) {
        let hf = &entry.hf;
        let t = tensors
            .get(hf)
            .ok_or_else(|| ModelError::InvalidConfig(format!("no tensor '{hf}' to export")))?;
        let mut t = t.to_dtype(candle_core::DType::F32)?;
        if let Some(heads) = entry.rope_heads {
            t = permute(&t, heads)?;
        }
        let dtype = if t.rank() == 1 {
            GgmlDType::F32
        } else {
            weights.ggml()
        };
        let q = QTensor::quantize(&t, dtype).map_err(|e| {
            ModelError::InvalidConfig(format!("'{hf}' {:?} as {dtype:?}: {e}", t.dims()))
        })?;
        qtensors.push((entry.gguf, q));
    }
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let qt: Vec<(&str, &QTensor)> = qtensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut out, &md, &qt)?;
    Ok(out.into_inner())
}

/// What llama.cpp's `llama` architecture has no place for.
fn refuse_unexportable(config: &LlamaConfig) -> Result<()> {
    let refuse = |what: &str| {
        Err(ModelError::InvalidConfig(format!(
            "{what} cannot be exported as a GGUF 'llama' model yet"
        )))
    };
    if config.qkv_bias {
        return refuse("q/k/v biases (Qwen2)");
    }
    if config.qk_norm {
        return refuse("q/k norms (Qwen3)");
    }
    if config.rope_scaling.is_some() {
        return refuse("RoPE scaling");
    }
    Ok(())
}

fn metadata(
    c: &LlamaConfig,
    tok: &GgufTokenizer,
    weights: GgufWeights,
    name: &str,
) -> Vec<(String, Value)> {
    let u32_of = |n: usize| Value::U32(n as u32);
    let strings = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
    let mut md = vec![
        ("general.architecture", Value::String("llama".into())),
        ("general.name", Value::String(name.into())),
        ("general.file_type", Value::U32(weights.file_type())),
        ("llama.vocab_size", u32_of(c.vocab_size)),
        ("llama.context_length", u32_of(c.max_seq_len)),
        ("llama.embedding_length", u32_of(c.d_model)),
        ("llama.block_count", u32_of(c.n_layers)),
        ("llama.feed_forward_length", u32_of(c.ffn_hidden)),
        ("llama.attention.head_count", u32_of(c.n_heads)),
        ("llama.attention.head_count_kv", u32_of(c.n_kv_heads)),
        ("llama.rope.dimension_count", u32_of(c.head_dim())),
        // f32, as llama.cpp's converter writes them.
        ("llama.rope.freq_base", Value::F32(c.rope_theta as f32)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Value::F32(c.rms_eps as f32),
        ),
        ("tokenizer.ggml.model", Value::String(tok.model.clone())),
        ("tokenizer.ggml.pre", Value::String(tok.pre.clone())),
        ("tokenizer.ggml.tokens", strings(&tok.tokens)),
        (
            "tokenizer.ggml.token_type",
            Value::Array(tok.token_types.iter().map(|&t| Value::I32(t)).collect()),
        ),
        ("tokenizer.ggml.merges", strings(&tok.merges)),
    ];
    if c.explicit_head_dim.is_some() {
        md.push(("llama.attention.key_length", u32_of(c.head_dim())));
        md.push(("llama.attention.value_length", u32_of(c.head_dim())));
    }
    for (key, id) in [
        ("tokenizer.ggml.bos_token_id", tok.bos),
        ("tokenizer.ggml.eos_token_id", tok.eos),
        ("tokenizer.ggml.unknown_token_id", tok.unk),
    ] {
        if let Some(id) = id {
            md.push((key, Value::U32(id)));
        }
    }
    // A BOS is not what frugal trains with (documents are separated by EOS).
    md.push(("tokenizer.ggml.add_bos_token", Value::Bool(false)));
    md.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

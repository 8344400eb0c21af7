//! Llama-family GGUF files (llama.cpp's format) dequantised to f32 and mapped
//! onto Hugging Face parameter names, so a GGUF model runs in [`crate::Llama`].
//!
//! Two architectures, as llama.cpp's converter (`convert_hf_to_gguf.py`)
//! writes them:
//!
//! * `llama`: q and k rows permuted for llama.cpp's interleaved RoPE, which
//!   [`unpermute`] undoes, and for Llama 3.1 and later the RoPE scaling as
//!   per-frequency divisors (`rope_freqs.weight`); linear and YaRN scaling
//!   come as metadata (`{arch}.rope.scaling.*`), for either architecture;
//! * `qwen2`: q/k/v biases (`blk.N.attn_{q,k,v}.bias`) and the rows as
//!   Hugging Face has them, since llama.cpp runs Qwen2 with the half-split
//!   ("NeoX") RoPE that frugal computes too;
//! * `qwen3`: as `qwen2` without the biases, with per-head q/k norms
//!   (`blk.N.attn_{q,k}_norm`) and heads whose width (`attention.key_length`)
//!   need not be `embedding_length / head_count`.

use crate::config::{unusual_head_dim, LlamaConfig};
use crate::rope::{self, RopeScaling};
use crate::{ModelError, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// The tokenizer a GGUF file carries in its `tokenizer.ggml.*` metadata.
#[derive(Debug, Clone, Default)]
pub struct GgufTokenizer {
    /// `tokenizer.ggml.model`, e.g. `gpt2` for byte-level BPE.
    pub model: String,
    pub tokens: Vec<String>,
    /// `"left right"` strings, as stored.
    pub merges: Vec<String>,
    /// llama.cpp token types (3 = control/special).
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.pre`, the pre-tokenizer llama.cpp applies before BPE
    /// (`qwen2`, `smollm`, `llama-bpe`, ...); where absent, `qwen2` for a
    /// Qwen2 or Qwen3 file and empty otherwise.
    pub pre: String,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
}

/// A dequantised GGUF model.
#[derive(Debug)]
pub struct GgufModel {
    pub config: LlamaConfig,
    /// f32 tensors under Hugging Face Llama names.
    pub tensors: HashMap<String, Tensor>,
    pub tokenizer: GgufTokenizer,
}

fn bad(path: &Path, m: impl std::fmt::Display) -> ModelError {
    ModelError::InvalidConfig(format!("{}: {m}", path.display()))
}

/// The GGUF architectures frugal's model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arch {
    Llama,
    Qwen2,
    Qwen3,
}

impl Arch {
    fn of(name: &str) -> Option<Self> {
        match name {
            "llama" => Some(Self::Llama),
            "qwen2" => Some(Self::Qwen2),
            "qwen3" => Some(Self::Qwen3),
            _ => None,
        }
    }
    /// Whether llama.cpp's converter permuted the q and k rows.
    fn permuted_qk(self) -> bool {
        self == Self::Llama
    }
    fn qkv_bias(self) -> bool {
        self == Self::Qwen2
    }
    fn qk_norm(self) -> bool {
        self == Self::Qwen3
    }
}

/// Reads a Llama-, Qwen2- or Qwen3-architecture GGUF file onto `device` in f32.
pub fn load_gguf(path: &Path, device: &Device) -> Result<GgufModel> {
    let mut file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let content =
        Content::read(&mut file).map_err(|e| bad(path, format!("not a GGUF file: {e}")))?;
    let md = &content.metadata;
    let arch = string(md, "general.architecture");
    let Some(kind) = Arch::of(&arch) else {
        return Err(bad(
            path,
            format!("architecture '{arch}' is not supported (only 'llama', 'qwen2' and 'qwen3')"),
        ));
    };
    let int = |k: &str| -> Result<usize> {
        uint(md, &format!("{arch}.{k}"))
            .map(|x| x as usize)
            .ok_or_else(|| bad(path, format!("metadata lacks integer '{arch}.{k}'")))
    };
    let float = |k: &str, default: f64| number(md, &format!("{arch}.{k}")).unwrap_or(default);
    let n_heads = int("attention.head_count")?;
    let d_model = int("embedding_length")?;
    let embd = content
        .tensor_infos
        .get("token_embd.weight")
        .ok_or_else(|| bad(path, "no token_embd.weight tensor"))?;
    let vocab_size = embd.shape.dims().first().copied().unwrap_or(0);
    let tied = !content.tensor_infos.contains_key("output.weight");
    let mut config = LlamaConfig {
        vocab_size,
        d_model,
        n_layers: int("block_count")?,
        n_heads,
        n_kv_heads: int("attention.head_count_kv").unwrap_or(n_heads),
        ffn_hidden: int("feed_forward_length")?,
        max_seq_len: int("context_length")?,
        // llama.cpp stores these as f32; widen the f32 value like
        // transformers does so RoPE tables match.
        rope_theta: float("rope.freq_base", 10_000.0),
        rope_scaling: None,
        rms_eps: float("attention.layer_norm_rms_epsilon", 1e-5),
        tie_embeddings: tied,
        qkv_bias: kind.qkv_bias(),
        qk_norm: kind.qk_norm(),
        explicit_head_dim: unusual_head_dim(
            uint(md, &format!("{arch}.attention.key_length")).map(|n| n as usize),
            d_model,
            n_heads,
        ),
    };
    // Llama 3.1's RoPE scaling, as llama.cpp's converter stores it: one
    // divisor per frequency (llama.cpp divides θ_i by it).
    if content.tensor_infos.contains_key("rope_freqs.weight") {
        let factors = content
            .tensor(&mut file, "rope_freqs.weight", device)
            .map_err(|e| bad(path, e))?
            .dequantize(device)?
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?;
        config.rope_scaling = Some(RopeScaling::FreqFactors { factors });
    }
    if let Some(scaling) = metadata_rope_scaling(path, md, &arch, config.max_seq_len)? {
        if config.rope_scaling.is_some() {
            return Err(bad(
                path,
                "RoPE scaling both as rope_freqs.weight and in metadata is not supported",
            ));
        }
        config.max_seq_len = scaling.context_length(config.max_seq_len);
        config.rope_scaling = Some(scaling);
    }
    config.validate()?;
    refuse_unsupported(path, &content, &arch, config.head_dim())?;

    let mut tensors = HashMap::new();
    let mut load = |gguf: &str, hf: String, unpermute_heads: Option<usize>| -> Result<()> {
        let q = content
            .tensor(&mut file, gguf, device)
            .map_err(|e| bad(path, e))?;
        let mut t = q.dequantize(device)?.to_dtype(DType::F32)?;
        if let Some(h) = unpermute_heads {
            t = unpermute(&t, h)?;
        }
        tensors.insert(hf, t);
        Ok(())
    };
    for name in tensor_names(&config, kind.permuted_qk()) {
        load(&name.gguf, name.hf, name.rope_heads)?;
    }
    Ok(GgufModel {
        config,
        tensors,
        tokenizer: read_tokenizer(md, kind),
    })
}

/// A string metadata value; empty where absent.
fn string(md: &HashMap<String, Value>, key: &str) -> String {
    md.get(key)
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default()
}

/// A float metadata value, stored as f32 (llama.cpp's choice; widened as
/// transformers widens it) or f64.
fn number(md: &HashMap<String, Value>, key: &str) -> Option<f64> {
    md.get(key)
        .and_then(|v| v.to_f32().ok().map(f64::from).or(v.to_f64().ok()))
}

/// An unsigned metadata value, stored as u64 or u32.
fn uint(md: &HashMap<String, Value>, key: &str) -> Option<u64> {
    md.get(key)
        .and_then(|v| v.to_u64().ok().or_else(|| v.to_u32().ok().map(u64::from)))
}

/// The RoPE scaling a GGUF file states in metadata (`{arch}.rope.scaling.*`,
/// as llama.cpp's converter writes a config's `rope_scaling`): linear and
/// YaRN. As in llama.cpp, a missing type with a factor means linear, and a
/// factor of 1 means none. YaRN's `beta_*` and `attn_factor` keys are read
/// as transformers reads them in the config they came from (llama.cpp's
/// Llama and Qwen2 ignore them). LongRoPE, extrapolation factors other than
/// 1 and a general attention factor are refused.
fn metadata_rope_scaling(
    path: &Path,
    md: &HashMap<String, Value>,
    arch: &str,
    context_length: usize,
) -> Result<Option<RopeScaling>> {
    let key = |k: &str| format!("{arch}.rope.{k}");
    let num = |k: &str| number(md, &key(k));
    let refuse = |k: &str, v: f64| Err(bad(path, format!("'{}' = {v} is not supported", key(k))));
    if let Some(a) = num("scaling.attn_factor").filter(|a| *a != 1.0) {
        return refuse("scaling.attn_factor", a);
    }
    // The older key `rope.scale_linear` holds the factor too.
    let factor = num("scaling.factor")
        .or_else(|| num("scale_linear"))
        .filter(|f| *f != 0.0 && *f != 1.0);
    let kind = md
        .get(&key("scaling.type"))
        .and_then(|v| v.to_string().ok());
    match kind.map(String::as_str) {
        None | Some("linear") => Ok(factor.map(|factor| RopeScaling::Linear { factor })),
        Some("none") => Ok(None),
        Some("yarn") => {
            let Some(factor) = factor else {
                return Ok(None);
            };
            if let Some(e) = num("scaling.yarn_ext_factor").filter(|e| *e != 1.0) {
                return refuse("scaling.yarn_ext_factor", e);
            }
            // llama.cpp's stand-in for DeepSeek's mscale_all_dim (mscale 1).
            let log_mul = num("scaling.yarn_log_multiplier").filter(|m| *m != 0.0);
            let attention_factor = num("scaling.yarn_attn_factor").unwrap_or_else(|| {
                rope::yarn_attention_factor(factor, log_mul.map(|_| 1.0), log_mul)
            });
            let original = uint(md, &key("scaling.original_context_length"))
                .map_or(context_length, |n| n as usize);
            Ok(Some(RopeScaling::Yarn {
                factor,
                original_max_position_embeddings: original,
                beta_fast: num("scaling.yarn_beta_fast").unwrap_or(32.0),
                beta_slow: num("scaling.yarn_beta_slow").unwrap_or(1.0),
                attention_factor,
                truncate: true,
            }))
        }
        Some(other) => Err(bad(
            path,
            format!("RoPE scaling '{other}' is not supported"),
        )),
    }
}

/// Parts of a GGUF file that frugal's model lacks and would silently compute
/// wrong, refused with the reason (as `hf::from_hf_config` refuses them in a
/// `config.json`): partial rotary embeddings and head dims other than
/// `embedding_length / head_count`. (RoPE scaling is read, or refused, by
/// [`metadata_rope_scaling`].)
fn refuse_unsupported(path: &Path, content: &Content, arch: &str, head_dim: usize) -> Result<()> {
    let md = &content.metadata;
    for (key, what) in [
        ("rope.dimension_count", "rotary dimensions"),
        ("attention.key_length", "key length"),
        ("attention.value_length", "value length"),
    ] {
        let n = uint(md, &format!("{arch}.{key}"));
        if let Some(n) = n.filter(|&n| n != head_dim as u64) {
            return Err(bad(
                path,
                format!(
                    "{what} {n} ('{arch}.{key}') differ from the head dim {head_dim} \
                     (attention.key_length, else embedding_length / head_count), which \
                     frugal's model requires"
                ),
            ));
        }
    }
    Ok(())
}

/// One tensor of a GGUF file and the Hugging Face parameter it holds.
pub(crate) struct TensorName {
    pub gguf: String,
    pub hf: String,
    /// For q and k where llama.cpp's converter permuted their rows: the
    /// heads to [`permute`] / [`unpermute`] over.
    pub rope_heads: Option<usize>,
}

/// The tensors of `c` as llama.cpp's converter names and orders them, with
/// q/k biases and norms where the config has them, and no `output.weight`
/// for a tied head. The reader and [`crate::gguf_export`] share it.
pub(crate) fn tensor_names(c: &LlamaConfig, permuted_qk: bool) -> Vec<TensorName> {
    let name = |gguf: String, hf: String, rope_heads: Option<usize>| TensorName {
        gguf,
        hf,
        rope_heads,
    };
    let permuted = |heads: usize| permuted_qk.then_some(heads);
    let mut out = vec![name(
        "token_embd.weight".into(),
        "model.embed_tokens.weight".into(),
        None,
    )];
    for i in 0..c.n_layers {
        let pair = |g: &str, h: &str, heads: Option<usize>| {
            name(
                format!("blk.{i}.{g}.weight"),
                format!("model.layers.{i}.{h}.weight"),
                heads,
            )
        };
        out.push(pair("attn_norm", "input_layernorm", None));
        out.push(pair("attn_q", "self_attn.q_proj", permuted(c.n_heads)));
        out.push(pair("attn_k", "self_attn.k_proj", permuted(c.n_kv_heads)));
        out.push(pair("attn_v", "self_attn.v_proj", None));
        if c.qkv_bias {
            for p in ["q", "k", "v"] {
                out.push(name(
                    format!("blk.{i}.attn_{p}.bias"),
                    format!("model.layers.{i}.self_attn.{p}_proj.bias"),
                    None,
                ));
            }
        }
        if c.qk_norm {
            out.push(pair("attn_q_norm", "self_attn.q_norm", None));
            out.push(pair("attn_k_norm", "self_attn.k_norm", None));
        }
        out.push(pair("attn_output", "self_attn.o_proj", None));
        out.push(pair("ffn_norm", "post_attention_layernorm", None));
        out.push(pair("ffn_gate", "mlp.gate_proj", None));
        out.push(pair("ffn_up", "mlp.up_proj", None));
        out.push(pair("ffn_down", "mlp.down_proj", None));
    }
    out.push(name(
        "output_norm.weight".into(),
        "model.norm.weight".into(),
        None,
    ));
    if !c.tie_embeddings {
        out.push(name("output.weight".into(), "lm_head.weight".into(), None));
    }
    out
}

/// Undoes llama.cpp's converter, which reorders each head's q/k rows from
/// Hugging Face's half-split RoPE layout (`rotate_half`) to the interleaved
/// one llama.cpp computes with: rows `[h, 2, hd/2]` became `[h, hd/2, 2]`.
pub fn unpermute(w: &Tensor, heads: usize) -> Result<Tensor> {
    reorder_head_rows(w, heads, true)
}

/// llama.cpp's converter's `permute`, the inverse of [`unpermute`]: each
/// head's rows from `[h, 2, hd/2]` to `[h, hd/2, 2]`.
pub fn permute(w: &Tensor, heads: usize) -> Result<Tensor> {
    reorder_head_rows(w, heads, false)
}

/// Each head's rows viewed as `[hd/2, 2]` (`interleaved`) or `[2, hd/2]`,
/// transposed.
fn reorder_head_rows(w: &Tensor, heads: usize, interleaved: bool) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    if heads == 0 || rows % (2 * heads) != 0 {
        return Err(ModelError::InvalidConfig(format!(
            "cannot split {rows} rows into {heads} RoPE heads"
        )));
    }
    let half = rows / heads / 2;
    let view = match interleaved {
        true => w.reshape((heads, half, 2, cols))?,
        false => w.reshape((heads, 2, half, cols))?,
    };
    Ok(view.transpose(1, 2)?.contiguous()?.reshape((rows, cols))?)
}

fn read_tokenizer(md: &HashMap<String, Value>, arch: Arch) -> GgufTokenizer {
    let strings = |k: &str| -> Vec<String> {
        md.get(k)
            .and_then(|v| v.to_vec().ok())
            .map(|v| {
                v.iter()
                    .filter_map(|x| x.to_string().ok().cloned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let id = |k: &str| md.get(k).and_then(|v| v.to_u32().ok());
    GgufTokenizer {
        model: string(md, "tokenizer.ggml.model"),
        tokens: strings("tokenizer.ggml.tokens"),
        merges: strings("tokenizer.ggml.merges"),
        token_types: md
            .get("tokenizer.ggml.token_type")
            .and_then(|v| v.to_vec().ok())
            .map(|v| v.iter().filter_map(|x| x.to_i32().ok()).collect())
            .unwrap_or_default(),
        // Files converted before llama.cpp wrote `pre` (mid-2024) lack it;
        // a Qwen2 file's is Qwen2's (transformers picks it by architecture).
        pre: match string(md, "tokenizer.ggml.pre") {
            pre if pre.is_empty() && matches!(arch, Arch::Qwen2 | Arch::Qwen3) => "qwen2".into(),
            pre => pre,
        },
        bos: id("tokenizer.ggml.bos_token_id"),
        eos: id("tokenizer.ggml.eos_token_id"),
        unk: id("tokenizer.ggml.unknown_token_id"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's `permute` (convert_hf_to_gguf.py), written out row by row.
    fn permute_rows(rows: &[Vec<f32>], heads: usize) -> Vec<Vec<f32>> {
        let hd = rows.len() / heads;
        let mut out = Vec::new();
        for h in 0..heads {
            for i in 0..hd / 2 {
                out.push(rows[h * hd + i].clone());
                out.push(rows[h * hd + hd / 2 + i].clone());
            }
        }
        out
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        let (heads, hd, cols) = (3, 4, 2);
        let rows: Vec<Vec<f32>> = (0..heads * hd)
            .map(|r| (0..cols).map(|c| (r * 10 + c) as f32).collect())
            .collect();
        let permuted = permute_rows(&rows, heads);
        let t = Tensor::from_vec(permuted.concat(), (heads * hd, cols), &Device::Cpu).unwrap();
        let back = unpermute(&t, heads).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(back, rows);
        assert!(unpermute(&t, 5).is_err());
        // The export's permute is the converter's.
        let plain = Tensor::from_vec(rows.concat(), (heads * hd, cols), &Device::Cpu).unwrap();
        assert_eq!(
            permute(&plain, heads).unwrap().to_vec2::<f32>().unwrap(),
            permuted
        );
        assert!(permute(&plain, 5).is_err());
    }
}

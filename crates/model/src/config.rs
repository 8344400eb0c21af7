//! The architecture of a model as plain data.

use crate::rope::RopeScaling;
use crate::{ModelError, Result};
use serde::{Deserialize, Serialize};

/// A Llama-style decoder: RMSNorm, RoPE, SwiGLU, optional grouped-query
/// attention, optionally tied input/output embeddings, and optionally
/// q/k/v biases (which make it Qwen2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    /// Key/value heads; `n_heads` means plain multi-head attention.
    pub n_kv_heads: usize,
    /// SwiGLU hidden width; [`swiglu_hidden`] gives the reference's default.
    pub ffn_hidden: usize,
    pub max_seq_len: usize,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// Rescaled RoPE frequencies (Llama 3.1's, linear, YaRN); none for plain
    /// RoPE (and absent from the configs of models without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeScaling>,
    #[serde(default = "default_rms_eps")]
    pub rms_eps: f64,
    /// Output head shares the embedding matrix (the reference's choice).
    #[serde(default = "default_true")]
    pub tie_embeddings: bool,
    /// Biases on the q/k/v projections (Qwen2); o_proj and the MLP have none.
    #[serde(default)]
    pub qkv_bias: bool,
    /// RMSNorm over each head of q and of k before RoPE (Qwen3), with
    /// weights `[head_dim]` shared by the heads.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub qk_norm: bool,
    /// The width of one head where it is not `d_model / n_heads` (Qwen3:
    /// 16 heads of 128 over a width of 1024); see [`LlamaConfig::head_dim`].
    #[serde(default, rename = "head_dim", skip_serializing_if = "Option::is_none")]
    pub explicit_head_dim: Option<usize>,
}

/// The head width a config keeps explicit: `stated` (config.json's
/// `head_dim`, a GGUF's `attention.key_length`) unless it is just
/// `d_model / n_heads`, which both formats also write for ordinary models.
pub fn unusual_head_dim(stated: Option<usize>, d_model: usize, n_heads: usize) -> Option<usize> {
    stated.filter(|&hd| n_heads == 0 || hd * n_heads != d_model)
}

fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_rms_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}

/// `8/3·d` rounded up to a multiple of 256, as in the reference.
pub fn swiglu_hidden(d_model: usize) -> usize {
    let h = (8 * d_model).div_ceil(3);
    h.div_ceil(256) * 256
}

impl LlamaConfig {
    /// A config with the reference's defaults for everything but the shape.
    pub fn new(vocab_size: usize, d_model: usize, n_layers: usize, n_heads: usize) -> Self {
        Self {
            vocab_size,
            d_model,
            n_layers,
            n_heads,
            n_kv_heads: n_heads,
            ffn_hidden: swiglu_hidden(d_model),
            max_seq_len: 2048,
            rope_theta: default_rope_theta(),
            rope_scaling: None,
            rms_eps: default_rms_eps(),
            tie_embeddings: true,
            qkv_bias: false,
            qk_norm: false,
            explicit_head_dim: None,
        }
    }

    /// One head's width: `d_model / n_heads` unless the config states it.
    pub fn head_dim(&self) -> usize {
        self.explicit_head_dim
            .unwrap_or(self.d_model / self.n_heads.max(1))
    }

    /// The width of q and of the attention output, `n_heads · head_dim`
    /// (`d_model` unless the head dim is stated otherwise).
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim()
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim()
    }

    /// Checks the shape is buildable; the message names the offending key.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::InvalidConfig(m));
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("ffn_hidden", self.ffn_hidden),
            ("max_seq_len", self.max_seq_len),
        ] {
            if v == 0 {
                return bad(format!("{name} must be > 0"));
            }
        }
        if self.explicit_head_dim == Some(0) {
            return bad("head_dim must be > 0".into());
        }
        if self.explicit_head_dim.is_none() && !self.d_model.is_multiple_of(self.n_heads) {
            return bad(format!(
                "d_model {} is not divisible by n_heads {}",
                self.d_model, self.n_heads
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return bad(format!(
                "head dim {} must be even for RoPE",
                self.head_dim()
            ));
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad(format!(
                "n_heads {} is not a multiple of n_kv_heads {}",
                self.n_heads, self.n_kv_heads
            ));
        }
        if !(self.rms_eps > 0.0 && self.rope_theta > 0.0) {
            return bad("rms_eps and rope_theta must be > 0".into());
        }
        if let Some(s) = &self.rope_scaling {
            s.validate(self.head_dim())?;
        }
        Ok(())
    }

    /// Parameters per block: attention projections, MLP, two norms.
    pub fn params_per_layer(&self) -> usize {
        let (d, q) = (self.d_model, self.q_dim());
        let mut attn = d * q * 2 + d * self.kv_dim() * 2;
        if self.qkv_bias {
            attn += q + 2 * self.kv_dim();
        }
        if self.qk_norm {
            attn += 2 * self.head_dim();
        }
        let mlp = 3 * d * self.ffn_hidden;
        attn + mlp + 2 * d
    }

    /// Total parameters, the tied embedding counted once.
    pub fn param_count(&self) -> usize {
        let emb = self.vocab_size * self.d_model;
        let head = if self.tie_embeddings { 0 } else { emb };
        emb + head + self.n_layers * self.params_per_layer() + self.d_model
    }

    /// Parameters outside the embedding (Kaplan's N).
    pub fn non_embedding_params(&self) -> usize {
        self.n_layers * self.params_per_layer() + self.d_model
    }
}

//! Exact FLOPs of a training step, as pure functions of the shape.
//!
//! Counting follows Chinchilla (Hoffmann et al. 2022, App. F) adapted to the
//! Llama block: a matrix product of `m×k` by `k×n` costs `2mkn`; the
//! attention's `T×T` terms are counted in full (no causal halving, like
//! Chinchilla); softmax costs 3 per score; norms, RoPE and the SwiGLU gate's
//! elementwise product are small and not counted, as in Chinchilla. The
//! backward pass costs twice the forward, so training is `3×` forward.

use crate::config::LlamaConfig;
use serde::Serialize;

/// Forward FLOPs of one sequence of `seq_len` tokens, by component.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ForwardFlops {
    /// One-hot embedding as a matrix product: `2·T·V·d`.
    pub embedding: f64,
    /// Q, K, V projections (GQA-aware) and the output projection.
    pub attention_projections: f64,
    /// `QKᵀ`, softmax and `softmax·V`: the sequence-length term.
    pub attention_scores: f64,
    /// Gate, up and down projections of SwiGLU.
    pub mlp: f64,
    /// Final projection onto the vocabulary: `2·T·d·V`.
    pub logits: f64,
}

impl ForwardFlops {
    pub fn total(&self) -> f64 {
        self.embedding + self.attention_projections + self.attention_scores + self.mlp + self.logits
    }
}

/// Forward FLOPs of one sequence.
pub fn forward_flops_per_sequence(c: &LlamaConfig, seq_len: usize) -> ForwardFlops {
    let t = seq_len as f64;
    let d = c.d_model as f64;
    let v = c.vocab_size as f64;
    let l = c.n_layers as f64;
    let kv = c.kv_dim() as f64;
    // q and the attention output are n_heads · head_dim wide (d but for Qwen3).
    let q = c.q_dim() as f64;
    let h = c.n_heads as f64;
    let f = c.ffn_hidden as f64;
    ForwardFlops {
        embedding: 2.0 * t * v * d,
        attention_projections: l * (2.0 * t * d * (q + 2.0 * kv) + 2.0 * t * q * d),
        attention_scores: l * (2.0 * t * t * q + 3.0 * h * t * t + 2.0 * t * t * q),
        mlp: l * (2.0 * t * d * f * 3.0),
        logits: 2.0 * t * d * v,
    }
}

/// Training FLOPs (forward + backward) per token at a given sequence length.
pub fn training_flops_per_token(c: &LlamaConfig, seq_len: usize) -> f64 {
    3.0 * forward_flops_per_sequence(c, seq_len).total() / seq_len as f64
}

/// Training FLOPs for `tokens` tokens.
pub fn training_flops(c: &LlamaConfig, seq_len: usize, tokens: f64) -> f64 {
    training_flops_per_token(c, seq_len) * tokens
}

/// The `6·N·D` approximation with N = all parameters (tied embedding once).
pub fn six_nd(c: &LlamaConfig, tokens: f64) -> f64 {
    6.0 * c.param_count() as f64 * tokens
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presets::{preset, PAPER_VOCAB};

    /// 124M preset at T = 512, counted by hand term by term.
    #[test]
    fn preset_124m_by_hand() {
        let c = preset("124m").unwrap().config(PAPER_VOCAB, 512);
        let (t, d, v, l, f) = (512.0, 768.0, 50304.0, 12.0, 2048.0);
        let emb = 2.0 * t * v * d;
        let proj = l * (2.0 * t * d * 3.0 * d + 2.0 * t * d * d);
        let scores = l * (4.0 * t * t * d + 3.0 * 12.0 * t * t);
        let mlp = l * 6.0 * t * d * f;
        let fwd = forward_flops_per_sequence(&c, 512);
        assert_eq!(fwd.embedding, emb);
        assert_eq!(fwd.embedding, 39_560_675_328.0);
        assert_eq!(fwd.attention_projections, proj);
        assert_eq!(fwd.attention_projections, 28_991_029_248.0);
        assert_eq!(fwd.attention_scores, scores);
        assert_eq!(fwd.attention_scores, 9_663_676_416.0 + 113_246_208.0);
        assert_eq!(fwd.mlp, mlp);
        assert_eq!(fwd.mlp, 57_982_058_496.0);
        assert_eq!(fwd.logits, emb);
        let per_token = 3.0 * (2.0 * emb + proj + scores + mlp) / t;
        assert_eq!(training_flops_per_token(&c, 512), per_token);
        // Within a few percent of 6N plus the embedding lookup counted as a matmul.
        let six_n = 6.0 * c.param_count() as f64;
        let ratio = per_token / six_n;
        assert!(ratio > 1.1 && ratio < 1.5, "{ratio}");
    }

    /// 33M preset at T = 512 and a GQA variant of it.
    #[test]
    fn preset_33m_by_hand_and_gqa() {
        let mut c = preset("33m").unwrap().config(PAPER_VOCAB, 512);
        let fwd = forward_flops_per_sequence(&c, 512);
        // 2·512·50304·384
        assert_eq!(fwd.embedding, 19_780_337_664.0);
        // 8·(2·512·384·1152 + 2·512·384·384)
        assert_eq!(fwd.attention_projections, 4_831_838_208.0);
        // 8·(4·512²·384 + 3·6·512²)
        assert_eq!(fwd.attention_scores, 3_258_974_208.0);
        // 8·6·512·384·1024
        assert_eq!(fwd.mlp, 9_663_676_416.0);
        c.n_kv_heads = 2; // head dim 64 -> kv dim 128
        let g = forward_flops_per_sequence(&c, 512);
        assert_eq!(
            g.attention_projections,
            8.0 * (2.0 * 512.0 * 384.0 * (384.0 + 256.0) + 2.0 * 512.0 * 384.0 * 384.0)
        );
        assert_eq!(
            training_flops(&c, 512, 2.0),
            2.0 * training_flops_per_token(&c, 512)
        );
        assert_eq!(six_nd(&c, 10.0), 60.0 * c.param_count() as f64);
    }
}

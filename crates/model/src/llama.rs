//! The Llama decoder. Every operation here has a backward in candle: RMSNorm,
//! softmax and RoPE are written as composite tensor ops, because candle's
//! fused `rms_norm`/`softmax_last_dim` kernels silently stop gradients.

use crate::config::LlamaConfig;
use crate::fused::{self, use_fused, RopeTables};
use crate::fused_attention;
use crate::fused_block;
use crate::fused_head;
use crate::fused_linear;
use crate::params::ParamStore;
use crate::precision::Precision;
use crate::rope;
use crate::tape;
use crate::Result;
use candle_core::{DType, Device, Tensor, D};

/// One transformer block's weights (Linear weights are `[out, in]`).
#[derive(Debug, Clone)]
struct Block {
    attn_norm: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    /// q/k/v biases (Qwen2), `[n_heads·hd]`, `[kv_dim]`, `[kv_dim]`.
    qkv_bias: Option<[Tensor; 3]>,
    /// Per-head RMSNorm weights of q and k `[hd]` (Qwen3).
    qk_norm: Option<[Tensor; 2]>,
    o: Tensor,
    mlp_norm: Tensor,
    gate: Tensor,
    up: Tensor,
    down: Tensor,
}

/// Keys and values of earlier positions, per layer, `[B, kv_heads, T, head_dim]`.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    pub layers: Vec<(Tensor, Tensor)>,
}

impl KvCache {
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .map(|(k, _)| k.dim(2).unwrap_or(0))
            .unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A Llama model bound to a set of parameter tensors.
#[derive(Debug, Clone)]
pub struct Llama {
    pub config: LlamaConfig,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    lm_head: Tensor,
    cos: Tensor,
    sin: Tensor,
    rope_tables: Option<RopeTables>,
    /// Use the fused kernels of [`crate::fused`] (f32; CPU, or CUDA when enabled).
    fused: bool,
    /// With `fused`, attention as one op ([`crate::fused_attention`]) instead
    /// of scores matmul + fused causal softmax + matmul.
    flash_attention: bool,
    /// The dtype of the matmuls and of the activations between ops (the
    /// residual stream, norms' statistics and the loss are f32).
    precision: Precision,
}

impl Llama {
    /// Builds the model over a parameter store; gradients flow to its vars.
    pub fn new(config: &LlamaConfig, params: &ParamStore) -> Result<Self> {
        // The RoPE tables below index by the config (e.g. its frequency factors).
        config.validate()?;
        let get = |n: &str| -> Result<Tensor> { Ok(params.get(n)?.as_tensor().clone()) };
        let mut blocks = Vec::with_capacity(config.n_layers);
        for i in 0..config.n_layers {
            let p = |s: &str| get(&format!("model.layers.{i}.{s}"));
            blocks.push(Block {
                attn_norm: p("input_layernorm.weight")?,
                q: p("self_attn.q_proj.weight")?,
                k: p("self_attn.k_proj.weight")?,
                v: p("self_attn.v_proj.weight")?,
                qkv_bias: if config.qkv_bias {
                    Some([
                        p("self_attn.q_proj.bias")?,
                        p("self_attn.k_proj.bias")?,
                        p("self_attn.v_proj.bias")?,
                    ])
                } else {
                    None
                },
                qk_norm: if config.qk_norm {
                    Some([p("self_attn.q_norm.weight")?, p("self_attn.k_norm.weight")?])
                } else {
                    None
                },
                o: p("self_attn.o_proj.weight")?,
                mlp_norm: p("post_attention_layernorm.weight")?,
                gate: p("mlp.gate_proj.weight")?,
                up: p("mlp.up_proj.weight")?,
                down: p("mlp.down_proj.weight")?,
            });
        }
        let embed = get("model.embed_tokens.weight")?;
        let lm_head = if config.tie_embeddings {
            embed.clone()
        } else {
            get("lm_head.weight")?
        };
        let (cos, sin) = rope_tables(config, params.device())?;
        let fused = fused::fused_on(params.device());
        let rope_tables = if fused {
            Some(RopeTables::new(&cos, &sin)?)
        } else {
            None
        };
        Ok(Self {
            config: config.clone(),
            embed,
            blocks,
            norm: get("model.norm.weight")?,
            lm_head,
            cos,
            sin,
            rope_tables,
            fused,
            flash_attention: fused_attention::enabled(),
            precision: Precision::F32,
        })
    }

    /// The same model with its weights cut off from the parameter variables,
    /// for inference: ops on variables are recorded for backward, so every
    /// activation (and everything a KV cache derives from) would otherwise
    /// stay alive as long as its outputs do.
    pub fn detached(&self) -> Self {
        let d = |t: &Tensor| t.detach();
        Self {
            embed: d(&self.embed),
            blocks: self
                .blocks
                .iter()
                .map(|b| Block {
                    attn_norm: d(&b.attn_norm),
                    q: d(&b.q),
                    k: d(&b.k),
                    v: d(&b.v),
                    qkv_bias: b.qkv_bias.as_ref().map(|bs| bs.each_ref().map(d)),
                    qk_norm: b.qk_norm.as_ref().map(|ns| ns.each_ref().map(d)),
                    o: d(&b.o),
                    mlp_norm: d(&b.mlp_norm),
                    gate: d(&b.gate),
                    up: d(&b.up),
                    down: d(&b.down),
                })
                .collect(),
            norm: d(&self.norm),
            lm_head: d(&self.lm_head),
            ..self.clone()
        }
    }

    /// Switches between the fused CPU kernels and plain candle ops (the
    /// reference the fused kernels are tested against).
    pub fn set_fused(&mut self, on: bool) -> Result<()> {
        if on && self.rope_tables.is_none() {
            self.rope_tables = Some(RopeTables::new(&self.cos, &self.sin)?);
        }
        self.fused = on && fused::fused_on(self.embed.device());
        Ok(())
    }

    /// Whether the fused kernels run ([`Llama::set_fused`]).
    pub fn is_fused(&self) -> bool {
        self.fused
    }

    /// Chooses, within the fused path, one-op attention (true) or scores
    /// matmul + causal softmax + matmul (false); the default is
    /// [`fused_attention::enabled`].
    pub fn set_flash_attention(&mut self, on: bool) {
        self.flash_attention = on;
    }

    /// Runs the matmuls, and stores the activations, in `precision` (see
    /// [`crate::precision`]).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Whether the fused kernels (and one-node projections) run on `x`.
    fn fused_for(&self, x: &Tensor) -> bool {
        self.fused && use_fused(x)
    }

    /// `x · wᵀ` in the activation dtype.
    fn linear(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        if self.fused_for(x) {
            return Ok(fused_linear::linear(x, w, self.precision)?);
        }
        linear_act(x, w, self.precision)
    }

    /// `x + a · wᵀ` in f32 for the f32 residual stream `x [B, T, d]`, where
    /// `a` is `[B, T, in]` or the attention output `[B, H, T, hd]`.
    fn residual(&self, x: &Tensor, a: &Tensor, w: &Tensor) -> Result<Tensor> {
        if self.fused_for(a) {
            return Ok(fused_linear::residual_linear(x, a, w, self.precision)?);
        }
        let a = match a.dims() {
            &[b, h, t, hd] => a.transpose(1, 2)?.reshape((b, t, h * hd))?,
            _ => a.clone(),
        };
        Ok((x + linear_act(&a, w, self.precision)?.to_dtype(DType::F32)?)?)
    }

    fn act_dtype(&self) -> DType {
        self.precision.activation_dtype()
    }

    /// RMSNorm of the f32 residual stream, output in the activation dtype.
    fn apply_norm(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        if self.fused_for(x) {
            Ok(fused::rms_norm_to(
                x,
                w,
                self.config.rms_eps,
                self.act_dtype(),
            )?)
        } else {
            Ok(rms_norm(x, w, self.config.rms_eps)?.to_dtype(self.act_dtype())?)
        }
    }

    fn rotate(&self, x: &Tensor, pos: usize) -> Result<Tensor> {
        match (&self.rope_tables, self.fused_for(x)) {
            (Some(t), true) => Ok(t.apply(x, pos)?),
            // The composite version multiplies by the f32 tables.
            _ => Ok(rope(&x.to_dtype(DType::F32)?, &self.cos, &self.sin, pos)?.to_dtype(x.dtype())?),
        }
    }

    /// Final hidden states `[B, T, d]` in f32 (after the last norm) for token
    /// ids `[B, T]` starting at position `cache.len()`; appends to `cache`
    /// when given.
    pub fn hidden(&self, ids: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
        Ok(self.hidden_act(ids, cache)?.to_dtype(DType::F32)?)
    }

    /// Logits `[B, T, V]` (f32) of `ids` computed in two calls through one
    /// fresh KV cache, the first `split` tokens and then the rest: how ProLong
    /// scores a segment after its context, so tests can check that it equals
    /// one pass.
    pub fn logits_in_two_calls(&self, ids: &Tensor, split: usize) -> Result<Tensor> {
        let t = ids.dim(1)?;
        let mut cache = KvCache::default();
        let a = self.hidden(&ids.narrow(1, 0, split)?, Some(&mut cache))?;
        let b = self.hidden(&ids.narrow(1, split, t - split)?, Some(&mut cache))?;
        linear(&Tensor::cat(&[a, b], 1)?, &self.lm_head)
    }

    /// [`Llama::hidden`] in the activation dtype.
    fn hidden_act(&self, ids: &Tensor, mut cache: Option<&mut KvCache>) -> Result<Tensor> {
        let (_, t) = ids.dims2()?;
        let pos = cache.as_ref().map(|c| c.len()).unwrap_or(0);
        let c = &self.config;
        if pos + t > c.max_seq_len {
            return Err(crate::ModelError::InvalidConfig(format!(
                "sequence of {} tokens exceeds max_seq_len {}",
                pos + t,
                c.max_seq_len
            )));
        }
        let mut x = tape::embedding(&self.embed, ids)?;
        let mask = if self.fused {
            None
        } else {
            Some(causal_mask(t, pos, x.device())?)
        };
        for (i, blk) in self.blocks.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| (c, i));
            let h = self.apply_norm(&x, &blk.attn_norm)?;
            // The residual stream stays f32.
            x = match self.attention(blk, &h, pos, mask.as_ref(), layer_cache)? {
                Attended::HeadsFirst(a) => self.residual(&x, &a, &blk.o)?,
                Attended::SeqMajor(a) => {
                    fused_linear::residual_linear_seq(&x, &a, &blk.o, self.precision)?
                }
            };
            let h = self.apply_norm(&x, &blk.mlp_norm)?;
            let act = if self.fused_for(&h) {
                fused_block::gated_up(&h, &blk.gate, &blk.up, self.precision)?
            } else {
                (self.linear(&h, &blk.gate)?.silu()? * self.linear(&h, &blk.up)?)?
            };
            x = self.residual(&x, &act, &blk.down)?;
        }
        self.apply_norm(&x, &self.norm)
    }

    /// Attention of the normed `x` before the output projection, in the
    /// heads layout `[B, H, T, hd]`, or in the projections' own order where
    /// it runs that way ([`Llama::attention_rows`]).
    fn attention(
        &self,
        blk: &Block,
        x: &Tensor,
        pos: usize,
        mask: Option<&Tensor>,
        cache: Option<(&mut KvCache, usize)>,
    ) -> Result<Attended> {
        let c = &self.config;
        let (b, t, _) = x.dims3()?;
        let hd = c.head_dim();
        if cache.is_none() && mask.is_none() {
            if let Some(rows) = self.attention_rows(blk, x, pos)? {
                return Ok(Attended::SeqMajor(rows));
            }
        }
        // Projection `k` (0 q, 1 k, 2 v) of x into `n` heads `[B, n, T, hd]`,
        // with its bias and (q and k of Qwen3) its per-head norm.
        let heads = |w: &Tensor, k: usize, n: usize| -> Result<Tensor> {
            let norm = blk.qk_norm.as_ref().and_then(|ns| ns.get(k));
            if blk.qkv_bias.is_none() && norm.is_none() && self.fused_for(x) {
                return Ok(fused_linear::linear_to_heads(x, w, n, self.precision)?);
            }
            let mut y = self.linear(x, w)?;
            if let Some(bias) = &blk.qkv_bias {
                y = y.broadcast_add(&bias[k].to_dtype(y.dtype())?)?;
            }
            let mut y = y.reshape((b, t, n, hd))?;
            if let Some(w) = norm {
                // In f32, as transformers' Qwen3RMSNorm computes it.
                let f = rms_norm(&y.to_dtype(DType::F32)?, w, c.rms_eps)?;
                y = f.to_dtype(self.act_dtype())?;
            }
            Ok(y.transpose(1, 2)?.contiguous()?)
        };
        // q and k with their rotation in the same node where it runs.
        let plain_qk = blk.qkv_bias.is_none() && blk.qk_norm.is_none();
        let rotated =
            |w: &Tensor, k: usize, n: usize| -> Result<Tensor> {
                match &self.rope_tables {
                    Some(tables) if plain_qk && self.fused_for(x) => Ok(
                        fused_block::rotated_heads(x, w, n, tables, pos, self.precision)?,
                    ),
                    _ => self.rotate(&heads(w, k, n)?, pos),
                }
            };
        let q = rotated(&blk.q, 0, c.n_heads)?;
        let mut k = rotated(&blk.k, 1, c.n_kv_heads)?;
        let mut v = heads(&blk.v, 2, c.n_kv_heads)?;
        if let Some((cache, i)) = cache {
            if let Some((pk, pv)) = cache.layers.get(i) {
                k = Tensor::cat(&[pk, &k], 2)?;
                v = Tensor::cat(&[pv, &v], 2)?;
                cache.layers[i] = (k.clone(), v.clone());
            } else {
                cache.layers.push((k.clone(), v.clone()));
            }
        }
        let rep = c.n_heads / c.n_kv_heads;
        let (k, v) = (repeat_kv(&k, rep)?, repeat_kv(&v, rep)?);
        let scale = 1.0 / (hd as f64).sqrt();
        // The one-op attention where its kernels cover the dtype and head
        // dim (bf16 on a GPU: tensor cores, hd a multiple of 16 up to 64);
        // otherwise the matmuls around the fused softmax.
        if mask.is_none() && self.flash_attention && use_fused(&q) && fused_attention::supports(&q)
        {
            return Ok(Attended::HeadsFirst(fused_attention::causal_attention(
                &q, &k, &v, scale,
            )?));
        }
        let scores = self.precision.matmul_act(&q, &k.t()?)?;
        let probs = match mask {
            // The composite softmax sums in its input's dtype: widen to f32.
            Some(mask) => candle_nn::ops::softmax(
                &(scores.to_dtype(DType::F32)? * scale)?.broadcast_add(mask)?,
                D::Minus1,
            )?
            .to_dtype(self.act_dtype())?,
            None => fused::causal_softmax(&scores, scale)?,
        };
        Ok(Attended::HeadsFirst(self.precision.matmul_act(&probs, &v)?))
    }

    /// Attention as `[B, T, H, hd]` where every step of it is a fused
    /// op without a cache or grouped-query repeats (the training step): q, k
    /// and v stay in their projections' order `[B, T, H, hd]`, which the
    /// attention op reads and writes in place, so no layout copy is made
    /// around it in either pass. `None` where it does not apply.
    fn attention_rows(&self, blk: &Block, x: &Tensor, pos: usize) -> Result<Option<Tensor>> {
        let c = &self.config;
        let (Some(tables), true) = (&self.rope_tables, self.attention_in_place(x)) else {
            return Ok(None);
        };
        let (h, p) = (c.n_heads, self.precision);
        let q = fused_block::rotated_seq_heads(x, &blk.q, h, tables, pos, p)?;
        let k = fused_block::rotated_seq_heads(x, &blk.k, h, tables, pos, p)?;
        let v = fused_linear::linear_to_seq_heads(x, &blk.v, h, p)?;
        let scale = 1.0 / (c.head_dim() as f64).sqrt();
        Ok(Some(fused_attention::causal_attention_seq(
            &q, &k, &v, scale,
        )?))
    }

    /// Whether attention on `x` (an activation, or a weight on its device)
    /// is all fused ops in the projections' own order
    /// ([`Llama::attention_rows`]): the fused kernels on its device, one-op
    /// attention for the activation dtype and head dim, RoPE tables, no q/k/v
    /// biases and no grouped-query repeats.
    fn attention_in_place(&self, x: &Tensor) -> bool {
        let c = &self.config;
        self.fused_for(x)
            && self.flash_attention
            && fused_attention::supports_on(x.device(), self.act_dtype(), c.head_dim())
            && self.rope_tables.is_some()
            && !c.qkv_bias
            && !c.qk_norm
            && c.n_kv_heads == c.n_heads
    }

    /// The output projection `[V, d]` (the embedding when tied).
    pub fn output_weight(&self) -> &Tensor {
        &self.lm_head
    }

    /// Logits `[B, T, V]`, f32.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let h = self.hidden_act(ids, None)?;
        linear_in(&h, &self.lm_head, self.precision)
    }

    /// Mean next-token cross-entropy for inputs and targets `[B, T]`.
    pub fn loss(&self, ids: &Tensor, targets: &Tensor) -> Result<Tensor> {
        let targets = targets.flatten_all()?;
        // Rows first, so that no reshape of the [N, V] logits enters the
        // graph; in bf16 the hidden states and logits stay bf16.
        let h = self.hidden_act(ids, None)?;
        let h = tape::reshape(&h, ((), self.config.d_model))?;
        if !self.fused_for(&h) {
            let logits = linear_in(&h, &self.lm_head, self.precision)?;
            return Ok(candle_nn::loss::cross_entropy(&logits, &targets)?);
        }
        // Head and loss as one node: no [N, V] logits or gradient in the graph.
        if self.precision == Precision::F32 && h.device().is_cpu() {
            return Ok(fused_head::linear_cross_entropy(
                &h,
                &self.lm_head,
                &targets,
            )?);
        }
        Ok(fused_head::head_loss(
            &h,
            &self.lm_head,
            &targets,
            self.precision,
        )?)
    }

    /// The mean loss ([`Llama::loss`]) and the gradients of `scale · loss`
    /// for every parameter on its path. Where the whole graph is frugal's
    /// fused ops (the fused path with one-op attention, no q/k/v biases, no
    /// grouped-query repeats) the backward runs on a [`tape`], without
    /// candle's zero-fill + add per node; the gradients are bit-identical to
    /// `loss.backward()`, which runs everywhere else (and with
    /// `FRUGAL_TAPE=0`).
    pub fn loss_and_grads(
        &self,
        ids: &Tensor,
        targets: &Tensor,
        scale: f64,
    ) -> Result<(Tensor, candle_core::backprop::GradStore)> {
        if !self.tape_covers() {
            let loss = self.loss(ids, targets)?;
            let grads = if scale == 1.0 {
                loss.backward()?
            } else {
                loss.affine(scale, 0.0)?.backward()?
            };
            return Ok((loss, grads));
        }
        let (loss, tape) = tape::record(|| {
            self.loss(ids, targets)
                .map_err(crate::ModelError::into_candle)
        })?;
        let grads = tape.backward(&loss, scale)?;
        Ok((loss, grads))
    }

    /// Whether every op of [`Llama::loss`] is one the tape records: those
    /// of a model whose attention runs in place.
    pub(crate) fn tape_covers(&self) -> bool {
        static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let off = *OFF.get_or_init(|| std::env::var("FRUGAL_TAPE").is_ok_and(|v| v == "0"));
        !off && self.embed.is_variable() && self.attention_in_place(&self.embed)
    }

    /// `log p(target | prefix)` for every position, `[B, T]`; the full
    /// log-softmax is formed per position but only the targets are kept.
    pub fn target_log_probs(
        &self,
        ids: &Tensor,
        targets: &Tensor,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let h = self.hidden_act(ids, cache)?;
        let logits = linear_in(&h, &self.lm_head, self.precision)?;
        let lsm = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        Ok(lsm
            .gather(&targets.reshape((b, t, 1))?, D::Minus1)?
            .reshape((b, t))?)
    }
}

/// `x · wᵀ` for `x` of any rank with the feature dimension last.
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    linear_in(x, w, Precision::F32)
}

/// [`linear`] with the matmul in `precision`, returning f32.
pub fn linear_in(x: &Tensor, w: &Tensor, precision: Precision) -> Result<Tensor> {
    Ok(linear_act(x, w, precision)?.to_dtype(DType::F32)?)
}

/// [`linear`] with the matmul in `precision` and the product in its
/// activation dtype; `x` is f32 or bf16, `w` an f32 weight.
pub fn linear_act(x: &Tensor, w: &Tensor, precision: Precision) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let (rows, inner) = (
        dims[..dims.len() - 1].iter().product::<usize>(),
        dims[dims.len() - 1],
    );
    let w = precision.weight(w)?;
    let y = precision.matmul_act(&x.reshape((rows, inner))?, &w.t()?)?;
    let mut out = dims;
    let last = out.len() - 1;
    out[last] = w.dim(0)?;
    Ok(y.reshape(out)?)
}

/// RMSNorm over the last dimension, as differentiable tensor ops.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    let x = x.broadcast_div(&(ms + eps)?.sqrt()?)?;
    Ok(x.broadcast_mul(w)?)
}

/// cos/sin tables `[max_seq_len, head_dim/2]` of [`rope::inv_freq`], computed
/// once. They are constants, never variables (candle-transformers' llama2_c
/// makes them trainable zeros, which zeroes q and k).
fn rope_tables(c: &LlamaConfig, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = c.head_dim() / 2;
    let inv_freq = rope::inv_freq(c.head_dim(), c.rope_theta, c.rope_scaling.as_ref());
    // YaRN scales cos and sin (transformers' attention_scaling), after the
    // angle's cos and sin in f32 as transformers does.
    let scale = c
        .rope_scaling
        .as_ref()
        .map_or(1.0, |s| s.attention_factor()) as f32;
    let mut cos = Vec::with_capacity(c.max_seq_len * half);
    let mut sin = Vec::with_capacity(c.max_seq_len * half);
    for p in 0..c.max_seq_len {
        for &inv in &inv_freq {
            // Hugging Face multiplies in f32; match it.
            let angle = p as f32 * inv;
            cos.push(angle.cos() * scale);
            sin.push(angle.sin() * scale);
        }
    }
    Ok((
        Tensor::from_vec(cos, (c.max_seq_len, half), device)?,
        Tensor::from_vec(sin, (c.max_seq_len, half), device)?,
    ))
}

/// Rotary embedding in Hugging Face's `rotate_half` layout on `[B, H, T, hd]`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, pos: usize) -> Result<Tensor> {
    let (_, _, t, hd) = x.dims4()?;
    let half = hd / 2;
    let cos = cos.narrow(0, pos, t)?;
    let sin = sin.narrow(0, pos, t)?;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let y1 = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
    let y2 = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
    Ok(Tensor::cat(&[y1, y2], D::Minus1)?)
}

/// Additive causal mask `[t, pos + t]` for queries at positions `pos..pos+t`.
fn causal_mask(t: usize, pos: usize, device: &Device) -> Result<Tensor> {
    let total = pos + t;
    let data: Vec<f32> = (0..t)
        .flat_map(|i| (0..total).map(move |j| if j <= pos + i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Ok(Tensor::from_vec(data, (t, total), device)?)
}

/// The attention output before the output projection.
enum Attended {
    /// `[B, H, T, hd]`.
    HeadsFirst(Tensor),
    /// `[B, T, H, hd]`, the projections' own order.
    SeqMajor(Tensor),
}

/// Repeats each key/value head `rep` times for grouped-query attention.
fn repeat_kv(x: &Tensor, rep: usize) -> Result<Tensor> {
    if rep == 1 {
        return Ok(x.clone());
    }
    let (b, h, t, d) = x.dims4()?;
    Ok(Tensor::cat(&vec![x; rep], 2)?.reshape((b, h * rep, t, d))?)
}

#[cfg(test)]
mod tests;

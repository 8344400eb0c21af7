//! Fused CPU kernels with hand-written backward passes.
//!
//! candle's composite ops allocate a tensor per elementwise step and keep
//! every intermediate for backward; these kernels do each layer-level
//! operation in one pass over contiguous f32 data and recompute what backward
//! needs. Each is a candle custom op whose `bwd` is itself a (no-backward)
//! custom op, so gradients flow exactly as through the composite version —
//! `llama::tests` checks both paths agree. Each also has a CUDA version
//! (`kernels/fused.cu`, launched from `fused_cuda.rs`), opt-in for now; other
//! devices and dtypes use the composite ops (see [`use_fused`]).
//!
//! Activations may be f32 or bf16 (the mixed-precision recipe stores them in
//! bf16 between ops): a kernel widens its inputs to f32, computes in f32 and
//! rounds its output once, on the CPU as on the GPU. The residual stream,
//! norm weights and their gradients and the loss stay f32.

use crate::fastexp;
use candle_core::backend::BackendStorage;
#[cfg(feature = "cuda")]
use candle_core::CudaStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor,
};
use half::bf16;
use rayon::prelude::*;
use std::borrow::Cow;
use std::sync::Arc;

/// Fused kernels apply to f32 and bf16 tensors on the CPU, and on a GPU
/// when [`cuda_fused_enabled`].
pub fn use_fused(t: &Tensor) -> bool {
    matches!(t.dtype(), DType::F32 | DType::BF16) && fused_on(t.device())
}

/// Whether the fused kernels run on `device`.
pub fn fused_on(device: &candle_core::Device) -> bool {
    device.is_cpu() || (device.is_cuda() && cuda_fused_enabled())
}

/// The CUDA kernels (`kernels/fused.cu`) are compiled into every `cuda`
/// build but used only with `FRUGAL_CUDA_FUSED=1` (or [`set_cuda_fused`]):
/// no GPU has run them yet, so plain candle ops stay the default until
/// `tests/cuda_fused.rs` has passed on a card.
/// The variable is read once per process: this is asked on every fused op.
pub fn cuda_fused_enabled() -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    if !cfg!(feature = "cuda") {
        return false;
    }
    match CUDA_FUSED.load(Relaxed) {
        CUDA_FUSED_ON => true,
        CUDA_FUSED_OFF => false,
        _ => {
            let on = std::env::var("FRUGAL_CUDA_FUSED").is_ok_and(|v| v == "1");
            let state = if on { CUDA_FUSED_ON } else { CUDA_FUSED_OFF };
            // A concurrent first call reads the same variable: either store wins.
            CUDA_FUSED.store(state, Relaxed);
            on
        }
    }
}

/// Turns the CUDA fused kernels on or off for the whole process, over
/// `FRUGAL_CUDA_FUSED`, and says whether they were on. For the device check
/// ([`crate::fused_check`]), which runs a fused training step on a card
/// whatever the variable says; models built before the call keep their path.
pub fn set_cuda_fused(on: bool) -> bool {
    let was = cuda_fused_enabled();
    let state = if on { CUDA_FUSED_ON } else { CUDA_FUSED_OFF };
    CUDA_FUSED.store(state, std::sync::atomic::Ordering::Relaxed);
    was
}

const CUDA_FUSED_ON: u8 = 1;
const CUDA_FUSED_OFF: u8 = 2;
/// Unset (0) until the first [`cuda_fused_enabled`] reads the variable.
static CUDA_FUSED: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// The contiguous f32 data of a custom op's input (an error otherwise).
pub fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what}: input must be contiguous"),
    }
}

/// The contiguous data of an activation input as f32: borrowed when it is
/// f32, widened (exactly) when it is bf16.
pub fn act<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<Cow<'a, [f32]>> {
    match s {
        CpuStorage::F32(_) => Ok(Cow::Borrowed(slice(s, l, what)?)),
        CpuStorage::BF16(v) => {
            let Some((a, b)) = l.contiguous_offsets() else {
                candle_core::bail!("{what}: input must be contiguous")
            };
            Ok(Cow::Owned(v[a..b].iter().map(|x| x.to_f32()).collect()))
        }
        other => candle_core::bail!("{what}: expected f32 or bf16, got {:?}", other.dtype()),
    }
}

/// A kernel's f32 results as storage of `dtype` (bf16 rounds to nearest even).
pub fn store(v: Vec<f32>, dtype: DType) -> Result<CpuStorage> {
    match dtype {
        DType::F32 => Ok(CpuStorage::F32(v)),
        DType::BF16 => Ok(CpuStorage::BF16(
            v.into_iter().map(bf16::from_f32).collect(),
        )),
        other => candle_core::bail!("fused kernels store f32 or bf16, not {other:?}"),
    }
}

/// Rows of `n` elements processed in parallel chunks of whole rows.
fn par_rows(out: &mut [f32], n: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let rows_per_chunk = (16_384 / n.max(1)).max(1);
    out.par_chunks_mut(rows_per_chunk * n)
        .enumerate()
        .for_each(|(c, chunk)| {
            for (r, row) in chunk.chunks_mut(n).enumerate() {
                f(c * rows_per_chunk + r, row);
            }
        });
}

// ---------------------------------------------------------------- RMSNorm

/// `x` and `w` are f32; the output is `out` (bf16 under mixed precision,
/// where it feeds bf16 matmuls).
#[derive(Clone)]
struct RmsNorm {
    eps: f32,
    out: DType,
}

fn inv_rms(x: &[f32], eps: f32) -> f32 {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    1.0 / (ms + eps).sqrt()
}

impl RmsNorm {
    /// dx (plus `sum`, when given) and dw.
    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        g: &Tensor,
        sum: Option<Tensor>,
    ) -> Result<[Tensor; 2]> {
        let g = g.contiguous()?;
        let bwd_x = RmsNormBwdX {
            eps: self.eps,
            sum: sum.map(|s| s.contiguous()).transpose()?,
        };
        let dx = x.apply_op3_no_bwd(w, &g, &bwd_x)?;
        let dw = x.apply_op2_no_bwd(
            &g,
            &RmsNormBwdW {
                eps: self.eps,
                d: w.elem_count(),
            },
        )?;
        Ok([dx, dw])
    }
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "frugal-rms-norm"
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        crate::fused_cuda::rms_norm(s1, l1, s2, l2, self.eps, self.out)
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (slice(s1, l1, "rms_norm")?, slice(s2, l2, "rms_norm")?);
        let d = w.len();
        let mut out = vec![0f32; x.len()];
        par_rows(&mut out, d, |r, y| {
            let xr = &x[r * d..(r + 1) * d];
            let inv = inv_rms(xr, self.eps);
            for j in 0..d {
                y[j] = xr[j] * inv * w[j];
            }
        });
        Ok((store(out, self.out)?, l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let [dx, dw] = self.grads(x, w, g, None)?;
        Ok((Some(dx), Some(dw)))
    }
}

impl crate::tape::BwdInto for RmsNorm {
    fn bwd_into(&self, x: &Tensor, w: &Tensor, g: &Tensor, sum: Tensor) -> Result<[Tensor; 2]> {
        self.grads(x, w, g, Some(sum))
    }
}

/// dx = r·(g∘w) − x·r³·mean(g∘w∘x), or `sum + dx`: the gradient x already
/// has from its other consumers, added in the same pass (a custom op takes
/// at most three tensors, so it rides along in the op).
struct RmsNormBwdX {
    eps: f32,
    sum: Option<Tensor>,
}

impl CustomOp3 for RmsNormBwdX {
    fn name(&self) -> &'static str {
        "frugal-rms-norm-bwd-x"
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        s3: &CudaStorage,
        l3: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let Some(sum) = &self.sum else {
            return crate::fused_cuda::rms_norm_bwd_x(s1, l1, s2, l2, s3, l3, None, self.eps);
        };
        let (st, l) = sum.storage_and_layout();
        let Storage::Cuda(st) = &*st else {
            candle_core::bail!("rms bwd: the gradient sum must be on the GPU");
        };
        crate::fused_cuda::rms_norm_bwd_x(s1, l1, s2, l2, s3, l3, Some((st, l)), self.eps)
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, g) = (
            slice(s1, l1, "rms bwd")?,
            slice(s2, l2, "rms bwd")?,
            act(s3, l3, "rms bwd")?,
        );
        let guard = self.sum.as_ref().map(|t| t.storage_and_layout());
        let sum = match &guard {
            Some((st, l)) => {
                let Storage::Cpu(st) = &**st else {
                    candle_core::bail!("rms bwd: the gradient sum must be on the CPU");
                };
                if l.shape() != l1.shape() {
                    candle_core::bail!("rms bwd: a sum of {:?} for x {:?}", l.shape(), l1.shape());
                }
                Some(slice(st, l, "rms bwd sum")?)
            }
            None => None,
        };
        let d = w.len();
        let mut out = vec![0f32; x.len()];
        par_rows(&mut out, d, |r, dx| {
            let (xr, gr) = (&x[r * d..(r + 1) * d], &g[r * d..(r + 1) * d]);
            let inv = inv_rms(xr, self.eps);
            let dot: f32 = (0..d).map(|j| gr[j] * w[j] * xr[j]).sum::<f32>() / d as f32;
            let c = inv * inv * inv * dot;
            for j in 0..d {
                dx[j] = inv * gr[j] * w[j] - xr[j] * c;
            }
            // The same f32 add as a separate `sum + dx` (so the same bits;
            // IEEE addition commutes).
            if let Some(sum) = sum {
                for (v, s) in dx.iter_mut().zip(&sum[r * d..(r + 1) * d]) {
                    *v += s;
                }
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// dw = Σ_rows g∘x·r
struct RmsNormBwdW {
    eps: f32,
    d: usize,
}

impl CustomOp2 for RmsNormBwdW {
    fn name(&self) -> &'static str {
        "frugal-rms-norm-bwd-w"
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        crate::fused_cuda::rms_norm_bwd_w(s1, l1, s2, l2, self.eps, self.d)
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, g) = (slice(s1, l1, "rms bwd")?, act(s2, l2, "rms bwd")?);
        let d = self.d;
        let rows = x.len() / d;
        let chunk = rows
            .div_ceil(rayon::current_num_threads().max(1) * 4)
            .max(1);
        let partial: Vec<Vec<f64>> = (0..rows.div_ceil(chunk))
            .into_par_iter()
            .map(|c| {
                let mut acc = vec![0f64; d];
                for r in c * chunk..((c + 1) * chunk).min(rows) {
                    let (xr, gr) = (&x[r * d..(r + 1) * d], &g[r * d..(r + 1) * d]);
                    let inv = inv_rms(xr, self.eps);
                    for j in 0..d {
                        acc[j] += (gr[j] * xr[j] * inv) as f64;
                    }
                }
                acc
            })
            .collect();
        // Summed in chunk order: deterministic for a given thread count.
        let mut dw = vec![0f64; d];
        for p in partial {
            for j in 0..d {
                dw[j] += p[j];
            }
        }
        let dw: Vec<f32> = dw.into_iter().map(|v| v as f32).collect();
        Ok((CpuStorage::F32(dw), Shape::from(d)))
    }
}

/// RMSNorm over the last dimension of f32 `x`.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    rms_norm_to(x, w, eps, DType::F32)
}

/// [`rms_norm`] with the output (and so its gradient) in `out`.
pub fn rms_norm_to(x: &Tensor, w: &Tensor, eps: f64, out: DType) -> Result<Tensor> {
    let op = RmsNorm {
        eps: eps as f32,
        out,
    };
    crate::tape::op2_into(&x.contiguous()?, &w.contiguous()?, op)
}

// ------------------------------------------------- causal softmax (attention)

/// softmax(scale·s + causal mask) over the last dim of `[.., T, S]` scores,
/// query `i` seeing keys `0..=S−T+i`.
struct CausalSoftmax {
    scale: f32,
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "frugal-causal-softmax"
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        crate::fused_cuda::causal_softmax(s, l, self.scale)
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = act(s, l, "causal_softmax")?;
        let dims = l.dims();
        let (t, n) = (dims[dims.len() - 2], dims[dims.len() - 1]);
        let offset = n - t;
        let mut out = vec![0f32; x.len()];
        par_rows(&mut out, n, |r, y| {
            let xr = &x[r * n..(r + 1) * n];
            let visible = offset + (r % t) + 1;
            let max = xr[..visible]
                .iter()
                .fold(f32::NEG_INFINITY, |m, &v| m.max(v))
                * self.scale;
            for j in 0..visible {
                y[j] = fastexp::exp(xr[j] * self.scale - max);
            }
            let inv = 1.0 / fastexp::sum(&y[..visible]);
            for v in &mut y[..visible] {
                *v *= inv;
            }
        });
        Ok((store(out, s.dtype())?, l.shape().clone()))
    }
    fn bwd(&self, _x: &Tensor, p: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(p.apply_op2_no_bwd(
            &g.contiguous()?,
            &SoftmaxBwd { scale: self.scale },
        )?))
    }
}

/// dx = scale·p∘(g − Σ p∘g)
struct SoftmaxBwd {
    scale: f32,
}

impl CustomOp2 for SoftmaxBwd {
    fn name(&self) -> &'static str {
        "frugal-softmax-bwd"
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        crate::fused_cuda::softmax_bwd(s1, l1, s2, l2, self.scale)
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (p, g) = (act(s1, l1, "softmax bwd")?, act(s2, l2, "softmax bwd")?);
        let n = *l1.dims().last().unwrap_or(&1);
        let mut out = vec![0f32; p.len()];
        par_rows(&mut out, n, |r, dx| {
            let (pr, gr) = (&p[r * n..(r + 1) * n], &g[r * n..(r + 1) * n]);
            let dot: f32 = pr.iter().zip(gr).map(|(a, b)| a * b).sum();
            for j in 0..n {
                dx[j] = self.scale * pr[j] * (gr[j] - dot);
            }
        });
        Ok((store(out, s1.dtype())?, l1.shape().clone()))
    }
}

/// Causal attention probabilities from unscaled scores `[.., T, S]`.
pub fn causal_softmax(scores: &Tensor, scale: f64) -> Result<Tensor> {
    scores.contiguous()?.apply_op1(CausalSoftmax {
        scale: scale as f32,
    })
}

// ------------------------------------------------------------------ SwiGLU

/// silu(a)·b
pub(crate) struct SwiGlu;

fn silu_parts(a: f32) -> (f32, f32) {
    let s = 1.0 / (1.0 + fastexp::exp(-a));
    (a * s, s)
}

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "frugal-swiglu"
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        crate::fused_cuda::swiglu(s1, l1, s2, l2)
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (a, b) = (act(s1, l1, "swiglu")?, act(s2, l2, "swiglu")?);
        let mut out = vec![0f32; a.len()];
        out.par_chunks_mut(4096).enumerate().for_each(|(c, o)| {
            let base = c * 4096;
            for (i, v) in o.iter_mut().enumerate() {
                *v = silu_parts(a[base + i]).0 * b[base + i];
            }
        });
        Ok((store(out, s1.dtype())?, l1.shape().clone()))
    }
    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (da, db) = swiglu_backward(a, b, g)?;
        Ok((Some(da), Some(db)))
    }
}

/// The gradients of `silu(a)·b` with respect to `a` and `b` from the
/// output's gradient `g`, in one pass (no graph).
pub(crate) fn swiglu_backward(a: &Tensor, b: &Tensor, g: &Tensor) -> Result<(Tensor, Tensor)> {
    let both = a.apply_op3_no_bwd(b, &g.contiguous()?, &SwiGluBwd)?;
    let shape = a.shape().clone();
    Ok((both.get(0)?.reshape(&shape)?, both.get(1)?.reshape(shape)?))
}

/// `[2, n]`: da = g·b·silu'(a), db = g·silu(a).
struct SwiGluBwd;

impl CustomOp3 for SwiGluBwd {
    fn name(&self) -> &'static str {
        "frugal-swiglu-bwd"
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        s3: &CudaStorage,
        l3: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        crate::fused_cuda::swiglu_bwd(s1, l1, s2, l2, s3, l3)
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (a, b, g) = (
            act(s1, l1, "swiglu bwd")?,
            act(s2, l2, "swiglu bwd")?,
            act(s3, l3, "swiglu bwd")?,
        );
        let n = a.len();
        let mut out = vec![0f32; 2 * n];
        let (da, db) = out.split_at_mut(n);
        da.par_chunks_mut(4096)
            .zip(db.par_chunks_mut(4096))
            .enumerate()
            .for_each(|(c, (da, db))| {
                let base = c * 4096;
                for i in 0..da.len() {
                    let (x, gi, bi) = (a[base + i], g[base + i], b[base + i]);
                    let (silu, s) = silu_parts(x);
                    da[i] = gi * bi * s * (1.0 + x * (1.0 - s));
                    db[i] = gi * silu;
                }
            });
        Ok((store(out, s1.dtype())?, Shape::from((2, n))))
    }
}

pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu)
}

// -------------------------------------------------------------------- RoPE

/// Rotary embedding (`rotate_half` layout) on `[B, H, T, hd]` (or, when
/// `seq_major`, `[B, T, H, hd]`) at positions `pos..pos+T`; backward is the
/// same rotation by the negated angle.
#[derive(Clone)]
pub(crate) struct Rope {
    tables: RopeTables,
    pos: usize,
    sign: f32,
    seq_major: bool,
}

impl Rope {
    /// Positions, consecutive rows per position, and the head dim of `l`.
    fn rows(&self, l: &Layout) -> Result<(usize, usize, usize)> {
        let &[_, a1, a2, hd] = l.dims() else {
            candle_core::bail!("rope: {:?} is not [B, H, T, hd] or [B, T, H, hd]", l.dims());
        };
        if hd != 2 * self.tables.half {
            candle_core::bail!(
                "rope: head dim {hd} against tables of {}",
                2 * self.tables.half
            );
        }
        Ok(match self.seq_major {
            false => (a2, 1, hd),
            true => (a1, a2, hd),
        })
    }
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "frugal-rope"
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let Some((cos, sin)) = &self.tables.device else {
            candle_core::bail!("rope: the tables were built on the CPU, the input is on a GPU");
        };
        let rows = self.rows(l)?;
        crate::fused_cuda::rope(s, l, rows, cos, sin, self.tables.half, self.pos, self.sign)
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = act(s, l, "rope")?;
        let (t, per_pos, hd) = self.rows(l)?;
        let half = self.tables.half;
        let (cos, sin) = (&self.tables.cos, &self.tables.sin);
        if cos.is_empty() {
            candle_core::bail!("rope: the tables were built on a GPU, the input is on the CPU");
        }
        let mut out = vec![0f32; x.len()];
        par_rows(&mut out, hd, |r, y| {
            let p = self.pos + (r / per_pos) % t;
            let (c, sn) = (
                &cos[p * half..(p + 1) * half],
                &sin[p * half..(p + 1) * half],
            );
            let xr = &x[r * hd..(r + 1) * hd];
            for i in 0..half {
                let (x1, x2, s) = (xr[i], xr[i + half], self.sign * sn[i]);
                y[i] = x1 * c[i] - x2 * s;
                y[i + half] = x2 * c[i] + x1 * s;
            }
        });
        Ok((store(out, s.dtype())?, l.shape().clone()))
    }
    fn bwd(&self, _x: &Tensor, _res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(g.contiguous()?.apply_op1(self.inverse())?))
    }
}

impl Rope {
    /// The rotation by the negated angle: the backward.
    pub(crate) fn inverse(&self) -> Self {
        Self {
            sign: -self.sign,
            ..self.clone()
        }
    }
}

/// Rotary tables `[positions, half]` where the fused kernel reads them: as
/// shared host vectors for the CPU kernel, or (with the `cuda` feature) as
/// the device tensors themselves, so a GPU step copies nothing from the host.
#[derive(Debug, Clone)]
pub struct RopeTables {
    /// Host tables; empty when the tables live on a GPU.
    cos: Arc<Vec<f32>>,
    sin: Arc<Vec<f32>>,
    #[cfg(feature = "cuda")]
    device: Option<(Tensor, Tensor)>,
    half: usize,
    positions: usize,
}

impl RopeTables {
    pub fn new(cos: &Tensor, sin: &Tensor) -> Result<Self> {
        let (positions, half) = cos.dims2()?;
        #[cfg(feature = "cuda")]
        if cos.device().is_cuda() {
            return Ok(Self {
                cos: Arc::default(),
                sin: Arc::default(),
                device: Some((cos.contiguous()?, sin.contiguous()?)),
                half,
                positions,
            });
        }
        Ok(Self {
            cos: Arc::new(cos.flatten_all()?.to_vec1()?),
            sin: Arc::new(sin.flatten_all()?.to_vec1()?),
            #[cfg(feature = "cuda")]
            device: None,
            half,
            positions,
        })
    }

    /// `x [B, H, T, hd]` rotated for positions `pos..pos+T`.
    pub fn apply(&self, x: &Tensor, pos: usize) -> Result<Tensor> {
        x.contiguous()?
            .apply_op1(self.rotation(pos, x.dim(2)?, false)?)
    }

    /// [`RopeTables::apply`] on `x [B, T, H, hd]`.
    pub fn apply_seq(&self, x: &Tensor, pos: usize) -> Result<Tensor> {
        x.contiguous()?
            .apply_op1(self.rotation(pos, x.dim(1)?, true)?)
    }

    /// The op rotating `t` positions from `pos` (an error past the table)
    /// of `[B, H, T, hd]` or (`seq_major`) `[B, T, H, hd]`.
    pub(crate) fn rotation(&self, pos: usize, t: usize, seq_major: bool) -> Result<Rope> {
        if pos + t > self.positions {
            candle_core::bail!("rope: positions {pos}..{} exceed the table", pos + t);
        }
        Ok(Rope {
            tables: self.clone(),
            pos,
            sign: 1.0,
            seq_major,
        })
    }
}

// ----------------------------------------------------------- cross-entropy

/// Per-row `−log softmax(logits)[target]` for logits `[N, V]`, targets `[N]`.
struct CrossEntropy;

fn row_max(row: &[f32]) -> f32 {
    row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

pub(crate) fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row_max(row);
    // In stack-sized pieces, so that the exps vectorise (fastexp).
    let mut buf = [0f32; 256];
    let sum: f32 = row
        .chunks(buf.len())
        .map(|c| fastexp::exp_shifted(c, max, &mut buf))
        .sum();
    max + sum.ln()
}

/// `out = scale·softmax(row)` in one exp pass; returns `log Σ exp(row)`.
pub(crate) fn scaled_softmax_into(row: &[f32], scale: f32, out: &mut [f32]) -> f32 {
    let max = row_max(row);
    let sum = fastexp::exp_shifted(row, max, out);
    let k = scale / sum;
    for o in out.iter_mut() {
        *o *= k;
    }
    max + sum.ln()
}

/// Every target must index the vocabulary of `v` entries.
pub(crate) fn check_targets(y: &[usize], v: usize) -> Result<()> {
    match y.iter().find(|&&t| t >= v) {
        Some(bad) => {
            candle_core::bail!("cross_entropy: target {bad} out of range for vocabulary {v}")
        }
        None => Ok(()),
    }
}

pub(crate) fn targets(s: &CpuStorage, l: &Layout) -> Result<Vec<usize>> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("targets must be contiguous".into()))?;
    Ok(match s {
        CpuStorage::U32(v) => v[a..b].iter().map(|&x| x as usize).collect(),
        CpuStorage::I64(v) => v[a..b].iter().map(|&x| x as usize).collect(),
        _ => candle_core::bail!("cross_entropy: targets must be u32 or i64"),
    })
}

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "frugal-cross-entropy"
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        crate::fused_cuda::cross_entropy(s1, l1, s2, l2)
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = act(s1, l1, "cross_entropy")?;
        let y = targets(s2, l2)?;
        let v = l1.dims()[1];
        check_targets(&y, v)?;
        let out: Vec<f32> = (0..y.len())
            .into_par_iter()
            .map(|r| {
                let row = &x[r * v..(r + 1) * v];
                log_sum_exp(row) - row[y[r]]
            })
            .collect();
        Ok((CpuStorage::F32(out), Shape::from(y.len())))
    }
    fn bwd(
        &self,
        x: &Tensor,
        y: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((
            Some(x.apply_op3_no_bwd(y, &g.contiguous()?, &CrossEntropyBwd)?),
            None,
        ))
    }
}

/// d logits = g_row · (softmax − onehot)
struct CrossEntropyBwd;

impl CustomOp3 for CrossEntropyBwd {
    fn name(&self) -> &'static str {
        "frugal-cross-entropy-bwd"
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        s3: &CudaStorage,
        l3: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        crate::fused_cuda::cross_entropy_bwd(s1, l1, s2, l2, s3, l3)
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = act(s1, l1, "cross_entropy bwd")?;
        let y = targets(s2, l2)?;
        let g = slice(s3, l3, "cross_entropy bwd")?;
        let v = l1.dims()[1];
        let mut out = vec![0f32; x.len()];
        par_rows(&mut out, v, |r, dx| {
            scaled_softmax_into(&x[r * v..(r + 1) * v], g[r], dx);
            dx[y[r]] -= g[r];
        });
        Ok((store(out, s1.dtype())?, l1.shape().clone()))
    }
}

/// Per-row cross-entropy `[N]` and its gradient `scale·(softmax − onehot)`
/// `[N, V]` (in the logits' dtype), with nothing recorded for backward.
pub(crate) fn cross_entropy_and_grad(
    logits: &Tensor,
    targets: &Tensor,
    scale: f64,
) -> Result<(Tensor, Tensor)> {
    let (logits, targets) = (logits.detach().contiguous()?, targets.contiguous()?);
    let rows = logits.apply_op2_no_bwd(&targets, &CrossEntropy)?;
    let g = Tensor::full(scale as f32, rows.shape(), rows.device())?;
    let grad = logits.apply_op3_no_bwd(&targets, &g, &CrossEntropyBwd)?;
    Ok((rows, grad))
}

/// Mean cross-entropy of logits `[N, V]` against targets `[N]`.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    logits
        .contiguous()?
        .apply_op2(&targets.contiguous()?, CrossEntropy)?
        .mean_all()
}

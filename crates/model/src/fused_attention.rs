//! Causal attention as one op that never stores the `[T, S]` probabilities
//! (the recomputation scheme of FlashAttention, Dao et al. 2022).
//!
//! Forward keeps only the output `y = softmax(scale·q·kᵀ + mask)·v`. Backward
//! recomputes the probabilities from q and k and uses `D_i = dy_i·y_i` in
//! place of `Σ_j p_ij·dp_ij`. On the CPU both passes work on blocks of 64
//! queries, whose products with the keys are GEMMs (`small_gemm`, the
//! kernels of candle's own matmul), so neither holds more than a block of
//! scores per head at a time. Inputs are `q [B, H, T, hd]`, `k, v [B, H,
//! S, hd]` (S ≥ T, the keys of a cached prefix first): query `i` sees keys
//! `0..=S−T+i`, as in [`crate::fused::causal_softmax`]. Grouped-query
//! attention repeats the key/value heads before calling it.
//!
//! [`causal_attention_seq`] is the same op on the sequence-major order
//! `[B, T, H, hd]` in which a projection writes its output, and in which the
//! output projection reads its input: the training step calls it, so that
//! nothing is copied into or out of the heads-first order around attention
//! (forward or backward). The kernels read and write either order in place
//! (a head's rows are `H·hd` apart; on the CPU through strided GEMM views),
//! and both orders give the same numbers, bit for bit. The CPU op permutes
//! only when a batch has fewer sequences than there are threads (see
//! `Dims::in_place`).
//!
//! Tensors are f32, or all bf16 under mixed precision: then the op widens
//! its inputs, computes in f32 and rounds its outputs (y; dq, dk, dv) once.
//!
//! The CPU version is the reference for the CUDA ones, which `fused_check`
//! compares against it on a card: `kernels/attention.cu` (f32, SIMT) and
//! `kernels/attention_tc.cu` (bf16, tensor cores; head dims that are a
//! multiple of 16, up to 64: see [`supports`]).

use candle_core::backend::BackendStorage;
#[cfg(feature = "cuda")]
use candle_core::CudaStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;

use crate::fastexp;
use crate::fused::{act, store};
use crate::small_gemm::{self, Mat};

/// The one dtype (f32, or bf16 under mixed precision) of the op's tensors.
fn same_dtype(storages: &[&CpuStorage]) -> Result<DType> {
    let dtype = storages[0].dtype();
    if storages.iter().any(|s| s.dtype() != dtype) {
        candle_core::bail!("flash attention: q, k, v (y, dy) of mixed dtypes");
    }
    Ok(dtype)
}

/// The shapes of one call, checked once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dims {
    /// Batch × heads.
    pub bh: usize,
    /// Queries and keys per head.
    pub t: usize,
    pub s: usize,
    pub hd: usize,
    /// Heads per group whose rows interleave: 1 for `[B, H, T, hd]`, H for
    /// `[B, T, H, hd]` (a head's rows are `nh·hd` apart).
    pub nh: usize,
}

impl Dims {
    /// The dims of q, k and v in the heads-first order, or (`seq_major`)
    /// in `[B, T, H, hd]`.
    pub(crate) fn of(q: &Layout, k: &Layout, v: &Layout, seq_major: bool) -> Result<Self> {
        let (qd, kd) = (q.dims(), k.dims());
        let (want_q, want_k) = match seq_major {
            false => ("[B, H, T, hd]", "[B, H, S, hd]"),
            true => ("[B, T, H, hd]", "[B, S, H, hd]"),
        };
        if qd.len() != 4 || kd.len() != 4 || kd != v.dims() {
            candle_core::bail!(
                "flash attention: q {qd:?}, k {kd:?}, v {:?} must be {want_q} and {want_k}",
                v.dims()
            );
        }
        // (heads, rows) axes.
        let (ha, ra) = if seq_major { (2, 1) } else { (1, 2) };
        if qd[0] != kd[0] || qd[ha] != kd[ha] || qd[3] != kd[3] || kd[ra] < qd[ra] {
            candle_core::bail!("flash attention: q {qd:?} does not fit k/v {kd:?}");
        }
        Ok(Self {
            bh: qd[0] * qd[ha],
            t: qd[ra],
            s: kd[ra],
            hd: qd[3],
            nh: if seq_major { qd[ha] } else { 1 },
        })
    }

    /// Elements between a head's consecutive rows.
    fn row_stride(&self) -> usize {
        self.nh * self.hd
    }

    /// Whether the CPU op reads and writes this call's order in place. Its
    /// tasks are groups of interleaved heads (one batch when sequence-major),
    /// as a task cannot own every `nh`-th row of a slice; with fewer groups
    /// than threads it permutes into the heads-first order instead, where
    /// each head is a task, so that a batch of one still uses every thread.
    fn in_place(&self) -> bool {
        self.nh == 1 || self.bh / self.nh >= rayon::current_num_threads()
    }

    /// These dims in the heads-first order.
    fn heads_first_dims(&self) -> Self {
        Self { nh: 1, ..*self }
    }

    /// `x` (`n` rows per head, sequence-major) in the heads-first order.
    fn heads_first(&self, x: &[f32], n: usize) -> Vec<f32> {
        swap_middle(x, self.bh / self.nh, n, self.nh, self.hd)
    }

    /// The inverse of [`Dims::heads_first`].
    fn heads_back(&self, x: &[f32], n: usize) -> Vec<f32> {
        swap_middle(x, self.bh / self.nh, self.nh, n, self.hd)
    }

    /// Keys visible to query `i`.
    fn visible(&self, i: usize) -> usize {
        self.s - self.t + i + 1
    }
}

/// `x [b, a1, a2, hd]` as `[b, a2, a1, hd]`.
fn swap_middle(x: &[f32], b: usize, a1: usize, a2: usize, hd: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(a1 * a2 * hd)
        .zip(x.par_chunks(a1 * a2 * hd))
        .take(b)
        .for_each(|(o, x)| {
            for (i, row) in x.chunks_exact(hd).enumerate() {
                let (r1, r2) = (i / a2, i % a2);
                o[(r2 * a1 + r1) * hd..][..hd].copy_from_slice(row);
            }
        });
    out
}

/// Dot product with eight independent accumulators, so that it vectorises
/// (a single running f32 sum cannot be reordered by the compiler).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Queries per block: the forward and backward multiply a block of queries
/// against the keys it sees as GEMMs, so a block of scores (`BLOCK × S`)
/// is the most either holds, never `[T, S]`.
const BLOCK: usize = 64;

/// The queries `i0..i0+m` and the keys the last of them sees (`nk`).
struct QueryBlock {
    i0: usize,
    m: usize,
    nk: usize,
}

impl QueryBlock {
    /// A buffer for one block's scores (or their gradients), `[BLOCK, S]`.
    fn scores(d: &Dims) -> Vec<f32> {
        vec![0f32; BLOCK.min(d.t) * d.s]
    }

    fn all(d: &Dims) -> impl Iterator<Item = Self> + '_ {
        (0..d.t).step_by(BLOCK).map(|i0| {
            let m = BLOCK.min(d.t - i0);
            Self {
                i0,
                m,
                nk: d.visible(i0 + m - 1),
            }
        })
    }
}

/// The probabilities of a block of queries over the keys they see, into
/// `p [m, nk]` (row-major): `scale·q·kᵀ` as one GEMM, then each row's
/// softmax over its visible keys; the keys a row may not see get 0.
fn block_probs(d: &Dims, b: &QueryBlock, q: HeadRows, k: HeadRows, scale: f32, p: &mut [f32]) {
    small_gemm::gemm(p, q.mat(b.i0, b.m), k.mat(0, b.nk).t(), scale, false);
    for (r, row) in p[..b.m * b.nk].chunks_exact_mut(b.nk).enumerate() {
        let (seen, masked) = row.split_at_mut(d.visible(b.i0 + r));
        let max = seen.iter().fold(f32::NEG_INFINITY, |a, &x| a.max(x));
        for x in seen.iter_mut() {
            *x = fastexp::exp(*x - max);
        }
        let inv = 1.0 / fastexp::sum(seen);
        for x in seen.iter_mut() {
            *x *= inv;
        }
        masked.fill(0.0);
    }
}

/// One head's rows inside a call's buffer: row `r` at `data[r·stride..]`
/// (`stride = nh·hd`, so heads of one group interleave).
#[derive(Clone, Copy)]
struct HeadRows<'a> {
    data: &'a [f32],
    stride: usize,
    hd: usize,
}

impl<'a> HeadRows<'a> {
    /// Head `h` of group `g` of `x`, which holds `n` rows per head.
    fn of(d: &Dims, x: &'a [f32], n: usize, g: usize, h: usize) -> Self {
        let stride = d.row_stride();
        Self {
            data: &x[g * n * stride + h * d.hd..],
            stride,
            hd: d.hd,
        }
    }

    /// Rows `r0..r0+m` as a matrix.
    fn mat(self, r0: usize, m: usize) -> Mat<'a> {
        Mat::strided(&self.data[r0 * self.stride..], m, self.hd, self.stride)
    }

    fn row(self, r: usize) -> &'a [f32] {
        &self.data[r * self.stride..][..self.hd]
    }
}

/// The forward for dims `d` on q, k, v in `d`'s order: `y` in that order.
/// One task per group of `nh` interleaved heads, which writes its heads'
/// rows of `y` in place.
fn forward(d: &Dims, q: &[f32], k: &[f32], v: &[f32], scale: f32) -> Vec<f32> {
    let (hd, ld) = (d.hd, d.row_stride());
    let mut out = vec![0f32; q.len()];
    out.par_chunks_mut(d.t * ld).enumerate().for_each(|(g, y)| {
        let mut p = QueryBlock::scores(d);
        for h in 0..d.nh {
            let q = HeadRows::of(d, q, d.t, g, h);
            let (k, v) = (HeadRows::of(d, k, d.s, g, h), HeadRows::of(d, v, d.s, g, h));
            for b in QueryBlock::all(d) {
                block_probs(d, &b, q, k, scale, &mut p);
                let pb = Mat::rows(&p, b.m, b.nk);
                let y = &mut y[b.i0 * ld + h * hd..];
                small_gemm::gemm_strided(y, ld, pb, v.mat(0, b.nk), 1.0, false);
            }
        }
    });
    out
}

struct FlashAttention {
    scale: f32,
    /// q, k, v and y are `[B, T, H, hd]` (else `[B, H, T, hd]`).
    seq_major: bool,
}

impl CustomOp3 for FlashAttention {
    fn name(&self) -> &'static str {
        "frugal-flash-attention"
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        sq: &CudaStorage,
        lq: &Layout,
        sk: &CudaStorage,
        lk: &Layout,
        sv: &CudaStorage,
        lv: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let d = Dims::of(lq, lk, lv, self.seq_major)?;
        crate::fused_cuda::flash_attention(&d, sq, lq, sk, lk, sv, lv, self.scale)
    }
    fn cpu_fwd(
        &self,
        sq: &CpuStorage,
        lq: &Layout,
        sk: &CpuStorage,
        lk: &Layout,
        sv: &CpuStorage,
        lv: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = Dims::of(lq, lk, lv, self.seq_major)?;
        let dtype = same_dtype(&[sq, sk, sv])?;
        let (q, k, v) = (
            act(sq, lq, "flash attention q")?,
            act(sk, lk, "flash attention k")?,
            act(sv, lv, "flash attention v")?,
        );
        let y = if d.in_place() {
            forward(&d, &q, &k, &v, self.scale)
        } else {
            let (q, k, v) = (
                d.heads_first(&q, d.t),
                d.heads_first(&k, d.s),
                d.heads_first(&v, d.s),
            );
            let y = forward(&d.heads_first_dims(), &q, &k, &v, self.scale);
            d.heads_back(&y, d.t)
        };
        Ok((store(y, dtype)?, lq.shape().clone()))
    }
    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let bwd = FlashAttentionBwd {
            scale: self.scale,
            seq_major: self.seq_major,
            y: y.contiguous()?,
            dy: dy.contiguous()?,
        };
        // One output holding dq, dk and dv one after the other (see the
        // op): each is a contiguous slice, so splitting them copies nothing.
        let packed = q.apply_op3_no_bwd(k, v, &bwd)?;
        let (nq, nk) = (q.elem_count() / q.dim(3)?, k.elem_count() / k.dim(3)?);
        let dq = packed.narrow(0, 0, nq)?.reshape(q.shape())?;
        let dk = packed.narrow(0, nq, nk)?.reshape(k.shape())?;
        let dv = packed.narrow(0, nq + nk, nk)?.reshape(v.shape())?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

/// The gradients of [`FlashAttention`] with respect to q, k and v, as one
/// `[B·H·T + 2·B·H·S, hd]` tensor: dq, then dk, then dv, each in its
/// input's order (a custom op has one output; as three contiguous parts they
/// split without a copy, and each head still writes its own rows of each, in
/// parallel).
/// The output `y` and its gradient `dy` ride along in the op, since a custom
/// op takes at most three tensor arguments.
struct FlashAttentionBwd {
    scale: f32,
    seq_major: bool,
    y: Tensor,
    dy: Tensor,
}

impl FlashAttentionBwd {
    /// The storages of `y` and `dy` (read-locked while `f` runs).
    fn with_y_dy<R>(&self, f: impl FnOnce(&Storage, &Layout, &Storage, &Layout) -> R) -> R {
        let (sy, ly) = self.y.storage_and_layout();
        let (sg, lg) = self.dy.storage_and_layout();
        f(&sy, ly, &sg, lg)
    }
}

impl CustomOp3 for FlashAttentionBwd {
    fn name(&self) -> &'static str {
        "frugal-flash-attention-bwd"
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        sq: &CudaStorage,
        lq: &Layout,
        sk: &CudaStorage,
        lk: &Layout,
        sv: &CudaStorage,
        lv: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.with_y_dy(|sy, ly, sg, lg| match (sy, sg) {
            (Storage::Cuda(sy), Storage::Cuda(sg)) => crate::fused_cuda::flash_attention_bwd(
                &Dims::of(lq, lk, lv, self.seq_major)?,
                [(sq, lq), (sk, lk), (sv, lv), (sy, ly), (sg, lg)],
                self.scale,
            ),
            _ => candle_core::bail!("flash attention bwd: y and dy must be on the GPU"),
        })
    }
    fn cpu_fwd(
        &self,
        sq: &CpuStorage,
        lq: &Layout,
        sk: &CpuStorage,
        lk: &Layout,
        sv: &CpuStorage,
        lv: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = Dims::of(lq, lk, lv, self.seq_major)?;
        let (q, k, v) = (
            act(sq, lq, "flash attention bwd q")?,
            act(sk, lk, "flash attention bwd k")?,
            act(sv, lv, "flash attention bwd v")?,
        );
        self.with_y_dy(|sy, ly, sg, lg| {
            let (Storage::Cpu(sy), Storage::Cpu(sg)) = (sy, sg) else {
                candle_core::bail!("flash attention bwd: y and dy must be on the CPU");
            };
            let dtype = same_dtype(&[sq, sk, sv, sy, sg])?;
            let (y, dy) = (
                act(sy, ly, "flash attention bwd y")?,
                act(sg, lg, "flash attention bwd dy")?,
            );
            if y.len() != q.len() || dy.len() != q.len() {
                candle_core::bail!("flash attention bwd: y and dy must have q's shape");
            }
            let shape = Shape::from((d.bh * (d.t + 2 * d.s), d.hd));
            if d.in_place() {
                let grads = self.cpu(&d, [&q, &k, &v, &y, &dy]);
                return Ok((store(grads, dtype)?, shape));
            }
            let [q, y, dy] = [&q, &y, &dy].map(|x| d.heads_first(x, d.t));
            let [k, v] = [&k, &v].map(|x| d.heads_first(x, d.s));
            let grads = self.cpu(&d.heads_first_dims(), [&q, &k, &v, &y, &dy]);
            // Each part back into its input's order.
            let (nq, nk) = (d.bh * d.t * d.hd, d.bh * d.s * d.hd);
            let parts = [(0, nq, d.t), (nq, nk, d.s), (nq + nk, nk, d.s)];
            let grads: Vec<f32> = parts
                .into_iter()
                .flat_map(|(at, len, n)| d.heads_back(&grads[at..at + len], n))
                .collect();
            Ok((store(grads, dtype)?, shape))
        })
    }
}

impl FlashAttentionBwd {
    /// dq, dk and dv for dims `d`, on inputs in `d`'s order and each
    /// written in it: one task per group of `nh` interleaved heads.
    fn cpu(&self, d: &Dims, [q, k, v, y, dy]: [&[f32]; 5]) -> Vec<f32> {
        let (hd, ld) = (d.hd, d.row_stride());
        let (qn, kn) = (d.t * ld, d.s * ld);
        let mut out = vec![0f32; d.bh * (d.t + 2 * d.s) * hd];
        let (dq_all, dkv_all) = out.split_at_mut(d.bh * d.t * hd);
        let (dk_all, dv_all) = dkv_all.split_at_mut(d.bh * d.s * hd);
        dq_all
            .par_chunks_mut(qn)
            .zip(dk_all.par_chunks_mut(kn))
            .zip(dv_all.par_chunks_mut(kn))
            .enumerate()
            .for_each(|(g, ((dq, dk), dv))| {
                let (mut p, mut ds) = (QueryBlock::scores(d), QueryBlock::scores(d));
                for h in 0..d.nh {
                    let [q, y, dy] = [q, y, dy].map(|x| HeadRows::of(d, x, d.t, g, h));
                    let [k, v] = [k, v].map(|x| HeadRows::of(d, x, d.s, g, h));
                    for b in QueryBlock::all(d) {
                        block_probs(d, &b, q, k, self.scale, &mut p);
                        // dP = dy·vᵀ, then dS = scale·P·(dP − D) with
                        // D_i = dy_i·y_i standing in for Σ_j P_ij·dP_ij.
                        let dyb = dy.mat(b.i0, b.m);
                        small_gemm::gemm(&mut ds, dyb, v.mat(0, b.nk).t(), 1.0, false);
                        let (p_rows, ds_rows) = (p.chunks_exact(b.nk), ds.chunks_exact_mut(b.nk));
                        for (r, (pr, dsr)) in p_rows.zip(ds_rows).take(b.m).enumerate() {
                            let di = dot(dy.row(b.i0 + r), y.row(b.i0 + r));
                            for (x, &pj) in dsr.iter_mut().zip(pr) {
                                *x = self.scale * pj * (*x - di);
                            }
                        }
                        let (pb, dsb) = (Mat::rows(&p, b.m, b.nk), Mat::rows(&ds, b.m, b.nk));
                        // dv += Pᵀ·dy, dk += dSᵀ·q, dq = dS·k.
                        let qb = q.mat(b.i0, b.m);
                        small_gemm::gemm_strided(&mut dv[h * hd..], ld, pb.t(), dyb, 1.0, true);
                        small_gemm::gemm_strided(&mut dk[h * hd..], ld, dsb.t(), qb, 1.0, true);
                        let dq = &mut dq[b.i0 * ld + h * hd..];
                        small_gemm::gemm_strided(dq, ld, dsb, k.mat(0, b.nk), 1.0, false);
                    }
                }
            });
        out
    }
}

/// Whether the model uses this op where the fused kernels apply (see
/// [`crate::fused::use_fused`]): yes unless `FRUGAL_FLASH_ATTENTION=0`, read
/// once per process.
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("FRUGAL_FLASH_ATTENTION").map_or(true, |v| v != "0"))
}

/// The largest head dims of the CUDA kernels: `FA_MAXD` of attention.cu (f32)
/// and `TC_MAXD` of attention_tc.cu (bf16).
pub(crate) const CUDA_F32_MAX_HD: usize = 128;
pub(crate) const CUDA_BF16_MAX_HD: usize = 64;

/// Whether [`causal_attention`] runs on `q`'s device for its dtype and head
/// dim: any on the CPU; on a GPU f32 up to head dim 128 (attention.cu), bf16
/// for multiples of 16 up to 64 (attention_tc.cu's tiles and shared memory).
pub fn supports(q: &Tensor) -> bool {
    let hd = q.dims().last().copied().unwrap_or(0);
    supports_on(q.device(), q.dtype(), hd)
}

/// [`supports`] for a `q` on `device` of `dtype` and head dim `hd`.
pub fn supports_on(device: &candle_core::Device, dtype: DType, hd: usize) -> bool {
    match (device.is_cpu(), dtype) {
        (true, DType::F32 | DType::BF16) => true,
        (false, DType::F32) => hd <= CUDA_F32_MAX_HD,
        (false, DType::BF16) => hd > 0 && hd.is_multiple_of(16) && hd <= CUDA_BF16_MAX_HD,
        _ => false,
    }
}

/// Causal attention `softmax(scale·q·kᵀ + mask)·v` for contiguous
/// `q [B, H, T, hd]` and `k, v [B, H, S, hd]` (all f32 or all bf16),
/// differentiable in all three.
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    attend(q, k, v, scale, false)
}

/// [`causal_attention`] for `q [B, T, H, hd]` and `k, v [B, S, H, hd]`,
/// the order of a projection's output, with `y` in that order too.
pub fn causal_attention_seq(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    attend(q, k, v, scale, true)
}

fn attend(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, seq_major: bool) -> Result<Tensor> {
    let op = FlashAttention {
        scale: scale as f32,
        seq_major,
    };
    crate::tape::op3(&q.contiguous()?, &k.contiguous()?, &v.contiguous()?, op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused::causal_softmax;
    use candle_core::Var;

    fn randn(shape: &[usize], seed: u64) -> Tensor {
        crate::fused_check::randn(shape, seed).unwrap()
    }

    fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
        crate::fused_check::rel_gap_above(a, b, f32::MIN_POSITIVE).unwrap()
    }

    /// Output and dq, dk, dv of `attend`, against a fixed upstream gradient.
    fn run(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        attend: impl Fn(&Tensor, &Tensor, &Tensor) -> Tensor,
    ) -> Vec<Tensor> {
        let vars = [q, k, v].map(|t| Var::from_tensor(t).unwrap());
        let y = attend(
            vars[0].as_tensor(),
            vars[1].as_tensor(),
            vars[2].as_tensor(),
        );
        // bf16 values in y's dtype, so f32 and bf16 runs share the gradient.
        let up = randn(y.dims(), 99)
            .to_dtype(DType::BF16)
            .and_then(|u| u.to_dtype(y.dtype()))
            .unwrap();
        let grads = (&y * &up).unwrap().sum_all().unwrap().backward().unwrap();
        let mut out = vec![y];
        out.extend(
            vars.iter()
                .map(|v| grads.get(v.as_tensor()).unwrap().clone()),
        );
        out
    }

    /// Against the unfused path the model takes otherwise (scores matmul,
    /// the fused causal softmax, probabilities matmul): the output and all
    /// three gradients, for square scores and for a cached prefix (S > T),
    /// with a head dimension that is not a multiple of 8.
    #[test]
    fn matches_matmul_softmax_path() {
        // The last two span several query blocks (BLOCK = 64), one of them
        // behind a cached prefix of keys.
        for (t, s, hd) in [
            (16, 16, 32),
            (5, 12, 8),
            (9, 9, 13),
            (150, 150, 16),
            (70, 200, 8),
        ] {
            let (q, k, v) = (
                randn(&[2, 3, t, hd], 1),
                randn(&[2, 3, s, hd], 2),
                randn(&[2, 3, s, hd], 3),
            );
            let scale = 1.0 / (hd as f64).sqrt();
            let flash = run(&q, &k, &v, |q, k, v| {
                causal_attention(q, k, v, scale).unwrap()
            });
            let plain = run(&q, &k, &v, |q, k, v| {
                let scores = q.matmul(&k.t().unwrap()).unwrap();
                causal_softmax(&scores, scale).unwrap().matmul(v).unwrap()
            });
            for (what, (a, b)) in ["y", "dq", "dk", "dv"].iter().zip(plain.iter().zip(&flash)) {
                let gap = max_rel(a, b);
                assert!(gap < 1e-5, "{what} at t={t} s={s} hd={hd}: {gap}");
            }
        }
    }

    /// Keys a query cannot see get no gradient from it: with one query row
    /// looking at the first of eight keys, dk and dv vanish on the other seven.
    #[test]
    fn masked_keys_get_no_gradient() {
        let (q, k, v) = (
            randn(&[1, 1, 8, 4], 4),
            randn(&[1, 1, 8, 4], 5),
            randn(&[1, 1, 8, 4], 6),
        );
        let g = run(&q, &k, &v, |q, k, v| {
            causal_attention(q, k, v, 0.5)
                .unwrap()
                .narrow(2, 0, 1)
                .unwrap()
        });
        for (what, grad) in [("dk", &g[2]), ("dv", &g[3])] {
            let rest: f32 = grad
                .narrow(2, 1, 7)
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar()
                .unwrap();
            assert_eq!(rest, 0.0, "{what}");
        }
        // The first row attends to key 0 alone: its output is v_0.
        let y0 = g[0].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let v0 = v
            .narrow(2, 0, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(y0, v0);
    }

    /// bf16 in, bf16 out: the op widens, computes in f32 and rounds once, so
    /// y is exactly the f32 op's on the widened inputs, rounded. The
    /// gradients differ by up to a rounding step, as the backward reads the
    /// rounded y (in `D_i = dy_i·y_i`).
    #[test]
    fn bf16_is_the_f32_op_rounded_once() {
        let bf16 = |t: Tensor| t.to_dtype(DType::BF16).unwrap();
        let (q, k, v) = (
            bf16(randn(&[1, 2, 7, 16], 7)),
            bf16(randn(&[1, 2, 11, 16], 8)),
            bf16(randn(&[1, 2, 11, 16], 9)),
        );
        let attend = |q: &Tensor, k: &Tensor, v: &Tensor| causal_attention(q, k, v, 0.25).unwrap();
        let half = run(&q, &k, &v, attend);
        let widen = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
        let full = run(&widen(&q), &widen(&k), &widen(&v), attend);
        for (what, (h, f)) in ["y", "dq", "dk", "dv"].iter().zip(half.iter().zip(&full)) {
            assert_eq!(h.dtype(), DType::BF16, "{what}");
            let gap = max_rel(&widen(h), &widen(&bf16(f.clone())));
            let bound = if *what == "y" { 0.0 } else { 1.0 / 128.0 };
            assert!(gap <= bound, "{what}: {gap}");
        }
        let err = causal_attention(&q, &widen(&k), &v, 0.25).unwrap_err();
        assert!(err.to_string().contains("mixed dtypes"), "{err}");
        assert!(supports(&q) && supports(&widen(&q)));
        assert!(!supports(&q.to_dtype(DType::F16).unwrap()));
    }

    /// The sequence-major op is the heads-first op on permuted tensors,
    /// bit for bit, with a cached prefix (S > T) and several batches of
    /// several heads: read and written in place (one thread, so two batches
    /// are enough tasks) and permuted (more threads than batches).
    #[test]
    fn sequence_major_order_is_the_same_op() {
        let (b, h, t, s, hd) = (2, 3, 70, 75, 8);
        let seq = |x: &Tensor| x.transpose(1, 2).unwrap().contiguous().unwrap();
        for (dtype, threads) in [(DType::F32, 1), (DType::BF16, 1), (DType::F32, 3)] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let (lq, lkv) = (
                Layout::contiguous((b, t, h, hd)),
                Layout::contiguous((b, s, h, hd)),
            );
            let dims = Dims::of(&lq, &lkv, &lkv, true).unwrap();
            assert_eq!(pool.install(|| dims.in_place()), threads <= b);
            let input = |n, seed| randn(&[b, h, n, hd], seed).to_dtype(dtype).unwrap();
            let (q, k, v) = (input(t, 21), input(s, 22), input(s, 23));
            let heads = run(&q, &k, &v, |q, k, v| {
                causal_attention(q, k, v, 0.3).unwrap()
            });
            let rows = pool.install(|| {
                run(&seq(&q), &seq(&k), &seq(&v), |q, k, v| {
                    // The upstream gradient `run` draws is for the heads-first
                    // shape: attend in the sequence order, return heads-first.
                    seq(&causal_attention_seq(q, k, v, 0.3).unwrap())
                })
            });
            for (what, (a, r)) in ["y", "dq", "dk", "dv"].iter().zip(heads.iter().zip(&rows)) {
                let r = if *what == "y" { r.clone() } else { seq(r) };
                let gap = crate::fused_check::max_abs_gap(a, &r).unwrap();
                assert_eq!(gap, 0.0, "{what} {dtype:?} {threads} threads");
            }
        }
        let q = randn(&[1, 5, 2, 4], 1);
        let wrong_heads = randn(&[1, 5, 3, 4], 2);
        let err = causal_attention_seq(&q, &wrong_heads, &wrong_heads, 1.0).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
    }

    #[test]
    fn bad_shapes_are_errors() {
        let q = randn(&[1, 2, 5, 4], 1);
        let short = randn(&[1, 2, 3, 4], 2);
        let err = causal_attention(&q, &short, &short, 1.0).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
        let flat = randn(&[10, 4], 3);
        assert!(causal_attention(&flat, &flat, &flat, 1.0).is_err());
    }
}

//! Projections with the elementwise op that follows them in the same
//! autograd node.
//!
//! [`fused_linear`](crate::fused_linear) makes each projection one node.
//! Three of a block's projections are always followed by an elementwise op
//! that was a node of its own: q and k by the rotary embedding, and the
//! MLP's gate and up projections by SwiGLU. Folding those in takes a block
//! from 13 ops to 9 (norm, q, k, v, attention, output projection, norm,
//! gated up projection, down projection). With the nodes go their share of
//! candle's backward, which starts every node's gradient as a zero-filled
//! buffer and adds into it: the gradients of the unrotated q and k, of the
//! gate and the up projection (two `[N, ffn]` buffers), and the norm
//! output's gradient summed from the gate's and the up's matmuls.
//!
//! * [`rotated_heads`]: `rope(x·Wᵀ)` in the heads layout, for q and k. The
//!   forward is the projection, then the rotation of its output by the same
//!   kernels the separate nodes ran, so the numbers are unchanged; the
//!   backward rotates the gradient back, then runs the projection's.
//!   [`rotated_seq_heads`] is the same in the projection's own order
//!   `[B, T, heads, head_dim]` (no copy into the heads-first one).
//! * [`gated_up`]: `silu(x·W_gᵀ)·(x·W_uᵀ)`. The two projections run outside
//!   the graph and the op keeps them for its backward (the same two
//!   `[N, ffn]` tensors the separate nodes kept); the backward is SwiGLU's,
//!   then both projections' at once, `dx = dg·W_g + du·W_u`.

use crate::fused::{self, Rope, RopeTables, SwiGlu};
use crate::fused_head::take_saved;
use crate::fused_linear::{self, Arrangement, Projection};
use crate::precision::Precision;
use crate::tape;
#[cfg(feature = "cuda")]
use candle_core::CudaStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Storage, Tensor,
};
use std::sync::Mutex;

/// A projection into the heads layout followed by the rotary embedding:
/// inputs (x, w).
struct RotatedProjection {
    projection: Projection,
    rope: Rope,
}

impl CustomOp2 for RotatedProjection {
    fn name(&self) -> &'static str {
        "frugal-rotated-linear"
    }
    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (y, shape) = self.projection.forward((x, lx), (w, lw), false)?;
        self.rope.cpu_fwd(&y, &Layout::contiguous(shape))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        lx: &Layout,
        w: &CudaStorage,
        lw: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (y, shape) = self.projection.forward((x, lx), (w, lw), true)?;
        self.rope.cuda_fwd(&y, &Layout::contiguous(shape))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?.apply_op1_no_bwd(&self.rope.inverse())?;
        let (dx, dw) = self.projection.backward(x, w, &g)?;
        Ok((Some(dx), Some(dw)))
    }
}

/// `rope(x·wᵀ)` for `x [B, T, in]` and an f32 weight `w [out, in]`, split
/// into `[B, heads, T, out/heads]` and rotated for positions `pos..pos+T`,
/// in `precision`'s activation dtype: the q or k of attention as one node.
pub fn rotated_heads(
    x: &Tensor,
    w: &Tensor,
    heads: usize,
    tables: &RopeTables,
    pos: usize,
    precision: Precision,
) -> Result<Tensor> {
    rotated(x, w, Arrangement::Heads(heads), tables, pos, precision)
}

/// [`rotated_heads`] as `[B, T, heads, out/heads]`, the projection's own
/// order (nothing is copied into the heads-first one).
pub fn rotated_seq_heads(
    x: &Tensor,
    w: &Tensor,
    heads: usize,
    tables: &RopeTables,
    pos: usize,
    precision: Precision,
) -> Result<Tensor> {
    rotated(x, w, Arrangement::SeqHeads(heads), tables, pos, precision)
}

fn rotated(
    x: &Tensor,
    w: &Tensor,
    output: Arrangement,
    tables: &RopeTables,
    pos: usize,
    precision: Precision,
) -> Result<Tensor> {
    let (_, t, _) = x.dims3()?;
    let op = RotatedProjection {
        projection: Projection {
            precision,
            input: Arrangement::Flat,
            output,
        },
        rope: tables.rotation(pos, t, matches!(output, Arrangement::SeqHeads(_)))?,
    };
    let w = fused_linear::weight_operand(w, precision)?;
    tape::op2(&x.contiguous()?, &w, op)
}

/// SwiGLU of projections the forward already formed: inputs (x, w_gate,
/// w_up), output `silu(gate)·up`.
struct GatedUp {
    /// `(x·W_gᵀ, x·W_uᵀ)`, taken by the backward.
    parts: Mutex<Option<(Tensor, Tensor)>>,
    /// Both projections (whose backward runs twice).
    projection: Projection,
}

impl GatedUp {
    /// `f` on the storages of the kept projections.
    fn on_parts<R>(
        &self,
        f: impl FnOnce(&Storage, &Layout, &Storage, &Layout) -> Result<R>,
    ) -> Result<R> {
        let parts = self
            .parts
            .lock()
            .map_err(|_| candle_core::Error::Msg("poisoned".into()))?;
        let Some((gate, up)) = parts.as_ref() else {
            candle_core::bail!("gated_up: the projections were already taken");
        };
        let ((gs, gl), (us, ul)) = (gate.storage_and_layout(), up.storage_and_layout());
        f(&gs, gl, &us, ul)
    }
}

impl CustomOp3 for GatedUp {
    fn name(&self) -> &'static str {
        "frugal-gated-up"
    }
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.on_parts(|g, gl, u, ul| match (g, u) {
            (Storage::Cpu(g), Storage::Cpu(u)) => SwiGlu.cpu_fwd(g, gl, u, ul),
            _ => candle_core::bail!("gated_up: the projections are not on the CPU"),
        })
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.on_parts(|g, gl, u, ul| match (g, u) {
            (Storage::Cuda(g), Storage::Cuda(u)) => SwiGlu.cuda_fwd(g, gl, u, ul),
            _ => candle_core::bail!("gated_up: the projections are not on the GPU"),
        })
    }
    fn bwd(
        &self,
        x: &Tensor,
        w_gate: &Tensor,
        w_up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (gate, up) = take_saved(&self.parts, "gated_up")?;
        let (dg, du) = fused::swiglu_backward(&gate, &up, &grad.to_dtype(gate.dtype())?)?;
        drop((gate, up));
        let (dx_gate, dw_gate) = self.projection.backward(x, w_gate, &dg)?;
        let (dx_up, dw_up) = self.projection.backward(x, w_up, &du)?;
        let dx = (dx_gate + dx_up)?;
        Ok((Some(dx), Some(dw_gate), Some(dw_up)))
    }
}

/// `silu(x·w_gateᵀ)·(x·w_upᵀ)` for `x [.., in]` and f32 weights
/// `[ffn, in]`, in `precision`'s activation dtype: the MLP before its down
/// projection as one node.
pub fn gated_up(
    x: &Tensor,
    w_gate: &Tensor,
    w_up: &Tensor,
    precision: Precision,
) -> Result<Tensor> {
    let w_gate = &fused_linear::weight_operand(w_gate, precision)?;
    let w_up = &fused_linear::weight_operand(w_up, precision)?;
    let (xd, gd, ud) = (x.detach(), w_gate.detach(), w_up.detach());
    let (gate, up) = tape::untaped(|| {
        Ok((
            fused_linear::linear_on_operand(&xd, &gd, precision)?,
            fused_linear::linear_on_operand(&xd, &ud, precision)?,
        ))
    })?;
    if gate.dims() != up.dims() {
        candle_core::bail!(
            "gated_up: gate {:?} and up {:?} projections differ",
            w_gate.dims(),
            w_up.dims()
        );
    }
    if !tape::needs_backward(&[x, w_gate, w_up]) {
        return fused::swiglu(&gate, &up);
    }
    let op = GatedUp {
        parts: Mutex::new(Some((gate, up))),
        projection: Projection::flat(precision),
    };
    tape::op3(
        &x.contiguous()?,
        &w_gate.contiguous()?,
        &w_up.contiguous()?,
        op,
    )
}

#[cfg(test)]
mod tests;

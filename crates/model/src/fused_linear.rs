//! Projections `x·Wᵀ` as one autograd node each.
//!
//! Written as tensor ops, one projection is a chain of nodes: the weight's
//! cast to bf16, its transpose, the input's reshape to `[rows, features]`,
//! the matmul, the reshape back, and around attention a reshape, transpose
//! and copy into the `[B, heads, T, head_dim]` layout; a residual add adds a
//! cast and an add. candle's backward starts every node's gradient as a
//! fresh `zeros_like` and adds into it, so each of those nodes costs a
//! memset and an add over its whole tensor (and a launch each on a GPU), on
//! top of the copies the ops themselves make. Here each projection is one
//! custom op with its own backward, so only its real inputs (the activation
//! and the f32 weight) receive gradients:
//!
//! * [`linear`]: `[.., in] → [.., out]`;
//! * [`linear_to_heads`]: `[B, T, in] → [B, heads, T, out/heads]`, the q/k/v
//!   projections;
//! * [`residual_linear`]: `res + a·Wᵀ` with `a` flat or in the heads layout,
//!   the attention output and the MLP down projections added to the f32
//!   residual stream;
//! * [`linear_to_seq_heads`] and [`residual_linear_seq`]: the same with the
//!   heads in the sequence-major order `[B, T, heads, head_dim]`, which is
//!   the flat rows themselves, so neither copies (the training step's
//!   order, see [`crate::fused_attention::causal_attention_seq`]).
//!
//! The arithmetic is [`Precision::matmul_act`]'s: in f32 one f32 GEMM; in
//! bf16 on a GPU one cuBLAS bf16 GEMM (f32 accumulation, bf16 result) on the
//! weight cast to bf16; in bf16 on the CPU the same numbers emulated in f32.
//! The forward is written once over candle's `BackendStorage` (matmul,
//! casts, strided copies), so the CPU and CUDA versions are the same code.
//! The backward is `dx = g·W`, `dW = gᵀ·x` through the same precision, with
//! the layouts undone.

use crate::precision::Precision;
use crate::tape;
use candle_core::backend::{BackendDevice, BackendStorage};
#[cfg(feature = "cuda")]
use candle_core::CudaStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};

/// Where a projection's rows and features sit in a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrangement {
    /// `[.., features]`: every leading dimension is a row.
    Flat,
    /// `[B, heads, T, head_dim]`: rows are `B·T`, features `heads·head_dim`.
    Heads(usize),
    /// `[B, T, heads, head_dim]`: the flat rows with the features split
    /// into heads, the order attention reads in the training step.
    SeqHeads(usize),
}

/// A storage that is either the op's input or a converted copy of it.
enum Operand<'a, S> {
    Input(&'a S),
    Copy(S),
}

impl<S> Operand<'_, S> {
    fn get(&self) -> &S {
        match self {
            Self::Input(s) => s,
            Self::Copy(s) => s,
        }
    }
}

/// A backend's storage whose device allocates that same storage type.
pub(crate) trait Storage: BackendStorage<Device = Self::Dev> {
    type Dev: BackendDevice<Storage = Self>;
}

impl Storage for CpuStorage {
    type Dev = candle_core::cpu_backend::CpuDevice;
}

#[cfg(feature = "cuda")]
impl Storage for CudaStorage {
    type Dev = candle_core::CudaDevice;
}

/// `src` (any strided layout) copied into a fresh contiguous storage.
fn gather<S: Storage>(s: &S, src: &Layout) -> Result<S> {
    // SAFETY: copy_strided_src writes every element of the new storage.
    let mut dst = unsafe { s.device().alloc_uninit(src.shape(), s.dtype())? };
    s.copy_strided_src(&mut dst, 0, src)?;
    Ok(dst)
}

/// `s` in `dtype`, with its layout (a cast makes it contiguous from 0).
fn cast<'a, S: BackendStorage>(
    s: Operand<'a, S>,
    l: Layout,
    dtype: DType,
) -> Result<(Operand<'a, S>, Layout)> {
    if s.get().dtype() == dtype {
        return Ok((s, l));
    }
    let out = s.get().to_dtype(&l, dtype)?;
    Ok((Operand::Copy(out), Layout::contiguous(l.shape())))
}

/// A matmul operand in the dtype the product is computed in: bf16 for a
/// native bf16 GEMM; for the CPU's emulation f32 holding bf16 values
/// (bf16 widened exactly, f32 rounded to bf16 first).
fn operand<'a, S: BackendStorage>(
    s: Operand<'a, S>,
    l: Layout,
    precision: Precision,
    native_bf16: bool,
) -> Result<(Operand<'a, S>, Layout)> {
    match precision {
        Precision::F32 => cast(s, l, DType::F32),
        Precision::Bf16 if native_bf16 => cast(s, l, DType::BF16),
        Precision::Bf16 => {
            let (s, l) = cast(s, l, DType::BF16)?;
            cast(s, l, DType::F32)
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Projection {
    pub(crate) precision: Precision,
    pub(crate) input: Arrangement,
    pub(crate) output: Arrangement,
}

impl Projection {
    /// `[.., in]` to `[.., out]`: the plain projection.
    pub(crate) fn flat(precision: Precision) -> Self {
        Self {
            precision,
            input: Arrangement::Flat,
            output: Arrangement::Flat,
        }
    }

    /// The input as `[rows, in]` (copied out of the heads layout if need
    /// be) and its leading dimensions.
    fn input_rows<'a, S: Storage>(
        &self,
        x: &'a S,
        lx: &Layout,
    ) -> Result<(Operand<'a, S>, Layout, Vec<usize>)> {
        if !lx.is_contiguous() {
            candle_core::bail!("linear: input must be contiguous");
        }
        let dims = lx.dims();
        match self.input {
            Arrangement::Flat => {
                let Some((&features, lead)) = dims.split_last() else {
                    candle_core::bail!("linear: input must have a feature dimension");
                };
                let rows = lead.iter().product::<usize>();
                let l = Layout::contiguous_with_offset((rows, features), lx.start_offset());
                Ok((Operand::Input(x), l, lead.to_vec()))
            }
            Arrangement::Heads(_) => {
                let &[b, h, t, hd] = dims else {
                    candle_core::bail!("linear: heads input {dims:?} must be [B, H, T, hd]");
                };
                let rows = gather(x, &lx.transpose(1, 2)?)?;
                let l = Layout::contiguous((b * t, h * hd));
                Ok((Operand::Copy(rows), l, vec![b, t]))
            }
            Arrangement::SeqHeads(_) => {
                let &[b, t, h, hd] = dims else {
                    candle_core::bail!("linear: heads input {dims:?} must be [B, T, H, hd]");
                };
                let l = Layout::contiguous_with_offset((b * t, h * hd), lx.start_offset());
                Ok((Operand::Input(x), l, vec![b, t]))
            }
        }
    }

    /// `x·Wᵀ` in the activation dtype, in the output arrangement.
    pub(crate) fn forward<S: Storage>(
        &self,
        (x, lx): (&S, &Layout),
        (w, lw): (&S, &Layout),
        native_bf16: bool,
    ) -> Result<(S, Shape)> {
        let (out_f, in_f) = lw.shape().dims2()?;
        if !lw.is_contiguous() || !matches!(w.dtype(), DType::F32 | DType::BF16) {
            candle_core::bail!(
                "linear: the weight must be contiguous f32 (or, on the tape, its bf16 cast)"
            );
        }
        let (x_rows, lx_rows, lead) = self.input_rows(x, lx)?;
        let (rows, features) = lx_rows.shape().dims2()?;
        if features != in_f {
            candle_core::bail!(
                "linear: input {:?} against weight [{out_f}, {in_f}]",
                lx.dims()
            );
        }
        let (a, la) = operand(x_rows, lx_rows, self.precision, native_bf16)?;
        let (b, lb) = operand(Operand::Input(w), lw.clone(), self.precision, native_bf16)?;
        let y = a
            .get()
            .matmul(b.get(), (1, rows, out_f, in_f), &la, &lb.transpose(0, 1)?)?;
        let act = self.precision.activation_dtype();
        let ly = Layout::contiguous((rows, out_f));
        let y = match y.dtype() == act {
            true => y,
            false => y.to_dtype(&ly, act)?,
        };
        let heads = |n: usize| match (lead.as_slice(), out_f % n == 0) {
            (&[b, t], true) => Ok((b, t, out_f / n)),
            _ => Err(candle_core::Error::Msg(format!(
                "linear: {:?} -> {out_f} features cannot be split into {n} heads",
                lx.dims()
            ))),
        };
        match self.output {
            Arrangement::Flat => Ok((y, Shape::from([lead, vec![out_f]].concat()))),
            Arrangement::Heads(n) => {
                let (b, t, hd) = heads(n)?;
                let split = Layout::contiguous((b, t, n, hd)).transpose(1, 2)?;
                Ok((gather(&y, &split)?, Shape::from((b, n, t, hd))))
            }
            // The same bytes as the flat rows: no copy.
            Arrangement::SeqHeads(n) => {
                let (b, t, hd) = heads(n)?;
                Ok((y, Shape::from((b, t, n, hd))))
            }
        }
    }

    /// `res + x·Wᵀ` in f32.
    fn forward_residual<S: Storage>(
        &self,
        (res, lres): (&S, &Layout),
        x: (&S, &Layout),
        w: (&S, &Layout),
        native_bf16: bool,
    ) -> Result<(S, Shape)> {
        let (y, shape) = self.forward(x, w, native_bf16)?;
        if res.dtype() != DType::F32 || lres.shape() != &shape {
            candle_core::bail!(
                "residual_linear: residual {:?} {:?} against projection {shape:?} (want f32)",
                res.dtype(),
                lres.dims()
            );
        }
        let ly = Layout::contiguous(&shape);
        let y = match y.dtype() {
            DType::F32 => y,
            _ => y.to_dtype(&ly, DType::F32)?,
        };
        Ok((
            res.binary_impl::<candle_core::op::Add>(&y, lres, &ly)?,
            shape,
        ))
    }

    /// `dx` (in `x`'s dtype and arrangement) and `dW` (f32) from the
    /// gradient `g` of the output.
    pub(crate) fn backward(&self, x: &Tensor, w: &Tensor, g: &Tensor) -> Result<(Tensor, Tensor)> {
        let (x, w) = (x.detach(), w.detach());
        let g = rows(g, self.output)?.to_dtype(self.precision.activation_dtype())?;
        let dx = self
            .precision
            .matmul_act(&g, &w)
            .map_err(crate::ModelError::into_candle)?;
        let dx = match self.input {
            Arrangement::Flat | Arrangement::SeqHeads(_) => dx.reshape(x.shape())?,
            Arrangement::Heads(_) => {
                let (b, h, t, hd) = x.dims4()?;
                dx.reshape((b, t, h, hd))?.transpose(1, 2)?.contiguous()?
            }
        };
        let x_rows = rows(&x, self.input)?;
        let dw = self
            .precision
            .matmul_act(&g.t()?, &x_rows)
            .map_err(crate::ModelError::into_candle)?
            .to_dtype(DType::F32)?;
        Ok((dx.to_dtype(x.dtype())?, dw))
    }
}

/// `t` as `[rows, features]`.
fn rows(t: &Tensor, arrangement: Arrangement) -> Result<Tensor> {
    match arrangement {
        Arrangement::Flat => t.reshape(((), t.dim(candle_core::D::Minus1)?)),
        Arrangement::Heads(_) => {
            let (b, h, n, hd) = t.dims4()?;
            t.transpose(1, 2)?.reshape((b * n, h * hd))
        }
        Arrangement::SeqHeads(_) => {
            let (b, n, h, hd) = t.dims4()?;
            t.reshape((b * n, h * hd))
        }
    }
}

impl CustomOp2 for Projection {
    fn name(&self) -> &'static str {
        "frugal-linear"
    }
    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.forward((x, lx), (w, lw), false)
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        lx: &Layout,
        w: &CudaStorage,
        lw: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.forward((x, lx), (w, lw), true)
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = self.backward(x, w, g)?;
        Ok((Some(dx), Some(dw)))
    }
}

/// The same projection added to an f32 residual: inputs (res, x, w).
struct ResidualProjection(Projection);

impl CustomOp3 for ResidualProjection {
    fn name(&self) -> &'static str {
        "frugal-residual-linear"
    }
    fn cpu_fwd(
        &self,
        res: &CpuStorage,
        lres: &Layout,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.0
            .forward_residual((res, lres), (x, lx), (w, lw), false)
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        res: &CudaStorage,
        lres: &Layout,
        x: &CudaStorage,
        lx: &Layout,
        w: &CudaStorage,
        lw: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.0.forward_residual((res, lres), (x, lx), (w, lw), true)
    }
    fn bwd(
        &self,
        _res: &Tensor,
        x: &Tensor,
        w: &Tensor,
        _out: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = self.0.backward(x, w, g)?;
        Ok((Some(g.clone()), Some(dx), Some(dw)))
    }
}

/// The weight operand of a projection op: on the tape under bf16, the f32
/// weight cast to bf16 once here (a recorded cast), which the op's forward
/// and backward both use; otherwise the f32 weight, which the op casts in
/// its forward and casts again in its backward. The numbers are the same.
pub(crate) fn weight_operand(w: &Tensor, precision: Precision) -> Result<Tensor> {
    if w.dtype() != DType::F32 {
        candle_core::bail!(
            "linear: the weight must be contiguous f32, not {:?}",
            w.dtype()
        );
    }
    match precision {
        Precision::Bf16 if tape::recording() => tape::to_dtype(&w.contiguous()?, DType::BF16),
        _ => w.contiguous(),
    }
}

/// `x·wᵀ` for `x [.., in]` (f32 or bf16) and an f32 weight `w [out, in]`,
/// in `precision`'s activation dtype.
pub fn linear(x: &Tensor, w: &Tensor, precision: Precision) -> Result<Tensor> {
    linear_on_operand(x, &weight_operand(w, precision)?, precision)
}

/// [`linear`] on a weight already made an operand by [`weight_operand`].
pub(crate) fn linear_on_operand(x: &Tensor, w: &Tensor, precision: Precision) -> Result<Tensor> {
    tape::op2(&x.contiguous()?, w, Projection::flat(precision))
}

/// [`linear`] for `x [B, T, in]`, split into `[B, heads, T, out/heads]`.
pub fn linear_to_heads(
    x: &Tensor,
    w: &Tensor,
    heads: usize,
    precision: Precision,
) -> Result<Tensor> {
    to_heads(x, w, Arrangement::Heads(heads), precision)
}

/// [`linear`] for `x [B, T, in]` as `[B, T, heads, out/heads]` (no copy).
pub fn linear_to_seq_heads(
    x: &Tensor,
    w: &Tensor,
    heads: usize,
    precision: Precision,
) -> Result<Tensor> {
    to_heads(x, w, Arrangement::SeqHeads(heads), precision)
}

fn to_heads(x: &Tensor, w: &Tensor, output: Arrangement, precision: Precision) -> Result<Tensor> {
    let op = Projection {
        precision,
        input: Arrangement::Flat,
        output,
    };
    tape::op2(&x.contiguous()?, &weight_operand(w, precision)?, op)
}

/// `res + a·wᵀ` in f32 for an f32 residual `res [B, T, out]` and `a` either
/// `[B, T, in]` or, from attention, `[B, heads, T, head_dim]` (a rank-4 `a`
/// is read as that layout, its rows being `B·T`).
pub fn residual_linear(
    res: &Tensor,
    a: &Tensor,
    w: &Tensor,
    precision: Precision,
) -> Result<Tensor> {
    let input = match a.rank() {
        4 => Arrangement::Heads(a.dim(1)?),
        _ => Arrangement::Flat,
    };
    residual_with(res, a, w, input, precision)
}

/// [`residual_linear`] for the attention output in its sequence-major order
/// `a [B, T, heads, head_dim]`, read as the rows it already is.
pub fn residual_linear_seq(
    res: &Tensor,
    a: &Tensor,
    w: &Tensor,
    precision: Precision,
) -> Result<Tensor> {
    residual_with(res, a, w, Arrangement::SeqHeads(a.dim(2)?), precision)
}

fn residual_with(
    res: &Tensor,
    a: &Tensor,
    w: &Tensor,
    input: Arrangement,
    precision: Precision,
) -> Result<Tensor> {
    let op = ResidualProjection(Projection {
        precision,
        input,
        output: Arrangement::Flat,
    });
    let w = weight_operand(w, precision)?;
    tape::op3(&res.contiguous()?, &a.contiguous()?, &w, op)
}

#[cfg(test)]
pub(crate) mod tests;

//! The output head and the cross-entropy as one CPU op: per-row
//! `−log softmax(h·Wᵀ)[target]` for hidden states `h [N, d]` and the head
//! `W [V, d]`, without the `[N, V]` logits in the autograd graph.
//!
//! With the logits as a graph tensor, a training step writes them, reads them
//! for the loss, writes their gradient, and candle's backward adds that
//! gradient into a fresh zero tensor of the same size (its `GradStore` starts
//! every gradient as `zeros_like`), all at N·V floats, the largest tensors
//! of a small model. Here the forward computes the logits in row chunks,
//! forms the loss and `softmax − onehot` in the same pass, and keeps only the
//! latter for the backward, which scales it by the upstream gradient and
//! returns `dh = G·W` and `dW = Gᵀ·h`. This CPU op serves f32 on the CPU.
//!
//! [`head_loss`] is the same idea for any device and precision, built from
//! the other fused ops: the logits as one projection
//! ([`crate::fused_linear::linear`], a bf16 GEMM on a GPU), the per-row
//! loss and `(softmax − onehot)/N` from the fused cross-entropy kernels in
//! the forward, and the logits dropped there. The graph holds one node for
//! head and loss, whose backward is two GEMMs on the kept gradient scaled by
//! the upstream scalar (applied to the `[N, d]` and `[V, d]` results, never
//! to the `[N, V]` matrix). Against a projection followed by the
//! cross-entropy op this removes the `[N, V]` gradient's zeros-and-add in
//! candle's backward and the re-read of the logits.

use candle_core::backend::BackendStorage;
#[cfg(feature = "cuda")]
use candle_core::CudaStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

use crate::fused::{check_targets, log_sum_exp, scaled_softmax_into, slice, targets};
use crate::precision::Precision;
use crate::tape;

/// Rows of logits formed at a time (`ROWS·V` floats of scratch).
const ROWS: usize = 256;

struct LinearCrossEntropy {
    targets: Tensor,
    /// `softmax(h·Wᵀ) − onehot(target)`, `[N, V]`, from the forward for the
    /// backward; not kept when nothing needs a gradient.
    keep: bool,
    saved: Mutex<Option<Vec<f32>>>,
}

impl CustomOp2 for LinearCrossEntropy {
    fn name(&self) -> &'static str {
        "frugal-linear-cross-entropy"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (h, w) = (
            slice(s1, l1, "linear_cross_entropy")?,
            slice(s2, l2, "linear_cross_entropy")?,
        );
        let ((n, d), (v, dw)) = (l1.shape().dims2()?, l2.shape().dims2()?);
        if d != dw {
            candle_core::bail!("linear_cross_entropy: hidden [{n}, {d}] against head [{v}, {dw}]");
        }
        let y = {
            let (st, l) = self.targets.storage_and_layout();
            let candle_core::Storage::Cpu(st) = &*st else {
                candle_core::bail!("linear_cross_entropy: targets must be on the CPU");
            };
            targets(st, l)?
        };
        if y.len() != n {
            candle_core::bail!("linear_cross_entropy: {n} rows, {} targets", y.len());
        }
        check_targets(&y, v)?;
        let w = Tensor::from_slice(w, (v, d), &Device::Cpu)?;
        let mut loss = vec![0f32; n];
        let mut saved = if self.keep {
            vec![0f32; n * v]
        } else {
            Vec::new()
        };
        for r0 in (0..n).step_by(ROWS) {
            let rows = ROWS.min(n - r0);
            let hc = Tensor::from_slice(&h[r0 * d..(r0 + rows) * d], (rows, d), &Device::Cpu)?;
            let logits = hc.matmul(&w.t()?)?;
            let (st, _) = logits.storage_and_layout();
            let candle_core::Storage::Cpu(st) = &*st else {
                candle_core::bail!("linear_cross_entropy: logits left the CPU");
            };
            let logits = st.as_slice::<f32>()?;
            let rows_loss = &mut loss[r0..r0 + rows];
            let grad = if self.keep {
                Some(&mut saved[r0 * v..(r0 + rows) * v])
            } else {
                None
            };
            let per_row = |(i, (l, g)): (usize, (&mut f32, Option<&mut [f32]>))| {
                let row = &logits[i * v..(i + 1) * v];
                let target = y[r0 + i];
                match g {
                    Some(g) => {
                        *l = scaled_softmax_into(row, 1.0, g) - row[target];
                        g[target] -= 1.0;
                    }
                    None => *l = log_sum_exp(row) - row[target],
                }
            };
            match grad {
                Some(g) => rows_loss
                    .par_iter_mut()
                    .zip(g.par_chunks_mut(v).map(Some))
                    .enumerate()
                    .for_each(per_row),
                None => rows_loss
                    .par_iter_mut()
                    .map(|l| (l, None))
                    .enumerate()
                    .for_each(per_row),
            }
        }
        if self.keep {
            *self
                .saved
                .lock()
                .map_err(|_| candle_core::Error::Msg("poisoned".into()))? = Some(saved);
        }
        Ok((CpuStorage::F32(loss), Shape::from(n)))
    }
    fn bwd(
        &self,
        h: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let mut grad = take_saved(&self.saved, "linear_cross_entropy")?;
        let (n, d) = h.dims2()?;
        let v = w.dim(0)?;
        let g = g.to_vec1::<f32>()?;
        grad.par_chunks_mut(v).zip(&g).for_each(|(row, &gr)| {
            for x in row {
                *x *= gr;
            }
        });
        let grad = Tensor::from_vec(grad, (n, v), &Device::Cpu)?;
        let (h, w) = (h.detach(), w.detach());
        let dh = grad.matmul(&w)?;
        let dw = grad.t()?.matmul(&h)?;
        debug_assert_eq!(dh.dims(), [n, d]);
        Ok((Some(dh), Some(dw)))
    }
}

/// Mean cross-entropy of `h·Wᵀ` against `targets` (u32 or i64), for
/// contiguous f32 `h [N, d]` and `w [V, d]` on the CPU.
pub fn linear_cross_entropy(h: &Tensor, w: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let op = LinearCrossEntropy {
        targets: targets.contiguous()?,
        keep: tape::needs_backward(&[h, w]),
        saved: Mutex::new(None),
    };
    tape::mean_all(&tape::op2(&h.contiguous()?, &w.contiguous()?, op)?)
}

/// What a forward kept for the backward, taken (so it is freed after).
pub(crate) fn take_saved<T>(slot: &Mutex<Option<T>>, what: &str) -> Result<T> {
    let taken = slot
        .lock()
        .map_err(|_| candle_core::Error::Msg("poisoned".into()))?
        .take();
    taken.ok_or_else(|| {
        candle_core::Error::Msg(format!(
            "{what}: nothing saved for the backward (backward twice, or inputs that needed none)"
        ))
    })
}

/// The mean loss of a head whose gradient the forward already formed:
/// inputs (h, w), output the scalar loss.
struct PrecomputedHead {
    loss: Tensor,
    /// `(softmax(h·Wᵀ) − onehot)/N`, `[N, V]`, taken by the backward.
    grad: Mutex<Option<Tensor>>,
    precision: Precision,
}

impl PrecomputedHead {
    /// The loss's storage, copied as the op's output.
    fn loss_storage(&self) -> Result<Storage> {
        let (s, l) = self.loss.storage_and_layout();
        match &*s {
            Storage::Cpu(c) => Ok(Storage::Cpu(c.try_clone(l)?)),
            #[cfg(feature = "cuda")]
            Storage::Cuda(c) => Ok(Storage::Cuda(c.try_clone(l)?)),
            #[allow(unreachable_patterns)]
            _ => candle_core::bail!("head_loss: unsupported device"),
        }
    }
}

impl CustomOp2 for PrecomputedHead {
    fn name(&self) -> &'static str {
        "frugal-head-loss"
    }
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        match self.loss_storage()? {
            Storage::Cpu(s) => Ok((s, Shape::from(()))),
            _ => candle_core::bail!("head_loss: the loss is not on the CPU"),
        }
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        match self.loss_storage()? {
            Storage::Cuda(s) => Ok((s, Shape::from(()))),
            _ => candle_core::bail!("head_loss: the loss is not on the GPU"),
        }
    }
    fn bwd(
        &self,
        h: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = take_saved(&self.grad, "head_loss")?;
        let (h, w) = (h.detach(), w.detach());
        let matmul = |a: &Tensor, b: &Tensor| {
            (self.precision.matmul_act(a, b)).map_err(crate::ModelError::into_candle)
        };
        // The upstream scalar scales the small results, not the [N, V] matrix.
        let dh = matmul(&grad, &w)?.to_dtype(h.dtype())?;
        let dh = dh.broadcast_mul(&g.to_dtype(h.dtype())?)?;
        let dw = matmul(&grad.t()?, &h)?.to_dtype(DType::F32)?;
        let dw = dw.broadcast_mul(&g.to_dtype(DType::F32)?)?;
        Ok((Some(dh), Some(dw)))
    }
}

/// Mean cross-entropy of `h·Wᵀ` against `targets` (u32 or i64) for hidden
/// states `h [N, d]` (f32 or bf16) and the f32 head `w [V, d]`, on any
/// device, in `precision`; one graph node (see the module docs).
pub fn head_loss(h: &Tensor, w: &Tensor, targets: &Tensor, precision: Precision) -> Result<Tensor> {
    let (n, _) = h.dims2()?;
    let w = &crate::fused_linear::weight_operand(w, precision)?;
    let logits = tape::untaped(|| {
        crate::fused_linear::linear_on_operand(&h.detach(), &w.detach(), precision)
    })?;
    if !tape::needs_backward(&[h, w]) {
        return crate::fused::cross_entropy(&logits, targets);
    }
    let (rows, grad) = crate::fused::cross_entropy_and_grad(&logits, targets, 1.0 / n as f64)?;
    drop(logits);
    let op = PrecomputedHead {
        loss: rows.mean_all()?,
        grad: Mutex::new(Some(grad)),
        precision,
    };
    tape::op2(&h.contiguous()?, &w.contiguous()?, op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused::cross_entropy;
    use crate::precision::Precision;
    use candle_core::{DType, Var};

    fn randn(shape: &[usize], seed: u64) -> Tensor {
        crate::fused_check::randn(shape, seed).unwrap()
    }

    fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
        crate::fused_check::rel_gap_above(a, b, f32::MIN_POSITIVE).unwrap()
    }

    /// Same loss and gradients as the matmul followed by the fused
    /// cross-entropy, with more rows than one chunk (and a partial last one).
    #[test]
    fn matches_matmul_then_cross_entropy() {
        let (n, d, v) = (ROWS + 37, 24, 301);
        let (h, w) = (randn(&[n, d], 1), (randn(&[v, d], 2) * 0.3).unwrap());
        let ids: Vec<u32> = (0..n as u32).map(|i| (i * 7919) % v as u32).collect();
        for dtype in [DType::U32, DType::I64] {
            let targets = Tensor::new(ids.as_slice(), &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let mut results = Vec::new();
            for fused in [false, true] {
                let (hv, wv) = (Var::from_tensor(&h).unwrap(), Var::from_tensor(&w).unwrap());
                let loss = if fused {
                    linear_cross_entropy(hv.as_tensor(), wv.as_tensor(), &targets).unwrap()
                } else {
                    let logits = hv.as_tensor().matmul(&wv.as_tensor().t().unwrap()).unwrap();
                    cross_entropy(&logits, &targets).unwrap()
                };
                let grads = loss.backward().unwrap();
                results.push([
                    loss,
                    grads.get(hv.as_tensor()).unwrap().clone(),
                    grads.get(wv.as_tensor()).unwrap().clone(),
                ]);
            }
            for (what, (a, b)) in ["loss", "dh", "dw"]
                .iter()
                .zip(results[0].iter().zip(&results[1]))
            {
                let gap = max_rel(a, b);
                assert!(gap < 1e-5, "{what} ({dtype:?}): {gap}");
            }
        }
    }

    /// The device-generic head: same loss and gradients as the projection
    /// followed by the fused cross-entropy, in f32 and bf16, with an
    /// upstream scale (as gradient accumulation applies) reaching both
    /// gradients; without variables, the plain loss.
    #[test]
    fn head_loss_matches_projection_then_cross_entropy() {
        let (n, d, v) = (37, 24, 301);
        let (h, w) = (randn(&[n, d], 3), (randn(&[v, d], 4) * 0.3).unwrap());
        let ids: Vec<u32> = (0..n as u32).map(|i| (i * 7919) % v as u32).collect();
        let targets = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap();
        for precision in [Precision::F32, Precision::Bf16] {
            let act = precision.activation_dtype();
            let mut results = Vec::new();
            for fused in [false, true] {
                let (hv, wv) = (Var::from_tensor(&h).unwrap(), Var::from_tensor(&w).unwrap());
                let ha = hv.as_tensor().to_dtype(act).unwrap();
                let loss = if fused {
                    head_loss(&ha, wv.as_tensor(), &targets, precision).unwrap()
                } else {
                    let logits = crate::fused_linear::linear(&ha, wv.as_tensor(), precision);
                    cross_entropy(&logits.unwrap(), &targets).unwrap()
                };
                assert_eq!(loss.dtype(), DType::F32);
                let grads = (&loss * 0.25).unwrap().backward().unwrap();
                results.push([
                    loss,
                    grads.get(hv.as_tensor()).unwrap().clone(),
                    grads.get(wv.as_tensor()).unwrap().clone(),
                ]);
            }
            let bound = match precision {
                Precision::F32 => 1e-5,
                Precision::Bf16 => 8e-3,
            };
            for (what, (a, b)) in ["loss", "dh", "dw"]
                .iter()
                .zip(results[0].iter().zip(&results[1]))
            {
                let gap = max_rel(a, b);
                assert!(gap <= bound, "{what} ({precision}): {gap}");
            }
            let plain = head_loss(&h.to_dtype(act).unwrap(), &w, &targets, precision).unwrap();
            assert!(max_rel(&plain, &results[0][0]) <= bound);
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let (h, w) = (randn(&[4, 8], 1), randn(&[10, 8], 2));
        let out_of_range = Tensor::new(&[1u32, 2, 10, 3], &Device::Cpu).unwrap();
        let e = linear_cross_entropy(&h, &w, &out_of_range).unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        let short = Tensor::new(&[1u32, 2], &Device::Cpu).unwrap();
        assert!(linear_cross_entropy(&h, &w, &short).is_err());
        let other_d = randn(&[10, 7], 3);
        let e = linear_cross_entropy(&h, &other_d, &short).unwrap_err();
        assert!(e.to_string().contains("against head"), "{e}");
        // Without variables nothing is kept, and the loss is the same.
        let targets = Tensor::new(&[1u32, 2, 9, 3], &Device::Cpu).unwrap();
        let a: f32 = linear_cross_entropy(&h, &w, &targets)
            .unwrap()
            .to_scalar()
            .unwrap();
        let logits = h.matmul(&w.t().unwrap()).unwrap();
        let b: f32 = cross_entropy(&logits, &targets)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

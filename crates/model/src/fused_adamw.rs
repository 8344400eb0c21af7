//! AdamW's update of every parameter in place, in one multi-tensor pass.
//!
//! [`AdamWStep::apply`] is the arithmetic (PyTorch's order of operations) that
//! frugal-train's CPU loop runs per element. [`update_in_place`] runs it over
//! a whole list of parameters: on a GPU as one kernel launch for all of them
//! (`adamw_multi` in `kernels/fused.cu`, driven by a table of pointers),
//! where the composite tensor version costs about fourteen launches and as
//! many passes over memory per parameter; on the CPU as two in-place passes
//! per parameter that compute bit for bit what `apply` does.

use crate::fused::slice;
use candle_core::{CpuStorage, DType, Device, InplaceOp2, Layout, Result, Tensor};
use rayon::prelude::*;

/// The scalars of one AdamW step, in f32 as the update uses them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    /// `1 − lr·weight_decay` (1 where the parameter takes no decay).
    pub decay: f32,
    pub b1: f32,
    pub b2: f32,
    /// `√(1 − β₂ᵗ)`.
    pub bc2_sqrt: f32,
    /// `lr / (1 − β₁ᵗ)`.
    pub step_size: f32,
    pub eps: f32,
}

/// Elements per parallel chunk on the CPU.
const CHUNK: usize = 8192;

impl AdamWStep {
    /// `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`.
    #[inline]
    pub fn moments(&self, m: &mut f32, v: &mut f32, g: f32) {
        *m = self.b1 * *m + (1.0 - self.b1) * g;
        *v = self.b2 * *v + (1.0 - self.b2) * g * g;
    }

    /// The new parameter from the updated moments:
    /// `p·decay − step_size·m/(√v/bc2_sqrt + ε)`.
    #[inline]
    pub fn param(&self, p: f32, m: f32, v: f32) -> f32 {
        let denom = v.sqrt() / self.bc2_sqrt + self.eps;
        p * self.decay - self.step_size * m / denom
    }

    /// One element: the moments, then the parameter from them.
    #[inline]
    pub fn apply(&self, p: &mut f32, m: &mut f32, v: &mut f32, g: f32) {
        self.moments(m, v, g);
        *p = self.param(*p, *m, *v);
    }

    /// [`AdamWStep::apply`] over a whole parameter in parallel chunks:
    /// `p`, `m` and `v` updated in place from the gradient `g`.
    pub fn apply_all(&self, p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
        p.par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| {
                for i in 0..p.len() {
                    self.apply(&mut p[i], &mut m[i], &mut v[i], g[i]);
                }
            });
    }

    /// Whether two parameters' steps can share one launch: everything but
    /// the decay agrees.
    fn shares_scalars(&self, other: &Self) -> bool {
        Self {
            decay: other.decay,
            ..*self
        } == *other
    }
}

/// One parameter's part of a step: all f32 and contiguous, `moments` is
/// `[2, n]` (m then v) for the `n` elements of `param` and `grad`.
#[derive(Debug, Clone, Copy)]
pub struct AdamWUpdate<'a> {
    pub step: AdamWStep,
    pub param: &'a Tensor,
    pub grad: &'a Tensor,
    pub moments: &'a Tensor,
}

/// Applies every update in place: each `param` and its `moments` are
/// overwritten. All updates must be on one device and share every scalar but
/// the decay. On CUDA this is one kernel launch for the whole list.
pub fn update_in_place(updates: &[AdamWUpdate<'_>]) -> Result<()> {
    let Some(first) = updates.first() else {
        return Ok(());
    };
    let device = first.param.device();
    for (i, u) in updates.iter().enumerate() {
        check(i, u, &first.step, device)?;
    }
    match device {
        Device::Cpu => updates.iter().try_for_each(update_on_host),
        #[cfg(feature = "cuda")]
        Device::Cuda(_) => crate::fused_cuda::adamw_multi(updates),
        _ => candle_core::bail!("adamw: no fused update on {device:?}"),
    }
}

/// The checks that make an update safe to run in place.
fn check(i: usize, u: &AdamWUpdate<'_>, first: &AdamWStep, device: &Device) -> Result<()> {
    let n = u.param.elem_count();
    let tensors = [u.param, u.grad, u.moments];
    if tensors.iter().any(|t| t.dtype() != DType::F32) {
        candle_core::bail!("adamw: update {i} is not all f32");
    }
    if tensors.iter().any(|t| !t.device().same_device(device)) {
        candle_core::bail!("adamw: update {i} is on another device than update 0");
    }
    if u.grad.elem_count() != n || u.moments.dims() != [2, n] {
        candle_core::bail!(
            "adamw: update {i} has {n} parameters, {} gradients and moments of shape {:?} (want [2, {n}])",
            u.grad.elem_count(),
            u.moments.dims()
        );
    }
    if tensors.iter().any(|t| !t.is_contiguous()) {
        candle_core::bail!("adamw: update {i} has a non-contiguous tensor");
    }
    if !u.step.shares_scalars(first) {
        candle_core::bail!("adamw: update {i}'s step differs from update 0's in more than decay");
    }
    Ok(())
}

/// Two in-place passes: the moments from the gradient, then the parameter
/// from the moments (the order [`AdamWStep::apply`] computes in).
fn update_on_host(u: &AdamWUpdate<'_>) -> Result<()> {
    u.moments.inplace_op2(u.grad, &MomentsPass(u.step))?;
    u.param.inplace_op2(u.moments, &ParamPass(u.step))
}

/// The contiguous f32 elements of an in-place op's destination.
fn slice_mut<'a>(s: &'a mut CpuStorage, l: &Layout, what: &str) -> Result<&'a mut [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&mut v[a..b]),
        _ => candle_core::bail!("{what}: expected contiguous f32"),
    }
}

/// `[m; v] ← moments(m, v, g)`.
struct MomentsPass(AdamWStep);

impl InplaceOp2 for MomentsPass {
    fn name(&self) -> &'static str {
        "frugal-adamw-moments"
    }
    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        g: &CpuStorage,
        g_l: &Layout,
    ) -> Result<()> {
        let g = slice(g, g_l, "adamw")?;
        let (m, v) = slice_mut(dst, dst_l, "adamw")?.split_at_mut(g.len());
        m.par_chunks_mut(CHUNK)
            .zip(v.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|((m, v), g)| {
                for i in 0..g.len() {
                    self.0.moments(&mut m[i], &mut v[i], g[i]);
                }
            });
        Ok(())
    }
}

/// `p ← param(p, m, v)`.
struct ParamPass(AdamWStep);

impl InplaceOp2 for ParamPass {
    fn name(&self) -> &'static str {
        "frugal-adamw-param"
    }
    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        mv: &CpuStorage,
        mv_l: &Layout,
    ) -> Result<()> {
        let p = slice_mut(dst, dst_l, "adamw")?;
        let (m, v) = slice(mv, mv_l, "adamw")?.split_at(p.len());
        p.par_chunks_mut(CHUNK)
            .zip(m.par_chunks(CHUNK))
            .zip(v.par_chunks(CHUNK))
            .for_each(|((p, m), v)| {
                for i in 0..p.len() {
                    p[i] = self.0.param(p[i], m[i], v[i]);
                }
            });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const STEP: AdamWStep = AdamWStep {
        decay: 0.999,
        b1: 0.9,
        b2: 0.95,
        bc2_sqrt: 0.2236068,
        step_size: 0.1,
        eps: 1e-8,
    };

    fn values(n: usize, k: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32 * k).sin() * 0.5) + 0.1 * k)
            .collect()
    }

    /// The in-place update of several parameters (one larger than a parallel
    /// chunk, one of a single element, decay or not) computes exactly what
    /// the per-element update does.
    #[test]
    fn update_in_place_equals_the_element_update() {
        let dev = &Device::Cpu;
        let shapes: [&[usize]; 3] = [&[100, 200], &[1], &[37, 3]];
        let mut expect = Vec::new();
        let mut tensors = Vec::new();
        for (j, shape) in shapes.iter().enumerate() {
            let n: usize = shape.iter().product();
            let k = j as f32 + 1.0;
            let (mut p, g) = (values(n, 1.3 * k), values(n, 0.7 * k));
            let mut m: Vec<f32> = values(n, 0.2 * k).iter().map(|x| x * 0.1).collect();
            let mut v: Vec<f32> = values(n, 0.4 * k).iter().map(|x| x.abs() * 0.01).collect();
            let mv: Vec<f32> = m.iter().chain(&v).copied().collect();
            let step = AdamWStep {
                decay: if j == 1 { 1.0 } else { STEP.decay },
                ..STEP
            };
            tensors.push((
                step,
                Tensor::from_slice(&p, *shape, dev).unwrap(),
                Tensor::from_slice(&g, *shape, dev).unwrap(),
                Tensor::from_vec(mv, (2, n), dev).unwrap(),
            ));
            for i in 0..n {
                step.apply(&mut p[i], &mut m[i], &mut v[i], g[i]);
            }
            expect.push((p, [m, v].concat()));
        }
        crate::fused_check::adamw_in_place(&tensors).unwrap();
        for ((_, p, _, mv), (want_p, want_mv)) in tensors.iter().zip(&expect) {
            assert_eq!(&p.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want_p);
            assert_eq!(
                &mv.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                want_mv
            );
        }
    }

    #[test]
    fn bad_updates_are_errors() {
        let dev = &Device::Cpu;
        let p = Tensor::zeros(4, DType::F32, dev).unwrap();
        let g = Tensor::ones(4, DType::F32, dev).unwrap();
        let mv = Tensor::zeros((2, 4), DType::F32, dev).unwrap();
        let bad_mv = Tensor::zeros((2, 3), DType::F32, dev).unwrap();
        let half = g.to_dtype(DType::BF16).unwrap();
        let strided = Tensor::zeros((4, 2), DType::F32, dev).unwrap().t().unwrap();
        let ok = AdamWUpdate {
            step: STEP,
            param: &p,
            grad: &g,
            moments: &mv,
        };
        let other_b1 = AdamWStep { b1: 0.8, ..STEP };
        let cases = [
            (
                AdamWUpdate {
                    moments: &bad_mv,
                    ..ok
                },
                "shape [2, 3]",
            ),
            (AdamWUpdate { grad: &half, ..ok }, "not all f32"),
            (
                AdamWUpdate {
                    moments: &strided,
                    ..ok
                },
                "non-contiguous",
            ),
            (
                AdamWUpdate {
                    step: other_b1,
                    ..ok
                },
                "more than decay",
            ),
        ];
        for (bad, want) in cases {
            let err = update_in_place(&[ok, bad]).unwrap_err().to_string();
            assert!(err.contains("update 1") && err.contains(want), "{err}");
        }
        // Nothing was written: the checks run before any update.
        assert_eq!(mv.sum_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
        update_in_place(&[]).unwrap();
    }
}

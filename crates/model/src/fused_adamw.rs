//! AdamW's update of one parameter as one fused pass.
//!
//! [`AdamWStep::apply`] is the arithmetic (PyTorch's order of operations) that
//! frugal-train's CPU loop runs per element. [`AdamWStep::fused`] runs it as
//! one kernel over a whole parameter, on the CPU or (`kernels/fused.cu`) on a
//! GPU, where the composite tensor version costs about fourteen launches and
//! as many passes over memory per parameter.

use crate::fused::slice;
#[cfg(feature = "cuda")]
use candle_core::CudaStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
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

impl AdamWStep {
    /// One element: `p ← p·decay`, `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
    /// `p ← p − step_size·m/(√v/bc2_sqrt + ε)`.
    #[inline]
    pub fn apply(&self, p: &mut f32, m: &mut f32, v: &mut f32, g: f32) {
        *p *= self.decay;
        *m = self.b1 * *m + (1.0 - self.b1) * g;
        *v = self.b2 * *v + (1.0 - self.b2) * g * g;
        let denom = v.sqrt() / self.bc2_sqrt + self.eps;
        *p -= self.step_size * *m / denom;
    }

    /// [`AdamWStep::apply`] over a whole parameter in parallel chunks:
    /// `p`, `m` and `v` updated in place from the gradient `g`.
    pub fn apply_all(&self, p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
        const CHUNK: usize = 8192;
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

    /// `[3, n]` = the updated parameter, first and second moments, from the
    /// parameter `p`, its gradient `g` and the moments `mv` (`[2, n]`: m then
    /// v), all f32 with `n` elements each.
    pub fn fused(&self, p: &Tensor, g: &Tensor, mv: &Tensor) -> Result<Tensor> {
        let n = p.elem_count();
        if g.elem_count() != n || mv.elem_count() != 2 * n {
            candle_core::bail!(
                "adamw: {n} parameters, {} gradients, {} moments (want 2 per parameter)",
                g.elem_count(),
                mv.elem_count()
            );
        }
        p.contiguous()?
            .apply_op3_no_bwd(&g.contiguous()?, &mv.contiguous()?, self)
    }
}

impl CustomOp3 for AdamWStep {
    fn name(&self) -> &'static str {
        "frugal-adamw"
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
        crate::fused_cuda::adamw(self, s1, l1, s2, l2, s3, l3)
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
        let (p, g, mv) = (
            slice(s1, l1, "adamw")?,
            slice(s2, l2, "adamw")?,
            slice(s3, l3, "adamw")?,
        );
        let n = p.len();
        let mut out = Vec::with_capacity(3 * n);
        out.extend_from_slice(p);
        out.extend_from_slice(mv);
        let (po, mvo) = out.split_at_mut(n);
        let (mo, vo) = mvo.split_at_mut(n);
        self.apply_all(po, mo, vo, g);
        Ok((CpuStorage::F32(out), Shape::from((3, n))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    const STEP: AdamWStep = AdamWStep {
        decay: 0.999,
        b1: 0.9,
        b2: 0.95,
        bc2_sqrt: 0.2236068,
        step_size: 0.1,
        eps: 1e-8,
    };

    /// The fused op computes exactly what the per-element update does.
    #[test]
    fn fused_equals_the_element_update() {
        let n = 20_000; // more than one parallel chunk
        let f = |i: usize, k: f32| ((i as f32 * k).sin() * 0.5) + 0.1 * k;
        let p: Vec<f32> = (0..n).map(|i| f(i, 1.3)).collect();
        let g: Vec<f32> = (0..n).map(|i| f(i, 0.7) - 0.1).collect();
        let m: Vec<f32> = (0..n).map(|i| f(i, 0.2) * 0.1).collect();
        let v: Vec<f32> = (0..n).map(|i| f(i, 0.4).abs() * 0.01).collect();
        let dev = &Device::Cpu;
        let mv: Vec<f32> = m.iter().chain(&v).copied().collect();
        let out = STEP
            .fused(
                &Tensor::from_slice(&p, (100, 200), dev).unwrap(),
                &Tensor::from_slice(&g, (100, 200), dev).unwrap(),
                &Tensor::from_vec(mv, (2, n), dev).unwrap(),
            )
            .unwrap();
        assert_eq!(out.dims(), &[3, n]);
        let got = out.to_vec2::<f32>().unwrap();
        for i in 0..n {
            let (mut pi, mut mi, mut vi) = (p[i], m[i], v[i]);
            STEP.apply(&mut pi, &mut mi, &mut vi, g[i]);
            assert_eq!((got[0][i], got[1][i], got[2][i]), (pi, mi, vi), "{i}");
        }
    }

    #[test]
    fn mismatched_sizes_are_errors() {
        let dev = &Device::Cpu;
        let p = Tensor::zeros(4, candle_core::DType::F32, dev).unwrap();
        let mv = Tensor::zeros((2, 3), candle_core::DType::F32, dev).unwrap();
        let err = STEP.fused(&p, &p, &mv).unwrap_err().to_string();
        assert!(err.contains("6 moments"), "{err}");
    }
}

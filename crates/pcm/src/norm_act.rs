//! GroupNorm followed by SiLU, the U-Net's only use of either, as one fused
//! CPU op with a hand-written backward.
//!
//! Composed of candle ops (candle_nn's `GroupNorm`, then `silu`), this is
//! about 8 passes over the activation forward and 20 backward, each
//! allocating a tensor, and at the U-Net's small widths those passes cost
//! more than the convolutions' matmuls. Fused: forward reads x twice (group
//! statistics, then normalise·scale·shift·SiLU), backward three times.
//! The parameters are candle_nn's `group_norm`'s (`weight`, `bias`, same
//! init), so checkpoints are unchanged. Other devices and dtypes use the
//! composite ops, which the tests check the fused op against.

use crate::Result;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Module, Shape, Tensor};
use candle_nn::VarBuilder;
use frugal_model::fused::slice;
use rayon::prelude::*;

#[derive(Debug, Clone)]
pub struct GroupNormSilu {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f32,
    /// The fused op where it applies (else the composite ops).
    pub fused: bool,
}

/// `GroupNorm(groups, channels, eps)` then SiLU, named and initialised as
/// `candle_nn::group_norm`.
pub fn group_norm_silu(
    groups: usize,
    channels: usize,
    eps: f32,
    vb: VarBuilder,
) -> Result<GroupNormSilu> {
    if groups == 0 || !channels.is_multiple_of(groups) {
        return Err(crate::PcmError::arg(format!(
            "GroupNorm: {groups} groups do not divide {channels} channels"
        )));
    }
    Ok(GroupNormSilu {
        weight: vb.get_with_hints(channels, "weight", candle_nn::Init::Const(1.))?,
        bias: vb.get_with_hints(channels, "bias", candle_nn::Init::Const(0.))?,
        groups,
        eps,
        fused: true,
    })
}

impl GroupNormSilu {
    /// The same computation from candle ops (and candle_nn's GroupNorm).
    pub fn forward_composite(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let c = self.weight.elem_count();
        let gn = candle_nn::GroupNorm::new(
            self.weight.clone(),
            self.bias.clone(),
            c,
            self.groups,
            self.eps as f64,
        )?;
        gn.forward(x)?.silu()
    }
}

impl Module for GroupNormSilu {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if !self.fused || !x.device().is_cpu() || x.dtype() != DType::F32 || x.rank() < 3 {
            return self.forward_composite(x);
        }
        let params = Tensor::stack(&[&self.weight, &self.bias], 0)?;
        x.contiguous()?.apply_op2(
            &params,
            Fused {
                groups: self.groups,
                eps: self.eps,
            },
        )
    }
}

/// The op: (x, [γ; β]) → SiLU(GroupNorm(x)). Its backward is [`Backward`].
#[derive(Clone, Copy)]
struct Fused {
    groups: usize,
    eps: f32,
}

/// An activation's channels, spatial size and the length of one (sample,
/// group) block, which is contiguous in NCHW.
struct Geometry {
    channels: usize,
    spatial: usize,
    per_group: usize,
}

impl Geometry {
    fn of(shape: &Shape, groups: usize) -> candle_core::Result<Self> {
        let dims = shape.dims();
        let (channels, spatial) = (dims[1], dims[2..].iter().product::<usize>());
        if !channels.is_multiple_of(groups) {
            candle_core::bail!("group_norm_silu: {groups} groups, {channels} channels");
        }
        Ok(Self {
            channels,
            spatial,
            per_group: channels / groups * spatial,
        })
    }
}

/// Mean and 1/√(var + eps) of one group (biased variance, as GroupNorm).
fn moments(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

impl CustomOp2 for Fused {
    fn name(&self) -> &'static str {
        "frugal-group-norm-silu"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, p) = (
            slice(s1, l1, "group_norm_silu")?,
            slice(s2, l2, "gn params")?,
        );
        let geo = Geometry::of(l1.shape(), self.groups)?;
        let (gamma, beta) = p.split_at(geo.channels);
        let cpg = geo.channels / self.groups;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(geo.per_group)
            .zip(x.par_chunks(geo.per_group))
            .enumerate()
            .for_each(|(block, (y, xg))| {
                let (mean, inv) = moments(xg, self.eps);
                let c0 = (block % self.groups) * cpg;
                for (ci, (yc, xc)) in y
                    .chunks_mut(geo.spatial)
                    .zip(xg.chunks(geo.spatial))
                    .enumerate()
                {
                    let (a, b) = (
                        inv * gamma[c0 + ci],
                        beta[c0 + ci] - mean * inv * gamma[c0 + ci],
                    );
                    for (o, &v) in yc.iter_mut().zip(xc) {
                        let z = a * v + b;
                        *o = z * sigmoid(z);
                    }
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        params: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let n = x.elem_count();
        let c = params.dim(1)?;
        let packed = x.apply_op3_no_bwd(params, &grad.contiguous()?, &Backward(*self))?;
        let dx = packed.narrow(0, 0, n)?.reshape(x.shape())?;
        let dparams = packed.narrow(0, n, 2 * c)?.reshape((2, c))?;
        Ok((Some(dx), Some(dparams)))
    }
}

/// (x, [γ; β], g) → [dx (flat); dγ; dβ], recomputing the forward's
/// statistics: with x̂ = (x − μ)·r, z = γx̂ + β and h = g·SiLU'(z)·γ,
/// dx = r(h − mean(h) − x̂·mean(h·x̂)) per group, dγ = Σ g·SiLU'(z)·x̂ and
/// dβ = Σ g·SiLU'(z) over batch and space.
struct Backward(Fused);

impl CustomOp3 for Backward {
    fn name(&self) -> &'static str {
        "frugal-group-norm-silu-bwd"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let Fused { groups, eps } = self.0;
        let x = slice(s1, l1, "group_norm_silu bwd")?;
        let p = slice(s2, l2, "gn params")?;
        let g = slice(s3, l3, "group_norm_silu grad")?;
        let geo = Geometry::of(l1.shape(), groups)?;
        let (gamma, beta) = p.split_at(geo.channels);
        let cpg = geo.channels / groups;
        let mut dx = vec![0f32; x.len()];
        // Each block's per-channel (dγ, dβ) partial sums, reduced below.
        let partials: Vec<Vec<(f32, f32)>> = dx
            .par_chunks_mut(geo.per_group)
            .zip(x.par_chunks(geo.per_group).zip(g.par_chunks(geo.per_group)))
            .enumerate()
            .map(|(block, (dxg, (xg, gg)))| {
                let (mean, inv) = moments(xg, eps);
                let c0 = (block % groups) * cpg;
                let mut sums = vec![(0f32, 0f32); cpg];
                // Pass 1: h = g·SiLU'(z)·γ into dx, and the group means.
                let (mut mh, mut mhx) = (0f32, 0f32);
                for ci in 0..cpg {
                    let (ga, be) = (gamma[c0 + ci], beta[c0 + ci]);
                    let r = ci * geo.spatial..(ci + 1) * geo.spatial;
                    for ((d, &v), &gv) in dxg[r.clone()].iter_mut().zip(&xg[r.clone()]).zip(&gg[r])
                    {
                        let xh = (v - mean) * inv;
                        let z = ga * xh + be;
                        let s = sigmoid(z);
                        let gz = gv * s * (1.0 + z * (1.0 - s));
                        sums[ci].0 += gz * xh;
                        sums[ci].1 += gz;
                        let h = gz * ga;
                        mh += h;
                        mhx += h * xh;
                        *d = h;
                    }
                }
                let n = xg.len() as f32;
                let (mh, mhx) = (mh / n, mhx / n);
                // Pass 2: dx = r(h − mean(h) − x̂·mean(h·x̂)).
                for (d, &v) in dxg.iter_mut().zip(xg) {
                    let xh = (v - mean) * inv;
                    *d = inv * (*d - mh - xh * mhx);
                }
                sums
            })
            .collect();
        let mut out = dx;
        let (mut dgamma, mut dbeta) = (vec![0f32; geo.channels], vec![0f32; geo.channels]);
        for (block, sums) in partials.iter().enumerate() {
            let c0 = (block % groups) * cpg;
            for (ci, &(dg, db)) in sums.iter().enumerate() {
                dgamma[c0 + ci] += dg;
                dbeta[c0 + ci] += db;
            }
        }
        out.extend(dgamma);
        out.extend(dbeta);
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::diff_and_scale;
    use candle_core::{Device, Var};
    use candle_nn::VarMap;

    /// The fused op against candle_nn's GroupNorm + silu: forward and the
    /// gradients of the input, γ and β, for non-trivial γ and β.
    #[test]
    fn fused_matches_composite_forward_and_backward() {
        let dev = Device::Cpu;
        for (b, c, g, h, w) in [(2, 8, 4, 5, 3), (3, 6, 2, 4, 4), (1, 4, 4, 1, 7)] {
            let vm = VarMap::new();
            let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
            let op = group_norm_silu(g, c, 1e-5, vb).unwrap();
            for (name, var) in vm.data().lock().unwrap().iter() {
                let r = Tensor::randn(0f32, 0.5, c, &dev).unwrap();
                let base = if name == "weight" { 1.0 } else { 0.0 };
                var.set(&(r + base).unwrap()).unwrap();
            }
            let x = Var::from_tensor(
                &(Tensor::randn(0f32, 2.0, (b, c, h, w), &dev).unwrap() + 0.7).unwrap(),
            )
            .unwrap();
            let up = Tensor::randn(0f32, 1.0, (b, c, h, w), &dev).unwrap();
            let (y1, y2) = (op.forward_composite(&x).unwrap(), op.forward(&x).unwrap());
            let (d, s) = diff_and_scale(&y1, &y2);
            assert!(d <= 1e-5 * s.max(1.0), "forward differs by {d}");
            let g1 = (&y1 * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (&y2 * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let mut vars: Vec<(String, Tensor)> = vm
                .data()
                .lock()
                .unwrap()
                .iter()
                .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
                .collect();
            vars.push(("input".into(), x.as_tensor().clone()));
            for (name, t) in vars {
                let (a, b) = (g1.get(&t).unwrap(), g2.get(&t).unwrap());
                let (d, s) = diff_and_scale(a, b);
                assert!(s > 0.0, "{name}: zero gradient");
                assert!(
                    d <= 1e-4 * s.max(1.0),
                    "{name} gradient differs by {d} (scale {s})"
                );
            }
        }
    }

    #[test]
    fn names_and_errors() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
        group_norm_silu(4, 8, 1e-5, vb.pp("n")).unwrap();
        let data = vm.data().lock().unwrap();
        assert_eq!(data["n.weight"].dims(), &[8]);
        assert_eq!(data["n.bias"].dims(), &[8]);
        assert!(group_norm_silu(3, 8, 1e-5, vb.pp("m")).is_err());
    }
}

//! A k×k convolution (stride 1, "same" padding) as shifted views and one
//! matrix product, for training on the CPU.
//!
//! candle's CPU `conv2d` is fine forward, but its backward goes through
//! `conv_transpose2d` and a direct weight-gradient convolution, which run at
//! a few GFLOP/s here. Written as `pad → k² narrow views → cat → matmul`,
//! autograd only sees ops whose backward is a copy or a gemm, and the gemms
//! run at full speed. The parameters are exactly candle_nn's `Conv2d`
//! (`weight` (out, in, k, k), `bias` (out), same init hints), so checkpoints
//! are unchanged and old runs load as before.
//!
//! On the CPU the k² views are gathered by one op ([`Im2Col`]) whose
//! backward scatters the gradient back in one pass (col2im): through
//! `narrow` and `cat`, autograd pads every view's gradient to the full input
//! and adds it, 2k² full-size passes per convolution.

use crate::{PcmError, Result};
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Shape, Tensor};
use candle_nn::VarBuilder;
use frugal_model::fused::slice;
use frugal_model::Precision;
use rayon::prelude::*;

#[derive(Debug, Clone)]
pub struct FastConv {
    weight: Tensor,
    bias: Tensor,
    k: usize,
    /// The matmul's dtype (bf16: autocast-style, see frugal-model's precision).
    pub precision: Precision,
    /// The fused im2col op on the CPU (else narrow + cat).
    pub fused: bool,
}

/// A k×k convolution (k odd) with padding k/2 and a bias, named and
/// initialised as `candle_nn::conv2d`.
pub fn fast_conv(i: usize, o: usize, k: usize, vb: VarBuilder) -> Result<FastConv> {
    if k.is_multiple_of(2) {
        return Err(PcmError::arg(format!("kernel size {k} must be odd")));
    }
    let weight = vb.get_with_hints(
        (o, i, k, k),
        "weight",
        candle_nn::init::DEFAULT_KAIMING_NORMAL,
    )?;
    let bound = 1. / (i as f64).sqrt();
    let bias = vb.get_with_hints(
        o,
        "bias",
        candle_nn::Init::Uniform {
            lo: -bound,
            up: bound,
        },
    )?;
    Ok(FastConv {
        weight,
        bias,
        k,
        precision: Precision::F32,
        fused: true,
    })
}

impl FastConv {
    pub fn from_tensors(weight: Tensor, bias: Tensor) -> Result<Self> {
        let (_, _, k, k2) = weight.dims4()?;
        if k != k2 || k.is_multiple_of(2) || bias.dims() != [weight.dim(0)?] {
            return Err(PcmError::arg(format!(
                "conv weight {:?} / bias {:?}: expected (out, in, k, k) with odd k and (out)",
                weight.dims(),
                bias.dims()
            )));
        }
        Ok(Self {
            weight,
            bias,
            k,
            precision: Precision::F32,
            fused: true,
        })
    }
}

impl Module for FastConv {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let (o, k) = (self.weight.dim(0)?, self.k);
        // Columns: channel index (dy·k + dx)·c + ci holds x[ci, y+dy−p, x+dx−p].
        let cols = if k == 1 {
            x.reshape((b, c, h * w))?
        } else if self.fused && x.device().is_cpu() && x.dtype() == DType::F32 {
            x.contiguous()?.apply_op1(Im2Col { k })?
        } else {
            let p = k / 2;
            let xp = x.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?;
            let mut views = Vec::with_capacity(k * k);
            for dy in 0..k {
                for dx in 0..k {
                    views.push(xp.narrow(2, dy, h)?.narrow(3, dx, w)?);
                }
            }
            Tensor::cat(&views, 1)?.reshape((b, k * k * c, h * w))?
        };
        // The weight in the same order: (o, dy, dx, ci).
        let wm = self.weight.permute((0, 2, 3, 1))?.reshape((o, k * k * c))?;
        let y = self
            .precision
            .broadcast_matmul(&wm, &cols)
            .map_err(|e| match e {
                frugal_model::ModelError::Candle(e) => e,
                other => candle_core::Error::Msg(other.to_string()),
            })?
            .reshape((b, o, h, w))?;
        y.broadcast_add(&self.bias.reshape((1, o, 1, 1))?)
    }
}

/// (B, C, H, W) → (B, k²C, HW): row (dy·k + dx)·C + ci holds
/// x[ci, y + dy − p, x + dx − p] (0 outside), p = k/2.
#[derive(Clone, Copy)]
struct Im2Col {
    k: usize,
}

/// The one shifted copy both directions make: for each output row y, the
/// source row y + dy − p (when inside) and the column range where
/// x + dx − p is inside, as (y, source y, x range, source x start).
fn shifted_rows(
    h: usize,
    w: usize,
    dy: usize,
    dx: usize,
    p: usize,
) -> impl Iterator<Item = (usize, usize, std::ops::Range<usize>, usize)> {
    let x_lo = p.saturating_sub(dx);
    let x_hi = (w + p).saturating_sub(dx).min(w);
    (0..h).filter_map(move |y| {
        let sy = (y + dy).checked_sub(p).filter(|&sy| sy < h)?;
        (x_lo < x_hi).then(|| (y, sy, x_lo..x_hi, x_lo + dx - p))
    })
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "frugal-im2col"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s, l, "im2col")?;
        let (b, c, h, w) = l.shape().dims4()?;
        let (k, p, hw) = (self.k, self.k / 2, h * w);
        let mut out = vec![0f32; b * k * k * c * hw];
        out.par_chunks_mut(k * k * c * hw)
            .zip(x.par_chunks(c * hw))
            .for_each(|(cols, xb)| {
                for (row, dst) in cols.chunks_mut(hw).enumerate() {
                    let (shift, ci) = (row / c, row % c);
                    let src = &xb[ci * hw..(ci + 1) * hw];
                    for (y, sy, xs, sx) in shifted_rows(h, w, shift / k, shift % k, p) {
                        let n = xs.len();
                        dst[y * w + xs.start..y * w + xs.end]
                            .copy_from_slice(&src[sy * w + sx..sy * w + sx + n]);
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, k * k * c, hw))))
    }
    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (_, c, h, w) = x.dims4()?;
        let op = Col2Im { k: self.k, c, h, w };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}

/// Im2Col's adjoint: (B, k²C, HW) → (B, C, H, W), each column entry added
/// back to the input pixel it was copied from.
struct Col2Im {
    k: usize,
    c: usize,
    h: usize,
    w: usize,
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "frugal-col2im"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = slice(s, l, "col2im")?;
        let Col2Im { k, c, h, w } = *self;
        let (p, hw) = (k / 2, h * w);
        let b = l.shape().dims()[0];
        let mut out = vec![0f32; b * c * hw];
        out.par_chunks_mut(c * hw)
            .zip(g.par_chunks(k * k * c * hw))
            .for_each(|(dxb, cols)| {
                for (row, src) in cols.chunks(hw).enumerate() {
                    let (shift, ci) = (row / c, row % c);
                    let dst = &mut dxb[ci * hw..(ci + 1) * hw];
                    for (y, sy, xs, sx) in shifted_rows(h, w, shift / k, shift % k, p) {
                        let d = &mut dst[sy * w + sx..sy * w + sx + xs.len()];
                        for (d, &v) in d.iter_mut().zip(&src[y * w + xs.start..y * w + xs.end]) {
                            *d += v;
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, c, h, w))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{diff_and_scale, max_abs_diff};
    use candle_core::{DType, Device, Var};
    use candle_nn::Conv2dConfig;

    /// Forward and all three gradients against candle's conv2d, with the
    /// fused im2col and with narrow + cat.
    #[test]
    fn matches_candle_conv2d_forward_and_backward() {
        let dev = Device::Cpu;
        for (k, c, o, h, w) in [
            (3, 3, 5, 7, 6),
            (1, 4, 2, 5, 5),
            (3, 1, 8, 28, 28),
            (5, 2, 3, 4, 6),
        ] {
            let x =
                Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, c, h, w), &dev).unwrap()).unwrap();
            let wt =
                Var::from_tensor(&Tensor::randn(0f32, 1.0, (o, c, k, k), &dev).unwrap()).unwrap();
            let bs = Var::from_tensor(&Tensor::randn(0f32, 1.0, o, &dev).unwrap()).unwrap();
            // A fixed random upstream gradient through a weighted sum.
            let g = Tensor::randn(0f32, 1.0, (2, o, h, w), &dev).unwrap();
            let cfg = Conv2dConfig {
                padding: k / 2,
                ..Default::default()
            };
            let reference =
                candle_nn::Conv2d::new(wt.as_tensor().clone(), Some(bs.as_tensor().clone()), cfg);
            let mut fast =
                FastConv::from_tensors(wt.as_tensor().clone(), bs.as_tensor().clone()).unwrap();
            for fused in [true, false] {
                fast.fused = fused;
                let (y1, y2) = (reference.forward(&x).unwrap(), fast.forward(&x).unwrap());
                assert!(
                    max_abs_diff(&y1, &y2) < 1e-4,
                    "k={k}: forward differs by {}",
                    max_abs_diff(&y1, &y2)
                );
                let g1 = (&y1 * &g).unwrap().sum_all().unwrap().backward().unwrap();
                let g2 = (&y2 * &g).unwrap().sum_all().unwrap().backward().unwrap();
                for (name, v) in [("input", &x), ("weight", &wt), ("bias", &bs)] {
                    let (a, b) = (
                        g1.get(v.as_tensor()).unwrap(),
                        g2.get(v.as_tensor()).unwrap(),
                    );
                    let (d, scale) = diff_and_scale(a, b);
                    assert!(
                        d <= 1e-4 * scale.max(1.0),
                        "k={k}, fused {fused}: {name} gradient differs by {d} (scale {scale})"
                    );
                }
            }
        }
    }

    #[test]
    fn parameter_names_and_shapes_are_conv2d_s() {
        let dev = Device::Cpu;
        let vm = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
        fast_conv(3, 4, 3, vb.pp("c")).unwrap();
        let data = vm.data().lock().unwrap();
        assert_eq!(data["c.weight"].dims(), &[4, 3, 3, 3]);
        assert_eq!(data["c.bias"].dims(), &[4]);
        assert!(fast_conv(3, 4, 2, vb.pp("d")).is_err());
    }
}

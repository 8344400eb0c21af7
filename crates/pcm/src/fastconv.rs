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

use crate::{PcmError, Result};
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use frugal_model::Precision;

#[derive(Debug, Clone)]
pub struct FastConv {
    weight: Tensor,
    bias: Tensor,
    k: usize,
    /// The matmul's dtype (bf16: autocast-style, see frugal-model's precision).
    pub precision: Precision,
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};
    use candle_nn::Conv2dConfig;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    /// Forward and all three gradients against candle's conv2d.
    #[test]
    fn matches_candle_conv2d_forward_and_backward() {
        let dev = Device::Cpu;
        for (k, c, o, h, w) in [(3, 3, 5, 7, 6), (1, 4, 2, 5, 5), (3, 1, 8, 28, 28)] {
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
            let fast =
                FastConv::from_tensors(wt.as_tensor().clone(), bs.as_tensor().clone()).unwrap();
            let (y1, y2) = (reference.forward(&x).unwrap(), fast.forward(&x).unwrap());
            assert!(
                max_diff(&y1, &y2) < 1e-4,
                "k={k}: forward differs by {}",
                max_diff(&y1, &y2)
            );
            let g1 = (&y1 * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (&y2 * &g).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in [("input", &x), ("weight", &wt), ("bias", &bs)] {
                let (a, b) = (
                    g1.get(v.as_tensor()).unwrap(),
                    g2.get(v.as_tensor()).unwrap(),
                );
                let scale: f32 = a.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
                let d = max_diff(a, b);
                assert!(
                    d <= 1e-4 * scale.max(1.0),
                    "k={k}: {name} gradient differs by {d} (scale {scale})"
                );
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

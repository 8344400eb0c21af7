//! A small class-conditional U-Net for 28×28 grayscale images.
//!
//! Two resolutions below the input (28 → 14 → 7), one residual block per
//! level, two in the middle, skip connections by concatenation. The
//! conditioning vector is the sum of a sinusoidal timestep embedding (through
//! a two-layer MLP) and a class embedding with one extra row, the null class
//! used for classifier-free guidance. Every op is a plain candle op with a
//! backward (pooling and upsampling are reshapes), or a fused CPU op with a
//! hand-written, tested backward (GroupNorm + SiLU, norm_act.rs; the
//! convolutions' im2col, fastconv.rs), so gradients reach every parameter.

use crate::fastconv::{fast_conv, FastConv};
use crate::norm_act::{group_norm_silu, GroupNormSilu};
use crate::{PcmError, Result};
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Embedding, Linear, VarBuilder};
use frugal_model::Precision;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UNetConfig {
    /// Channels at full resolution; 2× at the lower two levels.
    pub channels: usize,
    /// GroupNorm groups (must divide `channels`).
    pub groups: usize,
    /// Image side (divisible by 4).
    pub image_size: usize,
    pub num_classes: usize,
}

impl Default for UNetConfig {
    fn default() -> Self {
        Self {
            channels: 32,
            groups: 8,
            image_size: 28,
            num_classes: 10,
        }
    }
}

impl UNetConfig {
    pub fn validate(&self) -> Result<()> {
        if self.channels == 0 || self.groups == 0 || !self.channels.is_multiple_of(self.groups) {
            return Err(PcmError::arg(format!(
                "U-Net groups ({}) must divide channels ({})",
                self.groups, self.channels
            )));
        }
        if self.image_size == 0 || !self.image_size.is_multiple_of(4) {
            return Err(PcmError::arg(format!(
                "image size {} is not divisible by 4",
                self.image_size
            )));
        }
        if self.num_classes == 0 {
            return Err(PcmError::arg("num_classes must be positive"));
        }
        Ok(())
    }
    /// The class index that means "no class" (CFG's ∅).
    pub fn null_class(&self) -> u32 {
        self.num_classes as u32
    }
}

struct ResBlock {
    norm1: GroupNormSilu,
    conv1: FastConv,
    emb: Linear,
    norm2: GroupNormSilu,
    conv2: FastConv,
    skip: Option<FastConv>,
}

/// 3×3 convolutions with padding 1 (fastconv.rs: the same parameters as
/// candle_nn's Conv2d, a much faster backward on the CPU).
fn conv3(i: usize, o: usize, vb: VarBuilder) -> Result<FastConv> {
    fast_conv(i, o, 3, vb)
}

impl ResBlock {
    fn convs_mut(&mut self) -> impl Iterator<Item = &mut FastConv> {
        [&mut self.conv1, &mut self.conv2]
            .into_iter()
            .chain(self.skip.as_mut())
    }

    fn new(i: usize, o: usize, emb: usize, groups: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            norm1: group_norm_silu(groups, i, 1e-5, vb.pp("norm1"))?,
            conv1: conv3(i, o, vb.pp("conv1"))?,
            emb: candle_nn::linear(emb, o, vb.pp("emb"))?,
            norm2: group_norm_silu(groups, o, 1e-5, vb.pp("norm2"))?,
            conv2: conv3(o, o, vb.pp("conv2"))?,
            skip: if i != o {
                Some(fast_conv(i, o, 1, vb.pp("skip"))?)
            } else {
                None
            },
        })
    }

    fn forward(&self, x: &Tensor, emb: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(&self.norm1.forward(x)?)?;
        let e = self.emb.forward(&emb.silu()?)?.unsqueeze(2)?.unsqueeze(3)?;
        let h = h.broadcast_add(&e)?;
        let h = self.conv2.forward(&self.norm2.forward(&h)?)?;
        let skip = match &self.skip {
            Some(s) => s.forward(x)?,
            None => x.clone(),
        };
        Ok((h + skip)?)
    }
}

pub struct UNet {
    pub config: UNetConfig,
    time1: Linear,
    time2: Linear,
    class_emb: Embedding,
    conv_in: FastConv,
    down0: ResBlock,
    down1: ResBlock,
    mid0: ResBlock,
    mid1: ResBlock,
    up1: ResBlock,
    up0: ResBlock,
    norm_out: GroupNormSilu,
    conv_out: FastConv,
    device: Device,
}

impl UNet {
    pub fn new(config: UNetConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let c = config.channels;
        let e = 4 * c;
        let g = config.groups;
        Ok(Self {
            config,
            time1: candle_nn::linear(c, e, vb.pp("time.0"))?,
            time2: candle_nn::linear(e, e, vb.pp("time.1"))?,
            class_emb: candle_nn::embedding(config.num_classes + 1, e, vb.pp("class_emb"))?,
            conv_in: conv3(1, c, vb.pp("conv_in"))?,
            down0: ResBlock::new(c, c, e, g, vb.pp("down0"))?,
            down1: ResBlock::new(c, 2 * c, e, g, vb.pp("down1"))?,
            mid0: ResBlock::new(2 * c, 2 * c, e, g, vb.pp("mid0"))?,
            mid1: ResBlock::new(2 * c, 2 * c, e, g, vb.pp("mid1"))?,
            up1: ResBlock::new(4 * c, 2 * c, e, g, vb.pp("up1"))?,
            up0: ResBlock::new(3 * c, c, e, g, vb.pp("up0"))?,
            norm_out: group_norm_silu(g, c, 1e-5, vb.pp("norm_out"))?,
            conv_out: conv3(c, 1, vb.pp("conv_out"))?,
            device: vb.device().clone(),
        })
    }

    fn blocks_mut(&mut self) -> [&mut ResBlock; 6] {
        [
            &mut self.down0,
            &mut self.down1,
            &mut self.mid0,
            &mut self.mid1,
            &mut self.up1,
            &mut self.up0,
        ]
    }

    /// Runs every convolution's matmul in `precision` (bf16: autocast-style,
    /// weights and everything else stay f32). The time MLP, embeddings and
    /// GroupNorms stay f32: under 1 % of the FLOPs.
    pub fn set_precision(&mut self, precision: Precision) {
        self.conv_in.precision = precision;
        self.conv_out.precision = precision;
        for blk in self.blocks_mut() {
            for conv in blk.convs_mut() {
                conv.precision = precision;
            }
        }
    }

    /// Whether the fused CPU ops (GroupNorm + SiLU, im2col) run, or the same
    /// computation from plain candle ops (the reference the tests and
    /// `examples/unet_bench.rs` compare against). On by default.
    pub fn set_fused_ops(&mut self, on: bool) {
        self.conv_in.fused = on;
        self.conv_out.fused = on;
        self.norm_out.fused = on;
        for blk in self.blocks_mut() {
            blk.norm1.fused = on;
            blk.norm2.fused = on;
            for conv in blk.convs_mut() {
                conv.fused = on;
            }
        }
    }

    /// The matmul precision (see [`UNet::set_precision`]).
    pub fn precision(&self) -> Precision {
        self.conv_in.precision
    }

    /// ε̂(x_t, t, class) for a batch `x` of shape (B, 1, H, W); `classes`
    /// may hold the null class.
    pub fn forward(&self, x: &Tensor, t: &[usize], classes: &[u32]) -> Result<Tensor> {
        let (emb, d0, d1, m) = self.encode(x, t, classes)?;
        let u1 = self
            .up1
            .forward(&Tensor::cat(&[&upsample(&m)?, &d1], 1)?, &emb)?;
        let u0 = self
            .up0
            .forward(&Tensor::cat(&[&upsample(&u1)?, &d0], 1)?, &emb)?;
        Ok(self.conv_out.forward(&self.norm_out.forward(&u0)?)?)
    }

    /// The middle block's output (B, 2C, H/4, W/4): the frozen teacher
    /// features the adversarial discriminator's heads read.
    pub fn mid_features(&self, x: &Tensor, t: &[usize], classes: &[u32]) -> Result<Tensor> {
        Ok(self.encode(x, t, classes)?.3)
    }

    /// Conditioning vector, the two skip activations and the middle output.
    fn encode(
        &self,
        x: &Tensor,
        t: &[usize],
        classes: &[u32],
    ) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
        let b = x.dim(0)?;
        if t.len() != b || classes.len() != b {
            return Err(PcmError::arg(format!(
                "batch of {b} images with {} timesteps and {} classes",
                t.len(),
                classes.len()
            )));
        }
        if let Some(c) = classes.iter().find(|&&c| c > self.config.null_class()) {
            return Err(PcmError::arg(format!("class {c} is out of range")));
        }
        let temb = timestep_embedding(t, self.config.channels, &self.device)?;
        let temb = self.time2.forward(&self.time1.forward(&temb)?.silu()?)?;
        let cls = Tensor::new(classes, &self.device)?;
        let emb = (temb + self.class_emb.forward(&cls)?)?;

        let h = self.conv_in.forward(x)?;
        let d0 = self.down0.forward(&h, &emb)?;
        let d1 = self.down1.forward(&pool(&d0)?, &emb)?;
        let m = self.mid0.forward(&pool(&d1)?, &emb)?;
        let m = self.mid1.forward(&m, &emb)?;
        Ok((emb, d0, d1, m))
    }

    /// ε̂ with classifier-free guidance ε(c) + w·(ε(c) − ε(∅)) (LCM's form of
    /// w; w = 0 is the plain conditional model). One batched forward.
    pub fn forward_cfg(
        &self,
        x: &Tensor,
        t: &[usize],
        classes: &[u32],
        w: &[f64],
    ) -> Result<Tensor> {
        if w.iter().all(|&w| w == 0.0) {
            return self.forward(x, t, classes);
        }
        let b = x.dim(0)?;
        let xx = Tensor::cat(&[x, x], 0)?;
        let tt: Vec<usize> = t.iter().chain(t).copied().collect();
        let null = self.config.null_class();
        let cc: Vec<u32> = classes
            .iter()
            .copied()
            .chain(std::iter::repeat_n(null, b))
            .collect();
        let e = self.forward(&xx, &tt, &cc)?;
        let (ec, eu) = (e.narrow(0, 0, b)?, e.narrow(0, b, b)?);
        let wt = per_sample(w, x.dims(), &self.device)?;
        Ok((&ec + (&ec - &eu)?.broadcast_mul(&wt)?)?)
    }
}

/// A per-sample scalar as a (B, 1, 1, 1) tensor for broadcasting.
pub fn per_sample(v: &[f64], dims: &[usize], device: &Device) -> Result<Tensor> {
    let mut shape = vec![v.len()];
    shape.extend(std::iter::repeat_n(1, dims.len() - 1));
    let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    Ok(Tensor::from_vec(v, shape, device)?)
}

/// 2×2 average pooling as a reshape and two means (differentiable).
fn pool(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    Ok(x.reshape((b, c, h / 2, 2, w / 2, 2))?.mean(5)?.mean(3)?)
}

/// Nearest-neighbour 2× upsampling as a broadcast (differentiable).
fn upsample(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    Ok(x.unsqueeze(3)?
        .unsqueeze(5)?
        .broadcast_as((b, c, h, 2, w, 2))?
        .reshape((b, c, 2 * h, 2 * w))?)
}

/// Transformer-style sinusoidal embedding of integer timesteps, (B, dim).
pub fn timestep_embedding(t: &[usize], dim: usize, device: &Device) -> Result<Tensor> {
    let half = dim / 2;
    let mut v = Vec::with_capacity(t.len() * dim);
    for &t in t {
        for i in 0..half {
            let f = (-(10000f64.ln()) * i as f64 / half as f64).exp();
            v.push((t as f64 * f).sin() as f32);
        }
        for i in 0..half {
            let f = (-(10000f64.ln()) * i as f64 / half as f64).exp();
            v.push((t as f64 * f).cos() as f32);
        }
        v.extend(std::iter::repeat_n(0f32, dim - 2 * half));
    }
    Ok(Tensor::from_vec(v, (t.len(), dim), device)?.to_dtype(DType::F32)?)
}

/// Mean over all but the batch dimension (per-sample losses).
pub fn mean_per_sample(x: &Tensor) -> Result<Tensor> {
    Ok(x.flatten_from(1)?.mean(D::Minus1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::diff_and_scale;
    use candle_nn::VarMap;

    fn tiny() -> UNetConfig {
        UNetConfig {
            channels: 8,
            groups: 4,
            image_size: 8,
            num_classes: 3,
        }
    }

    #[test]
    fn every_parameter_gets_a_gradient() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
        let net = UNet::new(tiny(), vb).unwrap();
        let x = Tensor::randn(0f32, 1.0, (4, 1, 8, 8), &dev).unwrap();
        // The class embedding row of each class used gets a gradient; use all.
        let y = net.forward(&x, &[3, 500, 999, 0], &[0, 1, 2, 3]).unwrap();
        assert_eq!(y.dims(), &[4, 1, 8, 8]);
        assert!(
            vm.all_vars().len() > 40,
            "{} variables",
            vm.all_vars().len()
        );
        assert_every_variable_has_a_gradient(&vm, &y);
    }

    /// Back-propagates mean(y²) and checks every variable of `vm` gets a
    /// finite, non-zero gradient.
    fn assert_every_variable_has_a_gradient(vm: &VarMap, y: &Tensor) {
        let grads = y.sqr().unwrap().mean_all().unwrap().backward().unwrap();
        for (name, var) in vm.data().lock().unwrap().iter() {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let n: f32 = g.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
            assert!(n > 0.0 && n.is_finite(), "{name}: |grad| = {n}");
        }
    }

    /// bf16 convolutions: every convolution switches, the output moves by
    /// bf16's rounding (not more), and every parameter still gets a
    /// gradient through the casts.
    #[test]
    fn bf16_convolutions_stay_close_and_differentiable() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let mut net = UNet::new(tiny(), VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
        let x = Tensor::randn(0f32, 1.0, (4, 1, 8, 8), &dev).unwrap();
        let (t, c) = ([3, 500, 999, 0], [0, 1, 2, 3]);
        let f32_out = net.forward(&x, &t, &c).unwrap();
        assert_eq!(net.precision(), Precision::F32);
        net.set_precision(Precision::Bf16);
        assert_eq!(net.precision(), Precision::Bf16);
        let convs = [
            &net.down0, &net.down1, &net.mid0, &net.mid1, &net.up1, &net.up0,
        ];
        assert!(convs.iter().all(|b| [&b.conv1, &b.conv2]
            .into_iter()
            .chain(b.skip.as_ref())
            .all(|c| c.precision == Precision::Bf16)));
        assert_eq!(net.conv_out.precision, Precision::Bf16);
        let bf16_out = net.forward(&x, &t, &c).unwrap();
        let (gap, scale) = diff_and_scale(&f32_out, &bf16_out);
        // bf16 keeps 8 mantissa bits (2^-8 ≈ 0.4 % per rounding); a few
        // layers of them stay within a few percent, and do change the output.
        assert!(gap > 0.0 && gap < 0.05 * scale, "gap {gap}, scale {scale}");
        assert_every_variable_has_a_gradient(&vm, &bf16_out);
    }

    /// The whole U-Net with the fused CPU ops against the same network from
    /// plain candle ops: output and every parameter's gradient.
    #[test]
    fn fused_ops_match_the_composite_network() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let mut net = UNet::new(tiny(), VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
        let x = Tensor::randn(0f32, 1.0, (3, 1, 8, 8), &dev).unwrap();
        let (t, c) = ([3, 500, 999], [0, 1, 3]);
        let run = |net: &UNet| {
            let y = net.forward(&x, &t, &c).unwrap();
            let grads = y.sqr().unwrap().mean_all().unwrap().backward().unwrap();
            (y, grads)
        };
        let (y_fused, g_fused) = run(&net);
        net.set_fused_ops(false);
        let (y_plain, g_plain) = run(&net);
        let (d, s) = diff_and_scale(&y_fused, &y_plain);
        assert!(d <= 1e-5 * s.max(1.0), "output differs by {d} (scale {s})");
        for (name, var) in vm.data().lock().unwrap().iter() {
            let (a, b) = (
                g_fused.get(var.as_tensor()).unwrap(),
                g_plain.get(var.as_tensor()).unwrap(),
            );
            let (d, s) = diff_and_scale(a, b);
            assert!(
                d <= 1e-4 * s.max(1e-3),
                "{name}: gradient differs by {d} (scale {s})"
            );
        }
    }

    #[test]
    fn pool_and_upsample_shapes_values() {
        let dev = Device::Cpu;
        let x = Tensor::arange(0f32, 16.0, &dev)
            .unwrap()
            .reshape((1, 1, 4, 4))
            .unwrap();
        let p = pool(&x).unwrap();
        assert_eq!(
            p.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![2.5, 4.5, 10.5, 12.5]
        );
        let u = upsample(&p).unwrap();
        let v = u.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(&v[..4], &[2.5, 2.5, 4.5, 4.5]);
        assert_eq!(&v[4..8], &[2.5, 2.5, 4.5, 4.5]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let net = UNet::new(tiny(), VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
        let x = Tensor::zeros((1, 1, 8, 8), DType::F32, &dev).unwrap();
        assert!(net.forward(&x, &[1], &[4]).is_err());
        assert!(net.forward(&x, &[1, 2], &[0]).is_err());
        let bad = UNetConfig {
            groups: 3,
            ..tiny()
        };
        assert!(bad.validate().is_err());
    }
}

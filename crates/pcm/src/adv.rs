//! The optional adversarial consistency loss (papers.md §3, step 6): small
//! trainable heads on the frozen teacher's middle-block features judge
//! edge predictions re-noised to a random timestep of their phase; "real"
//! is the target network's prediction, "fake" the student's. Hinge losses;
//! the discriminator and the student take alternate updates each step.

use crate::fastconv::{fast_conv, FastConv};
use crate::schedule::Schedule;
use crate::unet::{per_sample, UNet};
use crate::Result;
use candle_core::{Module, Tensor};
use candle_nn::{Linear, VarBuilder};

pub struct Discriminator {
    conv: FastConv,
    out: Linear,
}

impl Discriminator {
    /// Heads for teacher features with `channels` channels.
    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        let hidden = (channels / 2).max(1);
        Ok(Self {
            conv: fast_conv(channels, hidden, 3, vb.pp("conv"))?,
            out: candle_nn::linear(hidden, 1, vb.pp("out"))?,
        })
    }

    /// One logit per sample of `x` at timesteps `s`.
    pub fn forward(
        &self,
        teacher: &UNet,
        x: &Tensor,
        s: &[usize],
        classes: &[u32],
    ) -> Result<Tensor> {
        let f = teacher.mid_features(x, s, classes)?;
        let h = self.conv.forward(&f)?.silu()?.mean(3)?.mean(2)?;
        Ok(self.out.forward(&h)?.squeeze(1)?)
    }
}

/// Forward diffusion from timestep `from` to `to ≥ from`:
/// x_to = √(ᾱ_to/ᾱ_from)·x + √(1 − ᾱ_to/ᾱ_from)·z.
pub fn renoise(
    sched: &Schedule,
    x: &Tensor,
    from: &[usize],
    to: &[usize],
    z: &Tensor,
) -> Result<Tensor> {
    let ratio: Vec<f64> = from
        .iter()
        .zip(to)
        .map(|(&f, &t)| (sched.alphas_cumprod[t] / sched.alphas_cumprod[f]).min(1.0))
        .collect();
    let a: Vec<f64> = ratio.iter().map(|r| r.sqrt()).collect();
    let b: Vec<f64> = ratio.iter().map(|r| (1.0 - r).sqrt()).collect();
    Ok((x.broadcast_mul(&per_sample(&a, x.dims(), x.device())?)?
        + z.broadcast_mul(&per_sample(&b, x.dims(), x.device())?)?)?)
}

/// Discriminator hinge loss: mean ReLU(1 − D(real)) + mean ReLU(1 + D(fake)).
pub fn hinge_d(real: &Tensor, fake: &Tensor) -> Result<Tensor> {
    let r = (1.0 - real)?.relu()?.mean_all()?;
    let f = (fake + 1.0)?.relu()?.mean_all()?;
    Ok((r + f)?)
}

/// Generator hinge loss: −mean D(fake).
pub fn hinge_g(fake: &Tensor) -> Result<Tensor> {
    Ok(fake.mean_all()?.neg()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn hinge_values_and_identity_renoise() {
        let dev = Device::Cpu;
        let real = Tensor::new(&[2.0f32, 0.5], &dev).unwrap();
        let fake = Tensor::new(&[-2.0f32, 0.5], &dev).unwrap();
        // real: relu(-1)=0, relu(0.5)=0.5 → 0.25; fake: relu(-1)=0, relu(1.5) → 0.75.
        let d: f32 = hinge_d(&real, &fake).unwrap().to_scalar().unwrap();
        assert!((d - 1.0).abs() < 1e-6);
        let g: f32 = hinge_g(&fake).unwrap().to_scalar().unwrap();
        assert!((g - 0.75).abs() < 1e-6);
        let s = Schedule::ddpm();
        let x = Tensor::new(&[[[[0.3f32]]], [[[-0.7]]]], &dev).unwrap();
        let z = Tensor::new(&[[[[1.0f32]]], [[[1.0]]]], &dev).unwrap();
        let same = renoise(&s, &x, &[100, 200], &[100, 200], &z).unwrap();
        assert_eq!(
            same.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![0.3, -0.7]
        );
        let up = renoise(&s, &x, &[0, 0], &[999, 999], &z).unwrap();
        let v = up.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(v[0] > 0.99 && v[1] > 0.99, "{v:?}"); // almost pure noise
    }
}

//! Samplers. All of them visit [`sampler_timesteps`]`(steps)` from 999 to 0.
//!
//! * `ddim` (teacher) and `pcm`: x ← DDIM jump with ε̂ to the next timestep;
//!   the output is x at timestep 0. For a PCM student with `steps = M` this
//!   is its edge-to-edge sampling.
//! * `pcm-stochastic` (r ∈ [0, 1]): x_s = α_s x̂₀ + σ_s(√r ε̂ + √(1−r) z);
//!   r = 1 is `pcm`, r = 0 re-noises fully like LCM.
//! * `lcm`: x̂₀ = c_skip x_t + c_out x̂₀(ε̂), then x = α_s x̂₀ + σ_s z; the
//!   output is the last x̂₀.

use crate::schedule::{sampler_timesteps, Schedule};
use crate::unet::UNet;
use crate::{rng, PcmError, Result};
use candle_core::{Device, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum Sampler {
    Ddim,
    Pcm,
    PcmStochastic { r: f64 },
    Lcm,
}

impl Sampler {
    pub fn parse(name: &str, r: f64) -> Result<Self> {
        match name {
            "ddim" => Ok(Sampler::Ddim),
            "pcm" => Ok(Sampler::Pcm),
            "pcm-stochastic" => {
                if !(0.0..=1.0).contains(&r) {
                    return Err(PcmError::arg(format!("--r must be in [0, 1], got {r}")));
                }
                Ok(Sampler::PcmStochastic { r })
            }
            "lcm" => Ok(Sampler::Lcm),
            other => Err(PcmError::arg(format!(
                "unknown sampler `{other}` (ddim, pcm, pcm-stochastic, lcm)"
            ))),
        }
    }
    pub fn name(&self) -> String {
        match self {
            Sampler::Ddim => "ddim".into(),
            Sampler::Pcm => "pcm".into(),
            Sampler::PcmStochastic { r } => format!("pcm-stochastic(r={r})"),
            Sampler::Lcm => "lcm".into(),
        }
    }
}

/// Samples one image per entry of `classes` (B, 1, H, W), clamped to [-1, 1].
/// Noise is drawn from `seed`, so the same call gives the same images.
pub fn sample(
    net: &UNet,
    sampler: Sampler,
    steps: usize,
    classes: &[u32],
    cfg: f64,
    seed: u64,
    device: &Device,
) -> Result<Tensor> {
    let sched = Schedule::ddpm();
    let ts = sampler_timesteps(steps)?;
    let s = net.config.image_size;
    let b = classes.len();
    let mut r = rng::stream(seed, 0, 3);
    let mut x = rng::normal(&mut r, &[b, 1, s, s], device)?;
    let w = vec![cfg; b];
    for i in 0..steps {
        let (t, next) = (ts[i], ts[i + 1]);
        let eps = net.forward_cfg(&x, &vec![t; b], classes, &w)?.detach();
        x = match sampler {
            Sampler::Ddim | Sampler::Pcm => {
                let (a, c) = sched.ddim(t, next);
                (x.affine(a, 0.0)? + eps.affine(c, 0.0)?)?
            }
            Sampler::PcmStochastic { r: ratio } => {
                let (a0, b0) = sched.x0(t);
                let x0 = (x.affine(a0, 0.0)? + eps.affine(b0, 0.0)?)?;
                let z = rng::normal(&mut r, &[b, 1, s, s], device)?;
                let dir =
                    (eps.affine(ratio.sqrt(), 0.0)? + z.affine((1.0 - ratio).sqrt(), 0.0)?)?;
                (x0.affine(sched.alpha(next), 0.0)? + dir.affine(sched.sigma(next), 0.0)?)?
            }
            Sampler::Lcm => {
                let (a, c) = sched.lcm(t);
                let x0 = (x.affine(a, 0.0)? + eps.affine(c, 0.0)?)?;
                if i + 1 == steps {
                    x0
                } else {
                    let z = rng::normal(&mut r, &[b, 1, s, s], device)?;
                    (x0.affine(sched.alpha(next), 0.0)? + z.affine(sched.sigma(next), 0.0)?)?
                }
            }
        };
    }
    Ok(x.clamp(-1f32, 1f32)?)
}

/// [`sample`] in chunks of `batch`, for many images.
#[allow(clippy::too_many_arguments)]
pub fn sample_many(
    net: &UNet,
    sampler: Sampler,
    steps: usize,
    classes: &[u32],
    cfg: f64,
    seed: u64,
    batch: usize,
    device: &Device,
    mut on_chunk: impl FnMut(usize),
) -> Result<Tensor> {
    let mut parts = Vec::new();
    for (i, chunk) in classes.chunks(batch.max(1)).enumerate() {
        // Each chunk has its own noise stream: results do not depend on
        // how many chunks ran before in this process.
        parts.push(sample(
            net,
            sampler,
            steps,
            chunk,
            cfg,
            seed.wrapping_add(1 + i as u64),
            device,
        )?);
        on_chunk(chunk.len());
    }
    Ok(Tensor::cat(&parts, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{max_abs, max_abs_diff};
    use crate::unet::UNetConfig;
    use candle_core::DType;
    use candle_nn::{VarBuilder, VarMap};

    #[test]
    fn samplers_are_deterministic_and_stochastic_r1_equals_pcm() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let cfg = UNetConfig {
            channels: 8,
            groups: 4,
            image_size: 8,
            num_classes: 3,
        };
        let net = UNet::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
        let cls = [0u32, 1, 2];
        let a = sample(&net, Sampler::Pcm, 2, &cls, 0.5, 7, &dev).unwrap();
        let b = sample(
            &net,
            Sampler::PcmStochastic { r: 1.0 },
            2,
            &cls,
            0.5,
            7,
            &dev,
        )
        .unwrap();
        let c = sample(&net, Sampler::Pcm, 2, &cls, 0.5, 7, &dev).unwrap();
        assert_eq!(max_abs_diff(&a, &c), 0.0);
        assert!(max_abs_diff(&a, &b) < 1e-4, "{}", max_abs_diff(&a, &b));
        let l = sample(&net, Sampler::Lcm, 2, &cls, 0.0, 7, &dev).unwrap();
        assert_eq!(l.dims(), &[3, 1, 8, 8]);
        let m = max_abs(&l);
        assert!(m <= 1.0);
        assert!(Sampler::parse("pcm-stochastic", 1.5).is_err());
        assert!(Sampler::parse("euler", 0.0).is_err());
    }
}

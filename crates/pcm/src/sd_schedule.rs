//! Stable Diffusion's noise schedule and the two few-step samplers PCM's
//! released LoRAs are used with, as diffusers defines them:
//!
//! * **DDIM, trailing spacing** (`DDIMScheduler(timestep_spacing="trailing")`,
//!   η = 0): timesteps `round(T − k·T/S) − 1` (numpy rounds half to even),
//!   each step jumps to `t − ⌊T/S⌋`, and the last one to ᾱ₀ (SD 1.5's
//!   `set_alpha_to_one = false`).
//! * **TCD** (`TCDScheduler`, what PCM's demo uses; it ignores
//!   `timestep_spacing`): S timesteps picked from the 50-point grid
//!   19, 39, …, 999 at ⌊i·50/S⌋ from the top; each step predicts x̂₀, re-noises
//!   it to `s = ⌊(1 − γ)·t_next⌋` and, for γ > 0 (not on the last step),
//!   adds fresh noise back up to `t_next`. With γ = 0 this is deterministic
//!   and is a DDIM jump straight to the next timestep.
//!
//! Both are linear in `(x_t, ε̂, z)`, so a sampler is a list of [`Step`]s
//! `x ← a·x + b·ε̂ + c·z`, computed here without any network and tested.

use crate::{PcmError, Result};

/// The training-time ᾱ of Stable Diffusion.
#[derive(Debug, Clone)]
pub struct SdSchedule {
    pub alphas_cumprod: Vec<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BetaSchedule {
    Linear,
    /// Linear in √β (SD 1.5's `scaled_linear`).
    ScaledLinear,
}

impl SdSchedule {
    pub fn new(beta_start: f64, beta_end: f64, kind: BetaSchedule, steps: usize) -> Result<Self> {
        if steps < 2 || !(0.0..1.0).contains(&beta_start) || !(0.0..1.0).contains(&beta_end) {
            return Err(PcmError::arg(format!(
                "bad noise schedule: β from {beta_start} to {beta_end} over {steps} steps"
            )));
        }
        let lerp = |a: f64, b: f64, i: usize| a + (b - a) * i as f64 / (steps - 1) as f64;
        let mut prod = 1.0;
        let acp = (0..steps)
            .map(|i| {
                let beta = match kind {
                    BetaSchedule::Linear => lerp(beta_start, beta_end, i),
                    BetaSchedule::ScaledLinear => {
                        lerp(beta_start.sqrt(), beta_end.sqrt(), i).powi(2)
                    }
                };
                prod *= 1.0 - beta;
                prod
            })
            .collect();
        Ok(Self {
            alphas_cumprod: acp,
        })
    }

    /// SD 1.5: scaled-linear β from 0.00085 to 0.012 over 1000 steps.
    pub fn sd15() -> Self {
        Self::new(0.00085, 0.012, BetaSchedule::ScaledLinear, 1000).expect("valid constants")
    }

    pub fn train_steps(&self) -> usize {
        self.alphas_cumprod.len()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SdSampler {
    DdimTrailing,
    /// γ in [0, 1]; 0 is deterministic.
    Tcd {
        gamma: f64,
    },
}

/// One sampler step at timestep `t`: `x ← a·x + b·ε̂(x, t) + c·z`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub t: usize,
    pub a: f64,
    pub b: f64,
    pub c: f64,
}

fn check_steps(steps: usize, max: usize) -> Result<()> {
    if steps == 0 || steps > max {
        return Err(PcmError::arg(format!(
            "--steps must be in 1..={max}, got {steps}"
        )));
    }
    Ok(())
}

/// diffusers' trailing timesteps: `round(T − k·T/S) − 1`, k = 0..S.
pub fn ddim_trailing_timesteps(steps: usize, train_steps: usize) -> Result<Vec<usize>> {
    check_steps(steps, train_steps)?;
    let ratio = train_steps as f64 / steps as f64;
    Ok((0..steps)
        .map(|k| (train_steps as f64 - k as f64 * ratio).round_ties_even() as usize - 1)
        .collect())
}

/// TCD's timesteps: S points of the 50-point grid at ⌊i·50/S⌋ from the top.
pub fn tcd_timesteps(steps: usize, train_steps: usize) -> Result<Vec<usize>> {
    const ORIGINAL: usize = 50;
    check_steps(steps, ORIGINAL)?;
    let k = train_steps / ORIGINAL;
    let top_down: Vec<usize> = (1..=ORIGINAL).rev().map(|i| i * k - 1).collect();
    let stride = ORIGINAL as f64 / steps as f64;
    Ok((0..steps)
        .map(|i| top_down[(i as f64 * stride).floor() as usize])
        .collect())
}

/// (√ᾱ, √(1−ᾱ)).
fn ab(acp: &[f64], t: usize) -> (f64, f64) {
    (acp[t].sqrt(), (1.0 - acp[t]).sqrt())
}

/// `(a, b)` of x̂₀ re-noised to ᾱ_s: `α_s(x − σ_t ε)/α_t + σ_s ε`.
fn jump(acp: &[f64], t: usize, s: usize) -> (f64, f64) {
    let ((at, st), (as_, ss)) = (ab(acp, t), ab(acp, s));
    (as_ / at, ss - as_ * st / at)
}

/// The whole sampler as a list of steps.
pub fn plan(sched: &SdSchedule, sampler: SdSampler, steps: usize) -> Result<Vec<Step>> {
    let acp = &sched.alphas_cumprod;
    let n = sched.train_steps();
    match sampler {
        SdSampler::DdimTrailing => {
            let ts = ddim_trailing_timesteps(steps, n)?;
            let ratio = n / steps;
            Ok(ts
                .iter()
                .map(|&t| {
                    // Below 0 diffusers uses ᾱ₀ (set_alpha_to_one = false).
                    let (a, b) = jump(acp, t, t.saturating_sub(ratio));
                    Step { t, a, b, c: 0.0 }
                })
                .collect())
        }
        SdSampler::Tcd { gamma } => {
            if !(0.0..=1.0).contains(&gamma) {
                return Err(PcmError::arg(format!(
                    "TCD gamma must be in [0, 1], got {gamma}"
                )));
            }
            let ts = tcd_timesteps(steps, n)?;
            Ok(ts
                .iter()
                .enumerate()
                .map(|(i, &t)| {
                    let next = ts.get(i + 1).copied().unwrap_or(0);
                    let s = ((1.0 - gamma) * next as f64).floor() as usize;
                    let (a, b) = jump(acp, t, s);
                    let last = i + 1 == ts.len();
                    if gamma > 0.0 && !last {
                        // Forward-diffuse from s back up to `next`.
                        let r = acp[next] / acp[s];
                        let k = r.sqrt();
                        Step {
                            t,
                            a: a * k,
                            b: b * k,
                            c: (1.0 - r).sqrt(),
                        }
                    } else {
                        Step { t, a, b, c: 0.0 }
                    }
                })
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_timesteps_are_diffusers() {
        let f = |s| ddim_trailing_timesteps(s, 1000).unwrap();
        assert_eq!(f(1), vec![999]);
        assert_eq!(f(2), vec![999, 499]);
        assert_eq!(f(3), vec![999, 666, 332]);
        assert_eq!(f(4), vec![999, 749, 499, 249]);
        assert_eq!(f(8), vec![999, 874, 749, 624, 499, 374, 249, 124]);
        // Halves round to even: 937.5 → 938, 812.5 → 812, 62.5 → 62.
        assert_eq!(
            f(16),
            vec![999, 937, 874, 811, 749, 687, 624, 561, 499, 437, 374, 311, 249, 187, 124, 61]
        );
        assert!(ddim_trailing_timesteps(0, 1000).is_err());
        assert!(ddim_trailing_timesteps(1001, 1000).is_err());
    }

    #[test]
    fn tcd_timesteps_are_diffusers() {
        let f = |s| tcd_timesteps(s, 1000).unwrap();
        assert_eq!(f(1), vec![999]);
        assert_eq!(f(2), vec![999, 499]);
        assert_eq!(f(3), vec![999, 679, 339]);
        assert_eq!(f(4), vec![999, 759, 499, 259]);
        assert_eq!(f(8), vec![999, 879, 759, 639, 499, 379, 259, 139]);
        assert_eq!(
            f(50),
            (1..=50).rev().map(|i| 20 * i - 1).collect::<Vec<_>>()
        );
        assert!(tcd_timesteps(51, 1000).is_err());
    }

    #[test]
    fn sd15_schedule_endpoints() {
        let s = SdSchedule::sd15();
        assert_eq!(s.train_steps(), 1000);
        assert!((s.alphas_cumprod[0] - (1.0 - 0.00085)).abs() < 1e-12);
        // Known value of SD 1.5's ᾱ at t = 999.
        assert!(
            (s.alphas_cumprod[999] - 0.004_660_1).abs() < 1e-6,
            "{}",
            s.alphas_cumprod[999]
        );
    }

    /// The step coefficients against the formulas written out by hand.
    #[test]
    fn plans_match_hand_formulas() {
        let s = SdSchedule::sd15();
        let acp = &s.alphas_cumprod;
        let ddim = plan(&s, SdSampler::DdimTrailing, 4).unwrap();
        assert_eq!(
            ddim.iter().map(|p| p.t).collect::<Vec<_>>(),
            vec![999, 749, 499, 249]
        );
        // 749 → 499: a = √(ᾱ₄₉₉/ᾱ₇₄₉), b = √(1−ᾱ₄₉₉) − a·√(1−ᾱ₇₄₉).
        let a = (acp[499] / acp[749]).sqrt();
        let b = (1.0 - acp[499]).sqrt() - a * (1.0 - acp[749]).sqrt();
        assert!((ddim[1].a - a).abs() < 1e-12 && (ddim[1].b - b).abs() < 1e-12);
        // The last step lands on ᾱ₀ (249 − 250 < 0).
        let a = (acp[0] / acp[249]).sqrt();
        assert!((ddim[3].a - a).abs() < 1e-12 && ddim[3].c == 0.0);

        // TCD γ = 0 is the deterministic DDIM jump to the next TCD timestep.
        let tcd = plan(&s, SdSampler::Tcd { gamma: 0.0 }, 4).unwrap();
        assert_eq!(
            tcd.iter().map(|p| p.t).collect::<Vec<_>>(),
            vec![999, 759, 499, 259]
        );
        for (i, p) in tcd.iter().enumerate() {
            let next = [759, 499, 259, 0][i];
            let (a, b) = jump(acp, p.t, next);
            assert_eq!((p.a, p.b, p.c), (a, b, 0.0));
        }
        // γ = 0.3: re-noise to s = ⌊0.7·759⌋ = 531, then diffuse up to 759.
        let g = plan(&s, SdSampler::Tcd { gamma: 0.3 }, 4).unwrap();
        let r = acp[759] / acp[531];
        let (a, b) = jump(acp, 999, 531);
        assert!((g[0].a - a * r.sqrt()).abs() < 1e-12);
        assert!((g[0].b - b * r.sqrt()).abs() < 1e-12);
        assert!((g[0].c - (1.0 - r).sqrt()).abs() < 1e-12);
        assert_eq!(g[3].c, 0.0, "no noise on the last step");
        // Noise-free consistency: a·(α_t x₀ + σ_t ε) + b·ε + c·z has the
        // marginal of x_next: mean coefficient α_next, total std σ_next.
        let (at, st) = ab(acp, 999);
        let (an, sn) = ab(acp, 759);
        assert!((g[0].a * at - an).abs() < 1e-9);
        let std = ((g[0].a * st + g[0].b).powi(2) + g[0].c.powi(2)).sqrt();
        assert!((std - sn).abs() < 1e-9, "{std} vs {sn}");
        assert!(plan(&s, SdSampler::Tcd { gamma: 1.5 }, 4).is_err());
    }
}

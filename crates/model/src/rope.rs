//! Rotary position embedding frequencies, as pure functions.
//!
//! Plain RoPE rotates pair `i` of a head by `p · θ^(-2i/d)` at position `p`.
//! The scalings that longer-context models use divide those frequencies, each
//! as transformers computes it (`modeling_rope_utils`):
//!
//! * Llama 3.1 and later stretch the low frequencies ([`RopeScaling::Llama3`],
//!   `rope_type: "llama3"`); llama.cpp stores the same thing in GGUF files as
//!   one divisor per frequency ([`RopeScaling::FreqFactors`], the
//!   `rope_freqs.weight` tensor);
//! * linear position interpolation divides them all ([`RopeScaling::Linear`]);
//! * YaRN, Qwen2.5's long-context option, keeps the high frequencies, divides
//!   the low ones and ramps between, and scales cos and sin
//!   ([`RopeScaling::Yarn`]).

use crate::{ModelError, Result};
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// How the RoPE frequencies are rescaled; none by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RopeScaling {
    /// Llama 3.1's: wavelengths shorter than `original / high_freq_factor`
    /// are kept, those longer than `original / low_freq_factor` are
    /// stretched `factor` times, and the band between is interpolated.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
    /// One divisor per frequency (`head_dim / 2` of them), as llama.cpp's
    /// `rope_freqs.weight`.
    FreqFactors { factors: Vec<f64> },
    /// Every frequency divided by `factor` (positions interpolated).
    Linear { factor: f64 },
    /// YaRN (Peng et al. 2023): pairs that turn more than `beta_fast` times
    /// within the original context keep their frequency, those turning fewer
    /// than `beta_slow` times are divided by `factor`, and a linear ramp over
    /// the pair index joins the two. cos and sin are multiplied by
    /// `attention_factor`, so attention logits grow by its square.
    Yarn {
        factor: f64,
        original_max_position_embeddings: usize,
        beta_fast: f64,
        beta_slow: f64,
        attention_factor: f64,
        /// Round the ramp's ends out to whole pairs (transformers' default;
        /// gpt-oss turns it off).
        #[serde(default = "yes")]
        truncate: bool,
    },
}

fn yes() -> bool {
    true
}

/// YaRN's default `attention_factor`, as transformers infers it when a config
/// gives none: `0.1·ln(factor) + 1`, or with DeepSeek's `mscale` and
/// `mscale_all_dim` (both non-zero) the ratio of that form at each.
pub fn yarn_attention_factor(factor: f64, mscale: Option<f64>, mscale_all_dim: Option<f64>) -> f64 {
    let m = |mscale: f64| {
        if factor <= 1.0 {
            1.0
        } else {
            0.1 * mscale * factor.ln() + 1.0
        }
    };
    match (mscale, mscale_all_dim) {
        (Some(a), Some(b)) if a != 0.0 && b != 0.0 => m(a) / m(b),
        _ => m(1.0),
    }
}

/// The pair-index range `[low, high]` of YaRN's ramp: where a pair turns
/// `beta_fast` and `beta_slow` times within `original` positions.
fn yarn_ramp_ends(
    beta_fast: f64,
    beta_slow: f64,
    head_dim: usize,
    theta: f64,
    original: usize,
    truncate: bool,
) -> (f64, f64) {
    let dim = head_dim as f64;
    let pair_of =
        |turns: f64| dim * (original as f64 / (turns * 2.0 * PI)).ln() / (2.0 * theta.ln());
    let (mut low, mut high) = (pair_of(beta_fast), pair_of(beta_slow));
    if truncate {
        (low, high) = (low.floor(), high.ceil());
    }
    (low.max(0.0), high.min(dim - 1.0))
}

impl RopeScaling {
    /// Checks the parameters describe a scaling; the message names the key.
    pub fn validate(&self, head_dim: usize) -> Result<()> {
        let bad = |m: String| Err(ModelError::InvalidConfig(m));
        match self {
            Self::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                for (name, v) in [("factor", factor), ("low_freq_factor", low_freq_factor)] {
                    if !(v.is_finite() && *v > 0.0) {
                        return bad(format!("rope_scaling {name} must be > 0, got {v}"));
                    }
                }
                if !(high_freq_factor.is_finite() && high_freq_factor > low_freq_factor) {
                    return bad(format!(
                        "rope_scaling high_freq_factor {high_freq_factor} must exceed \
                         low_freq_factor {low_freq_factor}"
                    ));
                }
                if *original_max_position_embeddings == 0 {
                    return bad("rope_scaling original_max_position_embeddings must be > 0".into());
                }
            }
            Self::FreqFactors { factors } => {
                if factors.len() != head_dim / 2 {
                    return bad(format!(
                        "{} RoPE frequency factors for head dim {head_dim} (needs {})",
                        factors.len(),
                        head_dim / 2
                    ));
                }
                if let Some(f) = factors.iter().find(|f| !(f.is_finite() && **f > 0.0)) {
                    return bad(format!("RoPE frequency factor {f} must be > 0"));
                }
            }
            Self::Linear { factor } => {
                if !(factor.is_finite() && *factor > 0.0) {
                    return bad(format!("rope_scaling factor must be > 0, got {factor}"));
                }
            }
            Self::Yarn {
                factor,
                original_max_position_embeddings,
                beta_fast,
                beta_slow,
                attention_factor,
                ..
            } => {
                for (name, v) in [
                    ("factor", factor),
                    ("beta_fast", beta_fast),
                    ("beta_slow", beta_slow),
                    ("attention_factor", attention_factor),
                ] {
                    if !(v.is_finite() && *v > 0.0) {
                        return bad(format!("rope_scaling (yarn) {name} must be > 0, got {v}"));
                    }
                }
                if beta_fast < beta_slow {
                    return bad(format!(
                        "rope_scaling (yarn) beta_fast {beta_fast} must not be below \
                         beta_slow {beta_slow}"
                    ));
                }
                if *original_max_position_embeddings == 0 {
                    return bad(
                        "rope_scaling (yarn) original_max_position_embeddings must be > 0".into(),
                    );
                }
            }
        }
        Ok(())
    }

    /// What cos and sin are multiplied by: YaRN's attention factor, else 1.
    pub fn attention_factor(&self) -> f64 {
        match self {
            Self::Yarn {
                attention_factor, ..
            } => *attention_factor,
            _ => 1.0,
        }
    }

    /// The positions to run for a model whose config states `stated`: YaRN's
    /// [`RopeScaling::extended_context`] where that is longer, else `stated`.
    pub fn context_length(&self, stated: usize) -> usize {
        self.extended_context().map_or(stated, |n| n.max(stated))
    }

    /// The context YaRN extends the original to, `factor ×` the original
    /// (as vLLM derives a YaRN model's length): Qwen2.5's configs keep
    /// `max_position_embeddings` at the original 32K when YaRN is switched
    /// on. `None` for the other scalings, whose configs state their length.
    pub fn extended_context(&self) -> Option<usize> {
        match self {
            Self::Yarn {
                factor,
                original_max_position_embeddings,
                ..
            } => Some((factor * *original_max_position_embeddings as f64).floor() as usize),
            _ => None,
        }
    }

    /// The divisor of the plain inverse frequency `inv_freq` of pair `i`.
    fn divisor(&self, i: usize, inv_freq: f64, head_dim: usize, theta: f64) -> f64 {
        match self {
            Self::FreqFactors { factors } => factors[i],
            Self::Linear { factor } => *factor,
            Self::Yarn {
                factor,
                original_max_position_embeddings,
                beta_fast,
                beta_slow,
                truncate,
                ..
            } => {
                let (low, mut high) = yarn_ramp_ends(
                    *beta_fast,
                    *beta_slow,
                    head_dim,
                    theta,
                    *original_max_position_embeddings,
                    *truncate,
                );
                if low == high {
                    high += 0.001; // transformers' guard against 0/0
                }
                // 0: the pair keeps its frequency; 1: it is divided by factor.
                let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                1.0 / (ramp / factor + (1.0 - ramp))
            }
            Self::Llama3 {
                factor,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: original,
            } => {
                let original = *original as f64;
                let wavelen = 2.0 * PI / inv_freq;
                if wavelen < original / high {
                    1.0
                } else if wavelen > original / low {
                    *factor
                } else {
                    // transformers' smoothed_inv_freq as a divisor (the form
                    // llama.cpp's converter writes into rope_freqs.weight).
                    let smooth = (original / wavelen - low) / (high - low);
                    1.0 / ((1.0 - smooth) / factor + smooth)
                }
            }
        }
    }
}

/// The inverse frequency of each of the `head_dim / 2` rotated pairs.
/// Computed in f64 and rounded once to f32, where transformers computes in f32.
pub fn inv_freq(head_dim: usize, theta: f64, scaling: Option<&RopeScaling>) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| {
            let plain = 1.0 / theta.powf((2 * i) as f64 / head_dim as f64);
            let div = scaling.map_or(1.0, |s| s.divisor(i, plain, head_dim, theta));
            (plain / div) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llama31() -> RopeScaling {
        RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        }
    }

    #[test]
    fn llama3_keeps_high_stretches_low_and_interpolates_between() {
        // Llama 3.1 8B: head dim 128, θ 500000.
        let plain = inv_freq(128, 500_000.0, None);
        let scaled = inv_freq(128, 500_000.0, Some(&llama31()));
        let (mut kept, mut stretched, mut between) = (0, 0, 0);
        for (p, s) in plain.iter().zip(&scaled) {
            let wavelen = 2.0 * PI / f64::from(*p);
            let ratio = f64::from(p / s);
            if wavelen < 2048.0 {
                assert_eq!(ratio, 1.0);
                kept += 1;
            } else if wavelen > 8192.0 {
                assert!((ratio - 8.0).abs() < 1e-5, "{ratio}");
                stretched += 1;
            } else {
                assert!(ratio > 1.0 && ratio < 8.0, "{ratio}");
                between += 1;
            }
        }
        assert!(kept > 0 && stretched > 0 && between > 0);
        // Monotone: a longer wavelength is never stretched less.
        let ratios: Vec<f32> = plain.iter().zip(&scaled).map(|(p, s)| p / s).collect();
        assert!(ratios.windows(2).all(|w| w[1] >= w[0] * (1.0 - 1e-6)));
    }

    #[test]
    fn factors_divide_and_one_means_plain() {
        let plain = inv_freq(8, 10_000.0, None);
        let ones = RopeScaling::FreqFactors {
            factors: vec![1.0; 4],
        };
        assert_eq!(inv_freq(8, 10_000.0, Some(&ones)), plain);
        let two = RopeScaling::FreqFactors {
            factors: vec![1.0, 2.0, 4.0, 8.0],
        };
        let got = inv_freq(8, 10_000.0, Some(&two));
        for (i, (g, p)) in got.iter().zip(&plain).enumerate() {
            assert!((g * (1 << i) as f32 / p - 1.0).abs() < 1e-6);
        }
    }

    fn yarn(factor: f64, original: usize, truncate: bool) -> RopeScaling {
        RopeScaling::Yarn {
            factor,
            original_max_position_embeddings: original,
            beta_fast: 32.0,
            beta_slow: 1.0,
            attention_factor: yarn_attention_factor(factor, None, None),
            truncate,
        }
    }

    #[test]
    fn linear_divides_every_frequency() {
        let plain = inv_freq(16, 10_000.0, None);
        let got = inv_freq(16, 10_000.0, Some(&RopeScaling::Linear { factor: 4.0 }));
        for (g, p) in got.iter().zip(&plain) {
            assert!((g * 4.0 / p - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn yarn_keeps_fast_pairs_divides_slow_ones_and_ramps_between() {
        // Qwen2.5 7B with YaRN: head dim 128, θ 1e6, factor 4, original 32K.
        let s = yarn(4.0, 32_768, true);
        let plain = inv_freq(128, 1e6, None);
        let got = inv_freq(128, 1e6, Some(&s));
        let (low, high) = yarn_ramp_ends(32.0, 1.0, 128, 1e6, 32_768, true);
        assert!(low > 0.0 && high < 63.0 && low < high, "{low} {high}");
        for (i, (g, p)) in got.iter().zip(&plain).enumerate() {
            let ratio = f64::from(p / g);
            let i = i as f64;
            if i <= low {
                assert!((ratio - 1.0).abs() < 1e-6, "pair {i}: {ratio}");
            } else if i >= high {
                assert!((ratio - 4.0).abs() < 1e-5, "pair {i}: {ratio}");
            } else {
                assert!(ratio > 1.0 && ratio < 4.0, "pair {i}: {ratio}");
            }
        }
        // A fast pair turns 32 times within the original context; the ramp's
        // low end is the last such pair, rounded down.
        let turns = |i: f64| 32_768.0 * 1e6_f64.powf(-2.0 * i / 128.0) / (2.0 * PI);
        assert!(turns(low) >= 32.0 && turns(low + 1.0) < 32.0);
        assert!((s.attention_factor() - (0.1 * 4f64.ln() + 1.0)).abs() < 1e-12);
        assert_eq!(s.extended_context(), Some(131_072));
        // Without truncation the ends are not whole pairs.
        let (l, h) = yarn_ramp_ends(32.0, 1.0, 128, 1e6, 32_768, false);
        assert!(l.fract() != 0.0 && h.fract() != 0.0 && l >= low && h <= high);
    }

    #[test]
    fn yarn_attention_factor_follows_mscale_when_both_are_given() {
        assert_eq!(yarn_attention_factor(1.0, None, None), 1.0);
        assert_eq!(yarn_attention_factor(40.0, Some(1.0), Some(1.0)), 1.0);
        let deepseek = yarn_attention_factor(40.0, Some(0.707), Some(1.0));
        let want = (0.1 * 0.707 * 40f64.ln() + 1.0) / (0.1 * 40f64.ln() + 1.0);
        assert!((deepseek - want).abs() < 1e-12);
        // One of the pair missing (or zero): the plain form.
        assert_eq!(
            yarn_attention_factor(4.0, Some(0.707), None),
            yarn_attention_factor(4.0, None, None)
        );
    }

    #[test]
    fn checkpoint_configs_name_the_kind_and_default_truncate() {
        for s in [
            llama31(),
            RopeScaling::Linear { factor: 2.0 },
            yarn(4.0, 64, false),
        ] {
            let text = serde_json::to_string(&s).unwrap();
            assert_eq!(serde_json::from_str::<RopeScaling>(&text).unwrap(), s);
        }
        let old = r#"{"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
                      "beta_fast": 32.0, "beta_slow": 1.0, "attention_factor": 1.1}"#;
        let s: RopeScaling = serde_json::from_str(old).unwrap();
        assert!(matches!(s, RopeScaling::Yarn { truncate: true, .. }));
    }

    #[test]
    fn bad_parameters_are_refused_by_name() {
        let mut s = llama31();
        if let RopeScaling::Llama3 {
            high_freq_factor, ..
        } = &mut s
        {
            *high_freq_factor = 1.0;
        }
        assert!(s
            .validate(128)
            .unwrap_err()
            .to_string()
            .contains("high_freq_factor"));
        let short = RopeScaling::FreqFactors {
            factors: vec![1.0; 3],
        };
        assert!(short.validate(8).is_err());
        let zero = RopeScaling::FreqFactors {
            factors: vec![1.0, 0.0, 1.0, 1.0],
        };
        assert!(zero.validate(8).is_err());
        assert!(llama31().validate(128).is_ok());
        assert!(RopeScaling::Linear { factor: 0.0 }.validate(8).is_err());
        let mut y = yarn(4.0, 64, true);
        assert!(y.validate(16).is_ok());
        if let RopeScaling::Yarn { beta_fast, .. } = &mut y {
            *beta_fast = 0.5;
        }
        assert!(y
            .validate(16)
            .unwrap_err()
            .to_string()
            .contains("beta_fast"));
    }
}

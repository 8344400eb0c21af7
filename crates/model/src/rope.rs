//! Rotary position embedding frequencies, as pure functions.
//!
//! Plain RoPE rotates pair `i` of a head by `p · θ^(-2i/d)` at position `p`.
//! Llama 3.1 and later stretch the low frequencies for a longer context
//! ([`RopeScaling::Llama3`], transformers' `rope_type: "llama3"`); llama.cpp
//! stores the same thing in GGUF files as one divisor per frequency
//! ([`RopeScaling::FreqFactors`], the `rope_freqs.weight` tensor).

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
        }
        Ok(())
    }

    /// The divisor of the plain inverse frequency `inv_freq` of pair `i`.
    fn divisor(&self, i: usize, inv_freq: f64) -> f64 {
        match self {
            Self::FreqFactors { factors } => factors[i],
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
            let div = scaling.map_or(1.0, |s| s.divisor(i, plain));
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
    }
}

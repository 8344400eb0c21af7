//! Learning-rate schedules as pure functions of the optimizer step.
//!
//! Every schedule returns a *multiplier* of the peak learning rate, so the
//! same schedule serves any LR. The shapes follow Hägele et al. 2024
//! ("Scaling Laws and Compute-Optimal Training Beyond Fixed Training
//! Durations") and its reference code: a linear warmup from `peak/100`, then
//! either a constant LR with an optional cooldown (WSD) or the cosine
//! baseline (PyTorch's `OneCycleLR`: cosine warmup, cosine decay to 10 %).
//!
//! A cooldown is described independently of the run it ends: it starts at a
//! step, lasts a number of steps and decays from the multiplier the run had
//! there. That is what makes cooldowns *branchable*: a WSD run of `N` steps
//! is exactly a constant-LR run with a cooldown inserted at `N - N_decay`.

use serde::{Deserialize, Serialize};
use std::f64::consts::PI;
use std::fmt;
use std::str::FromStr;

/// Errors from building a schedule out of user-supplied settings.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    #[error("unknown cooldown shape '{0}' (expected one of: linear, 1-sqrt, cosine, mirror-cosine, square, exp)")]
    UnknownShape(String),
    #[error("unknown schedule kind '{0}' (expected one of: constant, wsd, cosine)")]
    UnknownKind(String),
    #[error("invalid schedule: {0}")]
    Invalid(String),
}

/// How the LR decays during a cooldown; `t` runs from 0 to 1 and `f` is the
/// final factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CooldownShape {
    /// `f + (1-f)(1-t)`
    #[serde(rename = "linear")]
    Linear,
    /// `f + (1-f)(1-sqrt(t))`: the best shape in the paper.
    #[serde(rename = "1-sqrt")]
    OneMinusSqrt,
    /// `f + (1-f)(1+cos(pi t))/2`
    #[serde(rename = "cosine")]
    Cosine,
    /// `2·linear - cosine`
    #[serde(rename = "mirror-cosine")]
    MirrorCosine,
    /// `f + (1-f)(1-t²)`
    #[serde(rename = "square")]
    Square,
    /// `f^t` (needs `f > 0`)
    #[serde(rename = "exp")]
    Exp,
}

impl CooldownShape {
    pub const ALL: [CooldownShape; 6] = [
        Self::Linear,
        Self::OneMinusSqrt,
        Self::Cosine,
        Self::MirrorCosine,
        Self::Square,
        Self::Exp,
    ];

    /// The multiplier at progress `t ∈ [0, 1]` through the cooldown, relative
    /// to the multiplier the cooldown started from.
    pub fn factor(self, t: f64, f: f64) -> f64 {
        let t = t.clamp(0.0, 1.0);
        let linear = f + (1.0 - f) * (1.0 - t);
        let cosine = f + (1.0 - f) * (1.0 + (PI * t).cos()) * 0.5;
        match self {
            Self::Linear => linear,
            Self::OneMinusSqrt => f + (1.0 - f) * (1.0 - t.sqrt()),
            Self::Cosine => cosine,
            Self::MirrorCosine => 2.0 * linear - cosine,
            Self::Square => f + (1.0 - f) * (1.0 - t * t),
            Self::Exp => f.powf(t),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::OneMinusSqrt => "1-sqrt",
            Self::Cosine => "cosine",
            Self::MirrorCosine => "mirror-cosine",
            Self::Square => "square",
            Self::Exp => "exp",
        }
    }
}

impl fmt::Display for CooldownShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CooldownShape {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "linear" => Self::Linear,
            "1-sqrt" | "sqrt" | "one-minus-sqrt" => Self::OneMinusSqrt,
            "cosine" | "cos" => Self::Cosine,
            "mirror-cosine" => Self::MirrorCosine,
            "square" => Self::Square,
            "exp" => Self::Exp,
            other => return Err(ScheduleError::UnknownShape(other.to_string())),
        })
    }
}

/// A cooldown inserted into a run: from `start` for `steps` steps the LR goes
/// from the run's multiplier at `start` down to `final_factor` times the peak.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Cooldown {
    pub start: u64,
    pub steps: u64,
    pub shape: CooldownShape,
    pub final_factor: f64,
}

/// The part of a schedule before any cooldown.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Base {
    /// Linear warmup from `peak/100` over `warmup` steps, then constant.
    Constant { warmup: u64 },
    /// PyTorch `OneCycleLR` as the paper's cosine baseline: cosine warmup from
    /// `peak/100` over `warmup` steps, then cosine decay to `final_factor`
    /// (0.1 in the paper) at step `total - 1`.
    Cosine {
        warmup: u64,
        total: u64,
        final_factor: f64,
    },
}

/// A full schedule: a base shape and an optional cooldown.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub base: Base,
    pub cooldown: Option<Cooldown>,
}

/// Initial LR of every warmup is `peak / WARMUP_DIV` (the reference's 100).
pub const WARMUP_DIV: f64 = 100.0;

impl Schedule {
    /// Constant LR after a linear warmup, no cooldown: the reusable long run.
    pub fn constant(warmup: u64) -> Self {
        Self {
            base: Base::Constant { warmup },
            cooldown: None,
        }
    }

    /// Warmup-stable-decay over `total` steps with the last
    /// `floor(fraction·total)` steps (warmup included in `total`) cooling down.
    pub fn wsd(
        warmup: u64,
        total: u64,
        fraction: f64,
        shape: CooldownShape,
        final_factor: f64,
    ) -> Result<Self, ScheduleError> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(ScheduleError::Invalid(format!(
                "cooldown fraction {fraction} is not in [0, 1]"
            )));
        }
        let steps = (fraction * total as f64).floor() as u64;
        Self::constant(warmup).with_cooldown(Cooldown {
            start: total - steps,
            steps,
            shape,
            final_factor,
        })
    }

    /// The paper's cosine baseline.
    pub fn cosine(warmup: u64, total: u64, final_factor: f64) -> Result<Self, ScheduleError> {
        if total == 0 || warmup >= total {
            return Err(ScheduleError::Invalid(format!(
                "cosine schedule needs warmup ({warmup}) < total steps ({total})"
            )));
        }
        Ok(Self {
            base: Base::Cosine {
                warmup,
                total,
                final_factor,
            },
            cooldown: None,
        })
    }

    /// Insert (or replace) a cooldown: how a branch continues a run.
    pub fn with_cooldown(mut self, cooldown: Cooldown) -> Result<Self, ScheduleError> {
        if cooldown.shape == CooldownShape::Exp && cooldown.final_factor <= 0.0 {
            return Err(ScheduleError::Invalid(
                "the exp cooldown needs a final factor > 0".into(),
            ));
        }
        if !(0.0..=1.0).contains(&cooldown.final_factor) {
            return Err(ScheduleError::Invalid(format!(
                "final factor {} is not in [0, 1]",
                cooldown.final_factor
            )));
        }
        self.cooldown = Some(cooldown);
        Ok(self)
    }

    /// The multiplier of the base shape alone.
    pub fn base_multiplier(&self, step: u64) -> f64 {
        match self.base {
            Base::Constant { warmup } => linear_warmup(step, warmup),
            Base::Cosine {
                warmup,
                total,
                final_factor,
            } => one_cycle(step, warmup, total, final_factor),
        }
    }

    /// The LR multiplier at `step` (0-based optimizer step).
    pub fn multiplier(&self, step: u64) -> f64 {
        match self.cooldown {
            Some(c) if step >= c.start => {
                if c.steps == 0 {
                    return c.final_factor;
                }
                // The reference decays from 1.0 (the constant phase); a branch
                // taken during warmup decays from wherever the LR was.
                let from = self.base_multiplier(c.start);
                let t = (step - c.start) as f64 / c.steps as f64;
                let f = c.final_factor / from;
                from * c.shape.factor(t, f.min(1.0))
            }
            _ => self.base_multiplier(step),
        }
    }

    /// The step count after which the schedule has nothing more to say
    /// (end of cooldown or cosine), if it has one.
    pub fn end(&self) -> Option<u64> {
        match (self.cooldown, self.base) {
            (Some(c), _) => Some(c.start + c.steps),
            (None, Base::Cosine { total, .. }) => Some(total),
            (None, Base::Constant { .. }) => None,
        }
    }
}

/// `n/W + (1 - n/W)/100` during warmup, 1 after.
pub fn linear_warmup(step: u64, warmup: u64) -> f64 {
    if step >= warmup {
        return 1.0;
    }
    let p = step as f64 / warmup as f64;
    p + (1.0 - p) / WARMUP_DIV
}

/// PyTorch `OneCycleLR(max_lr=1, pct_start=warmup/total, div_factor=100,
/// final_div_factor=100·final/…)` with cosine annealing in both phases:
/// phase 1 ends at step `warmup - 1`, phase 2 at `total - 1`.
pub fn one_cycle(step: u64, warmup: u64, total: u64, final_factor: f64) -> f64 {
    let initial = 1.0 / WARMUP_DIV;
    let cos_anneal = |start: f64, end: f64, pct: f64| {
        end + (start - end) / 2.0 * (1.0 + (PI * pct.clamp(0.0, 1.0)).cos())
    };
    let s = step as f64;
    let phase1_end = warmup as f64 - 1.0;
    let phase2_end = total as f64 - 1.0;
    if s <= phase1_end {
        let pct = if phase1_end > 0.0 {
            s / phase1_end
        } else {
            1.0
        };
        cos_anneal(initial, 1.0, pct)
    } else {
        let span = phase2_end - phase1_end;
        let pct = if span > 0.0 {
            (s - phase1_end) / span
        } else {
            1.0
        };
        cos_anneal(1.0, final_factor, pct)
    }
}

#[cfg(test)]
mod tests;

//! Which weights of a checkpoint a command reads: the trained ones, or one
//! of the averages the run kept beside them ([`crate::averaging`]).
//!
//! The averages are the same weights the trainer evaluates for
//! `val_loss_swa` and `val_loss_ema` at that step, so `frugal eval
//! --weights ema` on a checkpoint gives the loss its run logged there.

use crate::averaging::{self, EMA_FILE, SWA_FILE};
use crate::checkpoint::{self, MODEL_FILE};
use crate::{Result, TrainError};
use candle_core::{Device, Tensor};
use frugal_model::params::load_safetensors;
use frugal_model::{LlamaConfig, ParamStore};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// `raw`, `ema`, `swa` or `swa:K`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightChoice {
    /// The trained weights (`model.safetensors`).
    #[default]
    Raw,
    /// The exponential moving average (`[averaging.ema]`).
    Ema,
    /// The SWA mean of the window the checkpoint's step falls in: the
    /// snapshots taken so far, or the whole window when it ends there.
    Swa,
    /// The uniform mean of the last K completed SWA windows up to the
    /// checkpoint's step (`RUN/swa/`).
    SwaWindows(usize),
}

impl FromStr for WeightChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("unknown weights '{s}' (expected raw, ema, swa or swa:K with K >= 1)");
        match s {
            "raw" => Ok(Self::Raw),
            "ema" => Ok(Self::Ema),
            "swa" => Ok(Self::Swa),
            _ => match s.strip_prefix("swa:").map(str::parse::<usize>) {
                Some(Ok(k)) if k >= 1 => Ok(Self::SwaWindows(k)),
                _ => Err(bad()),
            },
        }
    }
}

impl fmt::Display for WeightChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Raw => write!(f, "raw"),
            Self::Ema => write!(f, "ema"),
            Self::Swa => write!(f, "swa"),
            Self::SwaWindows(k) => write!(f, "swa:{k}"),
        }
    }
}

/// The checkpoint's model with the chosen weights.
pub fn load_model(
    dir: &Path,
    choice: WeightChoice,
    device: &Device,
) -> Result<(LlamaConfig, ParamStore)> {
    let state = checkpoint::read_state(dir)?;
    let tensors = load_tensors(dir, state.step, choice, device)?;
    let source = match choice {
        WeightChoice::Raw => dir.join(MODEL_FILE).display().to_string(),
        _ => format!("{} ({choice} weights)", dir.display()),
    };
    let params = ParamStore::from_tensors(&state.model, tensors, &source)?;
    Ok((state.model, params))
}

fn load_tensors(
    dir: &Path,
    step: u64,
    choice: WeightChoice,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let none = |what: &str, why: &str| {
        TrainError::ckpt(dir, format!("has no {what} weights at step {step}: {why}"))
    };
    match choice {
        WeightChoice::Raw => Ok(load_safetensors(&dir.join(MODEL_FILE), device)?),
        WeightChoice::Ema => {
            let path = dir.join(EMA_FILE);
            if !path.is_file() {
                return Err(none(
                    "EMA",
                    "its run has no [averaging.ema], or the average had not started",
                ));
            }
            Ok(load_safetensors(&path, device)?)
        }
        WeightChoice::Swa => {
            let path = dir.join(SWA_FILE);
            if path.is_file() {
                return averaging::swa_file_mean(&path, device);
            }
            // A window ending at this step was saved whole before the
            // checkpoint started the next one.
            let run = checkpoint::run_dir_of(dir);
            match run.map(|r| averaging::window_path(&r, step)) {
                Some(window) if window.is_file() => Ok(load_safetensors(&window, device)?),
                _ => Err(none(
                    "SWA",
                    "its run has no [averaging.swa], or no snapshot was taken yet",
                )),
            }
        }
        WeightChoice::SwaWindows(k) => {
            let run = checkpoint::run_dir_of(dir)
                .ok_or_else(|| TrainError::ckpt(dir, "is not inside RUN/checkpoints/"))?;
            averaging::combine_windows(&run, k, Some(step), device)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_print() {
        for (text, choice) in [
            ("raw", WeightChoice::Raw),
            ("ema", WeightChoice::Ema),
            ("swa", WeightChoice::Swa),
            ("swa:3", WeightChoice::SwaWindows(3)),
        ] {
            assert_eq!(text.parse::<WeightChoice>().unwrap(), choice);
            assert_eq!(choice.to_string(), text);
        }
        for bad in ["", "SWA", "swa:", "swa:0", "swa:-1", "ema:2", "avg"] {
            let e = bad.parse::<WeightChoice>().unwrap_err();
            assert!(e.contains("expected raw, ema, swa or swa:K"), "{bad}: {e}");
        }
    }
}

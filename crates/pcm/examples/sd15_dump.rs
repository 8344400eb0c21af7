//! Runs `sd15::generate` and writes its initial noise, final latents and RGB image to
//! a safetensors file, for comparing with diffusers
//! (crates/pcm/scripts/sd15_diffusers_check.py).
//!
//!   cargo run -p frugal-pcm --features sd15 --example sd15_dump -- SD_DIR LORA OUT.safetensors tcd|ddim STEPS [f32|f16]

use candle_core::{DType, Device, Tensor};
use frugal_pcm::sd15::{self, Request, SdConfig};
use frugal_pcm::sd_schedule::SdSampler;
use std::collections::HashMap;
use std::path::PathBuf;

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: sd15_dump SD_DIR LORA OUT.safetensors tcd|ddim STEPS [f32|f16]";
    let [dir, lora, out, sampler, steps, rest @ ..] = a.as_slice() else {
        panic!("{usage}");
    };
    let dtype: DType = match rest {
        [] => DType::F32,
        [d] => d.parse().expect("dtype"),
        _ => panic!("{usage}"),
    };
    let dir = PathBuf::from(dir);
    let sampler = match sampler.as_str() {
        "tcd" => SdSampler::Tcd { gamma: 0.0 },
        "ddim" => SdSampler::DdimTrailing,
        s => panic!("unknown sampler {s}"),
    };
    let (h, w, seed) = (16, 16, 3);
    let req = Request {
        prompt: "a photo of a cat".into(),
        steps: steps.parse().expect("STEPS"),
        sampler,
        guidance: 1.0,
        seed,
        height: h,
        width: w,
        lora: Some(PathBuf::from(lora)),
        lora_scale: 1.0,
        dtype,
    };
    let cpu = Device::Cpu;
    let res = sd15::generate(&dir, &req, &cpu).unwrap();
    let cfg = SdConfig::from_dir(&dir).unwrap();
    let f = cfg.vae_factor();
    let shape = [1, cfg.unet_in_channels, h / f, w / f];
    // The same draw as generate's initial latents.
    let noise =
        frugal_pcm::rng::normal(&mut frugal_pcm::rng::stream(seed, 0, 0), &shape, &cpu).unwrap();
    let latents = Tensor::from_vec(res.latents, &shape, &cpu).unwrap();
    let rgb = Tensor::from_vec(res.rgb, (res.height, res.width, 3), &cpu).unwrap();
    let t: HashMap<String, Tensor> = [
        ("noise".to_string(), noise),
        ("latents".to_string(), latents),
        ("rgb".to_string(), rgb),
    ]
    .into();
    candle_core::safetensors::save(&t, out).unwrap();
    println!("timesteps {:?} → {out}", res.timesteps);
}

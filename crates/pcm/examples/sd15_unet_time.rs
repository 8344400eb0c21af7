//! Times one SD 1.5 UNet call (real architecture, random weights) at a
//! given image size, to say what `frugal pcm sd15` costs per step on a CPU.
//!
//!   cargo run --release -p frugal-pcm --features sd15 --example sd15_unet_time [-- SIZE [f32|f16]]

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use frugal_pcm::sd15::SdConfig;
use std::time::Instant;

fn main() {
    let size: usize = std::env::args()
        .nth(1)
        .map_or(512, |s| s.parse().expect("SIZE"));
    let dtype: DType = std::env::args()
        .nth(2)
        .map_or(DType::F32, |s| s.parse().expect("DTYPE"));
    let cfg = SdConfig::sd15();
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let t = Instant::now();
    let unet = cfg
        .build_unet(VarBuilder::from_varmap(&vm, dtype, &dev))
        .unwrap();
    let n: usize = vm.all_vars().iter().map(|v| v.elem_count()).sum();
    println!(
        "UNet: {:.0} M parameters, built in {:.1} s",
        n as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let l = size / cfg.vae_factor();
    let x = Tensor::randn(0f32, 1.0, (1, 4, l, l), &dev)
        .and_then(|x| x.to_dtype(dtype))
        .unwrap();
    let text = Tensor::randn(0f32, 1.0, (1, 77, 768), &dev)
        .and_then(|x| x.to_dtype(dtype))
        .unwrap();
    let t = Instant::now();
    let y = unet.forward(&x, 999.0, &text).unwrap();
    println!(
        "one {} UNet call at {size}×{size} ({l}×{l} latents): {:.1} s, output {:?}",
        dtype.as_str(),
        t.elapsed().as_secs_f64(),
        y.dims()
    );
}

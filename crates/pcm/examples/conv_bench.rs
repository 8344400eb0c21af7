//! Side-by-side timing of candle's `Conv2d` and frugal-pcm's `FastConv`,
//! forward + backward, on the teacher U-Net's 3×3 convolution shapes
//! (C = 32, batch 64, 28×28 / 14×14 / 7×7) in one process.
//!
//!   RAYON_NUM_THREADS=1 cargo run --release -p frugal-pcm --example conv_bench [-- REPEATS]
//!
//! With the allocator settings of the `frugal` binary (mimalloc, pages
//! kept), since fresh-page zeroing otherwise dominates both sides.

use candle_core::{Device, Module, Tensor, Var};
use candle_nn::{Conv2d, Conv2dConfig};
use frugal_pcm::fastconv::FastConv;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
/// mimalloc's `mi_option_purge_delay` (as in crates/cli/src/main.rs).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn time(m: &dyn Module, x: &Var, g: &Tensor, reps: usize) -> f64 {
    let t = Instant::now();
    for _ in 0..reps {
        let y = m.forward(x.as_tensor()).unwrap();
        let grads = (y * g).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(grads.get(x.as_tensor()).is_some());
    }
    t.elapsed().as_secs_f64() / reps as f64
}

fn main() {
    // SAFETY: set before any other thread starts.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    let reps: usize = std::env::args()
        .nth(1)
        .map_or(3, |s| s.parse().expect("REPEATS"));
    let dev = Device::Cpu;
    let b = 64;
    let (mut slow, mut fast) = (0.0, 0.0);
    println!("shape (in→out, H×W)   candle conv2d   FastConv   ratio   (fwd+bwd, batch {b})");
    for (i, o, hw) in [
        (1, 32, 28),
        (32, 32, 28),
        (32, 64, 14),
        (64, 64, 7),
        (128, 64, 14),
        (96, 32, 28),
        (32, 1, 28),
    ] {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, i, hw, hw), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.1, (o, i, 3, 3), &dev).unwrap()).unwrap();
        let bias =
            Var::from_tensor(&Tensor::zeros(o, candle_core::DType::F32, &dev).unwrap()).unwrap();
        let g = Tensor::randn(0f32, 1.0, (b, o, hw, hw), &dev).unwrap();
        let cfg = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let reference = Conv2d::new(w.as_tensor().clone(), Some(bias.as_tensor().clone()), cfg);
        let fastc =
            FastConv::from_tensors(w.as_tensor().clone(), bias.as_tensor().clone()).unwrap();
        time(&fastc, &x, &g, 1); // warm-up
        let (s, f) = (time(&reference, &x, &g, reps), time(&fastc, &x, &g, reps));
        slow += s;
        fast += f;
        println!(
            "{i:>4}→{o:<4} {hw:>2}×{hw:<2}        {:>8.1} ms   {:>7.1} ms   {:>5.1}×",
            s * 1e3,
            f * 1e3,
            s / f
        );
    }
    println!(
        "total                  {:>8.1} ms   {:>7.1} ms   {:>5.1}×",
        slow * 1e3,
        fast * 1e3,
        slow / fast
    );
}

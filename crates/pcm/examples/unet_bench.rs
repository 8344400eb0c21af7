//! Times the PCM U-Net on the CPU: one teacher training step (forward, MSE,
//! backward) and one inference forward, at the science run's shapes, with
//! the fused CPU ops (GroupNorm + SiLU, im2col) and with the same network
//! from plain candle ops, alternating the two in one process.
//!
//!   RAYON_NUM_THREADS=1 cargo run --release -p frugal-pcm --example unet_bench \
//!       [-- CHANNELS TRAIN_BATCH INFER_BATCH ROUNDS [fused|plain]]
//!
//! Defaults: C = 16 (groups 8), train batch 32, inference batch 250 (eval's
//! default), 5 rounds (each times both variants once, in alternating order)
//! after one warm-up. With the allocator settings of the `frugal` binary
//! (mimalloc, pages kept). Prints the median milliseconds per call and the
//! ratio. A last argument `fused` or `plain` times only that variant (for a
//! profiler).

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use frugal_pcm::unet::{UNet, UNetConfig};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
/// mimalloc's `mi_option_purge_delay` (as in crates/cli/src/main.rs).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .map_or(default, |s| s.parse().expect("a number"))
}

fn batch(b: usize, dev: &Device) -> (Tensor, Vec<usize>, Vec<u32>) {
    let x = Tensor::randn(0f32, 1.0, (b, 1, 28, 28), dev).unwrap();
    let t = (0..b).map(|i| (i * 37) % 1000).collect();
    let c = (0..b).map(|i| (i % 11) as u32).collect();
    (x, t, c)
}

fn seconds(f: &mut impl FnMut()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // SAFETY: set before any other thread starts.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    let (channels, tb, ib, rounds) = (arg(1, 16), arg(2, 32), arg(3, 250), arg(4, 5));
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let cfg = UNetConfig {
        channels,
        groups: 8,
        ..UNetConfig::default()
    };
    let mut net = UNet::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
    let (xt, tt, ct) = batch(tb, &dev);
    let noise = Tensor::randn(0f32, 1.0, xt.dims(), &dev).unwrap();
    let (xi, ti, ci) = batch(ib, &dev);
    let first = vm.all_vars()[0].clone();
    println!(
        "U-Net C = {channels}, 28×28, {} threads, median of {rounds} rounds",
        rayon_threads()
    );
    // [composite, fused] × [train, infer]
    let mut times = [[vec![], vec![]], [vec![], vec![]]];
    let only = std::env::args().nth(5);
    for round in 0..=rounds {
        for k in 0..2 {
            let fused = (k + round) % 2 == 1;
            if only
                .as_deref()
                .is_some_and(|o| o != ["plain", "fused"][fused as usize])
            {
                continue;
            }
            net.set_fused_ops(fused);
            let mut train = || {
                let eps = net.forward(&xt, &tt, &ct).unwrap();
                let loss = (eps - &noise).unwrap().sqr().unwrap().mean_all().unwrap();
                assert!(loss.backward().unwrap().get(&first).is_some());
            };
            let tr = seconds(&mut train);
            let ir = seconds(&mut || {
                net.forward(&xi, &ti, &ci).unwrap();
            });
            if round > 0 {
                times[fused as usize][0].push(tr);
                times[fused as usize][1].push(ir);
            }
        }
    }
    if only.is_some() {
        return;
    }
    let [plain, fused] = times.map(|t| t.map(median));
    for (i, what) in [
        format!("train step, batch {tb}"),
        format!("inference, batch {ib}"),
    ]
    .iter()
    .enumerate()
    {
        println!(
            "{what:<22} plain candle ops {:8.1} ms   fused {:8.1} ms   {:.2}×",
            plain[i] * 1e3,
            fused[i] * 1e3,
            plain[i] / fused[i]
        );
    }
}

fn rayon_threads() -> String {
    std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into())
}

//! The CUDA kernels (kernels/fused.cu, kernels/attention.cu), run on the CPU
//! under a thread-per-CUDA-thread emulation (kernels/emu/emu.h) with the
//! launch sequences of src/fused_cuda.rs, against the CPU ops of `fused` and
//! `fused_attention`: outputs and input gradients. This checks the kernels'
//! indexing, tiling, masking, block and warp reductions where there is no GPU
//! (CI); tests/cuda_fused.rs checks the real thing on a card.
//!
//! Needs a C++20 compiler (`CXX`, default `c++`); .ci/run installs g++.
//!
//! With `FRUGAL_EMU_TSAN=1` the drivers are built with ThreadSanitizer, and
//! a shared-memory access that no `__syncthreads`/`__syncwarp` orders
//! against another thread's (a race on a GPU too) fails the test with both
//! accesses' lines. About ten times slower, so not part of CI's run:
//!
//!     FRUGAL_EMU_TSAN=1 cargo test -p frugal-model --test cuda_emulated
//!
//! Blocks run one after another, first to last; a GPU keeps no order, and
//! with `FRUGAL_EMU_REVERSE_BLOCKS=1` they run last to first, so a kernel
//! that reads another block's output of the same launch fails.

use candle_core::{DType, Device, Tensor, Var};
use frugal_model::fused_attention::{causal_attention, causal_attention_seq};
use frugal_model::fused_check;
use std::path::{Path, PathBuf};
use std::process::Command;

fn randn(shape: &[usize], seed: u64) -> Tensor {
    fused_check::randn(shape, seed).unwrap()
}

/// Writes `t` (f32 or bf16) as raw f32.
fn write_f32(path: &Path, t: &Tensor) {
    let v = t
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

fn read_f32(path: &Path, shape: &[usize]) -> Tensor {
    let bytes = std::fs::read(path).unwrap();
    let v: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Largest |a − b| over the largest |a|; NaN (an element the kernels never
/// wrote) makes it NaN, which fails every bound.
fn rel_gap(a: &Tensor, b: &Tensor) -> f32 {
    fused_check::rel_gap_above(a, b, f32::MIN_POSITIVE).unwrap()
}

fn build_driver(dir: &Path, name: &str) -> PathBuf {
    let kernels = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels/emu");
    let exe = dir.join(name);
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let tsan = std::env::var("FRUGAL_EMU_TSAN").is_ok_and(|v| v == "1");
    let out = Command::new(&cxx)
        .args(["-O2", "-std=c++20", "-pthread", "-Wno-unknown-pragmas"])
        .args(if tsan {
            &["-fsanitize=thread", "-g"][..]
        } else {
            &[]
        })
        .arg("-o")
        .arg(&exe)
        .arg(kernels.join(format!("{name}.cpp")))
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C++ compiler {cxx}: {e} (install g++)"));
    assert!(
        out.status.success(),
        "{cxx} failed on {name}.cpp:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

fn run(exe: &Path, args: &[String]) {
    let out = Command::new(exe).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        exe.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn scratch(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("frugal-emu-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs attention_driver on `cases` of (t, s, hd) in `dtype` (f32: the SIMT
/// kernels; bf16: the tensor-core ones) against `causal_attention` on the
/// CPU, returning the largest gap of y, dq, dk and dv per case. With
/// `seq_major` the tensors are `[B, T, H, hd]` (`causal_attention_seq`) and
/// two batches of two heads interleave; else `[B, H, T, hd]`.
fn attention_gaps(dtype: DType, seq_major: bool, cases: &[(usize, usize, usize)]) -> Vec<[f32; 4]> {
    let dir = scratch(&format!("attention-{dtype:?}-{seq_major}"));
    let exe = build_driver(&dir, "attention_driver");
    let mode = |m: &str| match dtype {
        DType::BF16 => format!("{m}:bf16"),
        _ => m.to_string(),
    };
    let mut gaps = Vec::new();
    for (case, &(t, s, hd)) in cases.iter().enumerate() {
        let (b, h) = if seq_major { (2, 2) } else { (1, 2) };
        // A tensor's dims for n rows per head, and the driver's head groups.
        let dims = |n: usize| match seq_major {
            true => [b, n, h, hd],
            false => [b, h, n, hd],
        };
        let nh = if seq_major { h } else { 1 };
        let seed = 10 * case as u64;
        let input = |shape: &[usize], seed| randn(shape, seed).to_dtype(dtype).unwrap();
        let (q, k, v) = (
            input(&dims(t), seed + 1),
            input(&dims(s), seed + 2),
            input(&dims(s), seed + 3),
        );
        let dy = input(&dims(t), seed + 4);
        let scale = 1.0 / (hd as f64).sqrt();
        let vars = [&q, &k, &v].map(|x| Var::from_tensor(x).unwrap());
        let attend = match seq_major {
            true => causal_attention_seq,
            false => causal_attention,
        };
        let y = attend(
            vars[0].as_tensor(),
            vars[1].as_tensor(),
            vars[2].as_tensor(),
            scale,
        )
        .unwrap();
        assert_eq!(y.dtype(), dtype);
        let grads = (&y * &dy).unwrap().sum_all().unwrap().backward().unwrap();

        for (name, x) in [("q", &q), ("k", &k), ("v", &v), ("dy", &dy)] {
            write_f32(&dir.join(format!("{name}.f32")), x);
        }
        let args = |m: &str| -> Vec<String> {
            [
                mode(m),
                (b * h).to_string(),
                nh.to_string(),
                t.to_string(),
                s.to_string(),
                hd.to_string(),
            ]
            .into_iter()
            .chain([format!("{}", scale as f32), dir.display().to_string()])
            .collect()
        };
        run(&exe, &args("fwd"));
        let y_emu = read_f32(&dir.join("y.f32"), &dims(t));
        let mut case_gaps = [rel_gap(&y, &y_emu), 0.0, 0.0, 0.0];

        // The backward reads the kernel's own forward output, as on a GPU.
        run(&exe, &args("bwd"));
        // dq, then dk and dv, each in its input's order.
        let (bh, nq, nk) = (b * h, b * h * t, b * h * s);
        let packed = read_f32(&dir.join("grads.f32"), &[nq + 2 * nk, hd]);
        for (n, (var, start, rows)) in [(&vars[0], 0, t), (&vars[1], nq, s), (&vars[2], nq + nk, s)]
            .into_iter()
            .enumerate()
        {
            let emu = packed
                .narrow(0, start, bh * rows)
                .unwrap()
                .reshape(&dims(rows)[..])
                .unwrap();
            let cpu = grads.get(var.as_tensor()).unwrap();
            assert_eq!(cpu.dtype(), dtype);
            case_gaps[n + 1] = rel_gap(cpu, &emu);
        }
        println!(
            "{dtype:?} seq_major={seq_major} t={t} s={s} hd={hd}: y, dq, dk, dv gaps {case_gaps:?}"
        );
        gaps.push(case_gaps);
    }
    std::fs::remove_dir_all(&dir).ok();
    gaps
}

#[test]
fn emulated_cuda_attention_matches_cpu_op() {
    // Several key tiles (70 > 2·32), a cached prefix (S > T), the largest
    // head dim (128: every lane owns four dims) and one no lane count divides.
    let cases = [(70, 70, 64), (17, 40, 128), (9, 9, 13)];
    for (gaps, (t, s, hd)) in attention_gaps(DType::F32, false, &cases).iter().zip(cases) {
        for (name, gap) in ["y", "dq", "dk", "dv"].iter().zip(gaps) {
            assert!(*gap < 1e-5, "{name}, t={t} s={s} hd={hd}: {gap}");
        }
    }
}

/// The same kernels reading and writing `[B, T, H, hd]` in place (rows of a
/// head `H·hd` apart, batches of interleaved heads), the training step's order.
#[test]
fn emulated_cuda_attention_reads_the_sequence_major_order() {
    let cases = [(40, 40, 64), (17, 40, 13)];
    for (gaps, (t, s, hd)) in attention_gaps(DType::F32, true, &cases).iter().zip(cases) {
        for (name, gap) in ["y", "dq", "dk", "dv"].iter().zip(gaps) {
            assert!(*gap < 1e-5, "{name}, t={t} s={s} hd={hd}: {gap}");
        }
    }
    let cases = [(70, 70, 64), (17, 45, 32)];
    for (gaps, (t, s, hd)) in attention_gaps(DType::BF16, true, &cases).iter().zip(cases) {
        for (name, gap) in ["y", "dq", "dk", "dv"].iter().zip(gaps) {
            let bound = fused_check::ATTENTION_BF16_TOLERANCE;
            assert!(*gap < bound, "{name}, t={t} s={s} hd={hd}: {gap}");
        }
    }
}

/// The tensor-core kernels (attention_tc.cu) on bf16 inputs. They round the
/// probabilities and their gradients to bf16 as mma operands (as
/// FlashAttention-2 does) where the CPU op keeps f32 until its outputs, so
/// the bound is a few bf16 steps (2^-8 relative) of the largest value: the
/// one `fused_check` applies on a card.
#[test]
fn emulated_cuda_tensor_core_attention_matches_cpu_op() {
    // Two query blocks of 64 and a partial one (150), key tiles of 32 with
    // a partial last one, a cached prefix (S > T) that starts mid-tile, and
    // the three head dims the 16-wide fragments allow below the largest.
    let cases = [(150, 150, 64), (17, 45, 32), (9, 9, 16), (40, 40, 48)];
    for (gaps, (t, s, hd)) in attention_gaps(DType::BF16, false, &cases).iter().zip(cases) {
        for (name, gap) in ["y", "dq", "dk", "dv"].iter().zip(gaps) {
            let bound = fused_check::ATTENTION_BF16_TOLERANCE;
            assert!(*gap < bound, "{name}, t={t} s={s} hd={hd}: {gap}");
        }
    }
}

/// Output and input gradients of `op` on Vars of `inputs`, against the upstream
/// gradient `g` (the sum of `op(x)·g` is back-propagated).
fn cpu_op(
    inputs: &[&Tensor],
    g: &Tensor,
    op: impl Fn(&[Tensor]) -> candle_core::Result<Tensor>,
) -> (Tensor, Vec<Tensor>) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = op(&ts).unwrap();
    let grads = (&y * g).unwrap().sum_all().unwrap().backward().unwrap();
    let gs = vars
        .iter()
        .map(|v| grads.get(v.as_tensor()).unwrap().clone())
        .collect();
    (y, gs)
}

/// Both sides compute in f32 from the same inputs; f32 results differ by
/// summation order only. A bf16 result is rounded on each side, so where the
/// two f32 values straddle a rounding boundary they are one bf16 step apart
/// (2⁻⁸ relative): the bound allows two such steps at the largest value.
fn tolerance(dtype: DType) -> f32 {
    match dtype {
        DType::BF16 => 8e-3,
        _ => 1e-5,
    }
}

fn assert_close(what: &str, cpu: &Tensor, emu: &Tensor) {
    let gap = rel_gap(cpu, emu);
    assert!(gap < tolerance(cpu.dtype()), "{what}: {gap}");
    if cpu.dtype() == DType::BF16 {
        // Both sides round the same f32 values to nearest even, so almost
        // every element is bit-identical; another rounding (truncation, say)
        // would differ in about half of them while staying within the bound.
        let values = |t: &Tensor| {
            let t = t.flatten_all().unwrap().to_dtype(DType::F32).unwrap();
            t.to_vec1::<f32>().unwrap()
        };
        let (a, b) = (values(cpu), values(emu));
        let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert!(
            differ * 50 < a.len(),
            "{what}: {differ} of {} bf16 values differ",
            a.len()
        );
    }
}

#[test]
fn emulated_cuda_fused_kernels_match_cpu_ops() {
    fused_kernels_against_cpu_ops(DType::F32);
}

/// The `_bf16` kernels (bf16 activations, f32 arithmetic) against the CPU
/// ops on bf16 tensors; the inputs are bf16 values, so the f32 files hold
/// them exactly.
#[test]
fn emulated_cuda_bf16_kernels_match_cpu_ops() {
    fused_kernels_against_cpu_ops(DType::BF16);
}

fn fused_kernels_against_cpu_ops(dtype: DType) {
    use frugal_model::fused::{self, RopeTables};
    use frugal_model::fused_adamw::{update_in_place, AdamWStep, AdamWUpdate};
    let dir = scratch(&format!("fused-{dtype:?}"));
    let exe = build_driver(&dir, "fused_driver");
    let put = |name: &str, t: &Tensor| write_f32(&dir.join(name), t);
    let get = |name: &str, shape: &[usize]| read_f32(&dir.join(name), shape);
    // An activation: in the dtype under test.
    let act = |t: Tensor| t.to_dtype(dtype).unwrap();
    let bf16 = dtype == DType::BF16;
    let call = |mode: &str, params: &[String]| {
        let mode = if bf16 && mode != "adamw" {
            format!("{mode}:bf16")
        } else {
            mode.to_string()
        };
        let mut args = vec![mode, dir.display().to_string()];
        args.extend_from_slice(params);
        run(&exe, &args);
    };
    let s = |v: &[&dyn std::fmt::Display]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    // RMSNorm: more rows than one dw chunk (64), d not a multiple of the block.
    let (rows, d) = (70, 300);
    let (x, w, g) = (
        randn(&[rows, d], 1),
        randn(&[d], 2).affine(0.1, 1.0).unwrap(),
        act(randn(&[rows, d], 3)),
    );
    let (y, grads) = cpu_op(&[&x, &w], &g, |t| {
        fused::rms_norm_to(&t[0], &t[1], 1e-5, dtype)
    });
    put("x", &x);
    put("w", &w);
    put("g", &g);
    // The gradient x already has from the residual add, which the tape's
    // backward folds into the norm's (the `_add` kernels).
    let acc = randn(&[rows, d], 33);
    put("acc", &acc);
    call("rms", &s(&[&rows, &d, &1e-5, &64]));
    assert_close("rms_norm y", &y, &get("y", &[rows, d]));
    assert_close("rms_norm dx", &grads[0], &get("dx", &[rows, d]));
    assert_close("rms_norm dw", &grads[1], &get("dw", &[d]));
    let summed = (&acc + &grads[0]).unwrap();
    assert_close("rms_norm acc + dx", &summed, &get("dxacc", &[rows, d]));
    // The longer chunks the launcher takes past 65 535 · 64 rows: any chunk
    // length, one that does not divide the rows included, gives the same dw.
    call("rms", &s(&[&rows, &d, &1e-5, &27]));
    assert_close("rms_norm dw (chunks of 27)", &grads[1], &get("dw", &[d]));

    // Causal softmax with a cached prefix (S > T); more columns than threads.
    let (t, n) = (5, 300);
    let (x, g) = (act(randn(&[2, 3, t, n], 4)), act(randn(&[2, 3, t, n], 5)));
    let (p, grads) = cpu_op(&[&x], &g, |t| fused::causal_softmax(&t[0], 0.125));
    put("x", &x);
    put("g", &g);
    call("softmax", &s(&[&(6 * t), &t, &n, &0.125]));
    assert_close("causal_softmax p", &p, &get("p", &[6 * t * n]));
    assert_close("causal_softmax dx", &grads[0], &get("dx", &[6 * t * n]));

    // SwiGLU: more elements than one grid-stride pass of a capped grid needs.
    let n = 1000;
    let (a, b, g) = (
        act(randn(&[n], 6)),
        act(randn(&[n], 7)),
        act(randn(&[n], 8)),
    );
    let (y, grads) = cpu_op(&[&a, &b], &g, |t| fused::swiglu(&t[0], &t[1]));
    put("a", &a);
    put("b", &b);
    put("g", &g);
    call("swiglu", &s(&[&n]));
    let dadb = get("dadb", &[2, n]);
    assert_close("swiglu y", &y, &get("y", &[n]));
    assert_close("swiglu da", &grads[0], &dadb.get(0).unwrap());
    assert_close("swiglu db", &grads[1], &dadb.get(1).unwrap());

    // RoPE at an offset (a KV cache); the launcher passes the tables from `pos`.
    let (t, half, pos, max_t) = (7, 16, 3, 12);
    let angles: Vec<f32> = (0..max_t * half)
        .map(|k| (k / half) as f32 / 100f32.powf((k % half) as f32 / half as f32))
        .collect();
    let a = Tensor::from_vec(angles, (max_t, half), &Device::Cpu).unwrap();
    let (cos, sin) = (a.cos().unwrap(), a.sin().unwrap());
    let x = act(randn(&[2, 3, t, 2 * half], 9));
    let tables = RopeTables::new(&cos, &sin).unwrap();
    let (y, _) = cpu_op(&[&x], &x, |t| tables.apply(&t[0], pos));
    put("x", &x);
    put("cos", &cos.narrow(0, pos, t).unwrap());
    put("sin", &sin.narrow(0, pos, t).unwrap());
    call("rope", &s(&[&(6 * t), &t, &1, &half, &1.0]));
    assert_close("rope y", &y, &get("y", &[6 * t * 2 * half]));
    // The same on [B, T, H, hd]: three consecutive rows share a position.
    let x = act(randn(&[2, t, 3, 2 * half], 11));
    let (y, _) = cpu_op(&[&x], &x, |t| tables.apply_seq(&t[0], pos));
    put("x", &x);
    call("rope", &s(&[&(6 * t), &t, &3, &half, &1.0]));
    assert_close("rope y [B, T, H, hd]", &y, &get("y", &[6 * t * 2 * half]));

    // Cross-entropy over a vocabulary wider than the block, mean over rows:
    // each row's upstream gradient is 1/n.
    let (n, v) = (6, 1000);
    let x = act((randn(&[n, v], 10) * 3.0).unwrap());
    let ids: Vec<u32> = (0..n as u32).map(|i| (i * 397) % v as u32).collect();
    let targets = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap();
    let one = Tensor::new(1f32, &Device::Cpu).unwrap();
    let (loss, grads) = cpu_op(&[&x], &one, |t| fused::cross_entropy(&t[0], &targets));
    put("x", &x);
    let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(dir.join("y"), bytes).unwrap();
    put("g", &Tensor::full(1.0 / n as f32, n, &Device::Cpu).unwrap());
    call("ce", &s(&[&n, &v]));
    let mean = get("loss", &[n]).mean_all().unwrap();
    assert_close("cross_entropy loss", &loss, &mean);
    assert_close("cross_entropy dx", &grads[0], &get("dx", &[n, v]));

    if bf16 {
        // AdamW keeps f32 state and has no bf16 kernel.
        std::fs::remove_dir_all(&dir).ok();
        return;
    }
    // AdamW: one adamw_multi launch over four parameters (several blocks
    // with a partial last one, a single element, exactly one block, decay or
    // not) against the CPU's in-place update of the same step.
    let sizes = [5000, 1, 2048, 700];
    let step = AdamWStep {
        decay: 1.0 - 3e-4 * 0.1,
        b1: 0.9,
        b2: 0.95,
        bc2_sqrt: (1.0f32 - 0.95f32.powi(3)).sqrt(),
        step_size: 3e-4 / (1.0 - 0.9f32.powi(3)),
        eps: 1e-8,
    };
    let mut params = s(&[
        &step.b1,
        &step.b2,
        &step.bc2_sqrt,
        &step.step_size,
        &step.eps,
    ]);
    let (mut ps, mut gs, mut mvs, mut steps) = (vec![], vec![], vec![], vec![]);
    for (k, &n) in sizes.iter().enumerate() {
        let seed = 20 + 4 * k as u64;
        ps.push(randn(&[n], seed));
        gs.push((randn(&[n], seed + 1) * 0.01).unwrap());
        let m = (randn(&[n], seed + 2) * 1e-3).unwrap();
        let v = (randn(&[n], seed + 3) * 1e-5).unwrap().abs().unwrap();
        mvs.push(Tensor::stack(&[m, v], 0).unwrap());
        let decay = if k % 2 == 0 { step.decay } else { 1.0 };
        steps.push(AdamWStep { decay, ..step });
        params.extend(s(&[&n, &decay]));
    }
    let flat = |ts: &[Tensor]| {
        Tensor::cat(
            &ts.iter()
                .map(|t| t.flatten_all().unwrap())
                .collect::<Vec<_>>(),
            0,
        )
        .unwrap()
    };
    put("p", &flat(&ps));
    put("g", &flat(&gs));
    put("mv", &flat(&mvs));
    call("adamw", &params);
    let total: usize = sizes.iter().sum();
    let (emu_p, emu_mv) = (get("p", &[total]), get("mv", &[2 * total]));
    let updates: Vec<_> = (0..sizes.len())
        .map(|k| AdamWUpdate {
            step: steps[k],
            param: &ps[k],
            grad: &gs[k],
            moments: &mvs[k],
        })
        .collect();
    update_in_place(&updates).unwrap();
    // The same f32 arithmetic in the same order: bit for bit.
    let values = |t: &Tensor| t.to_vec1::<f32>().unwrap();
    assert_eq!(values(&flat(&ps)), values(&emu_p), "adamw p");
    assert_eq!(values(&flat(&mvs)), values(&emu_mv), "adamw m, v");
    std::fs::remove_dir_all(&dir).ok();
}

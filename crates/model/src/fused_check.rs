//! Checks the fused kernels on one device against the CPU kernels (which
//! `llama::tests` checks against plain candle ops): forward values and every
//! input gradient, on seeded random inputs at training shapes; then a whole
//! fused training step with the tape's backward ([`step`]). Used by
//! `tests/cuda_fused.rs` and `frugal bench kernels`, so a user can check a
//! card with the binary alone.

use crate::fused::{self, RopeTables};
use crate::fused_adamw::{update_in_place, AdamWStep, AdamWUpdate};
use crate::fused_attention;
use crate::{fused_block, fused_head, fused_linear, Precision};
use candle_core::{DType, Device, Result, Tensor, Var};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

mod step;
pub use step::STEP_BF16_TOLERANCE;

/// Largest |device − CPU| allowed, relative to the largest |CPU| value (at
/// least 1). Both sides are f32; the GPU uses `__expf`/`rsqrtf` and another
/// summation order, so the results are close but not bit-identical.
pub const TOLERANCE: f32 = 1e-4;

/// The same for kernels with bf16 activations: both sides round their f32
/// results to bf16, so values that straddle a rounding boundary land one bf16
/// step (2⁻⁸ relative) apart; this allows between two and three such steps
/// at the largest value.
pub const BF16_TOLERANCE: f32 = 1e-2;

/// The tensor-core attention (kernels/attention_tc.cu) also rounds the
/// probabilities and their gradients to bf16 as mma operands, where the CPU
/// op keeps them f32: up to five bf16 steps at the largest value. Its
/// emulated run (tests/cuda_emulated.rs) stays below 8e-3.
pub const ATTENTION_BF16_TOLERANCE: f32 = 2e-2;

/// One kernel at one shape.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub name: String,
    pub forward_gap: f32,
    /// Per differentiable input, in argument order.
    pub grad_gaps: Vec<f32>,
    /// The bound [`Check::passed`] applies: [`TOLERANCE`], [`BF16_TOLERANCE`],
    /// [`ATTENTION_BF16_TOLERANCE`] or [`STEP_BF16_TOLERANCE`].
    pub tolerance: f32,
    /// Why the kernel could not be run and compared at all (a launch the card
    /// refused, say); such a check fails, and the checks after it still run.
    pub error: Option<String>,
}

impl Check {
    /// A check whose kernel returned `error` instead of values.
    fn errored(name: &str, error: candle_core::Error) -> Self {
        Self {
            name: name.to_string(),
            forward_gap: f32::NAN,
            grad_gaps: Vec::new(),
            tolerance: TOLERANCE,
            error: Some(error.to_string()),
        }
    }
    /// The largest gap; NaN when any gap is (`f32::max` would drop it).
    pub fn worst(&self) -> f32 {
        self.grad_gaps
            .iter()
            .fold(self.forward_gap, |a, &b| nan_max(a, b))
    }
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.worst() < self.tolerance
    }
    /// Whether the check runs the one-op attention: its own checks, and the
    /// training steps of [`Attention::OneOp`] (the names are made here, so
    /// callers need not parse them).
    pub fn uses_one_op_attention(&self) -> bool {
        self.name.starts_with("flash_attention")
            || (self.name.starts_with("training step") && self.name.ends_with("(tape)"))
    }
}

/// Which attention the checked training step uses: the one-op kernel (and
/// the tape's backward), or scores matmul + causal softmax + matmul (and
/// candle's backward), the fallback when the one-op kernel fails on a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attention {
    OneOp,
    Matmul,
}

/// Runs every check on `device`; with [`Attention::Matmul`] the one-op
/// attention kernels are left out and the training steps use matmul
/// attention. A kernel that errors becomes a failed [`Check`]; only building
/// the inputs on the CPU can fail the whole call. The one-op attention, the
/// most intricate kernel, runs after the others: an illegal address leaves a
/// CUDA context unusable, and the others' verdicts should not be lost to it.
pub fn check_all(device: &Device, attention: Attention) -> Result<Vec<Check>> {
    let mut inputs = Inputs(rand_chacha::ChaCha8Rng::seed_from_u64(0));
    let rope = rope_angles(64, 128)?;
    let mut out = Vec::new();
    norms_and_softmax(&mut inputs, device, &mut out)?;
    elementwise(&mut inputs, device, &rope, &mut out)?;
    cross_entropy(&mut inputs, device, &mut out)?;
    projections(&mut inputs, device, &rope, &mut out)?;
    head_loss(&mut inputs, device, &mut out)?;
    out.push(adamw(&mut inputs, device)?);
    if attention == Attention::OneOp {
        one_op_attention(&mut inputs, device, &mut out)?;
    }
    for precision in [Precision::F32, Precision::Bf16] {
        out.push(step::training_step(device, precision, attention));
    }
    Ok(out)
}

/// Seeded normal inputs, drawn in the order the checks ask for them.
struct Inputs(rand_chacha::ChaCha8Rng);

impl Inputs {
    fn randn(&mut self, shape: &[usize], std: f32, mean: f32) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                let z: f32 = StandardNormal.sample(&mut self.0);
                mean + std * z
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu)
    }
}

fn bf16(t: &Tensor) -> Result<Tensor> {
    t.to_dtype(DType::BF16)
}

/// RoPE's cos and sin for head dim `hd` over `max_t` positions, on the CPU.
fn rope_angles(hd: usize, max_t: usize) -> Result<(Tensor, Tensor)> {
    let half = hd / 2;
    let angles: Vec<f32> = (0..max_t)
        .flat_map(|p| (0..half).map(move |i| p as f32 / 10_000f32.powf(i as f32 / half as f32)))
        .collect();
    let a = Tensor::from_vec(angles, (max_t, half), &Device::Cpu)?;
    Ok((a.cos()?, a.sin()?))
}

/// The tables on the device of `x`, as the model keeps them.
fn tables_for(x: &Tensor, (cos, sin): &(Tensor, Tensor)) -> Result<RopeTables> {
    let dev = x.device();
    RopeTables::new(&cos.to_device(dev)?, &sin.to_device(dev)?)
}

fn norms_and_softmax(inp: &mut Inputs, device: &Device, out: &mut Vec<Check>) -> Result<()> {
    for d in [64, 768, 2000] {
        let inputs = [
            inp.randn(&[4, 33, d], 1.0, 0.0)?,
            inp.randn(&[d], 0.1, 1.0)?,
        ];
        out.push(compare(&format!("rms_norm d={d}"), device, &inputs, |t| {
            fused::rms_norm(&t[0], &t[1], 1e-5)
        }));
        if d == 768 {
            // f32 residual stream in, bf16 activations out (mixed precision).
            out.push(compare("rms_norm d=768 bf16 out", device, &inputs, |t| {
                fused::rms_norm_to(&t[0], &t[1], 1e-5, DType::BF16)
            }));
        }
    }
    // Square scores (training) and a cached prefix (S > T).
    let softmax = |x: &[Tensor]| fused::causal_softmax(&x[0], 0.125);
    for (t, s) in [(64, 64), (17, 40), (512, 512)] {
        let inputs = [inp.randn(&[2, 3, t, s], 1.0, 0.0)?];
        out.push(compare(
            &format!("causal_softmax {t}x{s}"),
            device,
            &inputs,
            softmax,
        ));
        if t == 512 {
            let inputs = [bf16(&inputs[0])?];
            out.push(compare(
                "causal_softmax 512x512 bf16",
                device,
                &inputs,
                softmax,
            ));
        }
    }
    Ok(())
}

fn elementwise(
    inp: &mut Inputs,
    device: &Device,
    rope: &(Tensor, Tensor),
    out: &mut Vec<Check>,
) -> Result<()> {
    let inputs = [
        inp.randn(&[3, 70, 2048], 1.0, 0.0)?,
        inp.randn(&[3, 70, 2048], 1.0, 0.0)?,
    ];
    let swiglu = |t: &[Tensor]| fused::swiglu(&t[0], &t[1]);
    out.push(compare("swiglu", device, &inputs, swiglu));
    let inputs = [bf16(&inputs[0])?, bf16(&inputs[1])?];
    out.push(compare("swiglu bf16", device, &inputs, swiglu));
    let x = inp.randn(&[2, 4, 50, 64], 1.0, 0.0)?;
    for (pos, dtype) in [(0, DType::F32), (37, DType::F32), (37, DType::BF16)] {
        let inputs = [x.to_dtype(dtype)?];
        let name = match dtype {
            DType::BF16 => format!("rope pos={pos} bf16"),
            _ => format!("rope pos={pos}"),
        };
        out.push(compare(&name, device, &inputs, |x| {
            tables_for(&x[0], rope)?.apply(&x[0], pos)
        }));
        // [B, T, H, hd]: H consecutive rows share a position.
        let inputs = [inputs[0].transpose(1, 2)?.contiguous()?];
        out.push(compare(
            &format!("{name} [B, T, H, hd]"),
            device,
            &inputs,
            |x| tables_for(&x[0], rope)?.apply_seq(&x[0], pos),
        ));
    }
    Ok(())
}

fn cross_entropy(inp: &mut Inputs, device: &Device, out: &mut Vec<Check>) -> Result<()> {
    let (n, v) = (300, 50_304);
    let logits = inp.randn(&[n, v], 3.0, 0.0)?;
    let ids: Vec<u32> = (0..n as u32).map(|i| (i * 7919) % v as u32).collect();
    let targets = Tensor::new(ids.as_slice(), &Device::Cpu)?;
    let loss = |t: &[Tensor]| fused::cross_entropy(&t[0], &t[1]);
    for dtype in [DType::U32, DType::I64] {
        let inputs = [logits.clone(), targets.to_dtype(dtype)?];
        out.push(compare(
            &format!("cross_entropy {dtype:?} targets"),
            device,
            &inputs,
            loss,
        ));
    }
    // bf16 logits, as a bf16 output head produces them: no f32 [N, V] copy.
    let inputs = [bf16(&logits)?, targets];
    out.push(compare("cross_entropy bf16 logits", device, &inputs, loss));
    Ok(())
}

/// Projections as one node (fused_linear: candle's own GEMM, casts and
/// copies behind one backward) at the 162 M model's shapes, in f32 and with
/// bf16 activations (the matching precision); then with the elementwise op
/// after them (fused_block): q rotated from a cached prefix, and the MLP's
/// gate and up with SwiGLU.
fn projections(
    inp: &mut Inputs,
    device: &Device,
    rope: &(Tensor, Tensor),
    out: &mut Vec<Check>,
) -> Result<()> {
    let x = inp.randn(&[2, 64, 768], 1.0, 0.0)?;
    let heads = inp.randn(&[2, 12, 64, 64], 1.0, 0.0)?;
    let seq_heads = heads.transpose(1, 2)?.contiguous()?;
    let res = inp.randn(&[2, 64, 768], 1.0, 0.0)?;
    let w_up = inp.randn(&[2048, 768], 0.02, 0.0)?;
    let w_o = inp.randn(&[768, 768], 0.02, 0.0)?;
    let w_gate = inp.randn(&[2048, 768], 0.02, 0.0)?;
    for p in [Precision::F32, Precision::Bf16] {
        let act = |t: &Tensor| t.to_dtype(p.activation_dtype());
        let (x, heads, seq_heads) = (act(&x)?, act(&heads)?, act(&seq_heads)?);
        let inputs = [x.clone(), w_up.clone()];
        out.push(compare(
            &format!("linear 768->2048 {p}"),
            device,
            &inputs,
            |t| fused_linear::linear(&t[0], &t[1], p),
        ));
        let inputs = [x.clone(), w_o.clone()];
        out.push(compare(
            &format!("linear_to_heads 12 {p}"),
            device,
            &inputs,
            |t| fused_linear::linear_to_heads(&t[0], &t[1], 12, p),
        ));
        let inputs = [res.clone(), heads, w_o.clone()];
        let name = format!("residual_linear from heads {p}");
        out.push(compare(&name, device, &inputs, |t| {
            fused_linear::residual_linear(&t[0], &t[1], &t[2], p)
        }));
        let inputs = [x.clone(), w_o.clone()];
        out.push(compare(
            &format!("rotated_heads 12 pos=37 {p}"),
            device,
            &inputs,
            |t| fused_block::rotated_heads(&t[0], &t[1], 12, &tables_for(&t[0], rope)?, 37, p),
        ));
        let name = format!("rotated_seq_heads 12 pos=37 {p}");
        out.push(compare(&name, device, &inputs, |t| {
            let tables = tables_for(&t[0], rope)?;
            fused_block::rotated_seq_heads(&t[0], &t[1], 12, &tables, 37, p)
        }));
        let inputs = [res.clone(), seq_heads, w_o.clone()];
        let name = format!("residual_linear_seq from [B, T, H, hd] {p}");
        out.push(compare(&name, device, &inputs, |t| {
            fused_linear::residual_linear_seq(&t[0], &t[1], &t[2], p)
        }));
        let inputs = [x, w_up.clone(), w_gate.clone()];
        out.push(compare(
            &format!("gated_up 768->2048 {p}"),
            device,
            &inputs,
            |t| fused_block::gated_up(&t[0], &t[1], &t[2], p),
        ));
    }
    Ok(())
}

/// Head and loss as one node over the real vocabulary.
fn head_loss(inp: &mut Inputs, device: &Device, out: &mut Vec<Check>) -> Result<()> {
    let h = inp.randn(&[64, 768], 1.0, 0.0)?;
    let w_head = inp.randn(&[50_304, 768], 0.02, 0.0)?;
    let ids: Vec<u32> = (0..64u32).map(|i| (i * 7919) % 50_304).collect();
    let targets = Tensor::new(ids.as_slice(), &Device::Cpu)?;
    for precision in [Precision::F32, Precision::Bf16] {
        let inputs = [
            h.to_dtype(precision.activation_dtype())?,
            w_head.clone(),
            targets.clone(),
        ];
        let name = format!("head_loss 64x768 vocab 50304 {precision}");
        out.push(compare(&name, device, &inputs, |t| {
            fused_head::head_loss(&t[0], &t[1], &t[2], precision)
        }));
    }
    Ok(())
}

/// AdamW at step 3 on a 768 x 2048 weight (decayed) and a 768 norm weight
/// (not), updated in place in one call (one launch on a GPU); compared
/// forward, as it has no backward.
fn adamw(inp: &mut Inputs, device: &Device) -> Result<Check> {
    let name = "adamw 768x2048 + 768, one call (p, m, v)";
    let step = AdamWStep {
        decay: 1.0 - 3e-4 * 0.1,
        b1: 0.9,
        b2: 0.95,
        bc2_sqrt: (1.0f32 - 0.95f32.powi(3)).sqrt(),
        step_size: 3e-4 / (1.0 - 0.9f32.powi(3)),
        eps: 1e-8,
    };
    let mut cpu = Vec::new();
    for (k, shape) in [&[768, 2048][..], &[768]].into_iter().enumerate() {
        let n: usize = shape.iter().product();
        let p = inp.randn(shape, 0.02, 0.0)?;
        let g = inp.randn(shape, 0.01, 0.0)?;
        let m = inp.randn(&[n], 0.001, 0.0)?;
        let v = inp.randn(&[n], 1e-5, 0.0)?.abs()?;
        let decay = if k == 0 { step.decay } else { 1.0 };
        cpu.push((
            AdamWStep { decay, ..step },
            p,
            g,
            Tensor::stack(&[m, v], 0)?,
        ));
    }
    // Copies for the device, taken before the CPU update overwrites its
    // inputs (and moving to the CPU would share them).
    let copies = cpu
        .iter()
        .map(|(s, p, g, mv)| -> Result<_> {
            let copy = |t: &Tensor| t.to_device(device)?.copy();
            Ok((*s, copy(p)?, g.to_device(device)?, copy(mv)?))
        })
        .collect::<Result<Vec<_>>>();
    adamw_in_place(&cpu)?;
    // Relative to each output's own scale: v is ~1e-5, m ~1e-3, p ~1e-2.
    let on_device = || -> Result<f32> {
        let dev = copies?;
        adamw_in_place(&dev)?;
        let mut worst = 0f32;
        for ((_, p, _, mv), (_, dp, _, dmv)) in cpu.iter().zip(&dev) {
            let dp = dp.to_device(&Device::Cpu)?;
            let dmv = dmv.to_device(&Device::Cpu)?;
            worst = nan_max(worst, rel_gap_above(p, &dp, f32::MIN_POSITIVE)?);
            for k in 0..2 {
                let gap = rel_gap_above(&mv.get(k)?, &dmv.get(k)?, f32::MIN_POSITIVE)?;
                worst = nan_max(worst, gap);
            }
        }
        Ok(worst)
    };
    Ok(match on_device() {
        Ok(worst) => Check {
            name: name.to_string(),
            forward_gap: worst,
            grad_gaps: Vec::new(),
            tolerance: TOLERANCE,
            error: None,
        },
        Err(e) => Check::errored(name, e),
    })
}

/// One-op attention: training shape, a cached prefix, and a head dim that is
/// not a multiple of the warp (the kernel's lanes own hd/32 dims); then the
/// same kernels on [B, T, H, hd] (the training step's order), in place: a
/// head's rows H·hd apart.
fn one_op_attention(inp: &mut Inputs, device: &Device, out: &mut Vec<Check>) -> Result<()> {
    for (t, s, hd) in [(512, 512, 64), (17, 40, 64), (70, 70, 48)] {
        let inputs = [
            inp.randn(&[2, 3, t, hd], 1.0, 0.0)?,
            inp.randn(&[2, 3, s, hd], 1.0, 0.0)?,
            inp.randn(&[2, 3, s, hd], 1.0, 0.0)?,
        ];
        let scale = 1.0 / (hd as f64).sqrt();
        let attend = |x: &[Tensor]| fused_attention::causal_attention(&x[0], &x[1], &x[2], scale);
        let name = format!("flash_attention {t}x{s} hd={hd}");
        out.push(compare(&name, device, &inputs, attend));
        // bf16: the tensor-core kernels on a GPU (hd a multiple of 16).
        let inputs = [bf16(&inputs[0])?, bf16(&inputs[1])?, bf16(&inputs[2])?];
        let mut check = compare(&format!("{name} bf16"), device, &inputs, attend);
        check.tolerance = ATTENTION_BF16_TOLERANCE;
        out.push(check);
    }
    for (t, s, dtype) in [
        (512, 512, DType::F32),
        (512, 512, DType::BF16),
        (17, 40, DType::BF16),
    ] {
        let inputs = [
            inp.randn(&[2, t, 3, 64], 1.0, 0.0)?.to_dtype(dtype)?,
            inp.randn(&[2, s, 3, 64], 1.0, 0.0)?.to_dtype(dtype)?,
            inp.randn(&[2, s, 3, 64], 1.0, 0.0)?.to_dtype(dtype)?,
        ];
        let mut check = compare(
            &format!("flash_attention [B, T, H, hd] {t}x{s} hd=64 {dtype:?}"),
            device,
            &inputs,
            |x| fused_attention::causal_attention_seq(&x[0], &x[1], &x[2], 0.125),
        );
        if dtype == DType::BF16 {
            check.tolerance = ATTENTION_BF16_TOLERANCE;
        }
        out.push(check);
    }
    Ok(())
}

/// [`update_in_place`] over (step, parameter, gradient, moments) rows.
pub(crate) fn adamw_in_place(rows: &[(AdamWStep, Tensor, Tensor, Tensor)]) -> Result<()> {
    let updates: Vec<_> = rows
        .iter()
        .map(|(step, param, grad, moments)| AdamWUpdate {
            step: *step,
            param,
            grad,
            moments,
        })
        .collect();
    update_in_place(&updates)
}

/// The larger of two gaps, or NaN when either is: a NaN gap (garbage from a
/// kernel) must fail its bound, and `f32::max` returns the other operand.
pub fn nan_max(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.max(b)
    }
}

/// Largest |a − b| relative to the largest |a|, or to `min_scale` when that
/// is larger (f32 or bf16 tensors). A NaN in either tensor makes the gap NaN,
/// which fails every bound (a kernel that leaves garbage must not pass).
pub fn rel_gap_above(a: &Tensor, b: &Tensor, min_scale: f32) -> Result<f32> {
    let (gap, scale) = gap_and_scale(a, b)?;
    Ok(gap / scale.max(min_scale))
}

/// Largest |a − b| over as many f32 or bf16 values, NaN when either tensor
/// holds a NaN: for parity tests, where candle's `max` and `f32::max` both
/// pass over a NaN and would let garbage through.
pub fn max_abs_gap(a: &Tensor, b: &Tensor) -> Result<f32> {
    Ok(gap_and_scale(a, b)?.0)
}

/// The largest |Δ| between `want` and `model`'s logits of `ids` computed the
/// three ways frugal computes them: fused, unfused, and through the KV cache
/// in two calls split at `split` ([`crate::Llama::logits_in_two_calls`]).
/// For checking a model against an outside reference; leaves `model` as it
/// was.
pub fn logit_gaps(
    model: &mut crate::Llama,
    ids: &Tensor,
    want: &Tensor,
    split: usize,
) -> crate::Result<[f32; 3]> {
    let was_fused = model.is_fused();
    let mut gap = |fused: bool| -> crate::Result<f32> {
        model.set_fused(fused)?;
        Ok(max_abs_gap(&model.forward(ids)?, want)?)
    };
    let (fused, unfused) = (gap(true)?, gap(false)?);
    model.set_fused(was_fused)?;
    let cached = model.detached().logits_in_two_calls(ids, split)?;
    Ok([fused, unfused, max_abs_gap(&cached, want)?])
}

/// (largest |a − b|, largest |a|), each NaN when a NaN is among its values.
fn gap_and_scale(a: &Tensor, b: &Tensor) -> Result<(f32, f32)> {
    let values = |t: &Tensor| t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>();
    let (a, b) = (values(a)?, values(b)?);
    if a.len() != b.len() {
        candle_core::bail!("rel_gap: {} against {} values", a.len(), b.len());
    }
    let scale = a.iter().fold(0f32, |m, x| nan_max(m, x.abs()));
    let gap = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| nan_max(m, (x - y).abs()));
    Ok((gap, scale))
}

/// Standard-normal f32 values of `shape`, from `seed` (for tests of the kernels).
pub fn randn(shape: &[usize], seed: u64) -> Result<Tensor> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
}

/// Largest |a − b| relative to the largest |a| (at least 1).
fn rel_gap(a: &Tensor, b: &Tensor) -> Result<f32> {
    rel_gap_above(a, b, 1.0)
}

/// Output and input gradients of `op` on `device`, back-propagating a fixed
/// upstream gradient; float inputs are differentiated, others (targets) not.
fn run(
    device: &Device,
    inputs: &[Tensor],
    op: &impl Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<(Tensor, Vec<Option<Tensor>>)> {
    let mut vars = Vec::new();
    let mut ts = Vec::new();
    for t in inputs {
        let t = t.to_device(device)?;
        if t.dtype().is_float() {
            let v = Var::from_tensor(&t)?;
            ts.push(v.as_tensor().clone());
            vars.push(Some(v));
        } else {
            ts.push(t);
            vars.push(None);
        }
    }
    let y = op(&ts)?;
    let n = y.elem_count();
    let up: Vec<f32> = (0..n)
        .map(|i| ((i as u64).wrapping_mul(2_654_435_761) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let up = Tensor::from_vec(up, y.shape(), &Device::Cpu)?
        .to_dtype(y.dtype())?
        .to_device(device)?;
    let grads = (&y * &up)?.sum_all()?.backward()?;
    let mut g = Vec::new();
    for v in &vars {
        g.push(match v {
            Some(v) => Some(
                grads
                    .get(v.as_tensor())
                    .ok_or_else(|| candle_core::Error::Msg("an input got no gradient".into()))?
                    .to_device(&Device::Cpu)?,
            ),
            None => None,
        });
    }
    Ok((y.to_device(&Device::Cpu)?, g))
}

/// `op` on the CPU and on `device`, compared; an error on either side makes
/// a failed check rather than ending the run.
fn compare(
    name: &str,
    device: &Device,
    inputs: &[Tensor],
    op: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> Check {
    compare_or_err(name, device, inputs, op).unwrap_or_else(|e| Check::errored(name, e))
}

fn compare_or_err(
    name: &str,
    device: &Device,
    inputs: &[Tensor],
    op: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<Check> {
    let (cpu_y, cpu_g) = run(&Device::Cpu, inputs, &op)?;
    let (dev_y, dev_g) = run(device, inputs, &op)?;
    let bf16 = cpu_y.dtype() == DType::BF16 || inputs.iter().any(|t| t.dtype() == DType::BF16);
    let mut grad_gaps = Vec::new();
    for (a, b) in cpu_g.iter().zip(&dev_g) {
        if let (Some(a), Some(b)) = (a, b) {
            grad_gaps.push(rel_gap(a, b)?);
        }
    }
    Ok(Check {
        name: name.to_string(),
        forward_gap: rel_gap(&cpu_y, &dev_y)?,
        grad_gaps,
        tolerance: if bf16 { BF16_TOLERANCE } else { TOLERANCE },
        error: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The number of gradients each check compares, by its name.
    fn grads_expected(name: &str) -> usize {
        let starts = |prefixes: &[&str]| prefixes.iter().any(|p| name.starts_with(p));
        if name.starts_with("training step") {
            // Against the CPU, and (on the tape) against candle's backward.
            if name.ends_with("(tape)") {
                2
            } else {
                1
            }
        } else if starts(&["rms_norm", "swiglu", "linear", "rotated", "head_loss"]) {
            2
        } else if name.starts_with("adamw") {
            0
        } else if starts(&["flash", "residual", "gated"]) {
            3
        } else {
            1
        }
    }

    /// On the CPU against itself every gap is exactly zero: the harness
    /// compares what it should (a GPU run is in tests/cuda_fused.rs). Without
    /// the one-op attention its 9 checks are gone and the steps use matmul
    /// attention with candle's backward.
    #[test]
    fn cpu_against_itself_is_exact() {
        for (attention, count) in [(Attention::OneOp, 47), (Attention::Matmul, 38)] {
            let checks = check_all(&Device::Cpu, attention).unwrap();
            assert_eq!(checks.len(), count, "{attention:?}");
            for c in &checks {
                assert_eq!(c.worst(), 0.0, "{}", c.name);
                assert!(c.passed() && c.error.is_none(), "{}", c.name);
                assert_eq!(c.grad_gaps.len(), grads_expected(&c.name), "{}", c.name);
            }
            let flash = checks
                .iter()
                .filter(|c| c.name.starts_with("flash"))
                .count();
            assert_eq!(flash, if attention == Attention::OneOp { 9 } else { 0 });
            // The nine attention checks and, with the one-op attention, both steps.
            let uses = checks.iter().filter(|c| c.uses_one_op_attention()).count();
            assert_eq!(uses, if attention == Attention::OneOp { 11 } else { 0 });
            let step = checks.last().unwrap();
            let expect = match attention {
                Attention::OneOp => "(tape)",
                Attention::Matmul => "(matmul attention, candle backward)",
            };
            assert!(step.name.ends_with(expect), "{}", step.name);
        }
    }

    /// A kernel that errors is a failed check carrying the message, not the
    /// end of the run.
    #[test]
    fn an_erroring_kernel_fails_its_check_only() {
        let inputs = [randn(&[4, 8], 1).unwrap()];
        let failing = compare("refused", &Device::Cpu, &inputs, |_| {
            candle_core::bail!("too many resources requested for launch")
        });
        assert!(!failing.passed());
        assert!(failing.worst().is_nan());
        let message = failing.error.as_deref().unwrap();
        assert!(message.contains("too many resources"), "{message}");
        let fine = compare("fine", &Device::Cpu, &inputs, |t| t[0].exp());
        assert!(fine.passed(), "{fine:?}");
    }

    /// A NaN gap fails wherever it is: forward, or any gradient.
    #[test]
    fn a_nan_gap_fails() {
        let check = |forward_gap: f32, grad_gaps: Vec<f32>| Check {
            name: "k".into(),
            forward_gap,
            grad_gaps,
            tolerance: TOLERANCE,
            error: None,
        };
        assert!(check(0.0, vec![0.0, 1e-6]).passed());
        assert!(!check(f32::NAN, vec![0.0, 0.0]).passed());
        assert!(!check(0.0, vec![f32::NAN, 0.0]).passed());
        assert!(!check(0.0, vec![0.0, f32::NAN]).passed());
    }
}

//! The whole training step of a small fused Llama on a device (every fused
//! op of the forward, then the tape's backward) against the same step on the
//! CPU, and against candle's own backward on the device. The kernel checks
//! of the parent module see each op alone; this one sees the tape replay
//! them, with the sums and moves between them, on the card.

use super::{nan_max, rel_gap_above, Attention, Check, TOLERANCE};
use crate::{fused, Llama, LlamaConfig, ParamStore, Precision};
use candle_core::backprop::GradStore;
use candle_core::{Device, Result, Tensor};

/// The bound for the bf16 step. Activations rounded to bf16 after every op
/// make the gradients sensitive to where the rounding falls: on the CPU,
/// parameters changed by one part in 10⁶ move the worst parameter's
/// gradient by 6.8e-3 of its largest value (f32: 4.7e-6). The tensor-core
/// attention rounds its probabilities too. A wrong or missing gradient,
/// what this check is for, is off by O(1).
pub const STEP_BF16_TOLERANCE: f32 = 5e-2;

/// Restores the CUDA fused switch when the check ends, by value or by error.
struct Restore(bool);

impl Drop for Restore {
    fn drop(&mut self) {
        fused::set_cuda_fused(self.0);
    }
}

/// Two layers, head dim 64 (the 162 M model's, which the tensor-core
/// attention takes in bf16), an untied head, tokens that repeat (so the
/// embedding's gradient sums rows). The loss is the forward gap; the
/// gradients' gaps are the worst parameter's, relative to its own largest
/// value: first against the CPU, then (with the one-op attention, which the
/// tape needs) the tape against candle's backward. An error is a failed check.
pub(super) fn training_step(device: &Device, precision: Precision, attention: Attention) -> Check {
    let name = match attention {
        Attention::OneOp => format!("training step 2x128 untied {precision} (tape)"),
        Attention::Matmul => {
            format!("training step 2x128 untied {precision} (matmul attention, candle backward)")
        }
    };
    match compare_step(device, precision, attention) {
        Ok((forward_gap, grad_gaps)) => Check {
            name,
            forward_gap,
            grad_gaps,
            tolerance: match precision {
                Precision::F32 => TOLERANCE,
                Precision::Bf16 => STEP_BF16_TOLERANCE,
            },
            error: None,
        },
        Err(e) => Check::errored(&name, e),
    }
}

/// The loss gap and the gradient gaps of [`training_step`].
fn compare_step(
    device: &Device,
    precision: Precision,
    attention: Attention,
) -> Result<(f32, Vec<f32>)> {
    let one_op = attention == Attention::OneOp;
    let mut c = LlamaConfig::new(512, 128, 2, 2);
    c.ffn_hidden = 384;
    c.max_seq_len = 64;
    c.tie_embeddings = false;
    let (b, t) = (2, 64);
    let ids: Vec<u32> = (0..b * t).map(|i| (i as u32 * 31 + 5) % 200).collect();
    let targets: Vec<u32> = (0..b * t).map(|i| (i as u32 * 7919 + 3) % 512).collect();
    let ids = Tensor::from_vec(ids, (b, t), &Device::Cpu)?;
    let targets = Tensor::from_vec(targets, (b, t), &Device::Cpu)?;

    let _restore = Restore(fused::set_cuda_fused(true));
    let step = |device: &Device| -> Result<(ParamStore, Llama, Tensor, GradStore)> {
        let params = ParamStore::init(&c, device, 5).map_err(crate::ModelError::into_candle)?;
        let mut model = Llama::new(&c, &params)
            .map_err(crate::ModelError::into_candle)?
            .with_precision(precision);
        model.set_flash_attention(one_op);
        if one_op && !model.tape_covers() {
            candle_core::bail!("the fused training step does not run on the tape on {device:?}");
        }
        let (x, y) = (ids.to_device(device)?, targets.to_device(device)?);
        let (loss, grads) = model
            .loss_and_grads(&x, &y, 1.0)
            .map_err(crate::ModelError::into_candle)?;
        Ok((params, model, loss, grads))
    };
    let (cpu_params, _, cpu_loss, cpu_grads) = step(&Device::Cpu)?;
    let (params, model, loss, grads) = step(device)?;
    // Without the tape, loss_and_grads already is candle's backward.
    let autograd = if one_op {
        let (x, y) = (ids.to_device(device)?, targets.to_device(device)?);
        let loss = model.loss(&x, &y).map_err(crate::ModelError::into_candle)?;
        Some(loss.backward()?)
    } else {
        None
    };

    let (mut vs_cpu, mut vs_autograd) = (0f32, 0f32);
    for ((name, cpu_var), (_, var)) in cpu_params.iter().zip(params.iter()) {
        let get = |g: &GradStore, v: &candle_core::Var, side: &str| -> Result<Tensor> {
            match g.get(v.as_tensor()) {
                Some(g) => g.to_device(&Device::Cpu),
                None => candle_core::bail!("{side}: {name} got no gradient"),
            }
        };
        let gap = |a: &Tensor, b: &Tensor| rel_gap_above(a, b, f32::MIN_POSITIVE);
        let cpu = get(&cpu_grads, cpu_var, "CPU")?;
        let on_device = get(&grads, var, "device")?;
        vs_cpu = nan_max(vs_cpu, gap(&cpu, &on_device)?);
        if let Some(autograd) = &autograd {
            let candle = get(autograd, var, "candle backward")?;
            vs_autograd = nan_max(vs_autograd, gap(&candle, &on_device)?);
        }
    }
    let loss_gap = rel_gap_above(&cpu_loss, &loss.to_device(&Device::Cpu)?, f32::MIN_POSITIVE)?;
    let mut grad_gaps = vec![vs_cpu];
    if one_op {
        grad_gaps.push(vs_autograd);
    }
    Ok((loss_gap, grad_gaps))
}

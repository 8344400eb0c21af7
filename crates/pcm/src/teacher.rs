//! Training the teacher: ε-prediction on the 1000-step DDPM schedule with
//! the label replaced by the null class with probability 0.1 (so one
//! network gives both terms of classifier-free guidance).

use crate::ckpt::{self, Metrics, State};
use crate::data::ImageSet;
use crate::model_dir::{self, Kind};
use crate::optim::{self, AdamW, AdamWConfig, Trainable};
use crate::schedule::{Schedule, TRAIN_STEPS};
use crate::unet::{per_sample, UNetConfig};
use crate::{rng, PcmError, Result};
use candle_core::{Device, Tensor};
use frugal_model::Precision;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeacherConfig {
    pub kind: Kind,
    /// Where the images came from (for the record).
    pub data: String,
    pub unet: UNetConfig,
    pub steps: u64,
    pub batch: usize,
    pub lr: f64,
    pub warmup: u64,
    pub label_dropout: f64,
    pub clip: f64,
    pub adamw: AdamWConfig,
    pub seed: u64,
    pub log_every: u64,
    pub checkpoint_every: u64,
    /// Decay of the weights' exponential moving average, the weights the
    /// teacher samples and is distilled with (0 = no EMA, the raw weights).
    /// Runs written before the EMA existed read as the default.
    #[serde(default = "default_ema")]
    pub ema: f64,
    /// The convolutions' matmul dtype (bf16: autocast-style, f32 master
    /// weights; runs written before it existed read as f32).
    #[serde(default)]
    pub precision: Precision,
}

fn default_ema() -> f64 {
    0.999
}

/// The EMA's decay at `step`: `min(decay, (1 + step)/(10 + step))`, so that
/// the average does not stay near the random initialisation in a short run
/// (0.999 alone would still weigh it 13 % after 2 000 steps).
pub fn ema_rate(decay: f64, step: u64) -> f64 {
    decay.min((1 + step) as f64 / (10 + step) as f64)
}

impl Default for TeacherConfig {
    fn default() -> Self {
        Self {
            kind: Kind::Teacher,
            data: "fashion-mnist".into(),
            unet: UNetConfig::default(),
            steps: 20_000,
            batch: 64,
            lr: 2e-4,
            warmup: 500,
            label_dropout: 0.1,
            clip: 1.0,
            adamw: optim::adamw_defaults(),
            seed: 0,
            log_every: 50,
            checkpoint_every: 1000,
            ema: default_ema(),
            precision: Precision::F32,
        }
    }
}

/// Linear warmup, then constant.
pub fn lr_at(step: u64, lr: f64, warmup: u64) -> f64 {
    if warmup == 0 {
        lr
    } else {
        lr * ((step + 1) as f64 / warmup as f64).min(1.0)
    }
}

/// A batch of images (B, 1, H, W) and labels drawn with replacement, a pure
/// function of the generator's state.
pub fn batch(
    data: &ImageSet,
    rng: &mut rand_chacha::ChaCha8Rng,
    n: usize,
    device: &Device,
) -> Result<(Tensor, Vec<u32>)> {
    let mut pix = Vec::with_capacity(n * data.pixels());
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let i = rng.gen_range(0..data.len());
        pix.extend_from_slice(data.image(i));
        labels.push(data.labels[i] as u32);
    }
    Ok((
        Tensor::from_vec(pix, (n, 1, data.height, data.width), device)?,
        labels,
    ))
}

pub struct Summary {
    pub step: u64,
    pub last_loss: f64,
    pub resumed_from: Option<u64>,
}

/// Trains (or resumes) a teacher in `out`.
pub fn train(
    cfg: &TeacherConfig,
    data: &ImageSet,
    out: &Path,
    device: &Device,
    progress: bool,
) -> Result<Summary> {
    check_data(data, &cfg.unet)?;
    if cfg.batch == 0 || cfg.steps == 0 {
        return Err(PcmError::arg("steps and batch must be positive"));
    }
    if !(0.0..1.0).contains(&cfg.ema) {
        return Err(PcmError::arg(format!(
            "EMA decay must be in [0, 1), got {}",
            cfg.ema
        )));
    }
    ckpt::write_or_check_run(out, cfg)?;
    let (vm, net) = model_dir::trainable(cfg.unet, None, cfg.precision, device)?;
    let params = optim::params_of(&vm);
    // Fresh variables come from candle's unseeded generator: overwrite them
    // from the seed so that runs are reproducible.
    seeded_init(&params, cfg.seed)?;
    let mut opt = AdamW::new(cfg.adamw, &Trainable(&params))?;
    let resume = ckpt::latest(out)?;
    let (start, keep) = match &resume {
        Some((st, dir)) => {
            model_dir::set_vars(&params, &ckpt::load_file(dir, "model", device)?)?;
            opt.load_state(ckpt::load_file(dir, "optimizer", device)?, st.step)?;
            (st.step, st.metrics_len)
        }
        None => (0, 0),
    };
    // The EMA starts from the current weights: the initialisation, or the
    // resumed weights of a checkpoint written before the EMA existed.
    let ema = if cfg.ema > 0.0 {
        let init = model_dir::snapshot(&params)?;
        let (vm, _) = model_dir::trainable(cfg.unet, Some(&init), cfg.precision, device)?;
        let ep = optim::params_of(&vm);
        if let Some((_, dir)) = &resume {
            if let Some(t) = ckpt::load_optional(dir, "ema", device)? {
                model_dir::set_vars(&ep, &t)?;
            }
        }
        Some(ep)
    } else {
        None
    };
    let mut metrics = Metrics::open(out, keep)?;
    let sched = Schedule::ddpm();
    let bar = crate::eval::bar(cfg.steps, "teacher", progress);
    bar.set_position(start);
    let mut last = f64::NAN;
    for step in start..cfg.steps {
        let mut r = rng::stream(cfg.seed, step, 1);
        let (x0, mut labels) = batch(data, &mut r, cfg.batch, device)?;
        let t: Vec<usize> = (0..cfg.batch)
            .map(|_| r.gen_range(0..TRAIN_STEPS))
            .collect();
        for l in labels.iter_mut() {
            if r.gen::<f64>() < cfg.label_dropout {
                *l = cfg.unet.null_class();
            }
        }
        let noise = rng::normal(&mut r, x0.dims(), device)?;
        let a: Vec<f64> = t.iter().map(|&t| sched.alpha(t)).collect();
        let s: Vec<f64> = t.iter().map(|&t| sched.sigma(t)).collect();
        let xt = (x0.broadcast_mul(&per_sample(&a, x0.dims(), device)?)?
            + noise.broadcast_mul(&per_sample(&s, x0.dims(), device)?)?)?;
        let eps = net.forward(&xt, &t, &labels)?;
        let loss = (eps - &noise)?.sqr()?.mean_all()?;
        let loss_v = loss.to_scalar::<f32>()? as f64;
        if !loss_v.is_finite() {
            return Err(PcmError::Diverged { step, loss: loss_v });
        }
        let mut grads = optim::collect_grads(&params, &loss.backward()?)?;
        let gnorm = frugal_train::optim::clip_grad_norm(&mut grads, cfg.clip)?;
        let lr = lr_at(step, cfg.lr, cfg.warmup);
        opt.step(&Trainable(&params), &grads, lr)?;
        if let Some(ep) = &ema {
            optim::ema_update(ep, &params, ema_rate(cfg.ema, step))?;
        }
        last = loss_v;
        let done = step + 1;
        if done % cfg.log_every.max(1) == 0 || done == cfg.steps {
            metrics.write(&serde_json::json!({
                "step": done, "lr": lr, "loss": loss_v, "grad_norm": gnorm,
            }))?;
            bar.set_message(format!("loss {loss_v:.4}"));
        }
        if done % cfg.checkpoint_every.max(1) == 0 || done == cfg.steps {
            let state = State {
                step: done,
                metrics_len: metrics.sync()?,
            };
            let mut files = vec![
                ("model", model_dir::snapshot(&params)?),
                ("optimizer", opt.state_tensors()?),
            ];
            if let Some(ep) = &ema {
                files.push(("ema", model_dir::snapshot(ep)?));
            }
            ckpt::save(out, &state, files, 2)?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(Summary {
        step: cfg.steps,
        last_loss: last,
        resumed_from: (start > 0).then_some(start),
    })
}

/// Re-draws the variables from a seeded generator (candle's initialisers
/// use its unseedable one): weights uniform ±1/√fan_in as PyTorch's default,
/// conv/linear biases zero, GroupNorm's ones and zeros kept.
pub fn seeded_init(params: &optim::Params, seed: u64) -> Result<()> {
    let mut r = rng::stream(seed, 0, 0);
    for (name, var) in params {
        let dims = var.dims().to_vec();
        if dims.len() >= 2 {
            let fan_in: usize = dims[1..].iter().product();
            let bound = 1.0 / (fan_in as f64).sqrt();
            let n: usize = dims.iter().product();
            let v: Vec<f32> = (0..n).map(|_| r.gen_range(-bound..bound) as f32).collect();
            var.set(&Tensor::from_vec(v, dims.as_slice(), var.device())?)?;
        } else if name.ends_with(".bias") && !name.contains("norm") {
            var.set(&var.zeros_like()?)?;
        }
    }
    Ok(())
}

pub(crate) fn check_data(data: &ImageSet, unet: &UNetConfig) -> Result<()> {
    if data.is_empty() {
        return Err(PcmError::MissingData("the training set is empty".into()));
    }
    if data.height != unet.image_size || data.width != unet.image_size {
        return Err(PcmError::arg(format!(
            "images are {}×{} but the U-Net expects {}×{}",
            data.height, data.width, unet.image_size, unet.image_size
        )));
    }
    if let Some(l) = data
        .labels
        .iter()
        .find(|&&l| l as usize >= unet.num_classes)
    {
        return Err(PcmError::arg(format!(
            "label {l} ≥ {} classes",
            unet.num_classes
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ema_rate_warms_up_then_caps() {
        assert_eq!(ema_rate(0.999, 0), 0.1);
        assert!((ema_rate(0.999, 90) - 91.0 / 100.0).abs() < 1e-15);
        assert_eq!(ema_rate(0.999, 100_000), 0.999);
        assert_eq!(ema_rate(0.0, 5), 0.0);
    }
}

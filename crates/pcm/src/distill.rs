//! Phased consistency distillation (papers.md §3, "Training step") and the
//! LCM baseline, which differs only in the consistency function.
//!
//! Per sample: a grid index n, t_{n+1} = grid[n], t_n = t_{n+1} − 20;
//! x_{t_{n+1}} = α x₀ + σ ε; the frozen teacher takes one DDIM step to t_n
//! with CFG weight w ~ U[w_min, w_max]; the loss compares the online
//! student's f(x_{t_{n+1}}, t_{n+1}) with the target network's
//! f(x̂_{t_n}, t_n) (no gradient), both jumping to the same phase edge. The
//! student starts from the teacher's weights.

use crate::adv::{hinge_d, hinge_g, renoise, Discriminator};
use crate::ckpt::{self, Metrics, State};
use crate::data::ImageSet;
use crate::model_dir::{self, Kind};
use crate::optim::{self, AdamW, AdamWConfig, Trainable};
use crate::schedule::{prev_timestep, solver_grid, Consistency, Param, Schedule, SOLVER_STEPS};
use crate::teacher::{batch, check_data, lr_at};
use crate::unet::{per_sample, UNetConfig};
use crate::{rng, PcmError, Result};
use candle_core::{Device, Tensor};
use frugal_model::Precision;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum Target {
    /// The online network under no-grad (the reference's LoRA runs).
    Online,
    /// An exponential moving average of the online weights.
    Ema { rate: f64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum Loss {
    /// Element-wise √(d² + c²) − c, averaged.
    Huber {
        c: f64,
    },
    L2,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillConfig {
    pub kind: Kind,
    pub teacher: PathBuf,
    /// Phases M (1 for LCM).
    pub phases: Option<usize>,
    pub unet: UNetConfig,
    pub data: String,
    pub steps: u64,
    pub batch: usize,
    pub lr: f64,
    pub warmup: u64,
    pub clip: f64,
    pub adamw: AdamWConfig,
    pub w_min: f64,
    pub w_max: f64,
    /// CFG-free: the class becomes ∅ with probability 0.1 and w = 0.
    pub cfg_free: bool,
    pub target: Target,
    pub loss: Loss,
    pub seed: u64,
    pub log_every: u64,
    pub checkpoint_every: u64,
    /// Weight of the adversarial consistency loss (0 = off; the paper: 0.1).
    #[serde(default)]
    pub adv_weight: f64,
    /// Discriminator learning rate (AdamW, β 0/0.999).
    #[serde(default = "default_disc_lr")]
    pub disc_lr: f64,
    /// The convolutions' matmul dtype for the student, its target and the
    /// teacher it queries (runs written before it existed read as f32).
    #[serde(default)]
    pub precision: Precision,
}

fn default_disc_lr() -> f64 {
    1e-5
}

impl DistillConfig {
    /// Defaults for a PCM (`phases = Some(M)`) or LCM (`None`) student of
    /// the teacher in `teacher`.
    pub fn new(teacher: PathBuf, unet: UNetConfig, phases: Option<usize>) -> Self {
        Self {
            kind: if phases.is_some() {
                Kind::Pcm
            } else {
                Kind::Lcm
            },
            teacher,
            phases,
            unet,
            data: "fashion-mnist".into(),
            steps: 4000,
            batch: 64,
            lr: 5e-5,
            warmup: 100,
            clip: 1.0,
            adamw: optim::adamw_defaults(),
            w_min: 0.0,
            w_max: 0.5,
            cfg_free: false,
            target: Target::Online,
            loss: Loss::Huber { c: 0.001 },
            seed: 0,
            log_every: 50,
            checkpoint_every: 500,
            adv_weight: 0.0,
            disc_lr: default_disc_lr(),
            precision: Precision::F32,
        }
    }
    pub fn param(&self) -> Param {
        match (self.kind, self.phases) {
            (Kind::Pcm, Some(m)) => Param::Pcm { phases: m },
            _ => Param::Lcm,
        }
    }
}

/// Mean loss between prediction and target (tensors of equal shape).
pub fn loss_value(kind: Loss, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    let d = (pred - target)?;
    Ok(match kind {
        Loss::L2 => d.sqr()?.mean_all()?,
        Loss::Huber { c } => ((d.sqr()? + c * c)?.sqrt()? - c)?.mean_all()?,
    })
}

/// `a·x + b·e` with per-sample coefficients.
fn combine(x: &Tensor, e: &Tensor, ab: &[(f64, f64)], device: &Device) -> Result<Tensor> {
    let a: Vec<f64> = ab.iter().map(|p| p.0).collect();
    let b: Vec<f64> = ab.iter().map(|p| p.1).collect();
    Ok((x.broadcast_mul(&per_sample(&a, x.dims(), device)?)?
        + e.broadcast_mul(&per_sample(&b, x.dims(), device)?)?)?)
}

pub struct Summary {
    pub step: u64,
    pub last_loss: f64,
    pub resumed_from: Option<u64>,
}

pub fn train(
    cfg: &DistillConfig,
    data: &ImageSet,
    out: &Path,
    device: &Device,
    progress: bool,
) -> Result<Summary> {
    let teacher = model_dir::load(&cfg.teacher, device)?.in_precision(cfg.precision);
    if teacher.kind != Kind::Teacher {
        return Err(PcmError::arg(format!(
            "{} is a {:?} run, not a teacher",
            cfg.teacher.display(),
            teacher.kind
        )));
    }
    if teacher.net.config != cfg.unet {
        return Err(PcmError::arg(
            "the student's U-Net config must equal the teacher's",
        ));
    }
    check_data(data, &cfg.unet)?;
    if cfg.w_min > cfg.w_max || cfg.w_min < 0.0 {
        return Err(PcmError::arg(format!(
            "need 0 ≤ w_min ≤ w_max, got [{}, {}]",
            cfg.w_min, cfg.w_max
        )));
    }
    if cfg.batch == 0 || cfg.steps == 0 {
        return Err(PcmError::arg("steps and batch must be positive"));
    }
    let consistency = Consistency::new(cfg.param())?;
    ckpt::write_or_check_run(out, cfg)?;

    let init = Some(&teacher.tensors);
    let (vm, student) = model_dir::trainable(cfg.unet, init, cfg.precision, device)?;
    let params = optim::params_of(&vm);
    let ema = match cfg.target {
        Target::Ema { .. } => Some(model_dir::trainable(cfg.unet, init, cfg.precision, device)?),
        Target::Online => None,
    };
    let ema_params = ema.as_ref().map(|(vm, _)| optim::params_of(vm));
    let mut opt = AdamW::new(cfg.adamw, &Trainable(&params))?;
    // The discriminator: heads on the teacher's middle features.
    let disc = if cfg.adv_weight > 0.0 {
        let vm = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&vm, candle_core::DType::F32, device);
        let d = Discriminator::new(2 * cfg.unet.channels, vb)?;
        let p = optim::params_of(&vm);
        crate::teacher::seeded_init(&p, cfg.seed ^ 0xd15c)?;
        let dcfg = AdamWConfig {
            beta1: 0.0,
            beta2: 0.999,
            ..optim::adamw_defaults()
        };
        let o = AdamW::new(dcfg, &Trainable(&p))?;
        Some((d, p, o))
    } else {
        None
    };
    let mut disc = disc;
    let (start, keep) = match ckpt::latest(out)? {
        Some((st, dir)) => {
            model_dir::set_vars(&params, &ckpt::load_file(&dir, "model", device)?)?;
            opt.load_state(ckpt::load_file(&dir, "optimizer", device)?, st.step)?;
            if let Some((_, p, o)) = disc.as_mut() {
                model_dir::set_vars(p, &ckpt::load_file(&dir, "disc", device)?)?;
                o.load_state(ckpt::load_file(&dir, "disc_optimizer", device)?, st.step)?;
            }
            if let Some(ep) = &ema_params {
                model_dir::set_vars(ep, &ckpt::load_file(&dir, "ema", device)?)?;
            }
            (st.step, st.metrics_len)
        }
        None => (0, 0),
    };
    let mut metrics = Metrics::open(out, keep)?;
    let sched = Schedule::ddpm();
    let grid = solver_grid();
    let null = cfg.unet.null_class();
    let bar = crate::eval::bar(cfg.steps, "distill", progress);
    bar.set_position(start);
    let mut last = f64::NAN;
    for step in start..cfg.steps {
        let mut r = rng::stream(cfg.seed, step, 2);
        let (x0, mut classes) = batch(data, &mut r, cfg.batch, device)?;
        let n: Vec<usize> = (0..cfg.batch)
            .map(|_| r.gen_range(0..SOLVER_STEPS))
            .collect();
        let mut w: Vec<f64> = (0..cfg.batch)
            .map(|_| rng::uniform(&mut r, cfg.w_min, cfg.w_max))
            .collect();
        if cfg.cfg_free {
            w.iter_mut().for_each(|w| *w = 0.0);
            for c in classes.iter_mut() {
                if r.gen::<f64>() < 0.1 {
                    *c = null;
                }
            }
        }
        let noise = rng::normal(&mut r, x0.dims(), device)?;
        let t1: Vec<usize> = n.iter().map(|&n| grid[n]).collect();
        let t0: Vec<usize> = n.iter().map(|&n| prev_timestep(n)).collect();
        let fwd: Vec<(f64, f64)> = t1
            .iter()
            .map(|&t| (sched.alpha(t), sched.sigma(t)))
            .collect();
        let x_t1 = combine(&x0, &noise, &fwd, device)?;

        // Teacher: one DDIM step t_{n+1} → t_n with CFG (no gradient).
        let eps_w = teacher.net.forward_cfg(&x_t1, &t1, &classes, &w)?.detach();
        let step_ab: Vec<(f64, f64)> = t1
            .iter()
            .zip(&t0)
            .map(|(&a, &b)| sched.ddim(a, b))
            .collect();
        let x_t0 = combine(&x_t1, &eps_w, &step_ab, device)?.detach();

        // Target: f at (x̂_{t_n}, t_n); the identity where t_n is the edge.
        let target_net = ema.as_ref().map(|(_, net)| net).unwrap_or(&student);
        let eps_tg = target_net.forward(&x_t0, &t0, &classes)?.detach();
        let tg_ab: Vec<(f64, f64)> = t0
            .iter()
            .zip(&n)
            .map(|(&t, &n)| consistency.coeffs(&sched, t, n))
            .collect();
        let target = combine(&x_t0, &eps_tg, &tg_ab, device)?.detach();

        // Online: f at (x_{t_{n+1}}, t_{n+1}).
        let eps_on = student.forward(&x_t1, &t1, &classes)?;
        let on_ab: Vec<(f64, f64)> = t1
            .iter()
            .zip(&n)
            .map(|(&t, &n)| consistency.coeffs(&sched, t, n))
            .collect();
        let pred = combine(&x_t1, &eps_on, &on_ab, device)?;

        let mut loss = loss_value(cfg.loss, &pred, &target)?;
        // Adversarial term: both edge predictions re-noised to the same
        // random s in [s_m, s_{m+1}) with the same noise.
        let adv = match &disc {
            Some((d, _, _)) => {
                let lo: Vec<usize> = n.iter().map(|&n| consistency.lower_edge(n)).collect();
                let s: Vec<usize> = n
                    .iter()
                    .zip(&lo)
                    .map(|(&n, &lo)| r.gen_range(lo..consistency.upper_edge(n).max(lo + 1)))
                    .collect();
                let z = rng::normal(&mut r, x0.dims(), device)?;
                let fake = renoise(&sched, &pred, &lo, &s, &z)?;
                let real = renoise(&sched, &target, &lo, &s, &z)?.detach();
                let g = hinge_g(&d.forward(&teacher.net, &fake, &s, &classes)?)?;
                loss = (loss + g.affine(cfg.adv_weight, 0.0)?)?;
                Some((fake.detach(), real, s))
            }
            None => None,
        };
        let loss_v = loss.to_scalar::<f32>()? as f64;
        if !loss_v.is_finite() {
            return Err(PcmError::Diverged { step, loss: loss_v });
        }
        let mut grads = optim::collect_grads(&params, &loss.backward()?)?;
        let gnorm = frugal_train::optim::clip_grad_norm(&mut grads, cfg.clip)?;
        let lr = lr_at(step, cfg.lr, cfg.warmup);
        opt.step(&Trainable(&params), &grads, lr)?;
        // The discriminator's update, after the student's.
        let mut d_loss = None;
        if let (Some((d, dp, dopt)), Some((fake, real, s))) = (disc.as_mut(), adv) {
            let dl = hinge_d(
                &d.forward(&teacher.net, &real, &s, &classes)?,
                &d.forward(&teacher.net, &fake, &s, &classes)?,
            )?;
            d_loss = Some(dl.to_scalar::<f32>()? as f64);
            let dg = optim::collect_grads(dp, &dl.backward()?)?;
            dopt.step(&Trainable(dp), &dg, cfg.disc_lr)?;
        }
        if let (Target::Ema { rate }, Some(ep)) = (cfg.target, &ema_params) {
            optim::ema_update(ep, &params, rate)?;
        }
        last = loss_v;
        let done = step + 1;
        if done % cfg.log_every.max(1) == 0 || done == cfg.steps {
            let mut rec = serde_json::json!({
                "step": done, "lr": lr, "loss": loss_v, "grad_norm": gnorm,
            });
            if let Some(dl) = d_loss {
                rec["d_loss"] = serde_json::json!(dl);
            }
            metrics.write(&rec)?;
            bar.set_message(format!("loss {loss_v:.5}"));
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
            if let Some(ep) = &ema_params {
                files.push(("ema", model_dir::snapshot(ep)?));
            }
            if let Some((_, dp, dopt)) = &disc {
                files.push(("disc", model_dir::snapshot(dp)?));
                files.push(("disc_optimizer", dopt.state_tensors()?));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huber_tensor_matches_scalar_formula() {
        let dev = Device::Cpu;
        let a = [0.5f32, -1.0, 2e-4, 3.0];
        let b = [0.0f32, 0.0, 0.0, 1.0];
        let ta = Tensor::new(&a, &dev).unwrap();
        let tb = Tensor::new(&b, &dev).unwrap();
        let v = loss_value(Loss::Huber { c: 0.001 }, &ta, &tb)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let want = crate::schedule::pseudo_huber(&a, &b, 0.001);
        assert!((v as f64 - want).abs() < 1e-6, "{v} vs {want}");
        let l2 = loss_value(Loss::L2, &ta, &tb)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((l2 - (0.25 + 1.0 + 4e-8 + 4.0) / 4.0).abs() < 1e-6);
    }
}

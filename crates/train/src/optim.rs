//! AdamW with PyTorch's semantics and global-norm gradient clipping.
//!
//! The state (first and second moments, step count) is plain named tensors so
//! it checkpoints as safetensors and resumes bit-identically. Any model whose
//! parameters implement [`NamedParams`] can use it: the Llama's
//! [`ParamStore`] here, frugal-pcm's U-Nets and classifier there.

use crate::Result;
use candle_core::{DType, Device, Shape, Tensor, Var};
use frugal_model::fused_adamw::{update_in_place, AdamWStep, AdamWUpdate};
use frugal_model::ParamStore;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }
}

/// Gradients by parameter name, in name order.
pub type Grads = BTreeMap<String, Tensor>;

/// The variables an optimizer updates, and which of them take weight decay.
pub trait NamedParams {
    /// Every variable with its name, in name order (so that every reduction
    /// over them is deterministic).
    fn named_vars(&self) -> Vec<(&String, &Var)>;
    /// Whether decoupled weight decay applies to this parameter.
    fn decays(&self, name: &str) -> bool;
}

impl NamedParams for ParamStore {
    fn named_vars(&self) -> Vec<(&String, &Var)> {
        self.iter().collect()
    }
    fn decays(&self, name: &str) -> bool {
        ParamStore::decays(self, name)
    }
}

/// Collects the gradients of every parameter from a backward pass; a missing
/// gradient becomes zeros (a parameter the loss does not touch).
pub fn collect_grads<P: NamedParams + ?Sized>(
    params: &P,
    store: &candle_core::backprop::GradStore,
) -> Result<Grads> {
    let mut out = BTreeMap::new();
    for (name, var) in params.named_vars() {
        let g = match store.get(var.as_tensor()) {
            Some(g) => g.clone(),
            None => var.zeros_like()?,
        };
        out.insert(name.clone(), g);
    }
    Ok(out)
}

/// Adds `other` into `acc` (gradient accumulation).
pub fn add_grads(acc: &mut Grads, other: Grads) -> Result<()> {
    for (name, g) in other {
        let sum = match acc.remove(&name) {
            Some(a) => (a + g)?,
            None => g,
        };
        acc.insert(name, sum);
    }
    Ok(())
}

/// The global L2 norm of all gradients, summed in name order (deterministic).
///
/// Each gradient's sum of squares is widened to f64 and added on its device,
/// so a GPU is read once per call rather than once per parameter (every read
/// is a synchronisation); the additions are the same, in the same order.
pub fn global_norm(grads: &Grads) -> Result<f64> {
    let mut total: Option<Tensor> = None;
    for g in grads.values() {
        let sq = g.sqr()?.sum_all()?.to_dtype(candle_core::DType::F64)?;
        total = Some(match total {
            Some(t) => (t + sq)?,
            None => sq,
        });
    }
    let total = match total {
        Some(t) => t.to_scalar::<f64>()?,
        None => 0.0,
    };
    Ok(total.sqrt())
}

/// Scales gradients so their global norm is at most `max_norm` (PyTorch's
/// `clip_grad_norm_`: coefficient `max_norm / (norm + 1e-6)`, capped at 1).
/// Returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut Grads, max_norm: f64) -> Result<f64> {
    let norm = global_norm(grads)?;
    let coef = max_norm / (norm + 1e-6);
    if max_norm > 0.0 && coef < 1.0 {
        for g in grads.values_mut() {
            *g = g.affine(coef, 0.0)?;
        }
    }
    Ok(norm)
}

/// AdamW: decoupled weight decay, bias-corrected moments.
///
/// Each parameter is updated one of three ways, chosen once per parameter:
/// on the CPU the moments live in host vectors and one fused loop updates
/// them (three copies instead of a dozen tensor ops); on a GPU with the fused
/// kernels on ([`frugal_model::fused::fused_on`]) one kernel launch updates
/// all of them in place ([`update_in_place`]); elsewhere it runs as tensor
/// ops.
#[derive(Debug, Clone)]
pub struct AdamW {
    pub config: AdamWConfig,
    /// Completed optimizer steps.
    pub step: u64,
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
    host: BTreeMap<String, HostMoments>,
    fused: BTreeMap<String, FusedMoments>,
}

/// The moments of one parameter updated on the host, and its shape (so a
/// checkpoint holds them in the parameter's shape on every device).
#[derive(Debug, Clone)]
struct HostMoments {
    m: Vec<f32>,
    v: Vec<f32>,
    shape: Shape,
}

/// The moments of one parameter updated by the fused kernel: `[2, n]`, m
/// then v, overwritten by each step.
#[derive(Debug, Clone)]
struct FusedMoments {
    mv: Tensor,
    shape: Shape,
}

/// How one parameter is updated.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Update {
    Host,
    Fused,
    Tensor,
}

fn update_for(var: &Var) -> Update {
    if var.dtype() != DType::F32 {
        Update::Tensor
    } else if var.device().is_cpu() {
        Update::Host
    } else if frugal_model::fused::fused_on(var.device()) {
        Update::Fused
    } else {
        Update::Tensor
    }
}

impl AdamW {
    pub fn new<P: NamedParams + ?Sized>(config: AdamWConfig, params: &P) -> Result<Self> {
        Self::build(config, params, update_for)
    }

    /// Zero moments, each parameter's kept as `choose` says.
    fn build<P: NamedParams + ?Sized>(
        config: AdamWConfig,
        params: &P,
        choose: impl Fn(&Var) -> Update,
    ) -> Result<Self> {
        let mut opt = Self {
            config,
            step: 0,
            m: BTreeMap::new(),
            v: BTreeMap::new(),
            host: BTreeMap::new(),
            fused: BTreeMap::new(),
        };
        for (name, var) in params.named_vars() {
            let (n, shape) = (var.elem_count(), var.shape().clone());
            match choose(var) {
                Update::Host => {
                    let (m, v) = (vec![0f32; n], vec![0f32; n]);
                    opt.host.insert(name.clone(), HostMoments { m, v, shape });
                }
                Update::Fused => {
                    let mv = Tensor::zeros((2, n), DType::F32, var.device())?;
                    opt.fused.insert(name.clone(), FusedMoments { mv, shape });
                }
                Update::Tensor => {
                    opt.m.insert(name.clone(), var.zeros_like()?);
                    opt.v.insert(name.clone(), var.zeros_like()?);
                }
            }
        }
        Ok(opt)
    }

    /// One update with learning rate `lr`, in PyTorch's order of operations:
    /// `p ← p(1 − lr·wd)`, `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
    /// `p ← p − (lr/(1−β₁ᵗ)) · m / (√v/√(1−β₂ᵗ) + ε)`.
    pub fn step<P: NamedParams + ?Sized>(
        &mut self,
        params: &P,
        grads: &Grads,
        lr: f64,
    ) -> Result<()> {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
        let mut fused = Vec::with_capacity(self.fused.len());
        for (name, var) in params.named_vars() {
            let Some(g) = grads.get(name) else { continue };
            let decay = if params.decays(name) {
                c.weight_decay
            } else {
                0.0
            };
            let fused_step = AdamWStep {
                decay: (1.0 - lr * decay) as f32,
                b1: c.beta1 as f32,
                b2: c.beta2 as f32,
                bc2_sqrt: bc2_sqrt as f32,
                step_size: (lr / bc1) as f32,
                eps: c.eps as f32,
            };
            if let Some(h) = self.host.get_mut(name) {
                host_update(&fused_step, var, g, &mut h.m, &mut h.v)?;
                continue;
            }
            if let Some(f) = self.fused.get(name) {
                fused.push(AdamWUpdate {
                    step: fused_step,
                    param: var.as_tensor(),
                    grad: g,
                    moments: &f.mv,
                });
                continue;
            }
            let (m, v) = (&self.m[name], &self.v[name]);
            let m = (m.affine(c.beta1, 0.0)? + g.affine(1.0 - c.beta1, 0.0)?)?;
            let v = (v.affine(c.beta2, 0.0)? + g.sqr()?.affine(1.0 - c.beta2, 0.0)?)?;
            update_param(var, &m, &v, lr, decay, bc1, bc2_sqrt, c.eps)?;
            self.m.insert(name.clone(), m);
            self.v.insert(name.clone(), v);
        }
        update_in_place(&fused)?;
        Ok(())
    }

    /// Moments as `m.NAME` / `v.NAME` tensors for a checkpoint, each in its
    /// parameter's shape whichever way it is updated.
    pub fn state_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (k, h) in &self.host {
            let cpu = &Device::Cpu;
            out.insert(format!("m.{k}"), Tensor::from_slice(&h.m, &h.shape, cpu)?);
            out.insert(format!("v.{k}"), Tensor::from_slice(&h.v, &h.shape, cpu)?);
        }
        for (k, f) in &self.fused {
            // A copy on the host: the next step overwrites `mv` in place.
            let mv = match f.mv.device() {
                Device::Cpu => f.mv.copy()?,
                _ => f.mv.to_device(&Device::Cpu)?,
            };
            out.insert(format!("m.{k}"), mv.get(0)?.reshape(&f.shape)?);
            out.insert(format!("v.{k}"), mv.get(1)?.reshape(&f.shape)?);
        }
        for (k, t) in &self.m {
            out.insert(format!("m.{k}"), t.clone());
        }
        for (k, t) in &self.v {
            out.insert(format!("v.{k}"), t.clone());
        }
        Ok(out)
    }

    /// Restores moments saved by [`AdamW::state_tensors`] on any device
    /// (moments are matched by element count, so the flat moments of older
    /// CPU checkpoints load too).
    pub fn load_state(&mut self, mut tensors: HashMap<String, Tensor>, step: u64) -> Result<()> {
        let mut take = |prefix: &str, k: &str, want: usize| -> Result<Tensor> {
            let key = format!("{prefix}.{k}");
            let t = tensors.remove(&key).ok_or_else(|| {
                crate::TrainError::ckpt("optimizer.safetensors", format!("missing '{key}'"))
            })?;
            if t.elem_count() != want {
                return Err(crate::TrainError::ckpt(
                    "optimizer.safetensors",
                    format!("'{key}' has shape {:?}, expected {want} values", t.dims()),
                ));
            }
            Ok(t.flatten_all()?.to_dtype(DType::F32)?)
        };
        for (k, h) in self.host.iter_mut() {
            let n = h.m.len();
            h.m = take("m", k, n)?.to_vec1()?;
            h.v = take("v", k, n)?.to_vec1()?;
        }
        for (k, f) in self.fused.iter_mut() {
            let n = f.shape.elem_count();
            let (m, v) = (take("m", k, n)?, take("v", k, n)?);
            f.mv = Tensor::stack(&[m, v], 0)?.to_device(f.mv.device())?;
        }
        for (prefix, map) in [("m", &mut self.m), ("v", &mut self.v)] {
            for (k, slot) in map.iter_mut() {
                let t = take(prefix, k, slot.elem_count())?;
                *slot = t
                    .reshape(slot.shape())?
                    .to_device(slot.device())?
                    .to_dtype(slot.dtype())?;
            }
        }
        self.step = step;
        Ok(())
    }
}

/// One AdamW update of a CPU parameter in one parallel pass.
fn host_update(s: &AdamWStep, var: &Var, g: &Tensor, m: &mut [f32], v: &mut [f32]) -> Result<()> {
    let g: Vec<f32> = g.flatten_all()?.to_vec1()?;
    let mut p: Vec<f32> = var.flatten_all()?.to_vec1()?;
    s.apply_all(&mut p, m, v, &g);
    var.set(&Tensor::from_vec(p, var.shape(), var.device())?)?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn update_param(
    var: &Var,
    m: &Tensor,
    v: &Tensor,
    lr: f64,
    decay: f64,
    bc1: f64,
    bc2_sqrt: f64,
    eps: f64,
) -> Result<()> {
    let p = var.as_tensor();
    let p = if decay > 0.0 {
        p.affine(1.0 - lr * decay, 0.0)?
    } else {
        p.clone()
    };
    let denom = (v.sqrt()?.affine(1.0 / bc2_sqrt, 0.0)? + eps)?;
    let p = (p - (m / denom)?.affine(lr / bc1, 0.0)?)?;
    var.set(&p)?;
    Ok(())
}

#[cfg(test)]
mod tests;

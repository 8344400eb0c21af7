//! AdamW with PyTorch's semantics and global-norm gradient clipping.
//!
//! The state (first and second moments, step count) is plain named tensors so
//! it checkpoints as safetensors and resumes bit-identically. Any model whose
//! parameters implement [`NamedParams`] can use it: the Llama's
//! [`ParamStore`] here, frugal-pcm's U-Nets and classifier there.

use crate::Result;
use candle_core::{Tensor, Var};
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
/// On the CPU the moments live in host vectors and each parameter is updated
/// in one fused pass (three copies instead of a dozen tensor ops); elsewhere
/// the same arithmetic runs as tensor ops.
#[derive(Debug, Clone)]
pub struct AdamW {
    pub config: AdamWConfig,
    /// Completed optimizer steps.
    pub step: u64,
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
    host: BTreeMap<String, HostMoments>,
}

/// The moments of one parameter updated on the host, and its shape (so a
/// checkpoint holds them in the parameter's shape on every device).
#[derive(Debug, Clone)]
struct HostMoments {
    m: Vec<f32>,
    v: Vec<f32>,
    shape: candle_core::Shape,
}

impl AdamW {
    pub fn new<P: NamedParams + ?Sized>(config: AdamWConfig, params: &P) -> Result<Self> {
        let mut m = BTreeMap::new();
        let mut v = BTreeMap::new();
        let mut host = BTreeMap::new();
        for (name, var) in params.named_vars() {
            if host_update(var) {
                let n = var.elem_count();
                let moments = HostMoments {
                    m: vec![0f32; n],
                    v: vec![0f32; n],
                    shape: var.shape().clone(),
                };
                host.insert(name.clone(), moments);
            } else {
                m.insert(name.clone(), var.zeros_like()?);
                v.insert(name.clone(), var.zeros_like()?);
            }
        }
        Ok(Self {
            config,
            step: 0,
            m,
            v,
            host,
        })
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
        for (name, var) in params.named_vars() {
            let Some(g) = grads.get(name) else { continue };
            let decay = if params.decays(name) {
                c.weight_decay
            } else {
                0.0
            };
            if let Some(HostMoments { m, v, .. }) = self.host.get_mut(name) {
                let step = HostStep {
                    decay: (1.0 - lr * decay) as f32,
                    b1: c.beta1 as f32,
                    b2: c.beta2 as f32,
                    bc2_sqrt: bc2_sqrt as f32,
                    step_size: (lr / bc1) as f32,
                    eps: c.eps as f32,
                };
                step.apply(var, g, m, v)?;
                continue;
            }
            let (m, v) = (&self.m[name], &self.v[name]);
            let m = (m.affine(c.beta1, 0.0)? + g.affine(1.0 - c.beta1, 0.0)?)?;
            let v = (v.affine(c.beta2, 0.0)? + g.sqr()?.affine(1.0 - c.beta2, 0.0)?)?;
            update_param(var, &m, &v, lr, decay, bc1, bc2_sqrt, c.eps)?;
            self.m.insert(name.clone(), m);
            self.v.insert(name.clone(), v);
        }
        Ok(())
    }

    /// Moments as `m.NAME` / `v.NAME` tensors for a checkpoint.
    pub fn state_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (k, h) in &self.host {
            let cpu = &candle_core::Device::Cpu;
            out.insert(format!("m.{k}"), Tensor::from_slice(&h.m, &h.shape, cpu)?);
            out.insert(format!("v.{k}"), Tensor::from_slice(&h.v, &h.shape, cpu)?);
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
        for (k, h) in self.host.iter_mut() {
            for (prefix, slot) in [("m", &mut h.m), ("v", &mut h.v)] {
                let key = format!("{prefix}.{k}");
                let t = tensors.remove(&key).ok_or_else(|| {
                    crate::TrainError::ckpt("optimizer.safetensors", format!("missing '{key}'"))
                })?;
                let data: Vec<f32> = t
                    .flatten_all()?
                    .to_dtype(candle_core::DType::F32)?
                    .to_vec1()?;
                if data.len() != slot.len() {
                    return Err(crate::TrainError::ckpt(
                        "optimizer.safetensors",
                        format!("'{key}' has {} values, expected {}", data.len(), slot.len()),
                    ));
                }
                *slot = data;
            }
        }
        for (prefix, map) in [("m", &mut self.m), ("v", &mut self.v)] {
            for (k, slot) in map.iter_mut() {
                let key = format!("{prefix}.{k}");
                let t = tensors.remove(&key).ok_or_else(|| {
                    crate::TrainError::ckpt("optimizer.safetensors", format!("missing '{key}'"))
                })?;
                if t.elem_count() != slot.elem_count() {
                    return Err(crate::TrainError::ckpt(
                        "optimizer.safetensors",
                        format!(
                            "'{key}' has shape {:?}, expected {:?}",
                            t.dims(),
                            slot.dims()
                        ),
                    ));
                }
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

/// Whether a parameter is updated by the fused host loop.
fn host_update(var: &Var) -> bool {
    var.device().is_cpu() && var.dtype() == candle_core::DType::F32
}

/// One AdamW update in f32, PyTorch's order of operations.
struct HostStep {
    decay: f32,
    b1: f32,
    b2: f32,
    bc2_sqrt: f32,
    step_size: f32,
    eps: f32,
}

impl HostStep {
    fn apply(&self, var: &Var, g: &Tensor, m: &mut [f32], v: &mut [f32]) -> Result<()> {
        use rayon::prelude::*;
        let g: Vec<f32> = g.flatten_all()?.to_vec1()?;
        let mut p: Vec<f32> = var.flatten_all()?.to_vec1()?;
        const CHUNK: usize = 8192;
        p.par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| {
                for i in 0..p.len() {
                    p[i] *= self.decay;
                    m[i] = self.b1 * m[i] + (1.0 - self.b1) * g[i];
                    v[i] = self.b2 * v[i] + (1.0 - self.b2) * g[i] * g[i];
                    let denom = v[i].sqrt() / self.bc2_sqrt + self.eps;
                    p[i] -= self.step_size * m[i] / denom;
                }
            });
        var.set(&Tensor::from_vec(p, var.shape(), var.device())?)?;
        Ok(())
    }
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

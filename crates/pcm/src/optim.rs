//! AdamW over named candle variables.
//!
//! frugal-train's AdamW takes a `frugal_model::ParamStore`, which can only be
//! built from a Llama config's parameter list, so it cannot hold a U-Net's
//! variables without changing frugal-model. This is the same update
//! (PyTorch's order of operations, decoupled decay) over a `VarMap`'s
//! variables; gradient collection and clipping are frugal-train's, which
//! work on any name → tensor map.

use crate::{PcmError, Result};
use candle_core::{backprop::GradStore, Tensor, Var};
use frugal_train::optim::Grads;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
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
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Named variables in name order (so every reduction is deterministic).
pub type Params = BTreeMap<String, Var>;

/// The variables of a `VarMap`, by name.
pub fn params_of(vm: &candle_nn::VarMap) -> Params {
    vm.data()
        .lock()
        .map(|d| d.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// Gradients of every parameter (zeros where the loss does not reach).
pub fn collect_grads(params: &Params, store: &GradStore) -> Result<Grads> {
    let mut out = BTreeMap::new();
    for (name, var) in params {
        let g = match store.get(var.as_tensor()) {
            Some(g) => g.clone(),
            None => var.zeros_like()?,
        };
        out.insert(name.clone(), g);
    }
    Ok(out)
}

/// `e ← rate·e + (1 − rate)·p` for every variable of `ema` (an exponential
/// moving average of `params`, matched by name).
pub fn ema_update(ema: &Params, params: &Params, rate: f64) -> Result<()> {
    for (name, e) in ema {
        let p = params
            .get(name)
            .ok_or_else(|| PcmError::arg(format!("EMA variable '{name}' has no parameter")))?
            .as_tensor();
        e.set(&(e.as_tensor().affine(rate, 0.0)? + p.affine(1.0 - rate, 0.0)?)?)?;
    }
    Ok(())
}

/// Weight decay applies to conv and linear weights, not to biases, norms or
/// embeddings.
fn decays(name: &str, var: &Var) -> bool {
    name.ends_with(".weight") && var.rank() >= 2 && !name.contains("class_emb")
}

pub struct AdamW {
    pub config: AdamWConfig,
    pub step: u64,
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
}

impl AdamW {
    pub fn new(config: AdamWConfig, params: &Params) -> Result<Self> {
        let mut m = BTreeMap::new();
        let mut v = BTreeMap::new();
        for (name, var) in params {
            m.insert(name.clone(), var.zeros_like()?);
            v.insert(name.clone(), var.zeros_like()?);
        }
        Ok(Self {
            config,
            step: 0,
            m,
            v,
        })
    }

    /// `p ← p(1 − lr·wd)`, `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
    /// `p ← p − (lr/(1−β₁ᵗ))·m/(√v/√(1−β₂ᵗ) + ε)`.
    pub fn step(&mut self, params: &Params, grads: &Grads, lr: f64) -> Result<()> {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
        for (name, var) in params {
            let Some(g) = grads.get(name) else { continue };
            let m = (self.m[name].affine(c.beta1, 0.0)? + g.affine(1.0 - c.beta1, 0.0)?)?;
            let v = (self.v[name].affine(c.beta2, 0.0)? + g.sqr()?.affine(1.0 - c.beta2, 0.0)?)?;
            let mut p = var.as_tensor().detach();
            if decays(name, var) && c.weight_decay > 0.0 {
                p = p.affine(1.0 - lr * c.weight_decay, 0.0)?;
            }
            let denom = (v.sqrt()?.affine(1.0 / bc2_sqrt, 0.0)? + c.eps)?;
            let p = (p - (&m / denom)?.affine(lr / bc1, 0.0)?)?;
            var.set(&p)?;
            self.m.insert(name.clone(), m);
            self.v.insert(name.clone(), v);
        }
        Ok(())
    }

    /// Moments as `m.NAME` / `v.NAME` for a checkpoint.
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (k, t) in &self.m {
            out.insert(format!("m.{k}"), t.clone());
        }
        for (k, t) in &self.v {
            out.insert(format!("v.{k}"), t.clone());
        }
        out
    }

    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, step: u64) -> Result<()> {
        for (prefix, map) in [("m", &mut self.m), ("v", &mut self.v)] {
            for (k, slot) in map.iter_mut() {
                let key = format!("{prefix}.{k}");
                let t = tensors.get(&key).ok_or_else(|| {
                    PcmError::ckpt("optimizer.safetensors", format!("missing '{key}'"))
                })?;
                if t.dims() != slot.dims() {
                    return Err(PcmError::ckpt(
                        "optimizer.safetensors",
                        format!(
                            "'{key}' has shape {:?}, expected {:?}",
                            t.dims(),
                            slot.dims()
                        ),
                    ));
                }
                *slot = t.clone();
            }
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn ema_update_is_the_weighted_average() {
        let dev = Device::Cpu;
        let p = Var::from_tensor(&Tensor::new(&[2.0f32, -4.0], &dev).unwrap()).unwrap();
        let e = Var::from_tensor(&Tensor::new(&[0.0f32, 1.0], &dev).unwrap()).unwrap();
        let params: Params = [("w".to_string(), p)].into();
        let ema: Params = [("w".to_string(), e.clone())].into();
        ema_update(&ema, &params, 0.75).unwrap();
        // 0.75·0 + 0.25·2 = 0.5, 0.75·1 + 0.25·(−4) = −0.25.
        assert_eq!(e.as_tensor().to_vec1::<f32>().unwrap(), vec![0.5, -0.25]);
        let stray: Params = [("x".to_string(), e)].into();
        assert!(ema_update(&stray, &params, 0.5).is_err());
    }

    #[test]
    fn one_step_matches_hand_computation() {
        let dev = Device::Cpu;
        let var = Var::from_tensor(&Tensor::new(&[[1.0f32, -2.0]], &dev).unwrap()).unwrap();
        let mut params = Params::new();
        params.insert("l.weight".into(), var.clone());
        let cfg = AdamWConfig {
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.1,
        };
        let mut opt = AdamW::new(cfg, &params).unwrap();
        let mut grads = Grads::new();
        grads.insert(
            "l.weight".into(),
            Tensor::new(&[[0.5f32, 0.25]], &dev).unwrap(),
        );
        opt.step(&params, &grads, 0.01).unwrap();
        // Step 1: m̂ = g, v̂ = g², update = lr·g/(|g| + ε) = lr·sign(g).
        let got = var.as_tensor().to_vec2::<f32>().unwrap();
        let want = [1.0 * (1.0 - 0.001) - 0.01, -2.0 * (1.0 - 0.001) - 0.01];
        assert!(
            (got[0][0] - want[0]).abs() < 1e-6 && (got[0][1] - want[1]).abs() < 1e-6,
            "{got:?}"
        );
        // State round trip.
        let st = opt.state_tensors();
        let mut fresh = AdamW::new(cfg, &params).unwrap();
        fresh.load_state(&st, 1).unwrap();
        assert_eq!(fresh.step, 1);
        assert!(fresh.load_state(&HashMap::new(), 1).is_err());
    }
}

//! Optimizer glue: frugal-train's AdamW over a `VarMap`'s named variables.
//!
//! The update, its checkpoint format and gradient clipping are frugal-train's;
//! this module says which U-Net and classifier parameters take weight decay,
//! gives the DDPM recipe's AdamW defaults, and keeps the weight EMA.

use crate::{PcmError, Result};
use candle_core::{backprop::GradStore, Var};
pub use frugal_train::optim::{AdamW, AdamWConfig, Grads, NamedParams};
use std::collections::BTreeMap;

/// AdamW as diffusion models are trained: PyTorch's defaults (β₂ 0.999, no
/// weight decay), not frugal-train's language-model ones (β₂ 0.95, decay 0.1).
pub fn adamw_defaults() -> AdamWConfig {
    AdamWConfig {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
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

/// A U-Net's or classifier's parameters as the optimizer sees them: weight
/// decay applies to conv and linear weights, not to biases, norms or the class
/// embedding.
pub struct Trainable<'a>(pub &'a Params);

impl NamedParams for Trainable<'_> {
    fn named_vars(&self) -> Vec<(&String, &Var)> {
        self.0.iter().collect()
    }
    fn decays(&self, name: &str) -> bool {
        let rank = self.0.get(name).map_or(0, |v| v.rank());
        name.ends_with(".weight") && rank >= 2 && !name.contains("class_emb")
    }
}

/// Gradients of every parameter (zeros where the loss does not reach).
pub fn collect_grads(params: &Params, store: &GradStore) -> Result<Grads> {
    Ok(frugal_train::optim::collect_grads(
        &Trainable(params),
        store,
    )?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

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
    fn decay_only_on_conv_and_linear_weights() {
        let dev = Device::Cpu;
        let var = |dims: &[usize]| Var::zeros(dims, candle_core::DType::F32, &dev).unwrap();
        let params: Params = [
            ("conv.weight".to_string(), var(&[2, 2, 3, 3])),
            ("lin.weight".to_string(), var(&[2, 2])),
            ("lin.bias".to_string(), var(&[2])),
            ("norm.weight".to_string(), var(&[2])),
            ("class_emb.weight".to_string(), var(&[11, 2])),
        ]
        .into();
        let t = Trainable(&params);
        let decayed: Vec<&str> = t
            .named_vars()
            .into_iter()
            .filter(|(n, _)| t.decays(n))
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(decayed, ["conv.weight", "lin.weight"]);
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
        let mut opt = AdamW::new(cfg, &Trainable(&params)).unwrap();
        let mut grads = Grads::new();
        grads.insert(
            "l.weight".into(),
            Tensor::new(&[[0.5f32, 0.25]], &dev).unwrap(),
        );
        opt.step(&Trainable(&params), &grads, 0.01).unwrap();
        // Step 1: m̂ = g, v̂ = g², update = lr·g/(|g| + ε) = lr·sign(g).
        let got = var.as_tensor().to_vec2::<f32>().unwrap();
        let want = [1.0 * (1.0 - 0.001) - 0.01, -2.0 * (1.0 - 0.001) - 0.01];
        assert!(
            (got[0][0] - want[0]).abs() < 1e-6 && (got[0][1] - want[1]).abs() < 1e-6,
            "{got:?}"
        );
        // State round trip, in the parameter's shape.
        let st = opt.state_tensors().unwrap();
        assert_eq!(st["m.l.weight"].dims(), &[1, 2]);
        let mut fresh = AdamW::new(cfg, &Trainable(&params)).unwrap();
        fresh.load_state(st, 1).unwrap();
        assert_eq!(fresh.step, 1);
        assert!(fresh.load_state(Default::default(), 1).is_err());
    }
}

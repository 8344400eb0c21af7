//! The evaluation's feature extractor: a small CNN classifier trained on the
//! real training images. Its penultimate activations (after SiLU) replace
//! Inception's in FID, so the numbers are comparable between models
//! evaluated here but not with Inception FIDs.

use crate::data::ImageSet;
use crate::fastconv::{fast_conv, FastConv};
use crate::optim::{self, AdamW, Trainable};
use crate::{rng, PcmError, Result};
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Linear, VarBuilder, VarMap};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassifierConfig {
    pub image_size: usize,
    pub c1: usize,
    pub c2: usize,
    /// Feature dimension (the FID features).
    pub hidden: usize,
    pub num_classes: usize,
    pub steps: u64,
    pub batch: usize,
    pub lr: f64,
    pub seed: u64,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        Self {
            image_size: 28,
            c1: 32,
            c2: 64,
            hidden: 128,
            num_classes: 10,
            steps: 4000,
            batch: 128,
            lr: 1e-3,
            seed: 0,
        }
    }
}

/// What `classifier.json` records beside the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassifierInfo {
    pub config: ClassifierConfig,
    pub test_accuracy: f64,
    pub test_images: usize,
    pub data: String,
}

pub struct Classifier {
    pub config: ClassifierConfig,
    conv1: FastConv,
    conv2: FastConv,
    fc1: Linear,
    fc2: Linear,
}

fn pool(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    Ok(x.reshape((b, c, h / 2, 2, w / 2, 2))?.mean(5)?.mean(3)?)
}

impl Classifier {
    pub fn new(config: ClassifierConfig, vb: VarBuilder) -> Result<Self> {
        if !config.image_size.is_multiple_of(4) || config.image_size == 0 {
            return Err(PcmError::arg(
                "classifier image size must be divisible by 4",
            ));
        }
        let s = config.image_size / 4;
        Ok(Self {
            config,
            // FastConv: candle Conv2d's parameters, a faster CPU backward.
            conv1: fast_conv(1, config.c1, 3, vb.pp("conv1"))?,
            conv2: fast_conv(config.c1, config.c2, 3, vb.pp("conv2"))?,
            fc1: candle_nn::linear(config.c2 * s * s, config.hidden, vb.pp("fc1"))?,
            fc2: candle_nn::linear(config.hidden, config.num_classes, vb.pp("fc2"))?,
        })
    }

    /// (features, logits) for images (B, 1, H, W) in [-1, 1].
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = pool(&self.conv1.forward(x)?.silu()?)?;
        let h = pool(&self.conv2.forward(&h)?.silu()?)?;
        let f = self.fc1.forward(&h.flatten_from(1)?)?.silu()?;
        let logits = self.fc2.forward(&f)?;
        Ok((f, logits))
    }

    /// Features of many images, in batches, as host rows.
    pub fn features(&self, images: &Tensor, batch: usize) -> Result<Vec<Vec<f32>>> {
        let n = images.dim(0)?;
        let mut out = Vec::with_capacity(n);
        let mut i = 0;
        while i < n {
            let k = batch.min(n - i);
            let (f, _) = self.forward(&images.narrow(0, i, k)?)?;
            out.extend(f.to_vec2::<f32>()?);
            i += k;
        }
        Ok(out)
    }

    /// Fraction of `set` classified correctly.
    pub fn accuracy(&self, set: &ImageSet, device: &Device) -> Result<f64> {
        let mut correct = 0usize;
        let b = 500;
        let mut i = 0;
        while i < set.len() {
            let k = b.min(set.len() - i);
            let x = Tensor::from_slice(
                &set.images[i * set.pixels()..(i + k) * set.pixels()],
                (k, 1, set.height, set.width),
                device,
            )?;
            let (_, logits) = self.forward(&x)?;
            let pred: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
            correct += pred
                .iter()
                .zip(&set.labels[i..i + k])
                .filter(|(p, l)| **p == **l as u32)
                .count();
            i += k;
        }
        Ok(correct as f64 / set.len().max(1) as f64)
    }
}

/// Trains a classifier with cross-entropy and AdamW.
pub fn train(
    cfg: ClassifierConfig,
    set: &ImageSet,
    device: &Device,
    progress: bool,
) -> Result<(VarMap, Classifier)> {
    if set.is_empty() || set.height != cfg.image_size {
        return Err(PcmError::arg(
            "classifier training set is empty or of the wrong size",
        ));
    }
    let vm = VarMap::new();
    let net = Classifier::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, device))?;
    let params = optim::params_of(&vm);
    crate::teacher::seeded_init(&params, cfg.seed)?;
    let mut opt = AdamW::new(optim::adamw_defaults(), &Trainable(&params))?;
    let bar = crate::eval::bar(cfg.steps, "classifier", progress);
    for step in 0..cfg.steps {
        let mut r = rng::stream(cfg.seed, step, 4);
        let mut pix = Vec::with_capacity(cfg.batch * set.pixels());
        let mut labels = Vec::with_capacity(cfg.batch);
        for _ in 0..cfg.batch {
            let i = r.gen_range(0..set.len());
            pix.extend_from_slice(set.image(i));
            labels.push(set.labels[i] as u32);
        }
        let x = Tensor::from_vec(pix, (cfg.batch, 1, set.height, set.width), device)?;
        let y = Tensor::new(labels.as_slice(), device)?;
        let (_, logits) = net.forward(&x)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
        let grads = optim::collect_grads(&params, &loss.backward()?)?;
        // Cosine decay to 10 % helps the last epoch's accuracy.
        let prog = step as f64 / cfg.steps as f64;
        let lr = cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * prog).cos()));
        opt.step(&Trainable(&params), &grads, lr)?;
        if step % 50 == 0 {
            bar.set_message(format!("loss {:.3}", loss.to_scalar::<f32>()?));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok((vm, net))
}

/// Saves weights and info into `dir` (atomic per file).
pub fn save(dir: &Path, vm: &VarMap, info: &ClassifierInfo) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| PcmError::io(dir, e))?;
    let tensors: HashMap<String, Tensor> = crate::model_dir::snapshot(&optim::params_of(vm))?;
    let tmp = dir.join(".classifier.safetensors.tmp");
    candle_core::safetensors::save(&tensors, &tmp)?;
    frugal_train::fsutil::sync_file(&tmp)?;
    let dest = dir.join("classifier.safetensors");
    std::fs::rename(&tmp, &dest).map_err(|e| PcmError::io(&dest, e))?;
    frugal_train::fsutil::write_atomic(
        &dir.join("classifier.json"),
        &serde_json::to_vec_pretty(info)?,
    )?;
    Ok(())
}

/// The FID feature extractor kept in `dir`: loaded when it was trained with
/// `config` (its image size aside, which comes from the data), else trained
/// now on `train()`'s images, scored on `test` and saved. One trained with
/// other settings is refused rather than replaced or silently used: it would
/// change every FID already computed with it.
pub fn load_or_train(
    dir: &Path,
    config: ClassifierConfig,
    data_name: &str,
    train: &dyn Fn() -> Result<ImageSet>,
    test: &ImageSet,
    device: &Device,
    progress: bool,
) -> Result<(Classifier, ClassifierInfo)> {
    if let Some((net, info)) = load(dir, device)? {
        let want = ClassifierConfig {
            image_size: info.config.image_size,
            ..config
        };
        if info.config != want {
            return Err(PcmError::arg(format!(
                "{} holds a classifier trained with other settings ({} steps, batch {}, lr {}) \
                 than asked for ({} steps, batch {}, lr {}): remove it or pass the same \
                 --classifier-steps",
                dir.display(),
                info.config.steps,
                info.config.batch,
                info.config.lr,
                want.steps,
                want.batch,
                want.lr
            )));
        }
        return Ok((net, info));
    }
    let set = train()?;
    let config = ClassifierConfig {
        image_size: set.height,
        ..config
    };
    let (vm, net) = self::train(config, &set, device, progress)?;
    let info = ClassifierInfo {
        config,
        test_accuracy: net.accuracy(test, device)?,
        test_images: test.len(),
        data: data_name.to_string(),
    };
    save(dir, &vm, &info)?;
    Ok((net, info))
}

/// Loads a classifier saved by [`save`], if `dir` has one.
pub fn load(dir: &Path, device: &Device) -> Result<Option<(Classifier, ClassifierInfo)>> {
    let (w, j) = (
        dir.join("classifier.safetensors"),
        dir.join("classifier.json"),
    );
    if !w.is_file() || !j.is_file() {
        return Ok(None);
    }
    let bytes = std::fs::read(&j).map_err(|e| PcmError::io(&j, e))?;
    let info: ClassifierInfo =
        serde_json::from_slice(&bytes).map_err(|e| PcmError::bad(&j, e.to_string()))?;
    let tensors = candle_core::safetensors::load(&w, device)?;
    let net = Classifier::new(
        info.config,
        VarBuilder::from_tensors(tensors, DType::F32, device),
    )?;
    Ok(Some((net, info)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_gets_a_gradient() {
        let dev = Device::Cpu;
        let cfg = ClassifierConfig {
            image_size: 8,
            c1: 4,
            c2: 4,
            hidden: 8,
            ..Default::default()
        };
        let vm = VarMap::new();
        let net = Classifier::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
        let x = Tensor::randn(0f32, 1.0, (6, 1, 8, 8), &dev).unwrap();
        let y = Tensor::new(&[0u32, 1, 2, 3, 4, 5], &dev).unwrap();
        let (_, logits) = net.forward(&x).unwrap();
        let loss = candle_nn::loss::cross_entropy(&logits, &y).unwrap();
        let g = loss.backward().unwrap();
        for (name, var) in optim::params_of(&vm) {
            let s: f32 = g
                .get(var.as_tensor())
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar()
                .unwrap();
            assert!(s > 0.0, "{name}");
        }
    }
}

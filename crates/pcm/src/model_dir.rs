//! Loading trained models (teacher or student run directories) and moving
//! weights between frozen and trainable copies.

use crate::ckpt;
use crate::optim::Params;
use crate::unet::{UNet, UNetConfig};
use crate::{PcmError, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What a run directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Teacher,
    Pcm,
    Lcm,
}

/// The fields every run.json shares.
#[derive(Debug, Clone, Deserialize)]
struct Header {
    kind: Kind,
    unet: UNetConfig,
    #[serde(default)]
    phases: Option<usize>,
    #[serde(default)]
    teacher: Option<PathBuf>,
}

/// A trained model, frozen, with what it is.
pub struct Loaded {
    pub kind: Kind,
    /// Phases of a PCM student.
    pub phases: Option<usize>,
    /// The teacher a student was distilled from.
    pub teacher: Option<PathBuf>,
    pub step: u64,
    pub net: UNet,
    pub tensors: HashMap<String, Tensor>,
    pub dir: PathBuf,
}

impl Loaded {
    /// The same model with its convolutions' matmuls in `precision`.
    pub fn in_precision(mut self, precision: frugal_model::Precision) -> Self {
        self.net.set_precision(precision);
        self
    }
}

/// Loads the newest checkpoint of a run directory.
pub fn load(dir: &Path, device: &Device) -> Result<Loaded> {
    let header: Header = ckpt::read_run(dir)?;
    let (state, ck) = ckpt::latest(dir)?.ok_or_else(|| {
        PcmError::MissingData(format!("{}: no complete checkpoint yet", dir.display()))
    })?;
    // A teacher samples with its EMA weights when it has them (a student's
    // `ema` file is its target network, not its output).
    let ema = match header.kind {
        Kind::Teacher => ckpt::load_optional(&ck, "ema", device)?,
        Kind::Pcm | Kind::Lcm => None,
    };
    let tensors = match ema {
        Some(t) => t,
        None => ckpt::load_file(&ck, "model", device)?,
    };
    let net = frozen(header.unet, &tensors, device)?;
    Ok(Loaded {
        kind: header.kind,
        phases: header.phases,
        teacher: header.teacher,
        step: state.step,
        net,
        tensors,
        dir: dir.to_path_buf(),
    })
}

/// A U-Net over fixed tensors (no gradients tracked to variables).
pub fn frozen(
    config: UNetConfig,
    tensors: &HashMap<String, Tensor>,
    device: &Device,
) -> Result<UNet> {
    let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, device);
    UNet::new(config, vb).map_err(|e| match e {
        PcmError::Candle(c) => PcmError::ckpt(
            "model.safetensors",
            format!("does not fit the U-Net config: {c}"),
        ),
        e => e,
    })
}

/// A trainable U-Net with its convolutions in `precision`: fresh variables,
/// then overwritten by `init` if given.
pub fn trainable(
    config: UNetConfig,
    init: Option<&HashMap<String, Tensor>>,
    precision: frugal_model::Precision,
    device: &Device,
) -> Result<(VarMap, UNet)> {
    let vm = VarMap::new();
    let mut net = UNet::new(config, VarBuilder::from_varmap(&vm, DType::F32, device))?;
    net.set_precision(precision);
    if let Some(init) = init {
        set_vars(&crate::optim::params_of(&vm), init)?;
    }
    Ok((vm, net))
}

/// Copies tensors into variables by name, checking names and shapes.
pub fn set_vars(params: &Params, tensors: &HashMap<String, Tensor>) -> Result<()> {
    for (name, var) in params {
        let t = tensors
            .get(name)
            .ok_or_else(|| PcmError::ckpt("model.safetensors", format!("missing '{name}'")))?;
        if t.dims() != var.dims() {
            return Err(PcmError::ckpt(
                "model.safetensors",
                format!(
                    "'{name}' has shape {:?}, expected {:?}",
                    t.dims(),
                    var.dims()
                ),
            ));
        }
        var.set(&t.to_dtype(DType::F32)?)?;
    }
    Ok(())
}

/// The current values of variables (copies, safe to save while training).
pub fn snapshot(params: &Params) -> Result<HashMap<String, Tensor>> {
    params
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?)))
        .collect()
}

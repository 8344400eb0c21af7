//! Weight averaging along a run: windowed SWA and EMA.
//!
//! Both live beside the model as f32 tensors keyed by parameter name. They
//! are pure functions of the sequence of parameters seen at their update
//! steps, and are written into every checkpoint (`swa.safetensors`,
//! `ema.safetensors`), so a resumed run continues them bit-identically.
//!
//! SWA keeps the running *sum* and a count rather than a mean: the mean is
//! computed only to evaluate or save, so resuming never re-rounds it.

use crate::config::{AveragingSection, EmaSection, SwaSection};
use crate::fsutil::{create_dir, sync_dir, sync_file};
use crate::{Result, TrainError};
use candle_core::{DType, Device, Tensor};
use frugal_model::params::{load_safetensors, save_safetensors};
use frugal_model::ParamStore;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

pub const SWA_FILE: &str = "swa.safetensors";
pub const EMA_FILE: &str = "ema.safetensors";
/// Where completed SWA windows are kept, one file per window end step.
pub const SWA_WINDOWS_DIR: &str = "swa";
/// Scalar bookkeeping stored inside the tensor files.
const COUNT_KEY: &str = "__count";

type Weights = BTreeMap<String, Tensor>;

/// Windowed SWA state.
#[derive(Debug, Clone)]
pub struct Swa {
    pub cfg: SwaSection,
    sum: Option<Weights>,
    pub count: u64,
}

/// EMA state.
#[derive(Debug, Clone)]
pub struct Ema {
    pub cfg: EmaSection,
    /// First step that updates the average.
    pub start: u64,
    avg: Option<Weights>,
}

/// Both averages of a run (either may be off).
#[derive(Debug, Clone, Default)]
pub struct Averager {
    pub swa: Option<Swa>,
    pub ema: Option<Ema>,
}

fn snapshot(params: &ParamStore) -> Result<Weights> {
    params
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.as_tensor().to_dtype(DType::F32)?.copy()?)))
        .collect()
}

impl Swa {
    pub fn new(cfg: SwaSection) -> Self {
        Self {
            cfg,
            sum: None,
            count: 0,
        }
    }

    /// Adds a snapshot if `step` is on the interval.
    pub fn observe(&mut self, step: u64, params: &ParamStore) -> Result<()> {
        if step == 0 || !step.is_multiple_of(self.cfg.interval) {
            return Ok(());
        }
        let snap = snapshot(params)?;
        self.sum = Some(match self.sum.take() {
            None => snap,
            Some(sum) => sum
                .into_iter()
                .map(|(k, s)| {
                    let p = snap.get(&k).ok_or_else(|| missing(&k))?;
                    Ok((k, (s + p)?))
                })
                .collect::<Result<_>>()?,
        });
        self.count += 1;
        Ok(())
    }

    /// The uniform mean of the current window's snapshots.
    pub fn mean(&self) -> Result<Option<HashMap<String, Tensor>>> {
        match &self.sum {
            Some(sum) if self.count > 0 => Ok(Some(
                sum.iter()
                    .map(|(k, s)| Ok((k.clone(), (s / self.count as f64)?)))
                    .collect::<Result<_>>()?,
            )),
            _ => Ok(None),
        }
    }

    /// At a window's last step: its mean (to save), and a fresh window.
    pub fn end_window(&mut self, step: u64) -> Result<Option<HashMap<String, Tensor>>> {
        if step == 0 || !step.is_multiple_of(self.cfg.horizon) {
            return Ok(None);
        }
        let mean = self.mean()?;
        self.sum = None;
        self.count = 0;
        Ok(mean)
    }

    fn to_file(&self, device: &Device) -> Result<Option<HashMap<String, Tensor>>> {
        let Some(sum) = &self.sum else {
            return Ok(None);
        };
        let mut map: HashMap<String, Tensor> =
            sum.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        map.insert(COUNT_KEY.into(), count_tensor(self.count, device)?);
        Ok(Some(map))
    }

    fn load_file(&mut self, mut map: HashMap<String, Tensor>, path: &Path) -> Result<()> {
        self.count = read_count(&mut map, path)?;
        self.sum = Some(map.into_iter().collect());
        Ok(())
    }
}

impl Ema {
    pub fn new(cfg: EmaSection, warmup: u64) -> Self {
        Self {
            start: cfg.start.unwrap_or(warmup),
            cfg,
            avg: None,
        }
    }

    /// `avg ← decay·avg + (1 − decay)·params` on update steps; the first
    /// update copies the parameters.
    pub fn observe(&mut self, step: u64, params: &ParamStore) -> Result<()> {
        if step < self.start || !step.is_multiple_of(self.cfg.interval) {
            return Ok(());
        }
        let snap = snapshot(params)?;
        let d = self.cfg.decay;
        self.avg = Some(match self.avg.take() {
            None => snap,
            Some(avg) => avg
                .into_iter()
                .map(|(k, a)| {
                    let p = snap.get(&k).ok_or_else(|| missing(&k))?;
                    Ok((k, (a.affine(d, 0.0)? + p.affine(1.0 - d, 0.0)?)?))
                })
                .collect::<Result<_>>()?,
        });
        Ok(())
    }

    pub fn weights(&self) -> Option<HashMap<String, Tensor>> {
        self.avg
            .as_ref()
            .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

impl Averager {
    pub fn new(cfg: &AveragingSection, warmup: u64) -> Self {
        Self {
            swa: cfg.swa.clone().map(Swa::new),
            ema: cfg.ema.clone().map(|e| Ema::new(e, warmup)),
        }
    }

    pub fn observe(&mut self, step: u64, params: &ParamStore) -> Result<()> {
        if let Some(s) = &mut self.swa {
            s.observe(step, params)?;
        }
        if let Some(e) = &mut self.ema {
            e.observe(step, params)?;
        }
        Ok(())
    }

    /// Extra checkpoint files holding the averages' state.
    pub fn checkpoint_files(
        &self,
        device: &Device,
    ) -> Result<Vec<(String, HashMap<String, Tensor>)>> {
        let mut out = Vec::new();
        if let Some(m) = self
            .swa
            .as_ref()
            .map(|s| s.to_file(device))
            .transpose()?
            .flatten()
        {
            out.push((SWA_FILE.to_string(), m));
        }
        if let Some(m) = self.ema.as_ref().and_then(Ema::weights) {
            out.push((EMA_FILE.to_string(), m));
        }
        Ok(out)
    }

    /// Restores the averages from a checkpoint directory (absent files mean
    /// the average had not started yet).
    pub fn restore(&mut self, dir: &Path, device: &Device) -> Result<()> {
        if let Some(s) = &mut self.swa {
            let path = dir.join(SWA_FILE);
            if path.exists() {
                s.load_file(load_safetensors(&path, device)?, &path)?;
            }
        }
        if let Some(e) = &mut self.ema {
            let path = dir.join(EMA_FILE);
            if path.exists() {
                e.avg = Some(load_safetensors(&path, device)?.into_iter().collect());
            }
        }
        Ok(())
    }
}

fn missing(name: &str) -> TrainError {
    TrainError::Config(format!("parameter {name} missing from a weight snapshot"))
}

fn count_tensor(count: u64, device: &Device) -> Result<Tensor> {
    Ok(Tensor::new(&[count as f64], device)?)
}

fn read_count(map: &mut HashMap<String, Tensor>, path: &Path) -> Result<u64> {
    let t = map
        .remove(COUNT_KEY)
        .ok_or_else(|| TrainError::ckpt(path, format!("has no {COUNT_KEY}")))?;
    let v = t.flatten_all()?.to_vec1::<f64>()?;
    match v.as_slice() {
        [c] if *c >= 0.0 => Ok(*c as u64),
        _ => Err(TrainError::ckpt(path, format!("bad {COUNT_KEY}"))),
    }
}

/// The mean of the SWA window a checkpoint's `swa.safetensors` holds (its
/// running sum over its snapshot count): the weights the trainer evaluated
/// as `val_loss_swa` at that step.
pub fn swa_file_mean(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let mut swa = Swa::new(SwaSection {
        interval: 1,
        horizon: 1,
    });
    swa.load_file(load_safetensors(path, device)?, path)?;
    swa.mean()?
        .ok_or_else(|| TrainError::ckpt(path, "holds no SWA snapshot"))
}

/// Path of a completed SWA window's average.
pub fn window_path(run_dir: &Path, end_step: u64) -> PathBuf {
    run_dir.join(SWA_WINDOWS_DIR).join(format!(
        "{}.safetensors",
        crate::checkpoint::step_dir_name(end_step)
    ))
}

/// Saves a completed window atomically. Re-saving after a resume writes
/// the same bytes, so an existing file is simply replaced.
pub fn save_window(
    run_dir: &Path,
    end_step: u64,
    mean: HashMap<String, Tensor>,
) -> Result<PathBuf> {
    let dir = run_dir.join(SWA_WINDOWS_DIR);
    create_dir(&dir)?;
    let dest = window_path(run_dir, end_step);
    let tmp = dir.join(format!(".tmp-{}-{end_step}", std::process::id()));
    save_safetensors(mean, &tmp)?;
    sync_file(&tmp)?;
    std::fs::rename(&tmp, &dest).map_err(|e| TrainError::io(&dest, e))?;
    sync_dir(&dir)?;
    Ok(dest)
}

/// Completed SWA windows of a run, by end step.
pub fn list_windows(run_dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(run_dir.join(SWA_WINDOWS_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("step-")?.strip_suffix(".safetensors")?;
            Some((step.parse().ok()?, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// The uniform mean of the last `k` completed windows up to `at_step`
/// (windows hold equal snapshot counts, so this is the mean over all their
/// snapshots). Errors if fewer than `k` windows exist.
pub fn combine_windows(
    run_dir: &Path,
    k: usize,
    at_step: Option<u64>,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let windows: Vec<_> = list_windows(run_dir)
        .into_iter()
        .filter(|(s, _)| at_step.is_none_or(|a| *s <= a))
        .collect();
    if k == 0 || windows.len() < k {
        return Err(TrainError::Config(format!(
            "{} has {} SWA windows, {k} requested",
            run_dir.display(),
            windows.len()
        )));
    }
    let mut sum: Option<HashMap<String, Tensor>> = None;
    for (_, path) in &windows[windows.len() - k..] {
        let w = load_safetensors(path, device)?;
        sum = Some(match sum {
            None => w,
            Some(s) => s
                .into_iter()
                .map(|(name, t)| {
                    let other = w.get(&name).ok_or_else(|| missing(&name))?;
                    Ok((name, (t + other)?))
                })
                .collect::<Result<_>>()?,
        });
    }
    sum.unwrap_or_default()
        .into_iter()
        .map(|(n, t)| Ok((n, (t / k as f64)?)))
        .collect()
}

#[cfg(test)]
mod tests;

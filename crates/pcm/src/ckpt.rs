//! Run directories: `run.json` (what is being trained), `metrics.jsonl`,
//! and `checkpoints/step-NNNNNNN/{model,optimizer[,ema]}.safetensors +
//! state.json`.
//!
//! A checkpoint is written into a temporary directory, every file fsynced,
//! then renamed into place (and the parent fsynced), so a crash leaves
//! either no checkpoint or a complete one. Resuming truncates
//! `metrics.jsonl` to the length the checkpoint recorded, so the file of a
//! resumed run equals that of an uninterrupted one.

use crate::{PcmError, Result};
use candle_core::{Device, Tensor};
use frugal_train::fsutil::{sync_dir, sync_file, write_atomic};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const RUN_FILE: &str = "run.json";
pub const METRICS_FILE: &str = "metrics.jsonl";
const STATE_FILE: &str = "state.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub step: u64,
    pub metrics_len: u64,
}

/// The tensors of one checkpoint by file stem (`model`, `optimizer`, `ema`).
pub type Files = Vec<(&'static str, HashMap<String, Tensor>)>;

pub fn checkpoints_dir(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

/// Writes a checkpoint atomically and keeps only the newest `keep`.
pub fn save(run: &Path, state: &State, files: Files, keep: usize) -> Result<PathBuf> {
    let dir = checkpoints_dir(run);
    std::fs::create_dir_all(&dir).map_err(|e| PcmError::io(&dir, e))?;
    let name = format!("step-{:07}", state.step);
    let tmp = dir.join(format!(".tmp-{name}-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| PcmError::io(&tmp, e))?;
    }
    std::fs::create_dir(&tmp).map_err(|e| PcmError::io(&tmp, e))?;
    for (stem, tensors) in files {
        let p = tmp.join(format!("{stem}.safetensors"));
        candle_core::safetensors::save(&tensors, &p)?;
        sync_file(&p)?;
    }
    write_atomic(&tmp.join(STATE_FILE), &serde_json::to_vec_pretty(state)?)?;
    sync_dir(&tmp)?;
    let dest = dir.join(&name);
    if dest.exists() {
        std::fs::remove_dir_all(&dest).map_err(|e| PcmError::io(&dest, e))?;
    }
    std::fs::rename(&tmp, &dest).map_err(|e| PcmError::io(&dest, e))?;
    sync_dir(&dir)?;
    let mut all = list(run)?;
    while all.len() > keep.max(1) {
        let (_, old) = all.remove(0);
        std::fs::remove_dir_all(&old).map_err(|e| PcmError::io(&old, e))?;
    }
    Ok(dest)
}

/// Complete checkpoints, oldest first.
pub fn list(run: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let dir = checkpoints_dir(run);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| PcmError::io(&dir, e))? {
        let path = entry.map_err(|e| PcmError::io(&dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some(step) = name.strip_prefix("step-").and_then(|s| s.parse().ok()) else {
            continue;
        };
        if path.join(STATE_FILE).is_file() {
            out.push((step, path));
        }
    }
    out.sort();
    Ok(out)
}

/// The newest complete checkpoint, if any.
pub fn latest(run: &Path) -> Result<Option<(State, PathBuf)>> {
    match list(run)?.pop() {
        None => Ok(None),
        Some((_, dir)) => {
            let p = dir.join(STATE_FILE);
            let bytes = std::fs::read(&p).map_err(|e| PcmError::io(&p, e))?;
            let state: State = serde_json::from_slice(&bytes)
                .map_err(|e| PcmError::ckpt(&p, format!("invalid state: {e}")))?;
            Ok(Some((state, dir)))
        }
    }
}

/// Loads `STEM.safetensors` of a checkpoint directory.
pub fn load_file(dir: &Path, stem: &str, device: &Device) -> Result<HashMap<String, Tensor>> {
    let p = dir.join(format!("{stem}.safetensors"));
    if !p.is_file() {
        return Err(PcmError::ckpt(dir, format!("missing {stem}.safetensors")));
    }
    candle_core::safetensors::load(&p, device)
        .map_err(|e| PcmError::ckpt(&p, format!("unreadable: {e}")))
}

/// Like [`load_file`], but `None` when the checkpoint has no such file (an
/// optional part, such as a teacher's EMA).
pub fn load_optional(
    dir: &Path,
    stem: &str,
    device: &Device,
) -> Result<Option<HashMap<String, Tensor>>> {
    if dir.join(format!("{stem}.safetensors")).is_file() {
        load_file(dir, stem, device).map(Some)
    } else {
        Ok(None)
    }
}

/// Writes `run.json`, or checks that an existing one describes the same
/// run (so a resume cannot silently continue with other settings).
/// Only `steps` may differ, so a finished run can be extended.
pub fn write_or_check_run<T: Serialize + for<'a> Deserialize<'a>>(
    run: &Path,
    config: &T,
) -> Result<()> {
    std::fs::create_dir_all(run).map_err(|e| PcmError::io(run, e))?;
    let p = run.join(RUN_FILE);
    if p.is_file() && latest(run)?.is_some() {
        // `steps` may grow: re-running with more steps extends a run.
        let strip = |v: serde_json::Value| match v {
            serde_json::Value::Object(mut m) => {
                m.remove("steps");
                serde_json::Value::Object(m)
            }
            v => v,
        };
        let old = strip(serde_json::to_value(read_run::<T>(run)?)?);
        if old != strip(serde_json::to_value(config)?) {
            return Err(PcmError::arg(format!(
                "{} holds a run with other settings; use a new --out directory (or the same settings to resume)",
                run.display()
            )));
        }
        return Ok(());
    }
    write_atomic(&p, &serde_json::to_vec_pretty(config)?)?;
    Ok(())
}

pub fn read_run<T: for<'a> Deserialize<'a>>(run: &Path) -> Result<T> {
    let p = run.join(RUN_FILE);
    let bytes = std::fs::read(&p).map_err(|e| {
        PcmError::MissingData(format!(
            "{}: not a frugal pcm run directory ({e})",
            run.display()
        ))
    })?;
    serde_json::from_slice(&bytes).map_err(|e| PcmError::bad(&p, format!("invalid run.json: {e}")))
}

/// Appends JSON lines to `metrics.jsonl`, truncated to `keep` bytes first.
pub struct Metrics {
    path: PathBuf,
    file: File,
    len: u64,
}

impl Metrics {
    pub fn open(run: &Path, keep: u64) -> Result<Self> {
        let path = run.join(METRICS_FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| PcmError::io(&path, e))?;
        let len = file.metadata().map_err(|e| PcmError::io(&path, e))?.len();
        if len < keep {
            return Err(PcmError::ckpt(
                &path,
                format!("is {len} bytes but the checkpoint recorded {keep}"),
            ));
        }
        file.set_len(keep).map_err(|e| PcmError::io(&path, e))?;
        Ok(Self {
            path,
            file,
            len: keep,
        })
    }

    pub fn write(&mut self, record: &serde_json::Value) -> Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(|e| PcmError::io(&self.path, e))?;
        self.len += line.len() as u64;
        Ok(())
    }

    /// Makes lines durable; returns the length to record in a checkpoint.
    pub fn sync(&mut self) -> Result<u64> {
        self.file
            .sync_data()
            .map_err(|e| PcmError::io(&self.path, e))?;
        Ok(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_list_latest_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path();
        let t = |v: f32| {
            let mut m = HashMap::new();
            m.insert("w".to_string(), Tensor::new(&[v], &Device::Cpu).unwrap());
            m
        };
        for step in [10, 20, 30] {
            let st = State {
                step,
                metrics_len: step * 2,
            };
            save(run, &st, vec![("model", t(step as f32))], 2).unwrap();
        }
        let l = list(run).unwrap();
        assert_eq!(l.iter().map(|x| x.0).collect::<Vec<_>>(), vec![20, 30]);
        let (st, d) = latest(run).unwrap().unwrap();
        assert_eq!(
            st,
            State {
                step: 30,
                metrics_len: 60
            }
        );
        let m = load_file(&d, "model", &Device::Cpu).unwrap();
        assert_eq!(m["w"].to_vec1::<f32>().unwrap(), vec![30.0]);
        assert!(load_file(&d, "optimizer", &Device::Cpu).is_err());
        // A torn checkpoint (no state.json) is ignored.
        std::fs::create_dir_all(checkpoints_dir(run).join("step-0000040")).unwrap();
        assert_eq!(latest(run).unwrap().unwrap().0.step, 30);
    }

    #[test]
    fn metrics_truncate_on_resume() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Metrics::open(dir.path(), 0).unwrap();
        m.write(&serde_json::json!({"step": 1})).unwrap();
        let keep = m.sync().unwrap();
        m.write(&serde_json::json!({"step": 2})).unwrap();
        m.sync().unwrap();
        drop(m);
        let _ = Metrics::open(dir.path(), keep).unwrap();
        let text = std::fs::read_to_string(dir.path().join(METRICS_FILE)).unwrap();
        assert_eq!(text, "{\"step\":1}\n");
        assert!(Metrics::open(dir.path(), keep + 100).is_err());
    }
}

//! `metrics.jsonl`: one JSON object per logged step.
//!
//! Only values that are deterministic functions of the run go in here (no
//! wall-clock figures), so a resumed run's file is byte-identical to an
//! uninterrupted one. On resume the file is cut back to the length recorded
//! in the checkpoint, dropping lines written after it.

use crate::{Result, TrainError};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const METRICS_FILE: &str = "metrics.jsonl";

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    pub step: u64,
    pub tokens: u64,
    pub lr: f64,
    pub train_loss: f64,
    pub grad_norm: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_loss_swa: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_loss_ema: Option<f64>,
}

pub struct MetricsWriter {
    path: PathBuf,
    file: File,
    len: u64,
}

impl MetricsWriter {
    /// Opens the file for appending after truncating it to `keep` bytes.
    pub fn open(run_dir: &Path, keep: u64) -> Result<Self> {
        let path = run_dir.join(METRICS_FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        let len = file.metadata().map_err(|e| TrainError::io(&path, e))?.len();
        if len < keep {
            return Err(TrainError::ckpt(
                &path,
                format!("is {len} bytes but the checkpoint recorded {keep}: the run directory was modified"),
            ));
        }
        file.set_len(keep).map_err(|e| TrainError::io(&path, e))?;
        Ok(Self {
            path,
            file,
            len: keep,
        })
    }

    pub fn write(&mut self, record: &Record) -> Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(|e| TrainError::io(&self.path, e))?;
        self.len += line.len() as u64;
        Ok(())
    }

    /// Makes the lines written so far durable; returns the file length.
    pub fn sync(&mut self) -> Result<u64> {
        self.file
            .sync_data()
            .map_err(|e| TrainError::io(&self.path, e))?;
        Ok(self.len)
    }
}

/// Reads every record of a metrics file as JSON values.
pub fn read(path: &Path) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}

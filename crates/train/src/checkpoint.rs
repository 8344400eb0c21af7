//! Checkpoint directories, written atomically.
//!
//! A checkpoint is `checkpoints/step-NNNNNNN/` holding `model.safetensors`,
//! `optimizer.safetensors`, any extra tensor files (weight averages) and
//! `state.json`. It is assembled in a hidden temporary directory, every file
//! fsynced, then renamed into place: a process killed at any moment leaves
//! either no checkpoint or a complete one, and stale temporaries are removed
//! on the next start.

use crate::fsutil::{sync_dir, sync_file, write_atomic};
use crate::{Result, TrainError};
use candle_core::{Device, Tensor};
use frugal_model::params::{load_safetensors, save_safetensors};
use frugal_model::LlamaConfig;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "state.json";
const FORMAT: u32 = 1;

/// Everything besides tensors needed to continue a run exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub format: u32,
    /// Optimizer steps completed.
    pub step: u64,
    /// Training tokens consumed.
    pub tokens: u64,
    /// Sequences consumed: the data order is a pure function of (seed, cursor).
    pub data_cursor: u64,
    /// The data-order and initialisation seed.
    pub seed: u64,
    /// Length in bytes of `metrics.jsonl` when this checkpoint was taken.
    pub metrics_len: u64,
    pub model: LlamaConfig,
    /// Where this run came from, for branches (`None` for a fresh run).
    #[serde(default)]
    pub parent: Option<String>,
}

impl TrainState {
    pub fn new(model: LlamaConfig, seed: u64) -> Self {
        Self {
            format: FORMAT,
            step: 0,
            tokens: 0,
            data_cursor: 0,
            seed,
            metrics_len: 0,
            model,
            parent: None,
        }
    }
}

pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

pub fn step_dir_name(step: u64) -> String {
    format!("step-{step:07}")
}

/// Writes a checkpoint for `state.step`; returns its directory. `extra`
/// holds additional named tensor files (e.g. `swa.safetensors`).
pub fn save(
    run_dir: &Path,
    state: &TrainState,
    model: HashMap<String, Tensor>,
    optimizer: HashMap<String, Tensor>,
    extra: Vec<(String, HashMap<String, Tensor>)>,
) -> Result<PathBuf> {
    let root = checkpoints_dir(run_dir);
    fs::create_dir_all(&root).map_err(|e| TrainError::io(&root, e))?;
    let name = step_dir_name(state.step);
    let dest = root.join(&name);
    if dest.join(STATE_FILE).exists() {
        // Same step of a deterministic run: the existing one is identical.
        return Ok(dest);
    }
    let tmp = root.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    fs::create_dir(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    let mut files = vec![
        (MODEL_FILE.to_string(), model),
        (OPTIMIZER_FILE.to_string(), optimizer),
    ];
    files.extend(extra);
    for (file, tensors) in files {
        let path = tmp.join(&file);
        save_safetensors(tensors, &path)?;
        sync_file(&path)?;
    }
    write_atomic(&tmp.join(STATE_FILE), &serde_json::to_vec_pretty(state)?)?;
    sync_dir(&tmp)?;
    if dest.exists() {
        // An incomplete directory can only come from outside this protocol.
        fs::remove_dir_all(&dest).map_err(|e| TrainError::io(&dest, e))?;
    }
    fs::rename(&tmp, &dest).map_err(|e| TrainError::io(&dest, e))?;
    sync_dir(&root)?;
    Ok(dest)
}

/// Removes temporaries left by a process killed mid-checkpoint.
pub fn remove_stale_temporaries(run_dir: &Path) -> Result<()> {
    let root = checkpoints_dir(run_dir);
    let Ok(entries) = fs::read_dir(&root) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".step-") && name.contains(".tmp-") {
            fs::remove_dir_all(e.path()).map_err(|err| TrainError::io(e.path(), err))?;
        }
    }
    Ok(())
}

/// Complete checkpoints of a run, sorted by step.
pub fn list(run_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let root = checkpoints_dir(run_dir);
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(&root) else {
        return Ok(out);
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(num) = name.strip_prefix("step-") else {
            continue;
        };
        if let Ok(step) = num.parse::<u64>() {
            if e.path().join(STATE_FILE).is_file() {
                out.push((step, e.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

pub fn latest(run_dir: &Path) -> Result<Option<(u64, PathBuf)>> {
    Ok(list(run_dir)?.pop())
}

/// A loaded checkpoint.
pub struct Loaded {
    pub state: TrainState,
    pub model: HashMap<String, Tensor>,
    pub optimizer: HashMap<String, Tensor>,
    pub dir: PathBuf,
}

/// Reads `state.json` alone.
pub fn read_state(dir: &Path) -> Result<TrainState> {
    let path = dir.join(STATE_FILE);
    let bytes = fs::read(&path).map_err(|e| not_a_checkpoint(dir, &e))?;
    let state: TrainState = serde_json::from_slice(&bytes)
        .map_err(|e| TrainError::ckpt(&path, format!("unreadable: {e}")))?;
    if state.format != FORMAT {
        return Err(TrainError::ckpt(
            &path,
            format!("unsupported format {}", state.format),
        ));
    }
    Ok(state)
}

pub fn load(dir: &Path, device: &Device) -> Result<Loaded> {
    let state = read_state(dir)?;
    let model = load_safetensors(&dir.join(MODEL_FILE), device)?;
    let optimizer = load_safetensors(&dir.join(OPTIMIZER_FILE), device)?;
    Ok(Loaded {
        state,
        model,
        optimizer,
        dir: dir.to_path_buf(),
    })
}

/// Loads an extra tensor file of a checkpoint if it exists.
pub fn load_extra(
    dir: &Path,
    file: &str,
    device: &Device,
) -> Result<Option<HashMap<String, Tensor>>> {
    let path = dir.join(file);
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(load_safetensors(&path, device)?))
}

/// Why `dir` is not a checkpoint, and what to pass instead when it is a run
/// directory (a common slip: `RUN` for `RUN/checkpoints/step-N`).
fn not_a_checkpoint(dir: &Path, e: &std::io::Error) -> TrainError {
    let steps = list(dir).unwrap_or_default();
    let names: Vec<String> = steps.iter().map(|(s, _)| step_dir_name(*s)).collect();
    let message = match names.last() {
        Some(last) => format!(
            "is a run directory, not a checkpoint; pass one of its checkpoints ({}), e.g. {}",
            names.join(", "),
            checkpoints_dir(dir).join(last).display()
        ),
        None => format!("not a checkpoint directory ({STATE_FILE}: {e})"),
    };
    TrainError::ckpt(dir, message)
}

/// The checkpoint `path` names for reading a model: `path` itself when it
/// is a checkpoint directory, the latest complete checkpoint when it is a
/// run directory (`.1` is then true, so a caller can say which it took).
/// Anything else is [`read_state`]'s error.
pub fn resolve(path: &Path) -> Result<(PathBuf, bool)> {
    if path.join(STATE_FILE).is_file() {
        return Ok((path.to_path_buf(), false));
    }
    match latest(path)? {
        Some((_, dir)) => Ok((dir, true)),
        None => read_state(path).map(|_| (path.to_path_buf(), false)),
    }
}

/// The run directory a checkpoint directory belongs to.
pub fn run_dir_of(ckpt_dir: &Path) -> Option<PathBuf> {
    ckpt_dir.parent()?.parent().map(Path::to_path_buf)
}

/// A checkpoint's model for inference: its architecture and trained
/// weights ([`crate::weights::load_model`] reads an average instead).
pub fn load_model(dir: &Path, device: &Device) -> Result<(LlamaConfig, frugal_model::ParamStore)> {
    crate::weights::load_model(dir, crate::weights::WeightChoice::Raw, device)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save_step(run: &Path, step: u64) -> PathBuf {
        let config = frugal_model::presets::preset("nano")
            .unwrap()
            .config(64, 32);
        let mut state = TrainState::new(config, 0);
        state.step = step;
        save(run, &state, HashMap::new(), HashMap::new(), Vec::new()).unwrap()
    }

    #[test]
    fn a_run_directory_resolves_to_its_latest_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path();
        let first = save_step(run, 20);
        let last = save_step(run, 100);
        // An incomplete (temporary) checkpoint beyond it is not taken.
        fs::create_dir_all(checkpoints_dir(run).join(".step-0000200.tmp-1")).unwrap();
        assert_eq!(resolve(run).unwrap(), (last.clone(), true));
        assert_eq!(resolve(&first).unwrap(), (first, false));
        assert_eq!(read_state(&last).unwrap().step, 100);

        // read_state on the run itself says what to pass instead.
        let e = read_state(run).unwrap_err().to_string();
        assert!(
            e.contains("is a run directory") && e.contains("step-0000020, step-0000100"),
            "{e}"
        );
        assert!(e.contains("checkpoints/step-0000100"), "{e}");
    }

    #[test]
    fn neither_a_run_nor_a_checkpoint_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let e = resolve(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("not a checkpoint directory"), "{e}");
        let e = resolve(&tmp.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a checkpoint directory"), "{e}");
    }
}

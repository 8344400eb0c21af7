//! Cooldown branches: continue a run from one of its checkpoints with the
//! LR decaying to a final value over a given number of steps.
//!
//! A branch is an ordinary run directory whose first checkpoint is a copy of
//! the parent's (weights, optimizer, averages, data cursor), whose config is
//! the parent's with `train.steps = N + K` and an explicit cooldown at `N`,
//! and which records where it came from in `branch.json` and in
//! `TrainState::parent`. Since the schedule is a pure function of the step
//! and the data order a pure function of (seed, cursor), the branch is
//! bit-identical to a WSD run of `N + K` steps whose cooldown starts at `N`.

use crate::checkpoint::{self, step_dir_name, TrainState, STATE_FILE};
use crate::config::{ScheduleKind, TrainConfig};
use crate::fsutil::{create_dir, sync_dir, write_atomic};
use crate::trainer::CONFIG_FILE;
use crate::{Result, TrainError};
use frugal_schedule::CooldownShape;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

pub const BRANCH_FILE: &str = "branch.json";

/// What `branch.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BranchInfo {
    /// The parent's run directory.
    pub parent_run: PathBuf,
    /// The checkpoint the branch starts from.
    pub parent_checkpoint: PathBuf,
    /// The branch point `N` (optimizer steps done in the parent).
    pub branch_step: u64,
    /// Cooldown length `K`.
    pub cooldown_steps: u64,
    pub shape: CooldownShape,
    pub final_factor: f64,
}

/// Where and how to branch.
#[derive(Debug, Clone)]
pub struct BranchSpec {
    /// A checkpoint directory `RUN/checkpoints/step-N`.
    pub from: PathBuf,
    pub steps: u64,
    pub shape: CooldownShape,
    pub final_factor: f64,
}

/// The branch's config: the parent's schedule with the cooldown at `step`.
pub fn branch_config(parent: &TrainConfig, step: u64, spec: &BranchSpec) -> Result<TrainConfig> {
    if parent.schedule.kind == ScheduleKind::Cosine {
        return Err(TrainError::Config(
            "cooldown branches need a constant-LR or WSD parent, not a cosine one".into(),
        ));
    }
    if spec.steps == 0 {
        return Err(TrainError::Config("a cooldown needs --steps > 0".into()));
    }
    // The LR at the branch point must still be the parent's constant phase,
    // or the branch would decay from a value the parent never had there.
    if let Some(c) = parent.schedule()?.cooldown {
        if c.start < step {
            return Err(TrainError::Config(format!(
                "the parent is already cooling down at step {step} (its cooldown starts at {})",
                c.start
            )));
        }
    }
    let mut cfg = parent.clone();
    cfg.train.steps = step + spec.steps;
    cfg.schedule.cooldown_start = Some(step);
    cfg.schedule.cooldown_steps = Some(spec.steps);
    cfg.schedule.cooldown_shape = spec.shape;
    cfg.schedule.final_factor = spec.final_factor;
    cfg.checkpoint.at.retain(|s| *s > step);
    cfg.schedule()?; // validates shape and final factor together
    Ok(cfg)
}

/// Creates (or re-opens) the branch directory `out` and returns its config;
/// the caller opens it with [`crate::Trainer::open`], which resumes from the
/// copied checkpoint or from the branch's own later ones.
pub fn prepare(spec: &BranchSpec, out: &Path) -> Result<TrainConfig> {
    let from = spec.from.as_path();
    let state = checkpoint::read_state(from)?;
    let parent_run = checkpoint::run_dir_of(from)
        .ok_or_else(|| TrainError::ckpt(from, "is not inside RUN/checkpoints/"))?;
    let parent_cfg = TrainConfig::from_file(&parent_run.join(CONFIG_FILE), &[])?;
    let cfg = branch_config(&parent_cfg, state.step, spec)?;
    let info = BranchInfo {
        parent_run: abs(&parent_run),
        parent_checkpoint: abs(from),
        branch_step: state.step,
        cooldown_steps: spec.steps,
        shape: spec.shape,
        final_factor: spec.final_factor,
    };
    create_dir(out)?;
    let info_path = out.join(BRANCH_FILE);
    if info_path.exists() {
        let text = fs::read(&info_path).map_err(|e| TrainError::io(&info_path, e))?;
        let prior: BranchInfo = serde_json::from_slice(&text)?;
        if prior != info {
            return Err(TrainError::Config(format!(
                "{} already holds a different branch (from {} step {}); use another --out",
                out.display(),
                prior.parent_checkpoint.display(),
                prior.branch_step
            )));
        }
    } else {
        write_atomic(&info_path, &serde_json::to_vec_pretty(&info)?)?;
    }
    if checkpoint::latest(out)?.is_none() {
        copy_checkpoint(from, out, state)?;
    }
    let tok = parent_run.join("tokenizer.json");
    if tok.exists() && !out.join("tokenizer.json").exists() {
        fs::copy(&tok, out.join("tokenizer.json")).map_err(|e| TrainError::io(&tok, e))?;
    }
    Ok(cfg)
}

/// Copies a checkpoint into `out` as its first one, with the branch's own
/// (empty) metrics and the parent recorded; assembled then renamed, like
/// every checkpoint.
fn copy_checkpoint(from: &Path, out: &Path, mut state: TrainState) -> Result<()> {
    let root = checkpoint::checkpoints_dir(out);
    create_dir(&root)?;
    let name = step_dir_name(state.step);
    let tmp = root.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    create_dir(&tmp)?;
    for e in fs::read_dir(from).map_err(|e| TrainError::io(from, e))? {
        let e = e.map_err(|e| TrainError::io(from, e))?;
        let file = e.file_name();
        if file == STATE_FILE || !e.path().is_file() {
            continue;
        }
        fs::copy(e.path(), tmp.join(&file)).map_err(|err| TrainError::io(e.path(), err))?;
    }
    state.parent = Some(abs(from).display().to_string());
    state.metrics_len = 0;
    write_atomic(&tmp.join(STATE_FILE), &serde_json::to_vec_pretty(&state)?)?;
    sync_dir(&tmp)?;
    let dest = root.join(name);
    fs::rename(&tmp, &dest).map_err(|e| TrainError::io(&dest, e))?;
    sync_dir(&root)?;
    Ok(())
}

fn abs(p: &Path) -> PathBuf {
    fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Reads `branch.json` of a run directory, if it is a branch.
pub fn read_info(run_dir: &Path) -> Option<BranchInfo> {
    let bytes = fs::read(run_dir.join(BRANCH_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(kind: &str) -> TrainConfig {
        let text = format!(
            "[model]\npreset = \"nano\"\n[data]\ndataset = \"/tmp/ds\"\n[train]\nsteps = 100\n[schedule]\nkind = \"{kind}\"\nwarmup_steps = 10\n[checkpoint]\nat = [40, 80]\n"
        );
        TrainConfig::from_toml(&text, &[]).unwrap()
    }

    fn spec(steps: u64) -> BranchSpec {
        BranchSpec {
            from: PathBuf::from("x"),
            steps,
            shape: CooldownShape::Linear,
            final_factor: 0.0,
        }
    }

    #[test]
    fn branch_schedule_is_the_wsd_one() {
        let cfg = branch_config(&parent("constant"), 40, &spec(10)).unwrap();
        assert_eq!(cfg.train.steps, 50);
        assert_eq!(cfg.checkpoint.at, vec![80]);
        // Same multipliers as a WSD run of 50 steps with 10 cooling down.
        let mut wsd = parent("wsd");
        wsd.train.steps = 50;
        wsd.schedule.cooldown_fraction = 0.2;
        wsd.schedule.cooldown_shape = CooldownShape::Linear;
        assert_eq!(cfg.schedule().unwrap(), wsd.schedule().unwrap());
        // The branch config survives the round trip through config.toml.
        assert_eq!(TrainConfig::from_toml(&cfg.to_toml(), &[]).unwrap(), cfg);
    }

    #[test]
    fn impossible_branches_are_refused() {
        let e = |p: &TrainConfig, at: u64, k: u64| {
            branch_config(p, at, &spec(k)).unwrap_err().to_string()
        };
        assert!(e(&parent("cosine"), 40, 10).contains("cosine"));
        assert!(e(&parent("constant"), 40, 0).contains("steps"));
        // A WSD parent of 100 steps cools down from step 80.
        assert!(e(&parent("wsd"), 90, 5).contains("already cooling down"));
        assert!(branch_config(&parent("wsd"), 80, &spec(5)).is_ok());
    }
}

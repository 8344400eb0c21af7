//! What a score file was scored with, kept beside it as
//! `OUTPUT.settings.json`.
//!
//! A scoring run resumes into its output: documents already there are
//! skipped. Resumed with another scorer or other options, it would silently
//! mix two kinds of score in one file, and a merge could do the same with
//! shards run differently. So the first run records its settings, a resumed
//! run must match them, and a merge requires its shards to agree.
//!
//! Only what changes the scores is recorded: the scorer (its file, with the
//! tokenizer replacing its own, if any), the matmul precision, and the
//! chunking, sampling, threshold and input-field options. Device, batch
//! sizes, threads and heatmaps may change between runs (they move the scores
//! by rounding at most), and so does the shard (each shard has its own file).

use crate::model::Scorer;
use crate::run::{Distance, ScoreOptions};
use crate::{ProlongError, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreSettings {
    /// [`Scorer::source`]: the model's path (a run directory as the
    /// checkpoint it stood for), and any `--tokenizer`.
    pub scorer: String,
    /// `f32` or `bf16`.
    pub precision: String,
    pub chunk_size: usize,
    pub window: usize,
    pub threshold: f64,
    pub sample_pairs: i64,
    pub seed: u64,
    pub compat: bool,
    /// `window` or `document`.
    pub distance: String,
    pub text_field: String,
    pub id_field: Option<String>,
}

impl ScoreSettings {
    pub fn of(scorer: &Scorer, opt: &ScoreOptions) -> Self {
        Self {
            scorer: scorer.source.clone(),
            precision: scorer.model.precision().to_string(),
            chunk_size: opt.chunk_size,
            window: opt.window,
            threshold: opt.threshold,
            sample_pairs: opt.sample_pairs,
            seed: opt.seed,
            compat: opt.compat,
            distance: match opt.distance {
                Distance::Window => "window",
                Distance::Document => "document",
            }
            .into(),
            text_field: opt.input.text_field.clone(),
            id_field: opt.input.id_field.clone(),
        }
    }

    /// `field A (now B)` for each field in which `other` differs.
    fn differences(&self, other: &Self) -> Vec<String> {
        let (a, b) = (json_fields(self), json_fields(other));
        a.iter()
            .filter(|(k, v)| b.get(*k) != Some(v))
            .map(|(k, v)| {
                let now = b.get(k).map_or("nothing".into(), ToString::to_string);
                format!("{k} {v} (now {now})")
            })
            .collect()
    }
}

fn json_fields(s: &ScoreSettings) -> serde_json::Map<String, serde_json::Value> {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default()
}

/// `OUTPUT.settings.json`.
pub fn settings_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".settings.json");
    PathBuf::from(name)
}

/// The settings recorded beside `output`, if any.
pub fn read(output: &Path) -> Result<Option<ScoreSettings>> {
    let path = settings_path(output);
    if !path.exists() {
        return Ok(None);
    }
    frugal_data::atomic::read_json(&path)
        .map(Some)
        .map_err(|e| ProlongError::Settings(format!("{}: {e}", path.display())))
}

/// Records `settings` beside `output`, or checks them against what is
/// recorded there: a run resuming into `output` must score as it was begun.
/// An output from before settings were recorded adopts these.
pub fn claim(output: &Path, settings: &ScoreSettings) -> Result<()> {
    match read(output)? {
        Some(recorded) if recorded != *settings => Err(ProlongError::Settings(format!(
            "{} was scored with other settings: {}. Score into another --output, or \
             resume with the same settings ({})",
            output.display(),
            recorded.differences(settings).join(", "),
            settings_path(output).display()
        ))),
        Some(_) => Ok(()),
        None => write(output, settings),
    }
}

/// Writes `settings` beside `output` (atomically), where `output` can be
/// written: its directory is not created.
pub fn write(output: &Path, settings: &ScoreSettings) -> Result<()> {
    let dir = output.parent().filter(|d| !d.as_os_str().is_empty());
    if dir.is_some_and(|d| !d.is_dir()) {
        let missing =
            std::io::Error::new(std::io::ErrorKind::NotFound, "its directory does not exist");
        return Err(ProlongError::io(output, missing));
    }
    let path = settings_path(output);
    frugal_data::atomic::write_json(&path, settings)
        .map_err(|e| ProlongError::Settings(format!("{}: {e}", path.display())))
}

/// The one set of settings `files` were scored with: `None` when none
/// recorded any (outputs of an older frugal), an error naming the first
/// file that differs from the others.
pub fn agreed(files: &[PathBuf]) -> Result<Option<ScoreSettings>> {
    let mut first: Option<(&PathBuf, ScoreSettings)> = None;
    for f in files {
        let Some(s) = read(f)? else { continue };
        match &first {
            None => first = Some((f, s)),
            Some((f0, s0)) if *s0 != s => {
                return Err(ProlongError::Settings(format!(
                    "{} and {} were scored with other settings: {}; re-run one of them",
                    f0.display(),
                    f.display(),
                    s0.differences(&s).join(", ")
                )))
            }
            Some(_) => {}
        }
    }
    Ok(first.map(|(_, s)| s))
}

//! A training run described in TOML, with `--set section.key=value`
//! overrides. Unknown keys are errors, so a typo never silently falls back to
//! a default.

use crate::{Result, TrainError};
use frugal_model::presets::preset;
use frugal_model::{LlamaConfig, Precision};
use frugal_schedule::{Cooldown, CooldownShape, Schedule};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub model: ModelSection,
    pub data: DataSection,
    #[serde(default)]
    pub train: TrainSection,
    #[serde(default)]
    pub schedule: ScheduleSection,
    #[serde(default)]
    pub eval: EvalSection,
    #[serde(default)]
    pub checkpoint: CheckpointSection,
    /// Weight averaging (SWA / EMA); off unless configured.
    #[serde(default, skip_serializing_if = "AveragingSection::is_off")]
    pub averaging: AveragingSection,
}

/// A preset name, optionally with any field overridden.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub preset: Option<String>,
    pub d_model: Option<usize>,
    pub n_layers: Option<usize>,
    pub n_heads: Option<usize>,
    pub n_kv_heads: Option<usize>,
    pub ffn_hidden: Option<usize>,
    pub rope_theta: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// A dataset directory made by `frugal data prepare`.
    pub dataset: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    pub seq_len: usize,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub steps: u64,
    pub lr: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub grad_clip: f64,
    pub seed: u64,
    pub log_every: u64,
    /// Matmul dtype: `f32`, or `bf16` with f32 master weights, optimizer
    /// state, norms, softmax and loss (see `frugal_model::precision`).
    pub precision: Precision,
}

impl Default for TrainSection {
    fn default() -> Self {
        Self {
            seq_len: 256,
            batch_size: 16,
            grad_accum: 1,
            steps: 1000,
            lr: 1e-3,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            grad_clip: 1.0,
            seed: 0,
            log_every: 10,
            precision: Precision::F32,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    Constant,
    Wsd,
    Cosine,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleSection {
    pub kind: ScheduleKind,
    pub warmup_steps: u64,
    /// WSD: fraction of all steps spent cooling down.
    pub cooldown_fraction: f64,
    pub cooldown_shape: CooldownShape,
    /// LR at the end of a cooldown, as a fraction of the peak.
    pub final_factor: f64,
    /// Cosine: final LR as a fraction of the peak (the paper's 10 %).
    pub cosine_final: f64,
    /// A cooldown inserted at this step into the schedule of `kind` (how a
    /// branch made by `frugal cooldown` continues its parent); with
    /// `cooldown_steps` it replaces WSD's fraction-based cooldown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_start: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_steps: Option<u64>,
}

impl Default for ScheduleSection {
    fn default() -> Self {
        Self {
            kind: ScheduleKind::Wsd,
            warmup_steps: 100,
            cooldown_fraction: 0.2,
            cooldown_shape: CooldownShape::OneMinusSqrt,
            final_factor: 0.0,
            cosine_final: 0.1,
            cooldown_start: None,
            cooldown_steps: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSection {
    /// Evaluate every this many steps (and at the last step); 0 = only last.
    pub every: u64,
    /// Number of fixed validation batches.
    pub batches: usize,
}

impl Default for EvalSection {
    fn default() -> Self {
        Self {
            every: 100,
            batches: 8,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSection {
    /// Checkpoint every this many steps (and at the last step).
    pub every: u64,
    /// Extra steps to checkpoint at: the branch points of a study's
    /// constant-LR run, which need not be multiples of `every`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub at: Vec<u64>,
}

impl Default for CheckpointSection {
    fn default() -> Self {
        Self {
            every: 200,
            at: Vec::new(),
        }
    }
}

/// `[averaging]`: optional `[averaging.swa]` and `[averaging.ema]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AveragingSection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swa: Option<SwaSection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ema: Option<EmaSection>,
}

impl AveragingSection {
    pub fn is_off(&self) -> bool {
        self.swa.is_none() && self.ema.is_none()
    }
}

/// Stochastic weight averaging in windows: a snapshot every `interval`
/// steps, a uniform mean per window of `horizon` steps, reset per window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwaSection {
    pub interval: u64,
    pub horizon: u64,
}

/// Exponential moving average updated every `interval` steps from `start`
/// (default: the end of warmup).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmaSection {
    pub decay: f64,
    #[serde(default = "one")]
    pub interval: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<u64>,
}

fn one() -> u64 {
    1
}

impl TrainConfig {
    /// Parses TOML text, applies `section.key=value` overrides, validates.
    pub fn from_toml(text: &str, overrides: &[String]) -> Result<Self> {
        let mut value: toml::Table =
            toml::from_str(text).map_err(|e| TrainError::Config(toml_error(&e, text)))?;
        for o in overrides {
            apply_override(&mut value, o)?;
        }
        let cfg: TrainConfig = toml::Value::Table(value)
            .try_into()
            .map_err(|e: toml::de::Error| TrainError::Config(toml_error(&e, "")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn from_file(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Self::from_toml(&text, overrides).map_err(|e| match e {
            TrainError::Config(m) => TrainError::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    fn validate(&self) -> Result<()> {
        let t = &self.train;
        let bad = |m: &str| Err(TrainError::Config(m.to_string()));
        if t.seq_len == 0 || t.batch_size == 0 || t.grad_accum == 0 {
            return bad("train.seq_len, train.batch_size and train.grad_accum must be > 0");
        }
        if t.steps == 0 {
            return bad("train.steps must be > 0");
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return bad("train.lr must be a positive number");
        }
        if !(0.0..1.0).contains(&t.beta1) || !(0.0..1.0).contains(&t.beta2) {
            return bad("train.beta1 and train.beta2 must be in [0, 1)");
        }
        if self.checkpoint.every == 0 {
            return bad("checkpoint.every must be > 0");
        }
        if self.eval.batches == 0 {
            return bad("eval.batches must be > 0");
        }
        if let Some(swa) = &self.averaging.swa {
            if swa.interval == 0 || swa.horizon == 0 || swa.horizon % swa.interval != 0 {
                return bad(
                    "averaging.swa needs interval > 0 and a horizon that is a multiple of it",
                );
            }
        }
        if let Some(ema) = &self.averaging.ema {
            if !(0.0..1.0).contains(&ema.decay) || ema.interval == 0 {
                return bad("averaging.ema needs decay in [0, 1) and interval > 0");
            }
        }
        if self.schedule.cooldown_start.is_some() != self.schedule.cooldown_steps.is_some() {
            return bad("schedule.cooldown_start and schedule.cooldown_steps go together");
        }
        if self.model.preset.is_none()
            && (self.model.d_model.is_none()
                || self.model.n_layers.is_none()
                || self.model.n_heads.is_none())
        {
            return bad("[model] needs a preset or d_model, n_layers and n_heads");
        }
        self.schedule()?;
        Ok(())
    }

    /// The model architecture for a given vocabulary.
    pub fn model_config(&self, vocab_size: usize) -> Result<LlamaConfig> {
        let m = &self.model;
        let mut c = match &m.preset {
            Some(name) => preset(name)?.config(vocab_size, self.train.seq_len),
            None => {
                let mut c = LlamaConfig::new(
                    vocab_size,
                    m.d_model.unwrap_or_default(),
                    m.n_layers.unwrap_or_default(),
                    m.n_heads.unwrap_or_default(),
                );
                c.max_seq_len = self.train.seq_len;
                c
            }
        };
        if let Some(v) = m.d_model {
            c.d_model = v;
        }
        if let Some(v) = m.n_layers {
            c.n_layers = v;
        }
        if let Some(v) = m.n_heads {
            c.n_heads = v;
            c.n_kv_heads = v;
        }
        if let Some(v) = m.n_kv_heads {
            c.n_kv_heads = v;
        }
        if let Some(v) = m.ffn_hidden {
            c.ffn_hidden = v;
        } else if m.preset.is_none() {
            c.ffn_hidden = frugal_model::config::swiglu_hidden(c.d_model);
        }
        if let Some(v) = m.rope_theta {
            c.rope_theta = v;
        }
        c.validate()?;
        Ok(c)
    }

    /// The LR schedule over `train.steps`.
    pub fn schedule(&self) -> Result<Schedule> {
        let s = &self.schedule;
        let total = self.train.steps;
        if let (Some(start), Some(steps)) = (s.cooldown_start, s.cooldown_steps) {
            // An explicit cooldown: the base shape of `kind` (WSD's base is
            // the constant LR) with the cooldown inserted where it says.
            let base = match s.kind {
                ScheduleKind::Constant | ScheduleKind::Wsd => Schedule::constant(s.warmup_steps),
                ScheduleKind::Cosine => Schedule::cosine(s.warmup_steps, total, s.cosine_final)?,
            };
            return Ok(base.with_cooldown(Cooldown {
                start,
                steps,
                shape: s.cooldown_shape,
                final_factor: s.final_factor,
            })?);
        }
        Ok(match s.kind {
            ScheduleKind::Constant => Schedule::constant(s.warmup_steps),
            ScheduleKind::Wsd => Schedule::wsd(
                s.warmup_steps,
                total,
                s.cooldown_fraction,
                s.cooldown_shape,
                s.final_factor,
            )?,
            ScheduleKind::Cosine => Schedule::cosine(s.warmup_steps, total, s.cosine_final)?,
        })
    }

    /// Tokens consumed by one optimizer step.
    pub fn tokens_per_step(&self) -> u64 {
        (self.train.seq_len * self.train.batch_size * self.train.grad_accum) as u64
    }
}

/// `a.b.c=value`: the value is parsed as TOML (number, bool, string, array),
/// falling back to a plain string.
/// A TOML error on one line that says where: `line N: message` when it
/// points into `text`, `section.key: message` when it names a value (an
/// error met after `--set` overrides were merged, when there is no text).
pub fn toml_error(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim_end().replace('\n', ", ");
    if let Some(span) = e.span().filter(|s| s.start <= text.len()) {
        let line = text[..span.start].matches('\n').count() + 1;
        return format!("line {line}: {message}");
    }
    // The key is only in the multi-line Display, as "in `a.b`".
    let shown = e.to_string();
    let key = shown
        .lines()
        .find_map(|l| l.strip_prefix("in `")?.strip_suffix('`'));
    match key {
        Some(key) => format!("{key}: {message}"),
        None => message,
    }
}

fn apply_override(root: &mut toml::Table, spec: &str) -> Result<()> {
    let (path, raw) = spec.split_once('=').ok_or_else(|| {
        TrainError::Config(format!(
            "--set '{spec}' is not of the form section.key=value"
        ))
    })?;
    let keys: Vec<&str> = path.trim().split('.').collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(TrainError::Config(format!(
            "--set '{spec}' has an empty key"
        )));
    }
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let mut table = root;
    for k in &keys[..keys.len() - 1] {
        let entry = table
            .entry(k.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| TrainError::Config(format!("--set '{spec}': '{k}' is not a section")))?;
    }
    table.insert(keys[keys.len() - 1].to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[model]
preset = "nano"
[data]
dataset = "/tmp/ds"
"#;

    #[test]
    fn defaults_and_overrides() {
        let c = TrainConfig::from_toml(
            BASE,
            &["train.lr=3e-4".into(), "schedule.kind=\"cosine\"".into()],
        )
        .unwrap();
        assert_eq!(c.train.lr, 3e-4);
        assert_eq!(c.schedule.kind, ScheduleKind::Cosine);
        let c = TrainConfig::from_toml(BASE, &["schedule.cooldown_shape=linear".into()]).unwrap();
        assert_eq!(c.schedule.cooldown_shape, CooldownShape::Linear);
        let m = c.model_config(1000).unwrap();
        assert_eq!((m.d_model, m.n_layers, m.vocab_size), (64, 2, 1000));
        // Round trip through the resolved TOML that a run directory stores.
        assert_eq!(TrainConfig::from_toml(&c.to_toml(), &[]).unwrap(), c);
    }

    #[test]
    fn bad_configs_are_clear_errors() {
        let e = |text: &str, o: &[&str]| {
            let o: Vec<String> = o.iter().map(|s| s.to_string()).collect();
            TrainConfig::from_toml(text, &o).unwrap_err().to_string()
        };
        assert!(e(BASE, &["train.lrr=1"]).contains("unknown field"));
        assert!(e(BASE, &["train.lr=-1"]).contains("train.lr"));
        assert!(e("[model]\npreset='nano'\n", &[]).contains("data"));
        assert!(e(BASE, &["schedule.cooldown_shape=zigzag"]).contains("zigzag"));
        assert!(e(BASE, &["train.lr"]).contains("section.key=value"));
        assert!(e("[model\n", &[]).contains("config"));
        // Where: the key of a value of the wrong type, the line of bad syntax.
        let m = e(BASE, &["train.lr=abc"]);
        assert!(m.contains("train.lr: invalid type: string \"abc\""), "{m}");
        let m = e(&format!("{BASE}[train]\nsteps = -3\n"), &[]);
        assert!(m.contains("train.steps: invalid value"), "{m}");
        let m = e(&format!("{BASE}[train]\nlr = \n"), &[]);
        assert!(m.contains("line 7: "), "{m}");
        assert!(!m.contains('\n'), "one line: {m}");
        let c = TrainConfig::from_toml(BASE, &["model.preset=giant".into()]).unwrap();
        assert!(c
            .model_config(10)
            .unwrap_err()
            .to_string()
            .contains("unknown model preset"));
    }
}

//! `STUDY.toml`: sizes, budgets, families and the base run config.
//!
//! ```toml
//! families = ["wsd", "cosine"]
//! [[size]]
//! name = "s1"
//! preset = "nano"            # or d_model / n_layers / n_heads
//! [budgets]
//! tokens_per_param = [5, 10, 20]   # or tokens = [...]
//! [wsd]
//! lr = 1e-3
//! cooldown_fraction = 0.2
//! cooldown_shape = "1-sqrt"
//! swa = { interval = 10, horizon = 100 }   # optional, on the constant runs
//! [cosine]
//! lr = 2e-3
//! [fit]                       # optional
//! include_swa = true          # also fit SWA of the constant runs (default false)
//! bootstrap = 100             # resamples for errors and the band (0 = none)
//! [base]                      # a `frugal train` config without [model]
//! data.dataset = "..."
//! ```

use crate::{Result, StudyError};
use frugal_schedule::CooldownShape;
use frugal_train::config::{toml_error, ModelSection, SwaSection};
use frugal_train::TrainConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudySpec {
    /// Which families to run: "wsd" and/or "cosine".
    pub families: Vec<String>,
    #[serde(rename = "size")]
    pub sizes: Vec<SizeSpec>,
    pub budgets: Budgets,
    #[serde(default)]
    pub wsd: WsdSpec,
    #[serde(default)]
    pub cosine: CosineSpec,
    #[serde(default)]
    pub fit: FitSpec,
    /// The run template: every section of a `frugal train` config but [model].
    pub base: toml::Table,
}

/// How `study fit` / `report` fit the points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FitSpec {
    /// Also fit the SWA losses of the constant-LR runs at each budget's step
    /// (no cooldown at all), as a third source of points.
    pub include_swa: bool,
    /// Bootstrap resamples per fit (standard errors and the plotted band);
    /// 0 = none.
    pub bootstrap: usize,
}

impl Default for FitSpec {
    fn default() -> Self {
        Self {
            include_swa: false,
            bootstrap: 100,
        }
    }
}

/// A model size: a preset and/or explicit shape fields (as in `[model]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeSpec {
    pub name: String,
    pub preset: Option<String>,
    pub d_model: Option<usize>,
    pub n_layers: Option<usize>,
    pub n_heads: Option<usize>,
    pub n_kv_heads: Option<usize>,
    pub ffn_hidden: Option<usize>,
}

impl SizeSpec {
    pub fn model(&self) -> ModelSection {
        ModelSection {
            preset: self.preset.clone(),
            d_model: self.d_model,
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            ffn_hidden: self.ffn_hidden,
            rope_theta: None,
        }
    }
}

/// Token budgets per size: absolute, or as multiples of the parameter count.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens_per_param: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WsdSpec {
    pub lr: f64,
    pub cooldown_fraction: f64,
    pub cooldown_shape: CooldownShape,
    pub final_factor: f64,
    /// SWA on the constant-LR runs.
    pub swa: Option<SwaSection>,
}

impl Default for WsdSpec {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            cooldown_fraction: 0.2,
            cooldown_shape: CooldownShape::OneMinusSqrt,
            final_factor: 0.0,
            swa: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CosineSpec {
    pub lr: f64,
    /// Final LR as a fraction of the peak (the paper's 10 %).
    pub final_factor: f64,
}

impl Default for CosineSpec {
    fn default() -> Self {
        Self {
            lr: 2e-3,
            final_factor: 0.1,
        }
    }
}

impl StudySpec {
    pub fn from_toml(text: &str) -> Result<Self> {
        let spec: StudySpec =
            toml::from_str(text).map_err(|e| StudyError::Spec(toml_error(&e, text)))?;
        spec.validate()?;
        Ok(spec)
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| StudyError::io(path, e))?;
        Self::from_toml(&text).map_err(|e| match e {
            StudyError::Spec(m) => StudyError::Spec(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    pub fn wants(&self, family: &str) -> bool {
        self.families.iter().any(|f| f == family)
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(StudyError::Spec(m));
        if self.families.is_empty() {
            return bad("families must list \"wsd\" and/or \"cosine\"".into());
        }
        if let Some(f) = self
            .families
            .iter()
            .find(|f| f.as_str() != "wsd" && f.as_str() != "cosine")
        {
            return bad(format!("unknown family '{f}' (expected wsd or cosine)"));
        }
        if self.sizes.is_empty() {
            return bad("at least one [[size]] is needed".into());
        }
        let mut names: Vec<&str> = self.sizes.iter().map(|s| s.name.as_str()).collect();
        names.sort();
        names.dedup();
        if names.len() != self.sizes.len() {
            return bad("size names must be unique".into());
        }
        if self.sizes.iter().any(|s| !valid_name(&s.name)) {
            return bad("size names may hold only letters, digits, '-' and '_'".into());
        }
        let b = &self.budgets;
        if b.tokens.is_empty() == b.tokens_per_param.is_empty() {
            return bad("[budgets] needs exactly one of tokens or tokens_per_param".into());
        }
        if b.tokens
            .iter()
            .chain(&b.tokens_per_param)
            .any(|x| !(*x > 0.0 && x.is_finite()))
        {
            return bad("budgets must be positive".into());
        }
        if !(0.0..1.0).contains(&self.wsd.cooldown_fraction) || self.wsd.cooldown_fraction == 0.0 {
            return bad("wsd.cooldown_fraction must be in (0, 1)".into());
        }
        if !(self.wsd.lr > 0.0 && self.cosine.lr > 0.0) {
            return bad("learning rates must be positive".into());
        }
        Ok(())
    }

    /// The base config with a size's model (validated like any run config).
    pub fn run_config(&self, size: &SizeSpec, overrides: &[String]) -> Result<TrainConfig> {
        let mut table = self.base.clone();
        table.insert(
            "model".into(),
            toml::Value::try_from(size.model()).map_err(|e| StudyError::Spec(e.to_string()))?,
        );
        let text = toml::to_string(&table).map_err(|e| StudyError::Spec(e.to_string()))?;
        Ok(TrainConfig::from_toml(&text, overrides)?)
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

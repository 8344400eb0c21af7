//! Named, trainable parameters with the reference's initialisation and
//! safetensors I/O. Names are Hugging Face's Llama names, so an export is a
//! copy and a Hugging Face checkpoint loads without a mapping table.

use crate::config::LlamaConfig;
use crate::{ModelError, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// How a parameter starts out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    Normal(f64),
    Ones,
    Zeros,
}

/// One parameter of the architecture.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
    /// AdamW weight decay applies to Linear weights only (not embeddings,
    /// not norms), as in the reference.
    pub decay: bool,
}

/// Every parameter of a config, in a fixed order.
pub fn param_specs(c: &LlamaConfig) -> Vec<ParamSpec> {
    let std = 0.02;
    // Residual projections are scaled down so the residual stream's variance
    // does not grow with depth (GPT-2 / the reference).
    let resid_std = 0.02 / ((2 * c.n_layers) as f64).sqrt();
    let (d, q, kv, f) = (c.d_model, c.q_dim(), c.kv_dim(), c.ffn_hidden);
    let spec = |name: String, shape: Vec<usize>, init: Init, decay: bool| ParamSpec {
        name,
        shape,
        init,
        decay,
    };
    let mut out = vec![spec(
        "model.embed_tokens.weight".into(),
        vec![c.vocab_size, d],
        Init::Normal(std),
        false,
    )];
    for i in 0..c.n_layers {
        let p = |s: &str| format!("model.layers.{i}.{s}");
        out.push(spec(
            p("input_layernorm.weight"),
            vec![d],
            Init::Ones,
            false,
        ));
        out.push(spec(
            p("self_attn.q_proj.weight"),
            vec![q, d],
            Init::Normal(std),
            true,
        ));
        out.push(spec(
            p("self_attn.k_proj.weight"),
            vec![kv, d],
            Init::Normal(std),
            true,
        ));
        out.push(spec(
            p("self_attn.v_proj.weight"),
            vec![kv, d],
            Init::Normal(std),
            true,
        ));
        if c.qkv_bias {
            // Qwen2; no weight decay on biases.
            for (name, n) in [("q", q), ("k", kv), ("v", kv)] {
                out.push(spec(
                    p(&format!("self_attn.{name}_proj.bias")),
                    vec![n],
                    Init::Zeros,
                    false,
                ));
            }
        }
        if c.qk_norm {
            // Qwen3: one RMSNorm weight per head width, shared by the heads.
            for name in ["q_norm", "k_norm"] {
                out.push(spec(
                    p(&format!("self_attn.{name}.weight")),
                    vec![c.head_dim()],
                    Init::Ones,
                    false,
                ));
            }
        }
        out.push(spec(
            p("self_attn.o_proj.weight"),
            vec![d, q],
            Init::Normal(resid_std),
            true,
        ));
        out.push(spec(
            p("post_attention_layernorm.weight"),
            vec![d],
            Init::Ones,
            false,
        ));
        out.push(spec(
            p("mlp.gate_proj.weight"),
            vec![f, d],
            Init::Normal(std),
            true,
        ));
        out.push(spec(
            p("mlp.up_proj.weight"),
            vec![f, d],
            Init::Normal(std),
            true,
        ));
        out.push(spec(
            p("mlp.down_proj.weight"),
            vec![d, f],
            Init::Normal(resid_std),
            true,
        ));
    }
    out.push(spec("model.norm.weight".into(), vec![d], Init::Ones, false));
    if !c.tie_embeddings {
        out.push(spec(
            "lm_head.weight".into(),
            vec![c.vocab_size, d],
            Init::Normal(std),
            true,
        ));
    }
    out
}

/// The model's parameters as candle variables, ordered by name so that every
/// reduction over them (gradient norm, optimizer step) is deterministic.
#[derive(Debug, Clone)]
pub struct ParamStore {
    vars: BTreeMap<String, Var>,
    decay: BTreeMap<String, bool>,
    device: Device,
}

impl ParamStore {
    /// Fresh parameters drawn from a seeded generator (candle's own CPU RNG
    /// cannot be seeded), identical on every machine for a given seed.
    pub fn init(c: &LlamaConfig, device: &Device, seed: u64) -> Result<Self> {
        c.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut map = HashMap::new();
        for s in param_specs(c) {
            let n: usize = s.shape.iter().product();
            let data: Vec<f32> = match s.init {
                Init::Ones => vec![1.0; n],
                Init::Zeros => vec![0.0; n],
                Init::Normal(std) => {
                    let dist = Normal::new(0.0, std)
                        .map_err(|e| ModelError::InvalidConfig(e.to_string()))?;
                    (0..n).map(|_| dist.sample(&mut rng) as f32).collect()
                }
            };
            map.insert(
                s.name.clone(),
                Tensor::from_vec(data, s.shape.as_slice(), device)?,
            );
        }
        Self::from_tensors(c, map, "initialisation")
    }

    /// Wraps loaded tensors, checking every name and shape against the config.
    pub fn from_tensors(
        c: &LlamaConfig,
        mut tensors: HashMap<String, Tensor>,
        source_name: &str,
    ) -> Result<Self> {
        c.validate()?;
        let mut vars = BTreeMap::new();
        let mut decay = BTreeMap::new();
        let mut device = Device::Cpu;
        for s in param_specs(c) {
            let t = tensors
                .remove(&s.name)
                .ok_or_else(|| ModelError::MissingParam {
                    name: s.name.clone(),
                    source_name: source_name.to_string(),
                })?;
            if t.dims() != s.shape.as_slice() {
                return Err(ModelError::ShapeMismatch {
                    name: s.name,
                    expected: s.shape,
                    found: t.dims().to_vec(),
                });
            }
            device = t.device().clone();
            vars.insert(s.name.clone(), Var::from_tensor(&t.to_dtype(DType::F32)?)?);
            decay.insert(s.name, s.decay);
        }
        // A weight or bias the config has no place for would silently be
        // dropped (e.g. Qwen3's q/k norms under a config without them).
        // Other leftovers are buffers, such as old `rotary_emb.inv_freq`.
        let mut unexpected: Vec<String> = tensors
            .into_keys()
            .filter(|n| n.ends_with(".weight") || n.ends_with(".bias"))
            .collect();
        if !unexpected.is_empty() {
            unexpected.sort();
            return Err(ModelError::UnexpectedParams {
                names: unexpected,
                source_name: source_name.to_string(),
            });
        }
        Ok(Self {
            vars,
            decay,
            device,
        })
    }

    /// Loads a safetensors file written by [`ParamStore::save`] (or a
    /// Hugging Face `model.safetensors` of the same shape).
    pub fn load(c: &LlamaConfig, path: &Path, device: &Device) -> Result<Self> {
        let tensors = load_safetensors(path, device)?;
        Self::from_tensors(c, tensors, &path.display().to_string())
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        save_safetensors(self.tensors(), path)
    }

    /// The tensors by name (sharing storage with the variables).
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect()
    }

    pub fn get(&self, name: &str) -> Result<&Var> {
        self.vars.get(name).ok_or_else(|| ModelError::MissingParam {
            name: name.to_string(),
            source_name: "the parameter store".into(),
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Var)> {
        self.vars.iter()
    }

    pub fn decays(&self, name: &str) -> bool {
        self.decay.get(name).copied().unwrap_or(false)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn len(&self) -> usize {
        self.vars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// Total number of scalars.
    pub fn numel(&self) -> usize {
        self.vars.values().map(|v| v.elem_count()).sum()
    }

    /// Overwrites every variable with the tensors of another store.
    pub fn copy_from(&self, other: &HashMap<String, Tensor>) -> Result<()> {
        for (name, var) in &self.vars {
            let t = other.get(name).ok_or_else(|| ModelError::MissingParam {
                name: name.clone(),
                source_name: "the copied state".into(),
            })?;
            var.set(t)?;
        }
        Ok(())
    }
}

/// Reads a safetensors file into tensors on `device`.
pub fn load_safetensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    if !path.exists() {
        return Err(ModelError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
        ));
    }
    candle_core::safetensors::load(path, device).map_err(|e| ModelError::Safetensors {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Writes tensors (made contiguous) to a safetensors file.
pub fn save_safetensors(tensors: HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let tensors: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(k, t)| Ok((k, t.contiguous()?)))
        .collect::<Result<_>>()?;
    candle_core::safetensors::save(&tensors, path).map_err(|e| ModelError::Safetensors {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

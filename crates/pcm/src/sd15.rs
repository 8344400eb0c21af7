//! Stable Diffusion 1.5 text-to-image with a released PCM LoRA merged into
//! the UNet (feature `sd15`), on candle-transformers' CLIP text model, UNet
//! and VAE.
//!
//! The model directory is diffusers' layout:
//!
//! ```text
//! SD15_DIR/unet/diffusion_pytorch_model[.fp16].safetensors
//! SD15_DIR/vae/diffusion_pytorch_model[.fp16].safetensors
//! SD15_DIR/text_encoder/model[.fp16].safetensors
//! SD15_DIR/tokenizer/tokenizer.json          (CLIP ViT-L/14's, Hugging Face format)
//! SD15_DIR/{unet,vae,text_encoder}/config.json, scheduler/scheduler_config.json (optional)
//! ```
//!
//! The `config.json` files are read when present (the fields candle's
//! models take; anything else in them is ignored), and SD 1.5's values are
//! used when they are absent. That is also how the end-to-end test runs the
//! whole path on a tiny random model.

use crate::lora::{self, MergeReport};
use crate::sd_schedule::{self, BetaSchedule, SdSampler, SdSchedule};
use crate::{PcmError, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::clip::text_model::{
    Activation, ClipTextConfig, ClipTextTransformer,
};
use candle_transformers::models::stable_diffusion::{unet_2d, vae};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Everything needed to build the three networks and the schedule.
#[derive(Debug, Clone)]
pub struct SdConfig {
    pub unet: unet_2d::UNet2DConditionModelConfig,
    pub unet_in_channels: usize,
    pub unet_out_channels: usize,
    pub vae: vae::AutoEncoderKLConfig,
    /// Latents are `vae_latent / scaling_factor` before decoding (0.18215).
    pub vae_scaling_factor: f64,
    pub clip: ClipTextConfig,
    pub schedule: SdSchedule,
}

/// One text-to-image request.
#[derive(Debug, Clone)]
pub struct Request {
    pub prompt: String,
    pub steps: usize,
    pub sampler: SdSampler,
    /// Classifier-free guidance; ≤ 1 runs the UNet once per step (PCM's
    /// small-CFG LoRAs are used at 1, the normal-CFG ones at ~7.5).
    pub guidance: f64,
    pub seed: u64,
    pub height: usize,
    pub width: usize,
    pub lora: Option<PathBuf>,
    pub lora_scale: f64,
    /// Weights and activations of the text encoder and the UNet: f32 or
    /// f16 (bf16 is refused, see [`generate`]). The latents, the guidance
    /// and the sampler's update stay f32, and the VAE decodes in f32
    /// (diffusers' `force_upcast`: SD's VAE overflows in f16).
    pub dtype: DType,
}

/// An RGB image and what produced it.
#[derive(Debug, Clone)]
pub struct Output {
    pub width: usize,
    pub height: usize,
    /// Row-major RGB bytes.
    pub rgb: Vec<u8>,
    /// The final latents before the VAE (C·H/8·W/8 values), for tests and inspection.
    pub latents: Vec<f32>,
    pub timesteps: Vec<usize>,
    pub merge: Option<MergeReport>,
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| PcmError::io(path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| PcmError::bad(path, format!("not JSON: {e}")))
}

/// Typed field access with a default, so a wrong type is an error naming it.
struct Fields<'a> {
    path: PathBuf,
    v: Option<&'a Value>,
}

impl Fields<'_> {
    fn get<T: serde::de::DeserializeOwned>(&self, key: &str, default: T) -> Result<T> {
        match self.v.and_then(|v| v.get(key)) {
            None | Some(Value::Null) => Ok(default),
            Some(x) => serde_json::from_value(x.clone())
                .map_err(|e| PcmError::bad(&self.path, format!("field `{key}`: {e}"))),
        }
    }
}

impl SdConfig {
    /// SD 1.5's configuration (diffusers' `runwayml/stable-diffusion-v1-5`).
    pub fn sd15() -> Self {
        Self::from_json(None, None, None, None, Path::new("<sd15>")).expect("defaults are valid")
    }

    /// Reads the optional `config.json` files of a diffusers directory.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let unet = read_json(&dir.join("unet/config.json"))?;
        let vae = read_json(&dir.join("vae/config.json"))?;
        let clip = read_json(&dir.join("text_encoder/config.json"))?;
        let sched = read_json(&dir.join("scheduler/scheduler_config.json"))?;
        Self::from_json(
            unet.as_ref(),
            vae.as_ref(),
            clip.as_ref(),
            sched.as_ref(),
            dir,
        )
    }

    fn from_json(
        unet: Option<&Value>,
        vae_v: Option<&Value>,
        clip: Option<&Value>,
        sched: Option<&Value>,
        dir: &Path,
    ) -> Result<Self> {
        let f = |name: &str, v| Fields {
            path: dir.join(name),
            v,
        };
        let u = f("unet/config.json", unet);
        let channels: Vec<usize> = u.get("block_out_channels", vec![320, 640, 1280, 1280])?;
        let down: Vec<String> = u.get(
            "down_block_types",
            vec![
                "CrossAttnDownBlock2D".into(),
                "CrossAttnDownBlock2D".into(),
                "CrossAttnDownBlock2D".into(),
                "DownBlock2D".into(),
            ],
        )?;
        // diffusers' `attention_head_dim` is the number of heads in SD 1.5
        // (a known misnomer); candle reads it the same way.
        let heads: Value = u.get("attention_head_dim", Value::from(8))?;
        let heads: Vec<usize> = match heads {
            Value::Array(_) => serde_json::from_value(heads)
                .map_err(|e| PcmError::bad(&u.path, format!("attention_head_dim: {e}")))?,
            v => vec![
                serde_json::from_value(v)
                    .map_err(|e| PcmError::bad(&u.path, format!("attention_head_dim: {e}")))?;
                channels.len()
            ],
        };
        let layers: usize = u.get("transformer_layers_per_block", 1)?;
        if channels.is_empty() || down.len() != channels.len() || heads.len() != channels.len() {
            return Err(PcmError::bad(
                &u.path,
                "block_out_channels, down_block_types and attention_head_dim must have one entry per block",
            ));
        }
        let mut blocks = Vec::new();
        for ((&out_channels, kind), &attention_head_dim) in channels.iter().zip(&down).zip(&heads) {
            let use_cross_attn = match kind.as_str() {
                "CrossAttnDownBlock2D" => Some(layers),
                "DownBlock2D" => None,
                other => {
                    return Err(PcmError::bad(
                        &u.path,
                        format!("unsupported down block `{other}`"),
                    ))
                }
            };
            blocks.push(unet_2d::BlockConfig {
                out_channels,
                use_cross_attn,
                attention_head_dim,
            });
        }
        // candle mirrors the down blocks on the way up.
        if let Some(up) = u.v.and_then(|v| v.get("up_block_types")) {
            let up: Vec<String> = serde_json::from_value(up.clone())
                .map_err(|e| PcmError::bad(&u.path, format!("up_block_types: {e}")))?;
            let mirrored: Vec<String> =
                down.iter().rev().map(|d| d.replace("Down", "Up")).collect();
            if up != mirrored {
                return Err(PcmError::bad(
                    &u.path,
                    "up_block_types must mirror down_block_types",
                ));
            }
        }
        // candle's DownBlock2D/UpBlock2D use 32 groups whatever the config
        // says; accept only what it builds faithfully (SD 1.5 has 32).
        let groups: usize = u.get("norm_num_groups", 32)?;
        if groups != 32 {
            return Err(PcmError::bad(
                &u.path,
                format!("norm_num_groups {groups}: candle's UNet blocks support only 32"),
            ));
        }
        let unet_cfg = unet_2d::UNet2DConditionModelConfig {
            center_input_sample: u.get("center_input_sample", false)?,
            flip_sin_to_cos: u.get("flip_sin_to_cos", true)?,
            freq_shift: u.get("freq_shift", 0.0)?,
            blocks,
            layers_per_block: u.get("layers_per_block", 2)?,
            downsample_padding: u.get("downsample_padding", 1)?,
            mid_block_scale_factor: u.get("mid_block_scale_factor", 1.0)?,
            norm_num_groups: groups,
            norm_eps: u.get("norm_eps", 1e-5)?,
            cross_attention_dim: u.get("cross_attention_dim", 768)?,
            sliced_attention_size: None,
            use_linear_projection: u.get("use_linear_projection", false)?,
        };
        let v = f("vae/config.json", vae_v);
        let vae_cfg = vae::AutoEncoderKLConfig {
            block_out_channels: v.get("block_out_channels", vec![128, 256, 512, 512])?,
            layers_per_block: v.get("layers_per_block", 2)?,
            latent_channels: v.get("latent_channels", 4)?,
            norm_num_groups: v.get("norm_num_groups", 32)?,
            use_quant_conv: v.get("use_quant_conv", true)?,
            use_post_quant_conv: v.get("use_post_quant_conv", true)?,
        };
        if vae_cfg.block_out_channels.is_empty() {
            return Err(PcmError::bad(&v.path, "block_out_channels is empty"));
        }
        let c = f("text_encoder/config.json", clip);
        let act: String = c.get("hidden_act", "quick_gelu".to_string())?;
        if act != "quick_gelu" {
            return Err(PcmError::bad(
                &c.path,
                format!("hidden_act `{act}`: only quick_gelu (SD 1.5's CLIP) is supported"),
            ));
        }
        let clip_cfg = ClipTextConfig {
            vocab_size: c.get("vocab_size", 49408)?,
            embed_dim: c.get("hidden_size", 768)?,
            activation: Activation::QuickGelu,
            intermediate_size: c.get("intermediate_size", 3072)?,
            max_position_embeddings: c.get("max_position_embeddings", 77)?,
            pad_with: None,
            num_hidden_layers: c.get("num_hidden_layers", 12)?,
            num_attention_heads: c.get("num_attention_heads", 12)?,
            projection_dim: c.get("projection_dim", 768)?,
        };
        if clip_cfg.embed_dim != unet_cfg.cross_attention_dim {
            return Err(PcmError::bad(
                dir,
                format!(
                    "the text encoder's hidden_size {} differs from the UNet's cross_attention_dim {}",
                    clip_cfg.embed_dim, unet_cfg.cross_attention_dim
                ),
            ));
        }
        let s = f("scheduler/scheduler_config.json", sched);
        let kind = match s
            .get("beta_schedule", "scaled_linear".to_string())?
            .as_str()
        {
            "scaled_linear" => BetaSchedule::ScaledLinear,
            "linear" => BetaSchedule::Linear,
            other => {
                return Err(PcmError::bad(
                    &s.path,
                    format!("unsupported beta_schedule `{other}`"),
                ))
            }
        };
        let pred: String = s.get("prediction_type", "epsilon".to_string())?;
        if pred != "epsilon" {
            return Err(PcmError::bad(
                &s.path,
                format!("prediction_type `{pred}`: only epsilon (SD 1.5) is supported"),
            ));
        }
        let schedule = SdSchedule::new(
            s.get("beta_start", 0.00085)?,
            s.get("beta_end", 0.012)?,
            kind,
            s.get("num_train_timesteps", 1000)?,
        )?;
        Ok(Self {
            unet: unet_cfg,
            unet_in_channels: u.get("in_channels", 4)?,
            unet_out_channels: u.get("out_channels", 4)?,
            vae: vae_cfg,
            vae_scaling_factor: v.get("scaling_factor", 0.18215)?,
            clip: clip_cfg,
            schedule,
        })
    }

    /// Image pixels per latent pixel (8 for SD 1.5).
    pub fn vae_factor(&self) -> usize {
        1 << (self.vae.block_out_channels.len() - 1)
    }

    pub fn build_unet(&self, vb: VarBuilder) -> Result<unet_2d::UNet2DConditionModel> {
        Ok(unet_2d::UNet2DConditionModel::new(
            vb,
            self.unet_in_channels,
            self.unet_out_channels,
            false,
            self.unet.clone(),
        )?)
    }

    pub fn build_vae(&self, vb: VarBuilder) -> Result<vae::AutoEncoderKL> {
        Ok(vae::AutoEncoderKL::new(vb, 3, 3, self.vae.clone())?)
    }

    /// diffusers stores the text model under `text_model.`.
    pub fn build_clip(&self, vb: VarBuilder) -> Result<ClipTextTransformer> {
        Ok(ClipTextTransformer::new(vb.pp("text_model"), &self.clip)?)
    }
}

/// The first of `names` that exists in `dir/sub`.
fn find(dir: &Path, sub: &str, names: &[&str]) -> Result<PathBuf> {
    for n in names {
        let p = dir.join(sub).join(n);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(PcmError::MissingData(format!(
        "{}: none of {} found (see docs/pcm.md for what to download)",
        dir.join(sub).display(),
        names.join(", ")
    )))
}

/// The files of a diffusers SD directory.
pub struct ModelFiles {
    pub unet: PathBuf,
    pub vae: PathBuf,
    pub text_encoder: PathBuf,
    pub tokenizer: PathBuf,
}

impl ModelFiles {
    pub fn find(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(PcmError::MissingData(format!(
                "{}: no such directory",
                dir.display()
            )));
        }
        let model = [
            "diffusion_pytorch_model.safetensors",
            "diffusion_pytorch_model.fp16.safetensors",
        ];
        Ok(Self {
            unet: find(dir, "unet", &model)?,
            vae: find(dir, "vae", &model)?,
            text_encoder: find(
                dir,
                "text_encoder",
                &["model.safetensors", "model.fp16.safetensors"],
            )?,
            tokenizer: find(dir, "tokenizer", &["tokenizer.json"])?,
        })
    }
}

/// Token ids of `prompt`: BOS … EOS as the tokenizer's post-processor adds
/// them, truncated and padded with `<|endoftext|>` to the CLIP context.
fn tokenize(
    tok: &tokenizers::Tokenizer,
    path: &Path,
    prompt: &str,
    len: usize,
) -> Result<Vec<u32>> {
    let terr = |m: String| PcmError::Tokenizer {
        path: path.to_path_buf(),
        message: m,
    };
    let pad = tok
        .token_to_id("<|endoftext|>")
        .ok_or_else(|| terr("has no `<|endoftext|>` token (is it CLIP's tokenizer?)".into()))?;
    let enc = tok.encode(prompt, true).map_err(|e| terr(e.to_string()))?;
    let mut ids = enc.get_ids().to_vec();
    if ids.len() > len {
        // Keep the end-of-text token, as diffusers' truncation does.
        ids.truncate(len - 1);
        ids.push(pad);
    }
    ids.resize(len, pad);
    Ok(ids)
}

/// Generates one image.
pub fn generate(dir: &Path, req: &Request, device: &Device) -> Result<Output> {
    let cfg = SdConfig::from_dir(dir)?;
    let files = ModelFiles::find(dir)?;
    let factor = cfg.vae_factor();
    let unet_factor = factor << (cfg.unet.blocks.len() - 1);
    if req.height == 0
        || req.width == 0
        || !req.height.is_multiple_of(unet_factor)
        || !req.width.is_multiple_of(unet_factor)
    {
        return Err(PcmError::arg(format!(
            "height and width must be positive multiples of {unet_factor}, got {}×{}",
            req.height, req.width
        )));
    }
    if !req.lora_scale.is_finite() || !req.guidance.is_finite() {
        return Err(PcmError::arg("--lora-scale and --guidance must be finite"));
    }
    match req.dtype {
        DType::F32 | DType::F16 => {}
        DType::BF16 => {
            return Err(PcmError::arg(
                "bf16 is not offered for Stable Diffusion: candle's UNet forms its timestep \
                 embedding in the activation dtype, and in bf16 that embedding is 27-46 % off \
                 (t = 999 rounds to 1000); use --dtype f16 (see docs/pcm.md)",
            ))
        }
        other => {
            return Err(PcmError::arg(format!(
                "dtype {other:?}: Stable Diffusion runs in f32 or f16"
            )))
        }
    }
    let plan = sd_schedule::plan(&cfg.schedule, req.sampler, req.steps)?;

    // Text embeddings (unconditional first when guiding).
    let tok =
        tokenizers::Tokenizer::from_file(&files.tokenizer).map_err(|e| PcmError::Tokenizer {
            path: files.tokenizer.clone(),
            message: e.to_string(),
        })?;
    let len = cfg.clip.max_position_embeddings;
    let guide = req.guidance > 1.0;
    let mut prompts = vec![req.prompt.as_str()];
    if guide {
        prompts.insert(0, "");
    }
    let vocab = cfg.clip.vocab_size as u32;
    let mut ids = Vec::new();
    for p in &prompts {
        let t = tokenize(&tok, &files.tokenizer, p, len)?;
        if let Some(bad) = t.iter().find(|&&i| i >= vocab) {
            return Err(PcmError::Tokenizer {
                path: files.tokenizer.clone(),
                message: format!(
                    "token id {bad} is outside the text encoder's vocabulary ({vocab})"
                ),
            });
        }
        ids.extend(t);
    }
    let ids = Tensor::from_vec(ids, (prompts.len(), len), device)?;
    let clip_vb = weights(&files.text_encoder, device, req.dtype)?;
    let text = cfg
        .build_clip(clip_vb)?
        .forward_with_mask(&ids, usize::MAX)?;

    // UNet with the LoRA merged into its weights before it is built.
    let mut unet_w = lora::load_safetensors(&files.unet)?;
    let merge = match &req.lora {
        Some(path) => {
            let l = lora::load_safetensors(path)?;
            Some(lora::merge(&mut unet_w, &l, req.lora_scale)?)
        }
        None => None,
    };
    // Merged in f32 (lora::merge), rounded to the run's dtype once here.
    let unet = cfg.build_unet(on_device(unet_w, device, req.dtype)?)?;

    let (lh, lw) = (req.height / factor, req.width / factor);
    let shape = [1, cfg.unet_in_channels, lh, lw];
    let mut x = crate::rng::normal(&mut crate::rng::stream(req.seed, 0, 0), &shape, device)?;
    for (i, st) in plan.iter().enumerate() {
        let input = if guide {
            Tensor::cat(&[&x, &x], 0)?
        } else {
            x.clone()
        };
        // In f16 candle's UNet also forms its timestep embedding in f16
        // (diffusers forms it in f32): 1.5-7 % off, docs/pcm.md.
        let eps = unet
            .forward(&input.to_dtype(req.dtype)?, st.t as f64, &text)?
            .to_dtype(DType::F32)?;
        let eps = if guide {
            let (u, c) = (eps.narrow(0, 0, 1)?, eps.narrow(0, 1, 1)?);
            (&u + ((&c - &u)? * req.guidance)?)?
        } else {
            eps
        };
        let mut next = ((&x * st.a)? + (eps * st.b)?)?;
        if st.c > 0.0 {
            let z = crate::rng::normal(
                &mut crate::rng::stream(req.seed, i as u64 + 1, 1),
                &shape,
                device,
            )?;
            next = (next + (z * st.c)?)?;
        }
        x = next;
    }
    drop(unet);
    let latents = x.flatten_all()?.to_vec1::<f32>()?;
    let vae = cfg.build_vae(weights(&files.vae, device, DType::F32)?)?;
    let img = vae.decode(&(x / cfg.vae_scaling_factor)?)?;
    let img = ((img / 2.0)? + 0.5)?.clamp(0f32, 1f32)?;
    let img = (img * 255.0)?
        .round()?
        .to_dtype(DType::U8)?
        .to_device(&Device::Cpu)?;
    let (_, _, h, w) = img.dims4()?;
    // (1, 3, H, W) → row-major RGB.
    let rgb = img
        .squeeze(0)?
        .permute((1, 2, 0))?
        .flatten_all()?
        .to_vec1::<u8>()?;
    Ok(Output {
        width: w,
        height: h,
        rgb,
        latents,
        timesteps: plan.iter().map(|s| s.t).collect(),
        merge,
    })
}

/// A safetensors file as `dtype` weights on `device`.
fn weights(path: &Path, device: &Device, dtype: DType) -> Result<VarBuilder<'static>> {
    on_device(lora::load_safetensors(path)?, device, dtype)
}

/// Weights in whatever dtype their file has (fp16 files too) as `dtype`
/// weights on `device`.
fn on_device(
    w: std::collections::HashMap<String, Tensor>,
    device: &Device,
    dtype: DType,
) -> Result<VarBuilder<'static>> {
    let t = w
        .into_iter()
        .map(|(k, v)| Ok((k, v.to_dtype(dtype)?.to_device(device)?)))
        .collect::<Result<_>>()?;
    Ok(VarBuilder::from_tensors(t, dtype, device))
}

/// Writes an [`Output`] as an RGB PNG, atomically.
pub fn write_png(out: &Output, path: &Path) -> Result<()> {
    let bytes = crate::png::encode_rgb(out.width, out.height, &out.rgb)?;
    frugal_data::atomic::write_bytes(path, &bytes)?;
    Ok(())
}

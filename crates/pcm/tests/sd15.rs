//! `frugal pcm sd15`'s whole path on a tiny random Stable Diffusion written by
//! the test: diffusers-layout configs, random safetensors for the CLIP text
//! model, UNet and VAE, a word-level CLIP-style tokenizer and a random LoRA
//! in the released files' kohya key format.
#![cfg(feature = "sd15")]

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use frugal_pcm::lora::{self, LoraFormat};
use frugal_pcm::sd15::{self, Request, SdConfig};
use frugal_pcm::sd_schedule::SdSampler;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn save(vm: &VarMap, path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    vm.save(path).unwrap();
}

fn tokenizer(path: &Path) {
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;
    use tokenizers::processors::template::TemplateProcessing;
    let words = [
        "<|startoftext|>",
        "<|endoftext|>",
        "[UNK]",
        "a",
        "photo",
        "of",
        "cat",
        "dog",
    ];
    let vocab: HashMap<String, u32> = words
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), i as u32))
        .collect();
    let model = WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token("[UNK]".into())
        .build()
        .unwrap();
    let post = TemplateProcessing::builder()
        .try_single("<|startoftext|> $A <|endoftext|>")
        .unwrap()
        .special_tokens(vec![("<|startoftext|>", 0), ("<|endoftext|>", 1)])
        .build()
        .unwrap();
    let mut t = tokenizers::Tokenizer::new(model);
    t.with_pre_tokenizer(Some(Whitespace {}));
    t.with_post_processor(Some(post));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    t.save(path, false).unwrap();
}

/// Writes the tiny model and returns the UNet's weight names.
fn fixture(dir: &Path) -> Vec<String> {
    write(
        &dir.join("unet/config.json"),
        r#"{"block_out_channels": [32, 64],
            "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
            "attention_head_dim": 2, "layers_per_block": 1, "norm_num_groups": 32,
            "cross_attention_dim": 16, "in_channels": 4, "out_channels": 4,
            "sample_size": 8, "_class_name": "UNet2DConditionModel"}"#,
    );
    write(
        &dir.join("vae/config.json"),
        r#"{"block_out_channels": [8, 16], "layers_per_block": 1, "latent_channels": 4,
            "norm_num_groups": 4, "scaling_factor": 0.18215,
            "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"]}"#,
    );
    write(
        &dir.join("text_encoder/config.json"),
        r#"{"vocab_size": 8, "hidden_size": 16, "intermediate_size": 32,
            "max_position_embeddings": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
            "projection_dim": 16, "hidden_act": "quick_gelu"}"#,
    );
    write(
        &dir.join("scheduler/scheduler_config.json"),
        r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "num_train_timesteps": 1000, "set_alpha_to_one": false}"#,
    );
    let cfg = SdConfig::from_dir(dir).unwrap();
    let cpu = Device::Cpu;
    let vm = VarMap::new();
    cfg.build_unet(VarBuilder::from_varmap(&vm, DType::F32, &cpu))
        .unwrap();
    save(&vm, &dir.join("unet/diffusion_pytorch_model.safetensors"));
    let mut names: Vec<String> = vm.data().lock().unwrap().keys().cloned().collect();
    names.sort();
    let vm = VarMap::new();
    cfg.build_vae(VarBuilder::from_varmap(&vm, DType::F32, &cpu))
        .unwrap();
    save(&vm, &dir.join("vae/diffusion_pytorch_model.safetensors"));
    let vm = VarMap::new();
    cfg.build_clip(VarBuilder::from_varmap(&vm, DType::F32, &cpu))
        .unwrap();
    save(&vm, &dir.join("text_encoder/model.safetensors"));
    tokenizer(&dir.join("tokenizer/tokenizer.json"));
    names
}

/// A kohya-format LoRA (rank 2, alpha 1) on a linear layer, a 1×1 conv and
/// a 3×3 conv of the UNet, as PCM's converted files have them.
fn lora_file(dir: &Path, unet_names: &[String], extra: Option<&str>) -> std::path::PathBuf {
    let unet =
        lora::load_safetensors(&dir.join("unet/diffusion_pytorch_model.safetensors")).unwrap();
    let pick = |suffix: &str| {
        unet_names
            .iter()
            .find(|n| n.ends_with(suffix))
            .unwrap_or_else(|| panic!("no UNet weight ending in {suffix}"))
            .clone()
    };
    let mut out: HashMap<String, Tensor> = HashMap::new();
    let rank = 2;
    for suffix in [
        "attn1.to_q.weight",
        "proj_in.weight",
        "resnets.0.conv1.weight",
        "time_emb_proj.weight",
    ] {
        let key = pick(suffix);
        let dims = unet[&key].dims().to_vec();
        let module = key.strip_suffix(".weight").unwrap().replace('.', "_");
        let mut down_shape = dims.clone();
        down_shape[0] = rank;
        let mut up_shape = vec![dims[0], rank];
        if dims.len() == 4 {
            up_shape.extend([1, 1]);
        }
        let down = Tensor::randn(0f32, 1.0, down_shape, &Device::Cpu).unwrap();
        let up = Tensor::randn(0f32, 1.0, up_shape, &Device::Cpu).unwrap();
        out.insert(format!("lora_unet_{module}.lora_down.weight"), down);
        out.insert(format!("lora_unet_{module}.lora_up.weight"), up);
        out.insert(
            format!("lora_unet_{module}.alpha"),
            Tensor::new(1f32, &Device::Cpu).unwrap(),
        );
    }
    if let Some(k) = extra {
        out.insert(
            k.to_string(),
            Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap(),
        );
    }
    let path = dir.join(if extra.is_some() {
        "bad-lora.safetensors"
    } else {
        "lora.safetensors"
    });
    candle_core::safetensors::save(&out, &path).unwrap();
    path
}

fn request(lora: Option<&Path>, scale: f64, sampler: SdSampler) -> Request {
    Request {
        prompt: "a photo of a cat".into(),
        steps: 4,
        sampler,
        guidance: 1.0,
        seed: 3,
        height: 16,
        width: 16,
        lora: lora.map(Path::to_path_buf),
        lora_scale: scale,
        dtype: DType::F32,
    }
}

/// A tiny SD in a temporary directory and a LoRA for it: (the temporary
/// directory, the model directory, the LoRA file).
fn tiny_sd_with_lora() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sd");
    let names = fixture(&dir);
    let lora_path = lora_file(&dir, &names, None);
    (tmp, dir, lora_path)
}

#[test]
fn tiny_sd15_with_pcm_lora_end_to_end() {
    let (tmp, dir, lora_path) = tiny_sd_with_lora();
    let cpu = Device::Cpu;
    let tcd = SdSampler::Tcd { gamma: 0.0 };

    let with = sd15::generate(&dir, &request(Some(&lora_path), 1.0, tcd), &cpu).unwrap();
    assert_eq!((with.width, with.height), (16, 16));
    assert_eq!(with.rgb.len(), 16 * 16 * 3);
    assert_eq!(with.timesteps, vec![999, 759, 499, 259]);
    let m = with.merge.as_ref().unwrap();
    assert_eq!(
        (m.format, m.merged, m.ranks.clone()),
        (LoraFormat::Kohya, 4, vec![2])
    );
    assert_eq!(with.latents.len(), 4 * 8 * 8);
    assert!(with.latents.iter().all(|v| v.is_finite()));

    // Deterministic for a seed; the LoRA changes the result; scale 0 is no LoRA.
    let again = sd15::generate(&dir, &request(Some(&lora_path), 1.0, tcd), &cpu).unwrap();
    assert_eq!(again.latents, with.latents);
    let none = sd15::generate(&dir, &request(None, 1.0, tcd), &cpu).unwrap();
    let zero = sd15::generate(&dir, &request(Some(&lora_path), 0.0, tcd), &cpu).unwrap();
    assert_eq!(zero.latents, none.latents);
    let diff: f32 = with
        .latents
        .iter()
        .zip(&none.latents)
        .map(|(a, b)| (a - b).abs())
        // NaN-keeping, so that garbage latents cannot pass as a change.
        .fold(0.0, frugal_model::fused_check::nan_max);
    assert!(
        diff > 1e-3,
        "the LoRA did not change the latents (max |Δ| {diff})"
    );

    // The PNG: RGB, the right size.
    let png = tmp.path().join("img.png");
    sd15::write_png(&with, &png).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 16);
    assert_eq!(bytes[25], 2, "RGB colour type");

    // DDIM-trailing and guided sampling run too, on their own timesteps.
    let mut r = request(Some(&lora_path), 1.0, SdSampler::DdimTrailing);
    r.guidance = 3.0;
    let ddim = sd15::generate(&dir, &r, &cpu).unwrap();
    assert_eq!(ddim.timesteps, vec![999, 749, 499, 249]);
    assert_ne!(ddim.latents, with.latents);
    let sto = sd15::generate(
        &dir,
        &request(Some(&lora_path), 1.0, SdSampler::Tcd { gamma: 0.3 }),
        &cpu,
    )
    .unwrap();
    assert_ne!(sto.latents, with.latents);

    if let Ok(keep) = std::env::var("FRUGAL_KEEP_SD15_FIXTURE") {
        // For trying the CLI by hand on the same tiny model.
        let keep = Path::new(&keep);
        let _ = std::fs::remove_dir_all(keep);
        std::fs::rename(tmp.path(), keep).unwrap();
    }
}

/// Relative L2 distance of `a` from `b`, in f64.
fn rel_l2(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (
        a.to_dtype(DType::F64).unwrap(),
        b.to_dtype(DType::F64).unwrap(),
    );
    let sq = |t: Tensor| {
        t.sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    (sq((&a - &b).unwrap()) / sq(b)).sqrt()
}

#[test]
fn f16_tracks_f32() {
    let (_tmp, dir, lora_path) = tiny_sd_with_lora();
    let cpu = Device::Cpu;
    let mut r = request(Some(&lora_path), 1.0, SdSampler::Tcd { gamma: 0.0 });
    r.guidance = 3.0;
    let f32_run = sd15::generate(&dir, &r, &cpu).unwrap();
    r.dtype = DType::F16;
    let f16_run = sd15::generate(&dir, &r, &cpu).unwrap();
    assert!(f16_run.latents.iter().all(|v| v.is_finite()));
    // Not equal (the UNet did run in f16), and close: 2.7e-3 to 4.2e-3 over
    // five random fixtures.
    let latents = |l: &[f32]| Tensor::new(l, &cpu).unwrap();
    let err = rel_l2(&latents(&f16_run.latents), &latents(&f32_run.latents));
    println!("f16: relative L2 distance of the latents from f32 {err:.3e}");
    assert!(err > 0.0 && err < 2e-2, "{err}");
    let pixels = f16_run
        .rgb
        .iter()
        .zip(&f32_run.rgb)
        .map(|(a, b)| a.abs_diff(*b) as f64)
        .sum::<f64>()
        / f16_run.rgb.len() as f64;
    println!("f16: mean |Δ| of the pixels {pixels:.2} of 255");
    assert!(pixels < 2.0, "{pixels}");
    r.dtype = DType::BF16;
    let e = sd15::generate(&dir, &r, &cpu).unwrap_err().to_string();
    assert!(e.contains("timestep"), "{e}");
    r.dtype = DType::U8;
    let e = sd15::generate(&dir, &r, &cpu).unwrap_err().to_string();
    assert!(e.contains("f32 or f16"), "{e}");
}

/// Why bf16 is refused: candle's timestep embedding in the activation
/// dtype, against f64, as a relative L2 distance over SD 1.5's 320
/// channels. If candle starts forming it in f32 the bf16 number drops and
/// this fails, and bf16 can be offered.
#[test]
fn timestep_embedding_in_half_precision() {
    use candle_core::Module;
    use candle_transformers::models::stable_diffusion::embeddings::Timesteps;
    let proj = Timesteps::new(320, true, 0.0);
    let embedding = |dtype, t: f64| {
        let x = (Tensor::ones(1, dtype, &Device::Cpu).unwrap() * t).unwrap();
        proj.forward(&x).unwrap()
    };
    let err = |dtype, t| rel_l2(&embedding(dtype, t), &embedding(DType::F64, t));
    for t in [999.0, 259.0] {
        let (f16, bf16) = (err(DType::F16, t), err(DType::BF16, t));
        println!("t = {t}: f16 {f16:.3}, bf16 {bf16:.3}");
        assert!(f16 < 0.1, "t = {t}: f16 {f16}");
        assert!(bf16 > 0.2, "t = {t}: bf16 {bf16}");
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sd");
    let names = fixture(&dir);
    let cpu = Device::Cpu;
    let tcd = SdSampler::Tcd { gamma: 0.0 };
    // An unknown key in an otherwise valid LoRA is refused, not dropped.
    let bad = lora_file(
        &dir,
        &names,
        Some("lora_unet_down_blocks_0_attentions_0_norm.lora_mid.weight"),
    );
    let e = sd15::generate(&dir, &request(Some(&bad), 1.0, tcd), &cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("LoRA key") && e.contains("lora_mid"), "{e}");
    // A LoRA for a layer the UNet does not have.
    let mut l = HashMap::new();
    l.insert(
        "lora_unet_nowhere.lora_down.weight".to_string(),
        Tensor::zeros((2, 4), DType::F32, &cpu).unwrap(),
    );
    l.insert(
        "lora_unet_nowhere.lora_up.weight".to_string(),
        Tensor::zeros((4, 2), DType::F32, &cpu).unwrap(),
    );
    let p = tmp.path().join("nowhere.safetensors");
    candle_core::safetensors::save(&l, &p).unwrap();
    let e = sd15::generate(&dir, &request(Some(&p), 1.0, tcd), &cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no such weight"), "{e}");
    // Sizes the UNet cannot take, too many TCD steps, a missing LoRA file.
    let mut r = request(None, 1.0, tcd);
    r.height = 10;
    assert!(sd15::generate(&dir, &r, &cpu)
        .unwrap_err()
        .to_string()
        .contains("multiples of 4"));
    let mut r = request(None, 1.0, tcd);
    r.steps = 51;
    assert!(sd15::generate(&dir, &r, &cpu).is_err());
    let e = sd15::generate(
        &dir,
        &request(Some(&tmp.path().join("missing.safetensors")), 1.0, tcd),
        &cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no such file"), "{e}");
    // A directory without the tokenizer says what is missing.
    std::fs::remove_file(dir.join("tokenizer/tokenizer.json")).unwrap();
    let e = sd15::generate(&dir, &request(None, 1.0, tcd), &cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("tokenizer.json"), "{e}");
}

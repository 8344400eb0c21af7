//! Merging a LoRA into base weights: `W += scale · (alpha/rank) · up · down`.
//!
//! Two key formats are read, both as the released PCM files and diffusers
//! write them:
//!
//! * **kohya** (what PCM's `get_module_kohya_state_dict` writes, and so the
//!   `pcm_sd15_*_converted.safetensors` files): `lora_unet_<path with dots
//!   as underscores>.lora_down.weight`, `.lora_up.weight` and `.alpha`
//!   (peft's `lora_alpha`; PCM trains rank 64 with alpha 8, so the factor
//!   alpha/rank matters).
//! * **peft / diffusers**: `[unet.|base_model.model.]<path>.lora_A[.default].weight`
//!   and `lora_B`, and diffusers' older `<path>.lora.down/up.weight` and
//!   `<attn>.processor.to_{q,k,v,out}_lora.down/up.weight`; these carry no
//!   alpha, so alpha = rank (factor 1) unless a `<path>.alpha` key is present.
//!
//! Linear layers, 1×1 convolutions and k×k convolutions (PCM also adapts the
//! ResNet 3×3 convs: `down` is `[r, in, k, k]`, `up` is `[out, r, 1, 1]`) all
//! merge as one matrix product `up[out, r] · down[r, in·k·k]`. Every key must
//! be understood and every target must exist with a matching shape: a
//! LoRA silently half-applied would produce plausible but wrong images.

use crate::{PcmError, Result};
use candle_core::{DType, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The key format of a LoRA file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoraFormat {
    Kohya,
    Peft,
}

/// What a merge did.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeReport {
    pub format: LoraFormat,
    /// Base weights changed.
    pub merged: usize,
    /// Ranks seen (usually one).
    pub ranks: Vec<usize>,
}

#[derive(Default)]
struct Pair {
    down: Option<Tensor>,
    up: Option<Tensor>,
    alpha: Option<f64>,
}

enum Part {
    Down,
    Up,
    Alpha,
}

/// Reads a safetensors file into a name → tensor map.
pub fn load_safetensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    if !path.is_file() {
        return Err(PcmError::MissingData(format!(
            "{}: no such file",
            path.display()
        )));
    }
    candle_core::safetensors::load(path, &candle_core::Device::Cpu)
        .map_err(|e| PcmError::bad(path, format!("not a readable safetensors file: {e}")))
}

fn key_err(key: &str, message: impl Into<String>) -> PcmError {
    PcmError::LoraKey {
        key: key.to_string(),
        message: message.into(),
    }
}

/// Splits a LoRA key into (format, module name, part).
fn parse_key(key: &str) -> Result<(LoraFormat, String, Part)> {
    if let Some(rest) = key.strip_prefix("lora_unet_") {
        let (module, part) = rest
            .split_once('.')
            .ok_or_else(|| key_err(key, "kohya key without a `.lora_down/.lora_up/.alpha` part"))?;
        let part = match part {
            "lora_down.weight" => Part::Down,
            "lora_up.weight" => Part::Up,
            "alpha" => Part::Alpha,
            other => return Err(key_err(key, format!("unknown kohya part `{other}`"))),
        };
        return Ok((LoraFormat::Kohya, module.to_string(), part));
    }
    if key.starts_with("lora_te") {
        return Err(key_err(
            key,
            "text-encoder LoRA keys are not supported (only the UNet is merged)",
        ));
    }
    let stripped = key
        .strip_prefix("unet.")
        .or_else(|| key.strip_prefix("base_model.model."))
        .unwrap_or(key);
    for (marker, part) in [(".lora_A", Part::Down), (".lora_B", Part::Up)] {
        if let Some((module, tail)) = stripped.split_once(marker) {
            if tail == ".weight" || tail == ".default.weight" {
                return Ok((LoraFormat::Peft, module.to_string(), part));
            }
            return Err(key_err(
                key,
                format!("unknown peft suffix `{marker}{tail}`"),
            ));
        }
    }
    if let Some(module) = stripped.strip_suffix(".alpha") {
        return Ok((LoraFormat::Peft, module.to_string(), Part::Alpha));
    }
    // Older diffusers layouts: `<path>.lora.down.weight` (LoRACompatibleLinear)
    // and `<attn>.processor.to_q_lora.down.weight` (attention processors).
    for (suffix, part) in [(".down.weight", Part::Down), (".up.weight", Part::Up)] {
        let Some(head) = stripped.strip_suffix(suffix) else {
            continue;
        };
        if let Some(module) = head.strip_suffix(".lora") {
            return Ok((LoraFormat::Peft, module.to_string(), part));
        }
        if let Some((attn, proj)) = head.split_once(".processor.") {
            let target = match proj {
                "to_q_lora" => "to_q",
                "to_k_lora" => "to_k",
                "to_v_lora" => "to_v",
                "to_out_lora" => "to_out.0",
                other => {
                    return Err(key_err(
                        key,
                        format!("unknown attention-processor LoRA `{other}`"),
                    ))
                }
            };
            return Ok((LoraFormat::Peft, format!("{attn}.{target}"), part));
        }
    }
    Err(key_err(
        key,
        "not a kohya (`lora_unet_*.lora_down.weight`) or peft (`*.lora_A.weight`) LoRA key",
    ))
}

/// The kohya module name of a base weight's module path.
fn kohya_name(module_path: &str) -> String {
    module_path.replace('.', "_")
}

fn scalar(t: &Tensor) -> Result<f64> {
    let v = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    match v.as_slice() {
        [x] => Ok(*x),
        _ => Err(PcmError::arg(format!(
            "alpha has {} elements, expected 1",
            v.len()
        ))),
    }
}

/// Shape without trailing 1s (a linear weight and a 1×1 conv compare equal).
fn trim(dims: &[usize]) -> &[usize] {
    let mut n = dims.len();
    while n > 1 && dims[n - 1] == 1 {
        n -= 1;
    }
    &dims[..n]
}

/// `scale · (alpha/rank) · up·down`, shaped like `base`.
pub fn delta(
    base: &Tensor,
    down: &Tensor,
    up: &Tensor,
    alpha: Option<f64>,
    scale: f64,
) -> Result<Tensor> {
    let (bd, dd, ud) = (base.dims(), down.dims(), up.dims());
    let shape_err = || {
        PcmError::arg(format!(
            "LoRA shapes down {dd:?} / up {ud:?} do not fit the weight {bd:?}"
        ))
    };
    let up_is_matrix = ud.len() == 2 || (ud.len() == 4 && ud[2..] == [1, 1]);
    if bd.is_empty() || dd.len() < 2 || !up_is_matrix {
        return Err(shape_err());
    }
    let rank = dd[0];
    let out = bd[0];
    if ud[0] != out || ud[1] != rank || trim(&dd[1..]) != trim(&bd[1..]) {
        return Err(shape_err());
    }
    let cols = down.elem_count() / rank;
    let factor = scale * alpha.unwrap_or(rank as f64) / rank as f64;
    let up = up.to_dtype(DType::F32)?.reshape((out, rank))?;
    let down = down.to_dtype(DType::F32)?.reshape((rank, cols))?;
    let d = (up.matmul(&down)? * factor)?;
    Ok(d.reshape(bd)?)
}

/// Merges `lora` into `weights` (the UNet's tensors by their diffusers names)
/// in place. Base weights are merged in f32 and stored as f32.
pub fn merge(
    weights: &mut HashMap<String, Tensor>,
    lora: &HashMap<String, Tensor>,
    scale: f64,
) -> Result<MergeReport> {
    if lora.is_empty() {
        return Err(PcmError::arg("the LoRA file has no tensors"));
    }
    let mut pairs: BTreeMap<String, Pair> = BTreeMap::new();
    let mut format = None;
    for (key, t) in lora {
        let (f, module, part) = parse_key(key)?;
        if format.is_some_and(|g| g != f) {
            return Err(key_err(key, "the file mixes kohya and peft keys"));
        }
        format = Some(f);
        let p = pairs.entry(module).or_default();
        match part {
            Part::Down => p.down = Some(t.clone()),
            Part::Up => p.up = Some(t.clone()),
            Part::Alpha => p.alpha = Some(scalar(t).map_err(|e| key_err(key, e.to_string()))?),
        }
    }
    let format = format.expect("lora is not empty");
    // Module name → base weight key ("…to_q.weight"); None where two base
    // weights map to the same kohya name (an error only if the LoRA uses it).
    let mut targets: HashMap<String, Option<String>> = HashMap::new();
    for k in weights.keys() {
        if let Some(path) = k.strip_suffix(".weight") {
            let name = match format {
                LoraFormat::Kohya => kohya_name(path),
                LoraFormat::Peft => path.to_string(),
            };
            targets
                .entry(name)
                .and_modify(|t| *t = None)
                .or_insert_with(|| Some(k.clone()));
        }
    }
    let mut ranks = Vec::new();
    let mut merged = 0;
    for (module, p) in &pairs {
        let (down, up) = match (&p.down, &p.up) {
            (Some(d), Some(u)) => (d, u),
            _ => {
                return Err(key_err(
                    module,
                    "needs both a down (A) and an up (B) matrix",
                ))
            }
        };
        let target = match targets.get(module) {
            Some(Some(t)) => t,
            Some(None) => {
                return Err(key_err(
                    module,
                    "ambiguous: several UNet weights have this kohya name",
                ))
            }
            None => return Err(key_err(module, "no such weight in the UNet")),
        };
        let base = &weights[target];
        let d =
            delta(base, down, up, p.alpha, scale).map_err(|e| key_err(module, e.to_string()))?;
        let new = (base.to_dtype(DType::F32)? + d)?;
        weights.insert(target.clone(), new);
        merged += 1;
        if !ranks.contains(&down.dims()[0]) {
            ranks.push(down.dims()[0]);
        }
    }
    ranks.sort_unstable();
    Ok(MergeReport {
        format,
        merged,
        ranks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
    }

    fn vals(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// A linear layer, a 1×1 conv and a 3×3 conv, kohya keys, against
    /// products worked out by hand.
    #[test]
    fn kohya_merge_matches_hand_computation() {
        let mut w = HashMap::new();
        // Linear 2×3, zeros plus one nonzero to see it is added to, not replaced.
        w.insert(
            "blk.to_q.weight".into(),
            t(&[1., 0., 0., 0., 0., 0.], &[2, 3]),
        );
        w.insert("blk.to_q.bias".into(), t(&[5., 5.], &[2]));
        // 1×1 conv 2 → 2.
        w.insert("blk.proj_in.weight".into(), t(&[0.; 4], &[2, 2, 1, 1]));
        // 3×3 conv 1 → 1, zero.
        w.insert("res.conv1.weight".into(), t(&[0.; 9], &[1, 1, 3, 3]));
        let mut l = HashMap::new();
        // Rank 1: up = [1, 2]ᵀ, down = [1, 0, -1], alpha 0.5 → factor 0.5 (× scale 2 = 1).
        l.insert(
            "lora_unet_blk_to_q.lora_up.weight".into(),
            t(&[1., 2.], &[2, 1]),
        );
        l.insert(
            "lora_unet_blk_to_q.lora_down.weight".into(),
            t(&[1., 0., -1.], &[1, 3]),
        );
        l.insert("lora_unet_blk_to_q.alpha".into(), t(&[0.5], &[]));
        // Rank 2, no alpha → factor 1 × scale 2: 2·up·down with up = I, down = [[1,2],[3,4]].
        l.insert(
            "lora_unet_blk_proj_in.lora_up.weight".into(),
            t(&[1., 0., 0., 1.], &[2, 2, 1, 1]),
        );
        l.insert(
            "lora_unet_blk_proj_in.lora_down.weight".into(),
            t(&[1., 2., 3., 4.], &[2, 2, 1, 1]),
        );
        // 3×3, rank 2, alpha 2 → factor 1 × 2: ΔW = 2·(3·A₀ − A₁).
        let a: Vec<f32> = (0..18).map(|i| i as f32).collect();
        l.insert(
            "lora_unet_res_conv1.lora_down.weight".into(),
            t(&a, &[2, 1, 3, 3]),
        );
        l.insert(
            "lora_unet_res_conv1.lora_up.weight".into(),
            t(&[3., -1.], &[1, 2, 1, 1]),
        );
        l.insert("lora_unet_res_conv1.alpha".into(), t(&[2.], &[1]));
        let r = merge(&mut w, &l, 2.0).unwrap();
        assert_eq!(r.format, LoraFormat::Kohya);
        assert_eq!(r.merged, 3);
        assert_eq!(r.ranks, vec![1, 2]);
        // 1 + [1,0,-1; 2,0,-2] at scale·alpha/rank = 2·0.5 = 1.
        assert_eq!(vals(&w["blk.to_q.weight"]), vec![2., 0., -1., 2., 0., -2.]);
        assert_eq!(vals(&w["blk.to_q.bias"]), vec![5., 5.]);
        assert_eq!(vals(&w["blk.proj_in.weight"]), vec![2., 4., 6., 8.]);
        let want: Vec<f32> = (0..9)
            .map(|i| 2.0 * (3.0 * i as f32 - (i + 9) as f32))
            .collect();
        assert_eq!(vals(&w["res.conv1.weight"]), want);
        assert_eq!(w["res.conv1.weight"].dims(), &[1, 1, 3, 3]);
    }

    #[test]
    fn peft_keys_merge_with_alpha_equal_rank() {
        let mut w = HashMap::new();
        w.insert("a.to_k.weight".into(), t(&[0.; 4], &[2, 2]));
        let mut l = HashMap::new();
        l.insert("unet.a.to_k.lora_A.weight".into(), t(&[1., 1.], &[1, 2]));
        l.insert("unet.a.to_k.lora_B.weight".into(), t(&[3., 4.], &[2, 1]));
        let r = merge(&mut w, &l, 0.5).unwrap();
        assert_eq!(r.format, LoraFormat::Peft);
        assert_eq!(vals(&w["a.to_k.weight"]), vec![1.5, 1.5, 2., 2.]);
    }

    #[test]
    fn older_diffusers_layouts() {
        let mut w = HashMap::new();
        w.insert("a.attn1.to_out.0.weight".into(), t(&[0.; 4], &[2, 2]));
        w.insert("a.proj_in.weight".into(), t(&[0.; 4], &[2, 2]));
        let mut l = HashMap::new();
        l.insert(
            "unet.a.attn1.processor.to_out_lora.down.weight".into(),
            t(&[1., 2.], &[1, 2]),
        );
        l.insert(
            "unet.a.attn1.processor.to_out_lora.up.weight".into(),
            t(&[1., 1.], &[2, 1]),
        );
        l.insert(
            "unet.a.proj_in.lora.down.weight".into(),
            t(&[1., 0.], &[1, 2]),
        );
        l.insert(
            "unet.a.proj_in.lora.up.weight".into(),
            t(&[2., 3.], &[2, 1]),
        );
        let r = merge(&mut w, &l, 1.0).unwrap();
        assert_eq!(r.merged, 2);
        assert_eq!(vals(&w["a.attn1.to_out.0.weight"]), vec![1., 2., 1., 2.]);
        assert_eq!(vals(&w["a.proj_in.weight"]), vec![2., 0., 3., 0.]);
        let mut l = HashMap::new();
        l.insert(
            "unet.a.attn1.processor.add_k_proj_lora.down.weight".into(),
            t(&[1., 2.], &[1, 2]),
        );
        let e = merge(&mut w, &l, 1.0).unwrap_err().to_string();
        assert!(e.contains("attention-processor"), "{e}");
    }

    fn err_of(w: &[(&str, Tensor)], l: &[(&str, Tensor)]) -> String {
        let mut w: HashMap<String, Tensor> =
            w.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let l: HashMap<String, Tensor> =
            l.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        merge(&mut w, &l, 1.0).unwrap_err().to_string()
    }

    #[test]
    fn bad_loras_are_clear_errors() {
        let base = [("a.to_k.weight", t(&[0.; 4], &[2, 2]))];
        let down = t(&[1., 1.], &[1, 2]);
        let up = t(&[1., 1.], &[2, 1]);
        let e = err_of(&base, &[("lora_unet_a_to_k.lora_mid.weight", down.clone())]);
        assert!(e.contains("unknown kohya part"), "{e}");
        let e = err_of(
            &base,
            &[("lora_te_text_model_x.lora_down.weight", down.clone())],
        );
        assert!(e.contains("text-encoder"), "{e}");
        let e = err_of(&base, &[("something.else", down.clone())]);
        assert!(e.contains("not a kohya"), "{e}");
        let e = err_of(
            &base,
            &[("lora_unet_a_to_k.lora_down.weight", down.clone())],
        );
        assert!(e.contains("both a down"), "{e}");
        let e = err_of(
            &base,
            &[
                ("lora_unet_a_to_v.lora_down.weight", down.clone()),
                ("lora_unet_a_to_v.lora_up.weight", up.clone()),
            ],
        );
        assert!(e.contains("no such weight"), "{e}");
        let e = err_of(
            &base,
            &[
                (
                    "lora_unet_a_to_k.lora_down.weight",
                    t(&[1., 1., 1.], &[1, 3]),
                ),
                ("lora_unet_a_to_k.lora_up.weight", up.clone()),
            ],
        );
        assert!(e.contains("do not fit"), "{e}");
        let e = err_of(
            &base,
            &[
                ("lora_unet_a_to_k.lora_down.weight", down.clone()),
                ("a.to_k.lora_B.weight", up.clone()),
            ],
        );
        assert!(e.contains("mixes"), "{e}");
        assert!(err_of(&base, &[]).contains("no tensors"));
        // `a.b_c` and `a_b.c` are both `a_b_c` in kohya's naming.
        let two = [
            ("a.b_c.weight", t(&[0.; 4], &[2, 2])),
            ("a_b.c.weight", t(&[0.; 4], &[2, 2])),
        ];
        let pair = [
            ("lora_unet_a_b_c.lora_down.weight", down.clone()),
            ("lora_unet_a_b_c.lora_up.weight", up.clone()),
        ];
        assert!(err_of(&two, &pair).contains("ambiguous"));
    }
}

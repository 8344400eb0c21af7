use super::*;
use crate::params::ParamStore;
use candle_core::{DType, Device, Tensor};

fn tiny(kv_heads: usize) -> (LlamaConfig, ParamStore) {
    let mut c = LlamaConfig::new(97, 32, 2, 4);
    c.n_kv_heads = kv_heads;
    c.ffn_hidden = 64;
    c.max_seq_len = 64;
    let p = ParamStore::init(&c, &Device::Cpu, 7).unwrap();
    (c, p)
}

fn ids(b: usize, t: usize, v: u32, seed: u32) -> Tensor {
    let data: Vec<u32> = (0..b * t)
        .map(|i| (i as u32 * 31 + seed * 17 + 5) % v)
        .collect();
    Tensor::from_vec(data, (b, t), &Device::Cpu).unwrap()
}

/// max |a − b|, NaN when any element is (candle's `max` passes over a NaN).
fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    crate::fused_check::max_abs_gap(a, b).unwrap()
}

/// The trap of data-and-gpu.md: a fused op without backward would leave some
/// parameters with no gradient. Every parameter must get a non-zero one.
#[test]
fn every_parameter_receives_a_gradient() {
    for (kv, precision) in [
        (4, Precision::F32),
        (2, Precision::F32),
        (2, Precision::Bf16),
    ] {
        let (c, p) = tiny(kv);
        let m = Llama::new(&c, &p).unwrap().with_precision(precision);
        let loss = m.loss(&ids(2, 16, 97, 0), &ids(2, 16, 97, 1)).unwrap();
        assert_every_gradient(&p, &loss.backward().unwrap());
    }
}

/// Every parameter of `p` has a finite, non-zero gradient in `grads`.
fn assert_every_gradient(p: &ParamStore, grads: &candle_core::backprop::GradStore) {
    for (name, var) in p.iter() {
        let g = grads
            .get(var)
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let norm = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(norm > 0.0 && norm.is_finite(), "{name}: |g|² = {norm}");
    }
}

#[test]
fn initial_loss_is_near_uniform() {
    let (c, p) = tiny(4);
    let m = Llama::new(&c, &p).unwrap();
    let loss = m.loss(&ids(2, 16, 97, 0), &ids(2, 16, 97, 1)).unwrap();
    let l = loss.to_scalar::<f32>().unwrap();
    assert!((l - (97f32).ln()).abs() < 0.1, "{l}");
}

/// Composite ops equal candle's fused forward kernels.
#[test]
fn composite_ops_match_fused_kernels() {
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1.0, (2, 3, 5, 8), &dev).unwrap();
    let w = Tensor::randn(1f32, 0.1, 8, &dev).unwrap();
    let fused = candle_nn::ops::rms_norm(&x, &w, 1e-5).unwrap();
    assert!(max_abs_diff(&rms_norm(&x, &w, 1e-5).unwrap(), &fused) < 1e-5);
    let cos = Tensor::randn(0f32, 1.0, (5, 4), &dev).unwrap();
    let sin = Tensor::randn(0f32, 1.0, (5, 4), &dev).unwrap();
    let fused = candle_nn::rotary_emb::rope(&x, &cos, &sin).unwrap();
    assert!(max_abs_diff(&rope(&x, &cos, &sin, 0).unwrap(), &fused) < 1e-6);
}

/// Decoding with a KV cache gives the same hidden states as one full pass.
#[test]
fn kv_cache_matches_full_pass() {
    for kv in [4, 1] {
        let (c, p) = tiny(kv);
        let m = Llama::new(&c, &p).unwrap();
        let x = ids(3, 12, 97, 3);
        let full = m.hidden(&x, None).unwrap();
        let mut cache = KvCache::default();
        let a = m
            .hidden(&x.narrow(1, 0, 5).unwrap(), Some(&mut cache))
            .unwrap();
        assert_eq!(cache.len(), 5);
        let b = m
            .hidden(&x.narrow(1, 5, 7).unwrap(), Some(&mut cache))
            .unwrap();
        let joined = Tensor::cat(&[a, b], 1).unwrap();
        assert!(max_abs_diff(&full, &joined) < 1e-5);
    }
}

#[test]
fn target_log_probs_agree_with_loss() {
    let (c, p) = tiny(2);
    let m = Llama::new(&c, &p).unwrap();
    let (x, y) = (ids(2, 10, 97, 4), ids(2, 10, 97, 9));
    let lp = m.target_log_probs(&x, &y, None).unwrap();
    let mean = lp.mean_all().unwrap().to_scalar::<f32>().unwrap();
    let loss = m.loss(&x, &y).unwrap().to_scalar::<f32>().unwrap();
    assert!((mean + loss).abs() < 1e-5);
    assert_eq!(lp.dtype(), DType::F32);
}

#[test]
fn seeded_init_is_reproducible_and_checked_on_load() {
    let (c, p) = tiny(4);
    let q = ParamStore::init(&c, &Device::Cpu, 7).unwrap();
    for (name, v) in p.iter() {
        assert_eq!(
            max_abs_diff(v.as_tensor(), q.get(name).unwrap().as_tensor()),
            0.0
        );
    }
    let mut other = c.clone();
    other.d_model = 64;
    let err = ParamStore::from_tensors(&other, p.tensors(), "test").unwrap_err();
    assert!(err.to_string().contains("different model shape"), "{err}");
    // A weight the config has no place for is an error, not dropped; a
    // buffer is passed over.
    let mut extra = p.tensors();
    let norm = extra["model.norm.weight"].clone();
    extra.insert(
        "model.layers.0.self_attn.q_norm.weight".into(),
        norm.clone(),
    );
    let err = ParamStore::from_tensors(&c, extra.clone(), "test").unwrap_err();
    assert!(err.to_string().contains("q_norm.weight"), "{err}");
    extra.remove("model.layers.0.self_attn.q_norm.weight");
    extra.insert("model.layers.0.self_attn.rotary_emb.inv_freq".into(), norm);
    assert!(ParamStore::from_tensors(&c, extra, "test").is_ok());
}

/// The fused CPU kernels give the same loss and the same gradient for every
/// parameter as the composite candle ops, with attention either as one op
/// (`fused_attention`) or as matmul + fused softmax + matmul.
#[test]
fn fused_kernels_match_composite_ops() {
    for kv in [4, 2] {
        let (c, p) = tiny(kv);
        let mut m = Llama::new(&c, &p).unwrap();
        let (x, y) = (ids(3, 16, 97, 2), ids(3, 16, 97, 5));
        let mut results = Vec::new();
        for (fused, flash) in [(false, false), (true, false), (true, true)] {
            m.set_fused(fused).unwrap();
            m.set_flash_attention(flash);
            let loss = m.loss(&x, &y).unwrap();
            let grads = loss.backward().unwrap();
            let g: Vec<(String, Tensor)> = p
                .iter()
                .map(|(n, v)| (n.clone(), grads.get(v).unwrap().clone()))
                .collect();
            results.push((loss.to_scalar::<f32>().unwrap(), g));
        }
        let (l0, g0) = &results[0];
        for (l1, g1) in &results[1..] {
            assert!((l0 - l1).abs() < 1e-5, "loss {l0} vs {l1}");
            for ((name, a), (_, b)) in g0.iter().zip(g1) {
                let scale = a
                    .abs()
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .max(0)
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                let diff = max_abs_diff(a, b);
                assert!(
                    diff <= 1e-4 * scale.max(1e-3),
                    "{name}: {diff} (scale {scale})"
                );
            }
        }
        // Cached decoding through the fused path matches the full pass too.
        m.set_fused(true).unwrap();
        for flash in [false, true] {
            m.set_flash_attention(flash);
            let full = m.hidden(&x, None).unwrap();
            let mut cache = KvCache::default();
            let a = m
                .hidden(&x.narrow(1, 0, 9).unwrap(), Some(&mut cache))
                .unwrap();
            let b = m
                .hidden(&x.narrow(1, 9, 7).unwrap(), Some(&mut cache))
                .unwrap();
            assert!(max_abs_diff(&full, &Tensor::cat(&[a, b], 1).unwrap()) < 1e-5);
        }
    }
}

/// A detached model computes the same thing without recording a graph, so
/// its activations (and KV caches) do not pin every intermediate.
#[test]
fn detached_model_same_output_no_graph() {
    let (c, p) = tiny(2);
    let m = Llama::new(&c, &p).unwrap();
    let d = m.detached();
    let x = ids(2, 9, 97, 3);
    let (a, b) = (m.forward(&x).unwrap(), d.forward(&x).unwrap());
    assert!(a.track_op());
    assert!(!b.track_op());
    assert_eq!(max_abs_diff(&a, &b), 0.0);
}

/// A Qwen2-style model (q/k/v biases) sharing `tiny(kv)`'s weights, its
/// biases drawn at random (they start at zero).
fn tiny_qwen2(kv: usize, seed: u64) -> (LlamaConfig, ParamStore, ParamStore) {
    let (mut c, p) = tiny(kv);
    c.qkv_bias = true;
    let mut t = p.tensors();
    let zero = ParamStore::init(&c, &Device::Cpu, 7).unwrap();
    for (name, v) in zero.iter() {
        if name.ends_with(".bias") {
            assert_eq!(
                v.as_tensor()
                    .abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap(),
                0.0
            );
            let n = v.as_tensor().dims1().unwrap();
            let r = Tensor::randn(0f32, 0.5, n, &Device::Cpu).unwrap();
            t.insert(name.clone(), (r * (seed as f64 + 1.0)).unwrap());
        }
    }
    let biased = ParamStore::from_tensors(&c, t, "test").unwrap();
    (c, p, biased)
}

#[test]
fn qkv_biases_are_applied_cached_and_trained() {
    let (c0, p0) = tiny(2);
    let plain = Llama::new(&c0, &p0).unwrap();
    let (c, _, p) = tiny_qwen2(2, 0);
    assert_eq!(
        p.numel(),
        p0.numel() + c.n_layers * (c.d_model + 2 * c.kv_dim())
    );
    assert_eq!(c.param_count(), p.numel());
    let m = Llama::new(&c, &p).unwrap();
    let x = ids(2, 12, 97, 5);
    // The biases change the output…
    let with = m.forward(&x).unwrap();
    assert!(max_abs_diff(&with, &plain.forward(&x).unwrap()) > 1e-3);
    // …and zero biases give exactly the bias-free model.
    let mut zero = p.tensors();
    for (k, t) in zero.iter_mut() {
        if k.ends_with(".bias") {
            *t = t.zeros_like().unwrap();
        }
    }
    let z = Llama::new(&c, &ParamStore::from_tensors(&c, zero, "t").unwrap()).unwrap();
    assert!(max_abs_diff(&z.forward(&x).unwrap(), &plain.forward(&x).unwrap()) < 1e-6);
    // Fused and composite paths, and the KV cache, agree with biases.
    let mut unfused = m.clone();
    unfused.set_fused(false).unwrap();
    assert!(max_abs_diff(&with, &unfused.forward(&x).unwrap()) < 1e-4);
    let d = m.detached();
    let full = d.hidden(&x, None).unwrap();
    let mut cache = KvCache::default();
    let a = d
        .hidden(&x.narrow(1, 0, 7).unwrap(), Some(&mut cache))
        .unwrap();
    let b = d
        .hidden(&x.narrow(1, 7, 5).unwrap(), Some(&mut cache))
        .unwrap();
    assert!(max_abs_diff(&full, &Tensor::cat(&[a, b], 1).unwrap()) < 1e-5);
    // Every parameter, the biases included, gets a gradient.
    let loss = m.loss(&x, &ids(2, 12, 97, 6)).unwrap();
    assert_every_gradient(&p, &loss.backward().unwrap());
}

/// Qwen3's shape: per-head q/k norms and heads wider than d / heads. The
/// fused and composite paths and the KV cache agree, the tape steps aside,
/// and every parameter (the norms included) is trained.
#[test]
fn qk_norms_and_wide_heads_run_cached_and_trained() {
    let (mut c, _) = tiny(2);
    c.qk_norm = true;
    c.explicit_head_dim = Some(16);
    assert_eq!((c.head_dim(), c.q_dim()), (16, 64));
    let p = ParamStore::init(&c, &Device::Cpu, 3).unwrap();
    assert_eq!(c.param_count(), p.numel());
    let mut t = p.tensors();
    for (k, v) in t.iter_mut() {
        if k.ends_with("_norm.weight") {
            *v = (v.rand_like(0.5, 1.5).unwrap())
                .to_dtype(DType::F32)
                .unwrap();
        }
    }
    let p = ParamStore::from_tensors(&c, t, "test").unwrap();
    let m = Llama::new(&c, &p).unwrap();
    assert!(!m.tape_covers());
    let x = ids(2, 12, 97, 5);
    let fused = m.forward(&x).unwrap();
    let mut unfused = m.clone();
    unfused.set_fused(false).unwrap();
    assert!(max_abs_diff(&fused, &unfused.forward(&x).unwrap()) < 1e-4);
    let cached = m.detached().logits_in_two_calls(&x, 7).unwrap();
    assert!(max_abs_diff(&fused, &cached) < 1e-4);
    let (loss, grads) = m.loss_and_grads(&x, &ids(2, 12, 97, 6), 1.0).unwrap();
    assert!(loss.to_scalar::<f32>().unwrap().is_finite());
    assert_every_gradient(&p, &grads);
}

/// bf16 matmuls change the numbers by bf16's rounding and no more: logits and
/// gradients stay within bf16 tolerance of f32's, and do differ from them
/// (so the bf16 path really ran).
#[test]
fn bf16_matmuls_stay_within_bf16_tolerance() {
    let (c, p) = tiny(2);
    let (x, y) = (ids(2, 16, 97, 0), ids(2, 16, 97, 1));
    let run = |precision| {
        let m = Llama::new(&c, &p).unwrap().with_precision(precision);
        let logits = m.forward(&x).unwrap();
        let grads = m.loss(&x, &y).unwrap().backward().unwrap();
        (logits, grads)
    };
    let (lf, gf) = run(Precision::F32);
    let (lh, gh) = run(Precision::Bf16);
    let scale = lf.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    let rel = max_abs_diff(&lf, &lh) / scale.to_scalar::<f32>().unwrap();
    assert!(rel > 0.0 && rel < 2e-2, "logits: max rel error {rel}");
    for (name, var) in p.iter() {
        let (a, b) = (gf.get(var).unwrap(), gh.get(var).unwrap());
        let sum = |t: Tensor| t.sum_all().unwrap().to_scalar::<f32>().unwrap();
        let dot = sum((a * b).unwrap());
        let (na, nb) = (sum(a.sqr().unwrap()), sum(b.sqr().unwrap()));
        let cos = dot / (na * nb).sqrt();
        assert!(cos > 0.99, "{name}: gradient cosine {cos}");
    }
}

/// Cosine similarity of two tensors (flattened).
fn cosine(a: &Tensor, b: &Tensor) -> f32 {
    let sum = |t: Tensor| t.sum_all().unwrap().to_scalar::<f32>().unwrap();
    let dot = sum((a * b).unwrap());
    dot / (sum(a.sqr().unwrap()) * sum(b.sqr().unwrap())).sqrt()
}

/// In bf16 the activations between ops are bf16 (the public outputs stay
/// f32), and the fused kernels, which widen, compute in f32 and round once,
/// agree with the composite ops up to bf16 rounding, forward, backward and
/// through a KV cache.
#[test]
fn bf16_activations_fused_match_composite() {
    let (c, p) = tiny(2);
    let mut m = Llama::new(&c, &p).unwrap().with_precision(Precision::Bf16);
    let (x, y) = (ids(3, 16, 97, 2), ids(3, 16, 97, 5));
    assert_eq!(m.hidden_act(&x, None).unwrap().dtype(), DType::BF16);
    assert_eq!(m.hidden(&x, None).unwrap().dtype(), DType::F32);
    assert_eq!(m.forward(&x).unwrap().dtype(), DType::F32);
    let mut runs = Vec::new();
    // Composite ops; fused kernels with matmul + softmax + matmul attention;
    // fused kernels with the one-op attention (bf16 in, f32 inside).
    for (fused, flash) in [(false, false), (true, false), (true, true)] {
        m.set_fused(fused).unwrap();
        m.set_flash_attention(flash);
        let loss = m.loss(&x, &y).unwrap();
        assert_eq!(loss.dtype(), DType::F32);
        let grads = loss.backward().unwrap();
        let g: Vec<Tensor> = p
            .iter()
            .map(|(_, v)| grads.get(v).unwrap().clone())
            .collect();
        runs.push((loss.to_scalar::<f32>().unwrap(), g));
    }
    let (l0, g0) = &runs[0];
    for (l1, g1) in &runs[1..] {
        assert!((l0 - l1).abs() < 5e-3, "loss {l0} vs {l1}");
        for ((name, _), (a, b)) in p.iter().zip(g0.iter().zip(g1)) {
            assert_eq!(b.dtype(), DType::F32, "{name}: master gradients are f32");
            let cos = cosine(a, b);
            assert!(cos > 0.999, "{name}: gradient cosine {cos}");
        }
    }
    for flash in [false, true] {
        m.set_flash_attention(flash);
        let full = m.hidden(&x, None).unwrap();
        let mut cache = KvCache::default();
        let a = m
            .hidden(&x.narrow(1, 0, 9).unwrap(), Some(&mut cache))
            .unwrap();
        assert_eq!(cache.layers[0].0.dtype(), DType::BF16);
        let b = m
            .hidden(&x.narrow(1, 9, 7).unwrap(), Some(&mut cache))
            .unwrap();
        let rel = max_abs_diff(&full, &Tensor::cat(&[a, b], 1).unwrap())
            / full
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
        assert!(rel < 2e-2, "cached vs full (flash {flash}): {rel}");
    }
}

/// Autograd nodes of one transformer block in a training step's graph:
/// candle's backward starts each node's gradient as zeros and adds into it,
/// so every node costs a memset and an add over its tensor. Measured as the
/// difference between a 2- and a 1-layer model's whole-step graph.
fn nodes_per_block(precision: Precision, fused: bool, flash: bool) -> usize {
    let count = |layers: usize| {
        let (mut c, _) = tiny(4);
        c.n_layers = layers;
        let p = ParamStore::init(&c, &Device::Cpu, 7).unwrap();
        let mut m = Llama::new(&c, &p).unwrap().with_precision(precision);
        m.set_fused(fused).unwrap();
        m.set_flash_attention(flash);
        let loss = m.loss(&ids(2, 8, 97, 1), &ids(2, 8, 97, 2)).unwrap();
        loss.sorted_nodes().len()
    };
    count(2) - count(1)
}

/// With the fused kernels a block is 9 nodes plus its 9 weights: two norms,
/// q and k (each rotated in its node), v, attention, the output projection
/// added to the residual, gate and up with SwiGLU, and the down projection
/// added to the residual. The composite ops make it several times larger.
#[test]
fn fused_block_is_one_node_per_layer_op() {
    for precision in [Precision::F32, Precision::Bf16] {
        assert_eq!(nodes_per_block(precision, true, true), 9 + 9, "{precision}");
        let composite = nodes_per_block(precision, false, false);
        eprintln!(
            "{precision}: fused {} matmul-attention {} composite {composite}",
            nodes_per_block(precision, true, true),
            nodes_per_block(precision, true, false)
        );
        assert!(composite > 3 * 9 + 9, "{precision}: composite {composite}");
    }
}

/// Every parameter's gradient from [`Llama::loss_and_grads`] against
/// `loss.backward()`, as `(name, max |difference|, max |gradient|)`.
fn tape_vs_autograd(m: &Llama, p: &ParamStore, scale: f64) -> Vec<(String, f32, f32)> {
    // Repeated tokens: the embedding's gradient sums several rows each.
    let (x, y) = (ids(2, 12, 13, 3), ids(2, 12, 97, 4));
    let (loss, taped) = m.loss_and_grads(&x, &y, scale).unwrap();
    let reference = m.loss(&x, &y).unwrap();
    assert_eq!(
        loss.to_scalar::<f32>().unwrap(),
        reference.to_scalar::<f32>().unwrap()
    );
    let autograd = reference.affine(scale, 0.0).unwrap().backward().unwrap();
    p.iter()
        .map(|(name, var)| {
            let a = autograd
                .get(var)
                .unwrap_or_else(|| panic!("autograd: no {name}"));
            let t = taped.get(var).unwrap_or_else(|| panic!("tape: no {name}"));
            let size = a.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            (
                name.clone(),
                max_abs_diff(t, a),
                size.to_scalar::<f32>().unwrap(),
            )
        })
        .collect()
}

/// The tape's backward gives exactly candle's gradients: every parameter,
/// tied and untied heads, f32 and bf16, with a gradient-accumulation scale.
#[test]
fn tape_backward_is_bit_identical_to_autograd() {
    for (tied, precision, scale) in [
        (true, Precision::F32, 1.0),
        (false, Precision::F32, 0.25),
        (true, Precision::Bf16, 0.5),
        (false, Precision::Bf16, 1.0),
    ] {
        let (mut c, _) = tiny(4);
        c.tie_embeddings = tied;
        let p = ParamStore::init(&c, &Device::Cpu, 11).unwrap();
        let m = Llama::new(&c, &p).unwrap().with_precision(precision);
        assert!(m.tape_covers());
        for (name, diff, size) in tape_vs_autograd(&m, &p, scale) {
            assert!(size > 0.0, "{name}: zero gradient");
            assert_eq!(
                diff, 0.0,
                "{name} (tied {tied}, {precision}): {diff} of {size}"
            );
        }
    }
}

/// Where the graph has ops the tape does not record (grouped-query repeats,
/// q/k/v biases, the composite path) the same call falls back to autograd.
#[test]
fn loss_and_grads_falls_back_off_the_tape() {
    let (c, p) = tiny(2);
    let m = Llama::new(&c, &p).unwrap();
    assert!(!m.tape_covers());
    assert!(tape_vs_autograd(&m, &p, 1.0)
        .iter()
        .all(|(_, d, _)| *d == 0.0));
    let (c, _, p) = tiny_qwen2(4, 5);
    let m = Llama::new(&c, &p).unwrap();
    assert!(!m.tape_covers());
    assert!(tape_vs_autograd(&m, &p, 1.0)
        .iter()
        .all(|(_, d, _)| *d == 0.0));
    let (c, p) = tiny(4);
    assert!(!Llama::new(&c, &p).unwrap().detached().tape_covers());
    let mut m = Llama::new(&c, &p).unwrap();
    m.set_fused(false).unwrap();
    assert!(!m.tape_covers());
    assert!(tape_vs_autograd(&m, &p, 1.0)
        .iter()
        .all(|(_, d, _)| *d == 0.0));
}

/// An op the tape does not know on the gradient path is an error, not a
/// silently missing gradient; a recording does not outlive its call.
#[test]
fn tape_rejects_unrecorded_ops_on_the_path() {
    let (_, p) = tiny(4);
    let w = |n: &str| {
        p.get(&format!("model.layers.0.mlp.{n}_proj.weight"))
            .unwrap()
    };
    let (gate, up, down) = (w("gate"), w("up"), w("down"));
    let linear = |x: &Tensor, w: &candle_core::Var| {
        crate::fused_linear::linear(x, w.as_tensor(), Precision::F32)
    };
    // The same two projections, with and without an op off the tape between.
    let (y, tape) = crate::tape::record(|| linear(&linear(gate.as_tensor(), up)?, down)).unwrap();
    assert_eq!(tape.len(), 2);
    tape.backward(&y, 1.0).unwrap();
    let err = crate::tape::record(|| linear(&(linear(gate.as_tensor(), up)? * 2.0)?, down))
        .err()
        .expect("an op outside the tape must be refused");
    assert!(err.to_string().contains("outside the tape"), "{err}");
    // A result computed off the tape from a recorded one has no gradients.
    let (y, tape) = crate::tape::record(|| linear(gate.as_tensor(), up)?.sum_all()).unwrap();
    let err = tape
        .backward(&y, 1.0)
        .expect_err("an output off the tape must be refused");
    assert!(err.to_string().contains("not the last recorded"), "{err}");
    // The failed recording ended: ops apply (and are tracked) as usual.
    assert!(linear(gate.as_tensor(), up).unwrap().track_op());
}

/// The residual stream's second gradient is added inside the norm's
/// backward (one read of the sum) instead of by a separate add (two reads
/// and a write): what the tape still spends on sums, counted per tensor.
#[test]
fn norm_backward_folds_the_residual_sum() {
    let (c, p) = tiny(4);
    let m = Llama::new(&c, &p).unwrap();
    let (x, y) = (ids(2, 12, 97, 3), ids(2, 12, 97, 4));
    let (_, tape) =
        crate::tape::record(|| m.loss(&x, &y).map_err(crate::ModelError::into_candle)).unwrap();
    // One [2, 12, 32] f32 activation; the tied [97, 32] table.
    let (act, table) = (2 * 12 * 32 * 4, 97 * 32 * 4);
    // Two residual junctions per layer, folded; the attention norm's output
    // feeds q, k and v (two adds per layer); the embedding's rows are added
    // into the tied head's gradient.
    let expected = 2 * 2 * act + 2 * 2 * 3 * act + 3 * table;
    assert_eq!(tape.accumulation_bytes(), expected as u64);
}

/// Under bf16 on the tape every weight is cast once, by a recorded cast
/// that the projection's forward and backward share: one more node per
/// weight matrix (seven per block, and the tied head) than in f32, less the
/// mean node of the f32 CPU head (the bf16 head takes its mean inside).
#[test]
fn bf16_tape_casts_each_weight_once() {
    let (c, p) = tiny(4);
    let (x, y) = (ids(2, 12, 97, 3), ids(2, 12, 97, 4));
    let nodes = |precision| {
        let m = Llama::new(&c, &p).unwrap().with_precision(precision);
        let (_, tape) =
            crate::tape::record(|| m.loss(&x, &y).map_err(crate::ModelError::into_candle)).unwrap();
        tape.len()
    };
    assert_eq!(
        nodes(Precision::Bf16),
        nodes(Precision::F32) + 2 * 7 + 1 - 1
    );
}

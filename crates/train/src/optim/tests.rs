use super::*;
use candle_core::Device;
use frugal_model::LlamaConfig;

/// Two AdamW steps on one weight, computed by hand in f64.
#[test]
fn adamw_matches_hand_computation() {
    let c = LlamaConfig::new(5, 4, 1, 2);
    let params = ParamStore::init(&c, &Device::Cpu, 1).unwrap();
    let name = "model.layers.0.self_attn.q_proj.weight".to_string();
    let norm = "model.norm.weight".to_string();
    let p0: Vec<f32> = params
        .get(&name)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let cfg = AdamWConfig {
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.1,
    };
    let mut opt = AdamW::new(cfg, &params).unwrap();
    let gvals: Vec<Vec<f32>> = vec![
        (0..16).map(|i| (i as f32 - 7.5) * 0.01).collect(),
        (0..16)
            .map(|i| ((i * 7) % 5) as f32 * 0.02 - 0.03)
            .collect(),
    ];
    let lr = 0.01;
    let (mut m, mut v, mut p) = (
        vec![0f64; 16],
        vec![0f64; 16],
        p0.iter().map(|&x| x as f64).collect::<Vec<_>>(),
    );
    for (step, g) in gvals.iter().enumerate() {
        let mut grads = Grads::new();
        for (n, var) in params.iter() {
            grads.insert(n.clone(), var.zeros_like().unwrap());
        }
        grads.insert(
            name.clone(),
            Tensor::from_vec(g.clone(), (4, 4), &Device::Cpu).unwrap(),
        );
        grads.insert(norm.clone(), Tensor::full(0.5f32, 4, &Device::Cpu).unwrap());
        opt.step(&params, &grads, lr).unwrap();
        let t = (step + 1) as i32;
        for i in 0..16 {
            let gi = g[i] as f64;
            p[i] *= 1.0 - lr * 0.1;
            m[i] = 0.9 * m[i] + 0.1 * gi;
            v[i] = 0.95 * v[i] + 0.05 * gi * gi;
            let mhat = m[i] / (1.0 - 0.9f64.powi(t));
            let denom = v[i].sqrt() / (1.0 - 0.95f64.powi(t)).sqrt() + 1e-8;
            p[i] -= lr * mhat / denom;
        }
    }
    let got: Vec<f32> = params
        .get(&name)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    for i in 0..16 {
        assert!(
            (got[i] as f64 - p[i]).abs() < 1e-6,
            "{i}: {} vs {}",
            got[i],
            p[i]
        );
    }
    // The norm weight has no weight decay: two steps of a constant gradient
    // 0.5 move it by exactly lr each (m̂ = g, √v̂ = |g|).
    let w: Vec<f32> = params.get(&norm).unwrap().to_vec1().unwrap();
    for x in w {
        assert!((x as f64 - (1.0 - 2.0 * lr)).abs() < 1e-6, "{x}");
    }
    assert_eq!(opt.step, 2);
}

#[test]
fn clipping_scales_to_max_norm() {
    let mut g = Grads::new();
    g.insert("a".into(), Tensor::new(&[3f32, 0.0], &Device::Cpu).unwrap());
    g.insert("b".into(), Tensor::new(&[4f32], &Device::Cpu).unwrap());
    let norm = clip_grad_norm(&mut g, 1.0).unwrap();
    assert!((norm - 5.0).abs() < 1e-9);
    assert!((global_norm(&g).unwrap() - 1.0).abs() < 1e-5);
    // Below the threshold nothing changes.
    let norm = clip_grad_norm(&mut g, 10.0).unwrap();
    assert!((norm - 1.0).abs() < 1e-5);
    assert!((global_norm(&g).unwrap() - 1.0).abs() < 1e-5);
}

/// Moments are saved in each parameter's shape, and the flat moments that
/// older CPU checkpoints hold still load, to the same values.
#[test]
fn state_is_saved_in_parameter_shapes_and_flat_state_loads() {
    let c = LlamaConfig::new(5, 4, 1, 2);
    let params = ParamStore::init(&c, &Device::Cpu, 1).unwrap();
    let mut opt = AdamW::new(AdamWConfig::default(), &params).unwrap();
    let mut grads = Grads::new();
    for (n, var) in params.iter() {
        grads.insert(
            n.clone(),
            var.ones_like().unwrap().affine(0.1, 0.0).unwrap(),
        );
    }
    opt.step(&params, &grads, 0.01).unwrap();
    let state = opt.state_tensors().unwrap();
    for (name, var) in params.iter() {
        assert_eq!(state[&format!("m.{name}")].dims(), var.dims(), "{name}");
        assert_eq!(state[&format!("v.{name}")].dims(), var.dims(), "{name}");
    }
    let flat: HashMap<String, Tensor> = state
        .iter()
        .map(|(k, t)| (k.clone(), t.flatten_all().unwrap()))
        .collect();
    let mut resumed = AdamW::new(AdamWConfig::default(), &params).unwrap();
    resumed.load_state(flat, 1).unwrap();
    for (k, t) in resumed.state_tensors().unwrap() {
        let want: Vec<f32> = state[&k].flatten_all().unwrap().to_vec1().unwrap();
        let got: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(got, want, "{k}");
    }
    // A moment of the wrong size is refused, naming the key.
    let mut bad = state.clone();
    let key = "m.model.norm.weight".to_string();
    bad.insert(
        key.clone(),
        Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    let err = resumed.load_state(bad, 1).unwrap_err().to_string();
    assert!(err.contains(&key), "{err}");
}

/// The GPU's fused-kernel path (forced here on the CPU, where the kernel's
/// CPU version runs) updates exactly as the host loop does, keeps its moments
/// in the same checkpoint format, and resumes from the host path's state.
#[test]
fn fused_kernel_path_matches_the_host_path() {
    let c = LlamaConfig::new(7, 8, 1, 2);
    let host_params = ParamStore::init(&c, &Device::Cpu, 3).unwrap();
    let fused_params = ParamStore::init(&c, &Device::Cpu, 3).unwrap();
    let cfg = AdamWConfig::default();
    let mut host = AdamW::new(cfg, &host_params).unwrap();
    let mut fused = AdamW::build(cfg, &fused_params, |_| Update::Fused).unwrap();
    assert!(host.fused.is_empty() && fused.host.is_empty() && !fused.fused.is_empty());
    let grads_at = |step: usize| -> Grads {
        let mut g = Grads::new();
        for (i, (n, var)) in host_params.iter().enumerate() {
            let k = (i + 3 * step) as f64 * 0.37;
            let t = var
                .ones_like()
                .unwrap()
                .affine(k.sin() * 0.2, 0.01)
                .unwrap();
            g.insert(n.clone(), t);
        }
        g
    };
    let values = |p: &ParamStore| -> Vec<Vec<f32>> {
        p.iter()
            .map(|(_, v)| v.flatten_all().unwrap().to_vec1().unwrap())
            .collect()
    };
    for step in 0..3 {
        host.step(&host_params, &grads_at(step), 0.01).unwrap();
        fused.step(&fused_params, &grads_at(step), 0.01).unwrap();
        assert_eq!(values(&host_params), values(&fused_params), "step {step}");
    }
    let (hs, fs) = (
        host.state_tensors().unwrap(),
        fused.state_tensors().unwrap(),
    );
    let mut keys: Vec<_> = hs.keys().collect();
    keys.sort();
    for k in keys {
        assert_eq!(hs[k].dims(), fs[k].dims(), "{k}");
        let a: Vec<f32> = hs[k].flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = fs[k].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b, "{k}");
    }
    // A fused optimizer resumed from the host one's checkpoint continues it.
    let mut resumed = AdamW::build(cfg, &fused_params, |_| Update::Fused).unwrap();
    resumed.load_state(hs, host.step).unwrap();
    host.step(&host_params, &grads_at(3), 0.01).unwrap();
    resumed.step(&fused_params, &grads_at(3), 0.01).unwrap();
    assert_eq!(values(&host_params), values(&fused_params));
}

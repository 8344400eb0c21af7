use super::*;
use frugal_model::LlamaConfig;

fn store() -> ParamStore {
    let c = LlamaConfig::new(16, 8, 1, 2);
    ParamStore::init(&c, &Device::Cpu, 0).unwrap()
}

/// Sets every parameter to the constant `v`.
fn fill(p: &ParamStore, v: f32) {
    let map: HashMap<String, Tensor> = p
        .tensors()
        .into_iter()
        .map(|(k, t)| (k, (t.ones_like().unwrap() * v as f64).unwrap()))
        .collect();
    p.copy_from(&map).unwrap();
}

/// Every element of every tensor, which must all be equal.
fn value(m: &HashMap<String, Tensor>) -> f32 {
    let all: Vec<f32> = m
        .values()
        .flat_map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect();
    assert!(all.iter().all(|x| *x == all[0]), "not constant");
    all[0]
}

#[test]
fn swa_windows_by_hand() {
    let p = store();
    let mut swa = Swa::new(SwaSection {
        interval: 2,
        horizon: 4,
    });
    // Steps 1..=8 with params = step: snapshots at 2, 4 (window 1) and 6, 8.
    let mut windows = Vec::new();
    for step in 1..=8u64 {
        fill(&p, step as f32);
        swa.observe(step, &p).unwrap();
        if step == 3 {
            assert_eq!(value(&swa.mean().unwrap().unwrap()), 2.0);
        }
        if let Some(w) = swa.end_window(step).unwrap() {
            windows.push((step, value(&w)));
        }
    }
    assert_eq!(windows, vec![(4, 3.0), (8, 7.0)]);
    assert!(swa.mean().unwrap().is_none(), "window resets");
}

#[test]
fn ema_by_hand() {
    let p = store();
    let mut ema = Ema::new(
        EmaSection {
            decay: 0.5,
            interval: 2,
            start: None,
        },
        3, // warmup: first update at step 4
    );
    for step in 1..=8u64 {
        fill(&p, step as f32);
        ema.observe(step, &p).unwrap();
    }
    // step 4: 4; step 6: .5·4 + .5·6 = 5; step 8: .5·5 + .5·8 = 6.5
    assert_eq!(value(&ema.weights().unwrap()), 6.5);
}

#[test]
fn checkpoint_round_trip_and_combine() {
    let tmp = tempfile::tempdir().unwrap();
    let p = store();
    let cfg = AveragingSection {
        swa: Some(SwaSection {
            interval: 1,
            horizon: 2,
        }),
        ema: Some(EmaSection {
            decay: 0.9,
            interval: 1,
            start: Some(0),
        }),
    };
    let mut a = Averager::new(&cfg, 0);
    for step in 1..=5u64 {
        fill(&p, step as f32);
        a.observe(step, &p).unwrap();
        if let Some(w) = a.swa.as_mut().unwrap().end_window(step).unwrap() {
            save_window(tmp.path(), step, w).unwrap();
        }
    }
    // Windows: (1+2)/2 at 2, (3+4)/2 at 4; step 5 is pending in the window.
    let files = a.checkpoint_files(&Device::Cpu).unwrap();
    let ck = tmp.path().join("ck");
    std::fs::create_dir(&ck).unwrap();
    for (name, m) in files {
        save_safetensors(m, &ck.join(name)).unwrap();
    }
    let mut b = Averager::new(&cfg, 0);
    b.restore(&ck, &Device::Cpu).unwrap();
    assert_eq!(b.swa.as_ref().unwrap().count, 1);
    assert_eq!(
        value(&b.swa.as_ref().unwrap().mean().unwrap().unwrap()),
        5.0
    );
    let (ea, eb) = (
        a.ema.unwrap().weights().unwrap(),
        b.ema.unwrap().weights().unwrap(),
    );
    assert_eq!(value(&ea), value(&eb));
    let both = combine_windows(tmp.path(), 2, None, &Device::Cpu).unwrap();
    assert_eq!(value(&both), 2.5);
    let first = combine_windows(tmp.path(), 1, Some(3), &Device::Cpu).unwrap();
    assert_eq!(value(&first), 1.5);
    assert!(combine_windows(tmp.path(), 3, None, &Device::Cpu).is_err());
}

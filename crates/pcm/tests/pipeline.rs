//! teacher → distil (PCM and LCM) → sample → eval on synthetic 12×12
//! images, plus bit-identical resume of the teacher. Runs in seconds.

use candle_core::{Device, Tensor};
use frugal_model::fused_check::{max_abs_gap, nan_max};
use frugal_pcm::classifier::ClassifierConfig;
use frugal_pcm::data::ImageSet;
use frugal_pcm::distill::{self, DistillConfig, Target};
use frugal_pcm::eval::{self, EvalOptions};
use frugal_pcm::model_dir;
use frugal_pcm::sample::{sample, Sampler};
use frugal_pcm::teacher::{self, TeacherConfig};
use frugal_pcm::unet::UNetConfig;
use std::collections::HashMap;
use std::path::Path;

const S: usize = 12;

/// Class k: a bright horizontal bar on row k (plus a fixed speckle).
fn synthetic(n: usize, offset: usize) -> ImageSet {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let k = (i + offset) % 10;
        for y in 0..S {
            for x in 0..S {
                let bar = y == k + 1 && (1..S - 1).contains(&x);
                let speckle = ((i * 31 + y * 7 + x * 13) % 17) as f32 / 17.0 * 0.2;
                images.push(if bar { 1.0 - speckle } else { -1.0 + speckle });
            }
        }
        labels.push(k as u8);
    }
    ImageSet {
        images,
        labels,
        height: S,
        width: S,
    }
}

fn unet() -> UNetConfig {
    UNetConfig {
        channels: 8,
        groups: 4,
        image_size: S,
        num_classes: 10,
    }
}

fn teacher_cfg(steps: u64) -> TeacherConfig {
    TeacherConfig {
        data: "synthetic".into(),
        unet: unet(),
        steps,
        batch: 8,
        lr: 2e-3,
        warmup: 0,
        log_every: 1,
        checkpoint_every: 5,
        ..TeacherConfig::default()
    }
}

/// The largest |a − b| over tensors matched by name; NaN when any element
/// is (candle's `max_all` and `f32::max` both pass over a NaN).
fn max_gap(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>) -> f32 {
    a.iter()
        .map(|(k, t)| max_abs_gap(t, &b[k]).unwrap())
        .fold(0.0, nan_max)
}

fn losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

#[test]
fn teacher_distill_sample_eval_end_to_end() {
    let dev = Device::Cpu;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let train = synthetic(200, 0);
    let test = synthetic(60, 3);

    // Teacher: 30 steps straight, and 15 + resume to 30: identical weights and metrics.
    let t_dir = root.join("teacher");
    teacher::train(&teacher_cfg(30), &train, &t_dir, &dev, false).unwrap();
    let split = root.join("teacher-split");
    teacher::train(&teacher_cfg(15), &train, &split, &dev, false).unwrap();
    let s = teacher::train(&teacher_cfg(30), &train, &split, &dev, false).unwrap();
    assert_eq!(s.resumed_from, Some(15));
    let a = model_dir::load(&t_dir, &dev).unwrap();
    let b = model_dir::load(&split, &dev).unwrap();
    assert_eq!(a.step, 30);
    assert_eq!(
        max_gap(&a.tensors, &b.tensors),
        0.0,
        "weights differ after resume"
    );
    assert_eq!(
        std::fs::read(t_dir.join("metrics.jsonl")).unwrap(),
        std::fs::read(split.join("metrics.jsonl")).unwrap()
    );
    // The loaded teacher is its EMA (resumed bit-identically above), not the raw weights.
    let (_, ck) = frugal_pcm::ckpt::latest(&t_dir).unwrap().unwrap();
    let raw = frugal_pcm::ckpt::load_file(&ck, "model", &dev).unwrap();
    assert!(
        max_gap(&a.tensors, &raw) > 0.0,
        "the teacher's EMA equals its raw weights"
    );
    // Other settings in the same directory are refused.
    let mut other = teacher_cfg(30);
    other.lr = 1e-3;
    assert!(teacher::train(&other, &train, &split, &dev, false).is_err());
    // The teacher learned something: the loss went down.
    let l = losses(&t_dir);
    assert_eq!(l.len(), 30);
    let head: f64 = l[..5].iter().sum::<f64>() / 5.0;
    let tail: f64 = l[25..].iter().sum::<f64>() / 5.0;
    assert!(tail < head, "teacher loss {head} → {tail}");

    // Students: PCM M = 2 with the online target, LCM with an EMA target.
    let mut pcm = DistillConfig::new(t_dir.clone(), unet(), Some(2));
    pcm.steps = 6;
    pcm.batch = 8;
    pcm.checkpoint_every = 3;
    pcm.w_max = 1.0;
    pcm.adv_weight = 0.1;
    let pcm_dir = root.join("pcm2");
    distill::train(&pcm, &train, &pcm_dir, &dev, false).unwrap();
    let mut lcm = DistillConfig::new(t_dir.clone(), unet(), None);
    lcm.steps = 6;
    lcm.batch = 8;
    lcm.target = Target::Ema { rate: 0.9 };
    let lcm_dir = root.join("lcm");
    distill::train(&lcm, &train, &lcm_dir, &dev, false).unwrap();
    assert!(losses(&pcm_dir).iter().all(|l| l.is_finite()));
    let recs = std::fs::read_to_string(pcm_dir.join("metrics.jsonl")).unwrap();
    assert!(recs.lines().all(|l| l.contains("\"d_loss\"")), "{recs}");
    assert!(pcm_dir
        .join("checkpoints/step-0000006/disc.safetensors")
        .is_file());
    let student = model_dir::load(&pcm_dir, &dev).unwrap();
    assert_eq!(
        (student.kind, student.phases, student.step),
        (model_dir::Kind::Pcm, Some(2), 6)
    );
    // The student started from the teacher and moved away from it.
    let moved = max_gap(&student.tensors, &a.tensors);
    assert!(
        moved > 0.0 && moved < 0.1,
        "student moved {moved} from the teacher"
    );
    // A student cannot be distilled from a student.
    let mut bad = pcm.clone();
    bad.teacher = pcm_dir.clone();
    assert!(distill::train(&bad, &train, &root.join("bad"), &dev, false).is_err());

    // Sampling.
    let imgs = sample(&student.net, Sampler::Pcm, 2, &[0, 1, 2], 0.0, 1, &dev).unwrap();
    assert_eq!(imgs.dims(), &[3, 1, S, S]);
    let png = root.join("grid.png");
    frugal_pcm::png::write_grid(&imgs, 10, &png).unwrap();
    assert_eq!(&std::fs::read(&png).unwrap()[..4], b"\x89PNG");

    // Evaluation.
    let out = root.join("eval");
    let opts = EvalOptions {
        precision: frugal_model::Precision::F32,
        models: vec![t_dir.clone(), pcm_dir.clone(), lcm_dir.clone()],
        steps: vec![1, 2],
        samples: 20,
        batch: 10,
        seed: 0,
        cfg: 0.0,
        teacher_cfg: 1.0,
        reference_steps: 4,
        stochastic_r: vec![0.5],
        classifier: ClassifierConfig {
            steps: 100,
            batch: 32,
            lr: 1e-2,
            c1: 8,
            c2: 8,
            hidden: 16,
            ..Default::default()
        },
        grid: 20,
        progress: false,
        skip_reference: false,
    };
    let train_fn = || -> frugal_pcm::Result<ImageSet> { Ok(synthetic(200, 0)) };
    // A student evaluated before anyone has sampled the teacher's reference:
    // its cells are computed and kept, FIDs against the teacher left blank.
    let early = eval::run(
        &EvalOptions {
            models: vec![pcm_dir.clone()],
            skip_reference: true,
            ..opts.clone()
        },
        "synthetic",
        &train_fn,
        &test,
        &out,
        &dev,
    )
    .unwrap();
    assert_eq!(early.rows.len(), 4);
    assert!(
        early.reference_fid_real.is_none() && early.rows.iter().all(|r| r.fid_teacher.is_none())
    );
    assert!(!out.join("cells/reference.json").exists());
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(
        md.contains("not sampled yet") && md.contains("| pcm2 | pcm | "),
        "{md}"
    );
    let early_cell = out.join("cells/pcm2-pcm-2.json");
    let stamp = std::fs::metadata(&early_cell).unwrap().modified().unwrap();
    let report = eval::run(&opts, "synthetic", &train_fn, &test, &out, &dev).unwrap();
    // The full call samples the reference and reuses the student's cells.
    assert_eq!(
        std::fs::metadata(&early_cell).unwrap().modified().unwrap(),
        stamp
    );
    for e in &early.rows {
        let r = report
            .rows
            .iter()
            .find(|r| r.model == e.model && r.sampler == e.sampler && r.steps == e.steps)
            .unwrap();
        assert_eq!(r.fid_real, e.fid_real);
    }
    assert!(
        report.classifier_accuracy > 0.9,
        "classifier accuracy {}",
        report.classifier_accuracy
    );
    // teacher (ddim) + pcm (pcm, stochastic) + lcm, at 2 step counts.
    assert_eq!(report.rows.len(), 8);
    for r in &report.rows {
        assert!(
            r.fid_real.is_finite()
                && r.fid_teacher.is_some_and(f64::is_finite)
                && r.fid_real >= 0.0,
            "{r:?}"
        );
        assert_eq!(&std::fs::read(out.join(&r.grid)).unwrap()[..4], b"\x89PNG");
    }
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(
        md.contains("| pcm2 | pcm |") && md.contains("| lcm | lcm |"),
        "{md}"
    );
    assert!(md.contains("Generators in f32."), "{md}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["rows"].as_array().unwrap().len(), 8);
    assert_eq!(json["precision"], "f32");
    // A second run reuses the saved classifier.
    let again = eval::run(
        &opts,
        "synthetic",
        &|| -> frugal_pcm::Result<ImageSet> { panic!("classifier should be cached") },
        &test,
        &out,
        &dev,
    )
    .unwrap();
    assert_eq!(again.classifier_accuracy, report.classifier_accuracy);
    // ... and every finished cell: the same table, nothing sampled twice.
    let fids = |r: &eval::Report| -> Vec<(f64, Option<f64>)> {
        r.rows.iter().map(|r| (r.fid_real, r.fid_teacher)).collect()
    };
    assert_eq!(fids(&again), fids(&report));
    assert_eq!(again.reference_fid_real, report.reference_fid_real);
    let cells = out.join("cells");
    assert_eq!(std::fs::read_dir(&cells).unwrap().count(), 1 + 8);
    // A lost cell (an interrupted run) is computed again, to the same numbers.
    std::fs::remove_file(cells.join("pcm2-pcm-2.json")).unwrap();
    std::fs::remove_file(out.join("grids/pcm2-pcm-2.png")).unwrap();
    let resumed = eval::run(&opts, "synthetic", &train_fn, &test, &out, &dev).unwrap();
    assert_eq!(fids(&resumed), fids(&report));
    assert!(cells.join("pcm2-pcm-2.json").exists() && out.join("grids/pcm2-pcm-2.png").exists());
    // Another sampling seed is another evaluation: no cell is reused.
    let reseeded = eval::run(
        &EvalOptions {
            seed: 1,
            ..opts.clone()
        },
        "synthetic",
        &train_fn,
        &test,
        &out,
        &dev,
    )
    .unwrap();
    assert!(fids(&reseeded)
        .iter()
        .zip(fids(&report))
        .all(|(a, b)| a.1 != b.1));
    // ... but not one trained with other settings.
    let mut other = opts.clone();
    other.classifier.steps = 200;
    let err = eval::run(&other, "synthetic", &train_fn, &test, &out, &dev)
        .expect_err("a classifier trained otherwise must be refused");
    assert!(err.to_string().contains("other settings"), "{err}");
}

/// `--dtype bf16`: a teacher and a student train with bf16 convolutions,
/// the precision is part of the run (a resume in f32 is refused), and the
/// bf16 teacher's losses track an f32 teacher's from the same seed.
#[test]
fn bf16_runs_track_f32_and_are_recorded() {
    let dev = Device::Cpu;
    let tmp = tempfile::tempdir().unwrap();
    let train = synthetic(200, 0);
    let (f32_dir, bf16_dir) = (tmp.path().join("f32"), tmp.path().join("bf16"));
    teacher::train(&teacher_cfg(20), &train, &f32_dir, &dev, false).unwrap();
    let mut cfg = teacher_cfg(20);
    cfg.precision = frugal_model::Precision::Bf16;
    teacher::train(&cfg, &train, &bf16_dir, &dev, false).unwrap();
    let run = std::fs::read_to_string(bf16_dir.join("run.json")).unwrap();
    assert!(run.contains("\"precision\": \"bf16\""), "{run}");
    let (a, b) = (losses(&f32_dir), losses(&bf16_dir));
    assert_eq!((a.len(), b.len()), (20, 20));
    assert_ne!(a, b, "bf16 changed nothing");
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() / x)
        .fold(0.0, f64::max);
    eprintln!("bf16 vs f32 teacher loss over 20 steps: max relative gap {worst:.4}");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() < 0.02 * x.max(0.1),
            "step {i}: f32 {x}, bf16 {y}"
        );
    }
    // Resuming the bf16 run in f32 is a clear error.
    let mut f32_cfg = teacher_cfg(30);
    f32_cfg.precision = frugal_model::Precision::F32;
    let err = match teacher::train(&f32_cfg, &train, &bf16_dir, &dev, false) {
        Ok(_) => panic!("a bf16 run resumed in f32"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("other settings"), "{err}");
    // A bf16 student of the f32 teacher.
    let mut pcm = DistillConfig::new(f32_dir.clone(), unet(), Some(2));
    (pcm.steps, pcm.batch) = (3, 8);
    pcm.precision = frugal_model::Precision::Bf16;
    let pcm_dir = tmp.path().join("pcm");
    distill::train(&pcm, &train, &pcm_dir, &dev, false).unwrap();
    assert!(losses(&pcm_dir).iter().all(|l| l.is_finite()));
    let run = std::fs::read_to_string(pcm_dir.join("run.json")).unwrap();
    assert!(run.contains("\"precision\": \"bf16\""), "{run}");
}

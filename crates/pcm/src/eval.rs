//! `frugal pcm eval`: FID of each model at each step count against the real
//! test set and against the teacher's own 50-step DDIM samples (the paper's
//! FID-SD analogue), with features from a classifier trained here.

use crate::cells::{Cell, CellKey, Cells, Reference, Settings};
use crate::classifier::{self, ClassifierConfig};
use crate::data::ImageSet;
use crate::fid::{fid, Stats};
use crate::model_dir::{self, Kind, Loaded};
use crate::sample::{sample_many, Sampler};
use crate::{PcmError, Result};
use candle_core::{Device, Tensor};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A progress bar on stderr, hidden when `show` is false.
pub fn bar(len: u64, label: &str, show: bool) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if !show {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix:>10} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_prefix(label.to_string());
    pb
}

#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub models: Vec<PathBuf>,
    pub steps: Vec<usize>,
    /// Samples per model and step count (and for the teacher reference).
    pub samples: usize,
    pub batch: usize,
    pub seed: u64,
    /// Guidance when sampling students (their training already baked in w).
    pub cfg: f64,
    /// Guidance of the teacher's DDIM (its rows and the reference).
    pub teacher_cfg: f64,
    pub reference_steps: usize,
    /// Extra `pcm-stochastic` rows for PCM students, one per r.
    pub stochastic_r: Vec<f64>,
    pub classifier: ClassifierConfig,
    /// Images in each grid (10 per row, one class per column).
    pub grid: usize,
    pub progress: bool,
    /// The generators' matmul dtype (the classifier always runs in f32, so
    /// FIDs of both dtypes use the same features).
    pub precision: frugal_model::Precision,
    /// Leave the teacher's reference unsampled unless a cached one exists:
    /// this call's cells are computed and saved all the same, their FIDs
    /// against the teacher stay blank until a later call has the reference.
    /// Lets students be evaluated while another process samples it.
    pub skip_reference: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub model: String,
    pub kind: Kind,
    pub phases: Option<usize>,
    pub sampler: String,
    pub steps: usize,
    pub fid_real: f64,
    /// None while the teacher's reference is not sampled (`skip_reference`).
    pub fid_teacher: Option<f64>,
    pub samples: usize,
    pub grid: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub data: String,
    pub classifier_accuracy: f64,
    pub classifier_test_images: usize,
    pub real_test_images: usize,
    pub teacher: String,
    pub reference_steps: usize,
    pub teacher_cfg: f64,
    pub student_cfg: f64,
    pub samples: usize,
    /// FID of the teacher's reference samples against the real test set
    /// (None while they are not sampled).
    pub reference_fid_real: Option<f64>,
    /// The generators' matmul dtype (reports written before it existed: f32).
    #[serde(default)]
    pub precision: frugal_model::Precision,
    pub rows: Vec<Row>,
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// A directory as a cell key: its canonical path, so `runs/t` and
/// `./runs/t` find the same cells.
fn same_path(p: &Path) -> String {
    std::fs::canonicalize(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

/// Runs the evaluation; `train` loads the training set when the classifier
/// has to be trained (it is cached in `OUT/classifier`).
pub fn run(
    opts: &EvalOptions,
    data_name: &str,
    train: &dyn Fn() -> Result<ImageSet>,
    test: &ImageSet,
    out: &Path,
    device: &Device,
) -> Result<Report> {
    if opts.models.is_empty() || opts.steps.is_empty() || opts.samples < 2 {
        return Err(PcmError::arg(
            "eval needs models, step counts and at least 2 samples",
        ));
    }
    std::fs::create_dir_all(out.join("grids")).map_err(|e| PcmError::io(out, e))?;
    let models: Vec<Loaded> = opts
        .models
        .iter()
        .map(|m| Ok(model_dir::load(m, device)?.in_precision(opts.precision)))
        .collect::<Result<_>>()?;

    // The classifier: cached, or trained now on the real training images.
    let (clf, info) = classifier::load_or_train(
        &out.join("classifier"),
        opts.classifier,
        data_name,
        train,
        test,
        device,
        opts.progress,
    )?;
    let fb = opts.batch.max(1);
    let real = Tensor::from_slice(
        &test.images,
        (test.len(), 1, test.height, test.width),
        device,
    )?;
    let real_stats = Stats::of(&clf.features(&real, fb)?)?;

    // The teacher: a listed teacher, else the one the first student names.
    let teacher_dir = models
        .iter()
        .find(|m| m.kind == Kind::Teacher)
        .map(|m| m.dir.clone())
        .or_else(|| models.iter().find_map(|m| m.teacher.clone()))
        .ok_or_else(|| {
            PcmError::arg("no teacher among the models and none recorded by the students")
        })?;
    let teacher = match models.iter().find(|m| m.dir == teacher_dir) {
        Some(_) => None,
        None => Some(model_dir::load(&teacher_dir, device)?.in_precision(opts.precision)),
    };
    let teacher_ref = teacher.as_ref().unwrap_or_else(|| {
        models
            .iter()
            .find(|m| m.dir == teacher_dir)
            .unwrap_or(&models[0])
    });
    let ncls = teacher_ref.net.config.num_classes as u32;
    let classes: Vec<u32> = (0..opts.samples as u32).map(|i| i % ncls).collect();
    let cells = Cells::open(
        out,
        Settings {
            data: data_name.to_string(),
            samples: opts.samples,
            batch: fb,
            seed: opts.seed,
            precision: opts.precision,
            classifier: info.config,
            classifier_accuracy: info.test_accuracy,
            teacher: same_path(&teacher_dir),
            teacher_step: teacher_ref.step,
            reference_steps: opts.reference_steps,
            teacher_cfg: opts.teacher_cfg,
        },
    )?;
    let reference = cells.reference()?;
    let sample_reference = reference.is_none() && !opts.skip_reference;
    let total = (opts.samples as u64)
        * (sample_reference as u64
            + models.len() as u64 * opts.steps.len() as u64 * (1 + opts.stochastic_r.len() as u64));
    let pb = bar(total, "eval", opts.progress);
    let g = opts.grid.min(opts.samples).max(1);
    let reference = match reference {
        Some(r) => Some(r),
        None if !sample_reference => None,
        None => {
            let ref_imgs = sample_many(
                &teacher_ref.net,
                Sampler::Ddim,
                opts.reference_steps,
                &classes,
                opts.teacher_cfg,
                opts.seed ^ 0x5eed,
                fb,
                device,
                |k| pb.inc(k as u64),
            )?;
            let stats = Stats::of(&clf.features(&ref_imgs, fb)?)?;
            crate::png::write_grid(
                &ref_imgs.narrow(0, 0, g)?,
                10,
                &out.join("grids")
                    .join(format!("reference-ddim-{}.png", opts.reference_steps)),
            )?;
            let r = Reference {
                fid_real: fid(&real_stats, &stats)?,
                stats,
            };
            cells.save_reference(&r)?;
            Some(r)
        }
    };
    // FID against the teacher, from a cell's stored feature statistics.
    let vs_teacher = |stats: &Stats| -> Result<Option<f64>> {
        reference.as_ref().map(|r| fid(&r.stats, stats)).transpose()
    };

    let mut rows = Vec::new();
    for m in &models {
        let samplers: Vec<Sampler> = match m.kind {
            Kind::Teacher => vec![Sampler::Ddim],
            Kind::Lcm => vec![Sampler::Lcm],
            Kind::Pcm => std::iter::once(Sampler::Pcm)
                .chain(
                    opts.stochastic_r
                        .iter()
                        .map(|&r| Sampler::PcmStochastic { r }),
                )
                .collect(),
        };
        let cfg = if m.kind == Kind::Teacher {
            opts.teacher_cfg
        } else {
            opts.cfg
        };
        for sampler in samplers {
            for &steps in &opts.steps {
                let name = format!(
                    "{}-{}-{steps}",
                    name_of(&m.dir),
                    sampler.name().replace(['(', ')', '='], "")
                );
                let key = CellKey {
                    model: same_path(&m.dir),
                    step: m.step,
                    sampler: sampler.name(),
                    steps,
                    cfg,
                };
                if let Some(cell) = cells.cell(&name, &key)? {
                    pb.inc(opts.samples as u64);
                    rows.push(Row {
                        fid_teacher: vs_teacher(&cell.stats)?,
                        ..cell.row
                    });
                    continue;
                }
                let imgs = sample_many(
                    &m.net,
                    sampler,
                    steps,
                    &classes,
                    cfg,
                    opts.seed,
                    fb,
                    device,
                    |k| pb.inc(k as u64),
                )?;
                let stats = Stats::of(&clf.features(&imgs, fb)?)?;
                let file = format!("{name}.png");
                crate::png::write_grid(&imgs.narrow(0, 0, g)?, 10, &out.join("grids").join(&file))?;
                let row = Row {
                    model: name_of(&m.dir),
                    kind: m.kind,
                    phases: m.phases,
                    sampler: sampler.name(),
                    steps,
                    fid_real: fid(&real_stats, &stats)?,
                    fid_teacher: None,
                    samples: opts.samples,
                    grid: format!("grids/{file}"),
                };
                let fid_teacher = vs_teacher(&stats)?;
                cells.save_cell(
                    &name,
                    &key,
                    &Cell {
                        row: row.clone(),
                        stats,
                    },
                )?;
                rows.push(Row { fid_teacher, ..row });
            }
        }
    }
    pb.finish_and_clear();
    let report = Report {
        data: data_name.to_string(),
        classifier_accuracy: info.test_accuracy,
        classifier_test_images: info.test_images,
        real_test_images: test.len(),
        teacher: teacher_dir.display().to_string(),
        reference_steps: opts.reference_steps,
        teacher_cfg: opts.teacher_cfg,
        student_cfg: opts.cfg,
        samples: opts.samples,
        reference_fid_real: reference.as_ref().map(|r| r.fid_real),
        precision: opts.precision,
        rows,
    };
    frugal_train::fsutil::write_atomic(
        &out.join("results.json"),
        &serde_json::to_vec_pretty(&report)?,
    )?;
    frugal_train::fsutil::write_atomic(
        &out.join("results.md"),
        markdown(&report, &opts.steps).as_bytes(),
    )?;
    Ok(report)
}

/// Two tables (FID vs real, FID vs teacher), one row per model and sampler,
/// one column per step count.
pub fn markdown(r: &Report, steps: &[usize]) -> String {
    let mut s = format!(
        "# PCM evaluation on {}\n\n{} samples per cell (classes evenly). Features: frugal's CNN classifier \
         (test accuracy {:.2} % on {} images), not Inception: compare numbers within this table only.\n\
         Reference: the teacher's {}-step DDIM samples (cfg {}), FID vs real {}. Student cfg {}. \
         Generators in {}.\n",
        r.data,
        r.samples,
        100.0 * r.classifier_accuracy,
        r.classifier_test_images,
        r.reference_steps,
        r.teacher_cfg,
        r.reference_fid_real
            .map_or("– (not sampled yet)".into(), |f| format!("{f:.2}")),
        r.student_cfg,
        r.precision
    );
    let mut keys: Vec<(String, String)> = Vec::new();
    for row in &r.rows {
        let k = (row.model.clone(), row.sampler.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    for (title, pick) in [
        ("FID vs the real test set", 0),
        ("FID vs the teacher's samples", 1),
    ] {
        s += &format!("\n## {title}\n\n| model | sampler |");
        for st in steps {
            s += &format!(" {st} |");
        }
        s += "\n|---|---|";
        for _ in steps {
            s += "---:|";
        }
        s += "\n";
        for (m, smp) in &keys {
            s += &format!("| {m} | {smp} |");
            for st in steps {
                let v = r
                    .rows
                    .iter()
                    .find(|x| &x.model == m && &x.sampler == smp && x.steps == *st)
                    .and_then(|x| {
                        if pick == 0 {
                            Some(x.fid_real)
                        } else {
                            x.fid_teacher
                        }
                    });
                s += &match v {
                    Some(v) => format!(" {v:.2} |"),
                    None => " – |".into(),
                };
            }
            s += "\n";
        }
    }
    s
}

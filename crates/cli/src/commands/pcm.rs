//! `frugal pcm teacher|distill|sample|eval|classifier` (and `sd15`, in pcm_sd15.rs): Phased Consistency Models on
//! Fashion-MNIST / MNIST. Logic lives in frugal-pcm.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use frugal_pcm::classifier::ClassifierConfig;
use frugal_pcm::data::{self, Source, Split};
use frugal_pcm::distill::{self, DistillConfig, Loss, Target};
use frugal_pcm::eval::{self, EvalOptions};
use frugal_pcm::model_dir::{self, Kind};
use frugal_pcm::sample::{self, Sampler};
use frugal_pcm::teacher::{self, TeacherConfig};
use frugal_pcm::unet::UNetConfig;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum PcmCommand {
    /// Train the class-conditional ε-prediction teacher (resumes if OUT has checkpoints).
    Teacher(TeacherArgs),
    /// Distil a PCM (or, with --method lcm, an LCM) student from a teacher (resumable).
    Distill(DistillArgs),
    /// Sample a grid of images as PNG.
    Sample(SampleArgs),
    /// FID of models at several step counts vs the real test set and the teacher.
    Eval(EvalArgs),
    /// Train eval's FID classifier into EVAL_DIR/classifier ahead of `eval`
    /// (e.g. beside the teacher), so that evaluations started later share it.
    Classifier(ClassifierArgs),
    /// Stable Diffusion 1.5 with a released PCM LoRA merged in (feature `sd15`).
    Sd15(super::pcm_sd15::Sd15Args),
}

/// Where the U-Net runs and its convolutions' matmul dtype.
#[derive(Args)]
pub struct Compute {
    /// cpu, cuda or cuda:N (CUDA needs the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Matmul dtype of the convolutions: f32, or bf16 (autocast-style: f32
    /// weights, norms and loss; on the CPU emulated, so slower, not faster).
    #[arg(long, default_value = "f32", value_name = "f32|bf16")]
    pub dtype: frugal_model::Precision,
}

#[derive(Args)]
pub struct Common {
    /// `fashion-mnist`, `mnist` or a directory of IDX files.
    #[arg(long, default_value = "fashion-mnist")]
    pub data: String,
    /// Use only the first N training images (quick runs).
    #[arg(long)]
    pub max_images: Option<usize>,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Seed of initialisation, data order and noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Steps between log lines.
    #[arg(long, default_value_t = 50)]
    pub log_every: u64,
    /// Steps between checkpoints (a killed run resumes from the last).
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: u64,
    #[command(flatten)]
    pub compute: Compute,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct TeacherArgs {
    #[command(flatten)]
    pub common: Common,
    /// Run directory (re-running resumes it).
    #[arg(long)]
    pub out: PathBuf,
    /// Optimizer steps.
    #[arg(long, default_value_t = 20000)]
    pub steps: u64,
    /// Peak learning rate (AdamW).
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    /// Linear warmup steps.
    #[arg(long, default_value_t = 500)]
    pub warmup: u64,
    /// U-Net channels at full resolution.
    #[arg(long, default_value_t = 32)]
    pub channels: usize,
    /// GroupNorm groups.
    #[arg(long, default_value_t = 8)]
    pub groups: usize,
    /// Probability of replacing the label by the null class (CFG).
    #[arg(long, default_value_t = 0.1)]
    pub label_dropout: f64,
    /// Decay of the weights' EMA, which the teacher samples and is distilled
    /// with (0 = the raw weights).
    #[arg(long, default_value_t = 0.999)]
    pub ema: f64,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum Method {
    Pcm,
    Lcm,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum LossArg {
    Huber,
    L2,
}

#[derive(Args)]
pub struct DistillArgs {
    #[command(flatten)]
    pub common: Common,
    /// The teacher's run directory (`pcm teacher --out`).
    #[arg(long)]
    pub teacher: PathBuf,
    /// Run directory of the student (re-running resumes it).
    #[arg(long)]
    pub out: PathBuf,
    /// pcm (phased) or lcm (one phase, the baseline).
    #[arg(long, value_enum, default_value_t = Method::Pcm)]
    pub method: Method,
    /// Phases M (PCM only).
    #[arg(long, default_value_t = 4)]
    pub phases: usize,
    /// Optimizer steps.
    #[arg(long, default_value_t = 4000)]
    pub steps: u64,
    /// Peak learning rate (AdamW).
    #[arg(long, default_value_t = 5e-5)]
    pub lr: f64,
    /// Linear warmup steps.
    #[arg(long, default_value_t = 100)]
    pub warmup: u64,
    /// Lower end of the CFG weight w drawn per sample, w ~ U[w_min, w_max].
    #[arg(long, default_value_t = 0.0)]
    pub w_min: f64,
    /// Upper end of that range.
    #[arg(long, default_value_t = 0.5)]
    pub w_max: f64,
    /// CFG-free distillation: class → ∅ with probability 0.1, w = 0.
    #[arg(long)]
    pub cfg_free: bool,
    /// Use an EMA of the online weights (this rate) as the target network
    /// instead of the online network under no-grad.
    #[arg(long)]
    pub ema: Option<f64>,
    /// Consistency distance: huber (pseudo-Huber) or l2.
    #[arg(long, value_enum, default_value_t = LossArg::Huber)]
    pub loss: LossArg,
    /// The pseudo-Huber loss's c.
    #[arg(long, default_value_t = 0.001)]
    pub huber_c: f64,
    /// Weight of the adversarial consistency loss (0 = off; the paper uses 0.1).
    #[arg(long, default_value_t = 0.0)]
    pub adv_weight: f64,
    /// Discriminator learning rate.
    #[arg(long, default_value_t = 1e-5)]
    pub disc_lr: f64,
}

#[derive(Args)]
pub struct SampleArgs {
    /// A teacher's or student's run directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Sampling steps.
    #[arg(long, default_value_t = 4)]
    pub steps: usize,
    /// pcm, pcm-stochastic, lcm or ddim (default: the model's own).
    #[arg(long)]
    pub sampler: Option<String>,
    /// r of pcm-stochastic (1 = deterministic, 0 = LCM-like).
    #[arg(long, default_value_t = 0.5)]
    pub r: f64,
    /// Guidance ε(c) + w(ε(c) − ε(∅)); default 0 for students, 1 for a teacher.
    #[arg(long)]
    pub cfg: Option<f64>,
    /// One class for the whole grid (default: one class per column).
    #[arg(long)]
    pub class: Option<u32>,
    /// Images in the grid (10 columns).
    #[arg(long, default_value_t = 100)]
    pub n: usize,
    /// Noise seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// PNG file to write.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub compute: Compute,
}

#[derive(Args)]
pub struct EvalArgs {
    /// Run directories of the models to evaluate (students, or the teacher).
    #[arg(long, required = true, num_args = 1..)]
    pub models: Vec<PathBuf>,
    /// Sampling step counts, e.g. 1,2,4,8,16.
    #[arg(long, default_value = "1,2,4,8,16", value_delimiter = ',')]
    pub steps: Vec<usize>,
    /// The real images (test split for FID; train split for the classifier).
    #[arg(long, default_value = "fashion-mnist")]
    pub data: String,
    /// Images sampled per model and step count.
    #[arg(long, default_value_t = 10000)]
    pub samples: usize,
    /// Images per sampling batch.
    #[arg(long, default_value_t = 250)]
    pub batch: usize,
    /// Noise seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Student guidance at sampling time.
    #[arg(long, default_value_t = 0.0)]
    pub cfg: f64,
    /// Teacher guidance (its rows and the reference samples).
    #[arg(long, default_value_t = 1.0)]
    pub teacher_cfg: f64,
    /// Steps of the teacher's reference samples.
    #[arg(long, default_value_t = 50)]
    pub reference_steps: usize,
    /// Extra pcm-stochastic rows for PCM students, e.g. 0,0.5.
    #[arg(long, value_delimiter = ',')]
    pub stochastic_r: Vec<f64>,
    /// Training steps of the FID classifier, when it is not there yet.
    #[arg(long, default_value_t = 4000)]
    pub classifier_steps: u64,
    /// Do not sample the teacher's reference (unless already cached): this
    /// call's cells are computed and saved, FIDs against the teacher stay
    /// blank until a later eval in OUT has it. For evaluating students while
    /// another process samples the reference.
    #[arg(long)]
    pub no_reference: bool,
    /// Evaluation directory: results.{md,json}, sample grids, the classifier and
    /// each finished cell (re-running reuses them).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub compute: Compute,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct ClassifierArgs {
    /// The real images: trained on the train split, scored on the test split.
    #[arg(long, default_value = "fashion-mnist")]
    pub data: String,
    /// Training steps of the classifier.
    #[arg(long, default_value_t = 4000)]
    pub classifier_steps: u64,
    /// The evaluation directory the classifier is for (`eval --out`).
    #[arg(long)]
    pub out: PathBuf,
    /// cpu, cuda or cuda:N (CUDA needs the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(c: PcmCommand) -> Result<()> {
    match c {
        PcmCommand::Teacher(a) => run_teacher(&a),
        PcmCommand::Distill(a) => run_distill(&a),
        PcmCommand::Sample(a) => run_sample(&a),
        PcmCommand::Eval(a) => run_eval(&a),
        PcmCommand::Classifier(a) => run_classifier(&a),
        PcmCommand::Sd15(a) => super::pcm_sd15::run(&a),
    }
}

fn show(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

fn train_set(c: &Common) -> Result<data::ImageSet> {
    let set =
        data::load(&Source::parse(&c.data), Split::Train).context("loading the training images")?;
    Ok(match c.max_images {
        Some(n) => set.truncate(n),
        None => set,
    })
}

fn run_teacher(a: &TeacherArgs) -> Result<()> {
    let device = crate::device::parse(&a.common.compute.device)?;
    let set = train_set(&a.common)?;
    let cfg = TeacherConfig {
        data: a.common.data.clone(),
        unet: UNetConfig {
            channels: a.channels,
            groups: a.groups,
            image_size: set.height,
            num_classes: 10,
        },
        steps: a.steps,
        batch: a.common.batch,
        lr: a.lr,
        warmup: a.warmup,
        label_dropout: a.label_dropout,
        ema: a.ema,
        seed: a.common.seed,
        log_every: a.common.log_every,
        checkpoint_every: a.common.checkpoint_every,
        precision: a.common.compute.dtype,
        ..TeacherConfig::default()
    };
    let s = teacher::train(&cfg, &set, &a.out, &device, show(a.common.quiet))?;
    if let Some(from) = s.resumed_from {
        eprintln!("resumed from step {from}");
    }
    println!(
        "teacher: {} steps, {}, {}",
        s.step,
        last_loss(s.last_loss),
        a.out.display()
    );
    Ok(())
}

fn run_distill(a: &DistillArgs) -> Result<()> {
    let device = crate::device::parse(&a.common.compute.device)?;
    let teacher = model_dir::load(&a.teacher, &device).context("loading the teacher")?;
    let set = train_set(&a.common)?;
    let phases = (a.method == Method::Pcm).then_some(a.phases);
    let mut cfg = DistillConfig::new(a.teacher.clone(), teacher.net.config, phases);
    cfg.data = a.common.data.clone();
    cfg.steps = a.steps;
    cfg.batch = a.common.batch;
    cfg.lr = a.lr;
    cfg.warmup = a.warmup;
    cfg.w_min = a.w_min;
    cfg.w_max = a.w_max;
    cfg.cfg_free = a.cfg_free;
    cfg.target = match a.ema {
        Some(rate) if (0.0..1.0).contains(&rate) => Target::Ema { rate },
        Some(rate) => bail!("--ema must be in [0, 1), got {rate}"),
        None => Target::Online,
    };
    cfg.loss = match a.loss {
        LossArg::Huber => Loss::Huber { c: a.huber_c },
        LossArg::L2 => Loss::L2,
    };
    if a.adv_weight < 0.0 {
        bail!("--adv-weight must be ≥ 0");
    }
    cfg.adv_weight = a.adv_weight;
    cfg.disc_lr = a.disc_lr;
    cfg.seed = a.common.seed;
    cfg.log_every = a.common.log_every;
    cfg.checkpoint_every = a.common.checkpoint_every;
    cfg.precision = a.common.compute.dtype;
    drop(teacher);
    let s = distill::train(&cfg, &set, &a.out, &device, show(a.common.quiet))?;
    if let Some(from) = s.resumed_from {
        eprintln!("resumed from step {from}");
    }
    println!(
        "distill: {} steps, {}, {}",
        s.step,
        last_loss(s.last_loss),
        a.out.display()
    );
    Ok(())
}

fn run_sample(a: &SampleArgs) -> Result<()> {
    let device = crate::device::parse(&a.compute.device)?;
    let m = model_dir::load(&a.model, &device)?.in_precision(a.compute.dtype);
    let sampler = match &a.sampler {
        Some(s) => Sampler::parse(s, a.r)?,
        None => match m.kind {
            Kind::Teacher => Sampler::Ddim,
            Kind::Pcm => Sampler::Pcm,
            Kind::Lcm => Sampler::Lcm,
        },
    };
    let cfg = a
        .cfg
        .unwrap_or(if m.kind == Kind::Teacher { 1.0 } else { 0.0 });
    let ncls = m.net.config.num_classes as u32;
    let classes: Vec<u32> = match a.class {
        Some(c) if c >= ncls => bail!("--class {c} is out of range (0..{ncls})"),
        Some(c) => vec![c; a.n],
        None => (0..a.n as u32).map(|i| i % ncls).collect(),
    };
    if a.n == 0 {
        bail!("--n must be positive");
    }
    let imgs = sample::sample_many(
        &m.net,
        sampler,
        a.steps,
        &classes,
        cfg,
        a.seed,
        250,
        &device,
        |_| {},
    )?;
    frugal_pcm::png::write_grid(&imgs, 10, &a.out)?;
    println!(
        "{} samples ({}, {} steps, cfg {cfg}) → {}",
        a.n,
        sampler.name(),
        a.steps,
        a.out.display()
    );
    Ok(())
}

fn run_eval(a: &EvalArgs) -> Result<()> {
    let device = crate::device::parse(&a.compute.device)?;
    let source = Source::parse(&a.data);
    let test = data::load(&source, Split::Test).context("loading the test images")?;
    let opts = EvalOptions {
        models: a.models.clone(),
        steps: a.steps.clone(),
        samples: a.samples,
        batch: a.batch,
        seed: a.seed,
        cfg: a.cfg,
        teacher_cfg: a.teacher_cfg,
        reference_steps: a.reference_steps,
        stochastic_r: a.stochastic_r.clone(),
        classifier: ClassifierConfig {
            steps: a.classifier_steps,
            ..ClassifierConfig::default()
        },
        grid: 100,
        progress: show(a.quiet),
        precision: a.compute.dtype,
        skip_reference: a.no_reference,
    };
    let train = || data::load(&source, Split::Train);
    let report = eval::run(&opts, &source.describe(), &train, &test, &a.out, &device)?;
    print!("{}", eval::markdown(&report, &a.steps));
    println!(
        "\nwritten: {}/results.{{md,json}}, grids in {}/grids",
        a.out.display(),
        a.out.display()
    );
    Ok(())
}

fn run_classifier(a: &ClassifierArgs) -> Result<()> {
    let device = crate::device::parse(&a.device)?;
    let source = Source::parse(&a.data);
    let test = data::load(&source, Split::Test).context("loading the test images")?;
    let dir = a.out.join("classifier");
    let config = ClassifierConfig {
        steps: a.classifier_steps,
        ..ClassifierConfig::default()
    };
    let train = || data::load(&source, Split::Train);
    let (_, info) = frugal_pcm::classifier::load_or_train(
        &dir,
        config,
        &source.describe(),
        &train,
        &test,
        &device,
        show(a.quiet),
    )?;
    println!(
        "classifier ({} steps): {:.2} % on {} test images → {}",
        info.config.steps,
        100.0 * info.test_accuracy,
        info.test_images,
        dir.display()
    );
    Ok(())
}

/// `frugal demo`'s PCM section: a tiny teacher on real Fashion-MNIST, a
/// 4-phase PCM distilled from it, a 4-step sample grid. Sized for minutes
/// on 2 CPU cores, so it shows the pipeline working, not PCM's quality.
/// Re-running reuses the finished runs (both loops resume).
pub fn demo(dir: &std::path::Path) -> Result<PathBuf> {
    const TEACHER_STEPS: u64 = 600;
    const DISTILL_STEPS: u64 = 80;
    let t0 = std::time::Instant::now();
    let device = candle_core::Device::Cpu;
    let set = data::load(&Source::parse("fashion-mnist"), Split::Train)
        .context("loading Fashion-MNIST (Debian dataset-fashion-mnist)")?;
    println!(
        "Fashion-MNIST: {} training images of {}×{}",
        set.len(),
        set.height,
        set.width
    );
    let teacher_dir = dir.join("pcm-teacher");
    let cfg = TeacherConfig {
        unet: UNetConfig {
            channels: 8,
            groups: 4,
            image_size: set.height,
            num_classes: 10,
        },
        steps: TEACHER_STEPS,
        batch: 32,
        lr: 1e-3,
        warmup: 20,
        log_every: 50,
        checkpoint_every: TEACHER_STEPS,
        ..TeacherConfig::default()
    };
    let progress = std::io::stderr().is_terminal();
    let s = teacher::train(&cfg, &set, &teacher_dir, &device, progress)?;
    println!(
        "teacher: U-Net with 8 channels, {} steps of batch 32, {} ({:.0} s so far)",
        s.step,
        last_loss(s.last_loss),
        t0.elapsed().as_secs_f64()
    );
    let mut dcfg = DistillConfig::new(teacher_dir.clone(), cfg.unet, Some(4));
    dcfg.steps = DISTILL_STEPS;
    dcfg.batch = 16;
    dcfg.lr = 2e-4;
    dcfg.warmup = 10;
    dcfg.checkpoint_every = DISTILL_STEPS;
    let student_dir = dir.join("pcm-student-4phase");
    let s = distill::train(&dcfg, &set, &student_dir, &device, progress)?;
    println!(
        "PCM: 4 phases (edges {:?}), {} distillation steps, {}",
        frugal_pcm::schedule::phase_edges(4)?,
        s.step,
        last_loss(s.last_loss)
    );
    let student = model_dir::load(&student_dir, &device)?;
    let classes: Vec<u32> = (0..40).map(|i| i % 10).collect();
    let imgs = sample::sample_many(
        &student.net,
        Sampler::Pcm,
        4,
        &classes,
        0.0,
        0,
        40,
        &device,
        |_| {},
    )?;
    let grid = dir.join("pcm-4step-grid.png");
    frugal_pcm::png::write_grid(&imgs, 10, &grid)?;
    println!(
        "4-step PCM samples, one class per column → {} ({:.0} s in all)",
        grid.display(),
        t0.elapsed().as_secs_f64()
    );
    println!(
        "note: a smoke demo — {TEACHER_STEPS} teacher and {DISTILL_STEPS} distillation steps are \
         far too few for good samples; docs/pcm.md has the full run"
    );
    Ok(grid)
}

/// A finished run that is re-opened trains no step and has no loss to show.
fn last_loss(loss: f64) -> String {
    if loss.is_finite() {
        format!("last loss {loss:.5}")
    } else {
        "already complete (no step run)".into()
    }
}

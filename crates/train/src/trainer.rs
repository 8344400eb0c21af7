//! The training loop: deterministic data order, gradient accumulation,
//! clipping, AdamW, periodic evaluation on fixed batches, checkpoints, and
//! resumption from the latest complete checkpoint.

use crate::averaging::{self, Averager};
use crate::checkpoint::{self, TrainState};
use crate::config::TrainConfig;
use crate::fsutil::{create_dir, write_atomic};
use crate::metrics::{MetricsWriter, Record};
use crate::optim::{add_grads, clip_grad_norm, collect_grads, AdamW, AdamWConfig, Grads};
use crate::{Result, TrainError};
use candle_core::{Device, Tensor};
use frugal_data::batch::{fixed_eval_batches, Batch, BatchSampler};
use frugal_data::dataset::Dataset;
use frugal_model::{Llama, LlamaConfig, ParamStore};
use frugal_schedule::Schedule;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const CONFIG_FILE: &str = "config.toml";

/// What a finished (or stopped) run reports.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub steps: u64,
    pub tokens: u64,
    pub final_train_loss: Option<f64>,
    pub final_val_loss: Option<f64>,
    pub resumed_from: Option<u64>,
    pub tokens_per_second: f64,
    pub last_checkpoint: Option<PathBuf>,
}

pub struct Trainer {
    pub cfg: TrainConfig,
    pub run_dir: PathBuf,
    pub model_config: LlamaConfig,
    pub params: ParamStore,
    pub optimizer: AdamW,
    pub schedule: Schedule,
    /// Steps to run in total (the run stops here).
    pub total_steps: u64,
    pub state: TrainState,
    pub device: Device,
    dataset: Dataset,
    sampler: BatchSampler,
    eval_batches: Vec<Batch>,
    resumed_from: Option<u64>,
    /// SWA / EMA of the weights, when the config asks for them.
    pub averager: Averager,
}

impl Trainer {
    /// Opens `run_dir`: a new run, or the continuation of the one there.
    pub fn open(cfg: TrainConfig, run_dir: &Path, device: &Device) -> Result<Self> {
        // Everything that can be checked is checked before the run directory
        // is touched, so a bad config leaves nothing behind.
        let dataset = Dataset::open(&cfg.data.dataset)?;
        let vocab = dataset.meta.vocab_size as usize;
        let model_config = cfg.model_config(vocab)?;
        let schedule = cfg.schedule()?;
        let total_steps = cfg.train.steps;
        create_dir(run_dir)?;
        let config_path = run_dir.join(CONFIG_FILE);
        if config_path.exists() {
            let existing = std::fs::read_to_string(&config_path)
                .map_err(|e| TrainError::io(&config_path, e))?;
            let prior = TrainConfig::from_toml(&existing, &[])?;
            if prior != cfg {
                return Err(TrainError::Config(format!(
                    "{} already holds a run with a different configuration ({}); use another --out to start a new run",
                    run_dir.display(),
                    describe_difference(&prior, &cfg)
                )));
            }
        } else {
            write_atomic(&config_path, cfg.to_toml().as_bytes())?;
        }
        let mut trainer = Self::build(
            cfg,
            run_dir,
            model_config,
            schedule,
            total_steps,
            dataset,
            device,
        )?;
        checkpoint::remove_stale_temporaries(run_dir)?;
        if let Some((step, dir)) = checkpoint::latest(run_dir)? {
            trainer.restore(&dir)?;
            trainer.resumed_from = Some(step);
        }
        Ok(trainer)
    }

    /// Sets up a trainer without touching the run directory's contents.
    pub fn build(
        cfg: TrainConfig,
        run_dir: &Path,
        model_config: LlamaConfig,
        schedule: Schedule,
        total_steps: u64,
        dataset: Dataset,
        device: &Device,
    ) -> Result<Self> {
        let t = &cfg.train;
        let params = ParamStore::init(&model_config, device, t.seed)?;
        let optimizer = AdamW::new(
            AdamWConfig {
                beta1: t.beta1,
                beta2: t.beta2,
                eps: t.eps,
                weight_decay: t.weight_decay,
            },
            &params,
        )?;
        let sampler = BatchSampler::new(dataset.train.len(), t.seq_len, t.batch_size, t.seed)?;
        let eval_batches =
            fixed_eval_batches(&dataset.val, t.seq_len, t.batch_size, cfg.eval.batches)?;
        let state = TrainState::new(model_config.clone(), t.seed);
        let averager = Averager::new(&cfg.averaging, cfg.schedule.warmup_steps);
        Ok(Self {
            averager,
            cfg,
            run_dir: run_dir.to_path_buf(),
            model_config,
            params,
            optimizer,
            schedule,
            total_steps,
            state,
            device: device.clone(),
            dataset,
            sampler,
            eval_batches,
            resumed_from: None,
        })
    }

    /// Loads parameters, optimizer and position from a checkpoint directory.
    pub fn restore(&mut self, dir: &Path) -> Result<()> {
        let loaded = checkpoint::load(dir, &self.device)?;
        if loaded.state.model != self.model_config {
            return Err(TrainError::ckpt(
                dir,
                "was written by a model of a different shape than this config describes",
            ));
        }
        let params =
            ParamStore::from_tensors(&self.model_config, loaded.model, &dir.display().to_string())?;
        self.params.copy_from(&params.tensors())?;
        self.optimizer
            .load_state(loaded.optimizer, loaded.state.step)?;
        self.averager.restore(dir, &self.device)?;
        self.state = loaded.state;
        Ok(())
    }

    pub fn dataset(&self) -> &Dataset {
        &self.dataset
    }

    fn to_tensor(&self, data: &[u32]) -> Result<Tensor> {
        let t = self.cfg.train.seq_len;
        Ok(Tensor::from_slice(data, (data.len() / t, t), &self.device)?)
    }

    /// Mean validation loss over the fixed evaluation batches.
    pub fn evaluate(&self, params: &ParamStore) -> Result<f64> {
        let model =
            Llama::new(&self.model_config, params)?.with_precision(self.cfg.train.precision);
        evaluate(
            &model,
            &self.eval_batches,
            self.cfg.train.seq_len,
            &self.device,
        )
    }

    /// One optimizer step; returns (mean micro-batch loss, grad norm, lr).
    fn train_step(&mut self) -> Result<(f64, f64, f64)> {
        let accum = self.cfg.train.grad_accum;
        let model =
            Llama::new(&self.model_config, &self.params)?.with_precision(self.cfg.train.precision);
        let mut grads = Grads::new();
        let mut loss_sum = 0.0;
        for _ in 0..accum {
            let batch = self
                .sampler
                .batch(&self.dataset.train, self.state.data_cursor)?;
            // The gradients of the mean loss over the accumulated batches.
            let (loss, store) = model.loss_and_grads(
                &self.to_tensor(&batch.inputs)?,
                &self.to_tensor(&batch.targets)?,
                1.0 / accum as f64,
            )?;
            let value = loss.to_scalar::<f32>()?;
            if !value.is_finite() {
                return Err(TrainError::Diverged {
                    step: self.state.step,
                    loss: value,
                });
            }
            loss_sum += value as f64;
            add_grads(&mut grads, collect_grads(&self.params, &store)?)?;
            self.state.data_cursor = batch.next_cursor;
        }
        let norm = clip_grad_norm(&mut grads, self.cfg.train.grad_clip)?;
        let lr = self.cfg.train.lr * self.schedule.multiplier(self.state.step);
        self.optimizer.step(&self.params, &grads, lr)?;
        self.state.step += 1;
        self.state.tokens += self.cfg.tokens_per_step();
        Ok((loss_sum / accum as f64, norm, lr))
    }

    fn is_eval_step(&self, step: u64) -> bool {
        step == self.total_steps
            || (self.cfg.eval.every > 0 && step.is_multiple_of(self.cfg.eval.every))
    }

    fn is_checkpoint_step(&self, step: u64) -> bool {
        step == self.total_steps
            || step.is_multiple_of(self.cfg.checkpoint.every)
            || self.cfg.checkpoint.at.contains(&step)
    }

    /// Writes a checkpoint of the current state (metrics synced first).
    pub fn save_checkpoint(&mut self, metrics: &mut MetricsWriter) -> Result<PathBuf> {
        self.state.metrics_len = metrics.sync()?;
        checkpoint::save(
            &self.run_dir,
            &self.state,
            self.params.tensors(),
            self.optimizer.state_tensors()?,
            self.averager.checkpoint_files(&self.device)?,
        )
    }

    /// Validation loss of a set of averaged weights.
    fn evaluate_weights(
        &self,
        weights: Option<std::collections::HashMap<String, Tensor>>,
    ) -> Result<Option<f64>> {
        let Some(w) = weights else {
            return Ok(None);
        };
        let store = ParamStore::from_tensors(&self.model_config, w, "weight average")?;
        Ok(Some(self.evaluate(&store)?))
    }

    /// Trains until `total_steps`, checkpointing and evaluating on schedule.
    pub fn run(&mut self, show_progress: bool) -> Result<RunSummary> {
        let mut metrics = MetricsWriter::open(&self.run_dir, self.state.metrics_len)?;
        let bar = progress_bar(show_progress, self.total_steps, self.state.step);
        let start = Instant::now();
        let start_tokens = self.state.tokens;
        let mut last = (None, None, None);
        while self.state.step < self.total_steps {
            let (loss, norm, lr) = self.train_step()?;
            let step = self.state.step;
            self.averager.observe(step, &self.params)?;
            let (val, val_swa, val_ema) = if self.is_eval_step(step) {
                let swa = match &self.averager.swa {
                    Some(s) => s.mean()?,
                    None => None,
                };
                let ema = self.averager.ema.as_ref().and_then(|e| e.weights());
                (
                    Some(self.evaluate(&self.params)?),
                    self.evaluate_weights(swa)?,
                    self.evaluate_weights(ema)?,
                )
            } else {
                (None, None, None)
            };
            let log_every = self.cfg.train.log_every.max(1);
            if val.is_some() || step.is_multiple_of(log_every) || step == self.total_steps {
                metrics.write(&Record {
                    step,
                    tokens: self.state.tokens,
                    lr,
                    train_loss: loss,
                    grad_norm: norm,
                    val_loss: val,
                    val_loss_swa: val_swa,
                    val_loss_ema: val_ema,
                })?;
            }
            // A finished SWA window is saved before the checkpoint that
            // forgets it, so a crash in between only re-saves the same bytes.
            if let Some(swa) = &mut self.averager.swa {
                if let Some(mean) = swa.end_window(step)? {
                    averaging::save_window(&self.run_dir, step, mean)?;
                }
            }
            if self.is_checkpoint_step(step) {
                last.2 = Some(self.save_checkpoint(&mut metrics)?);
            }
            last.0 = Some(loss);
            if val.is_some() {
                last.1 = val;
            }
            let secs = start.elapsed().as_secs_f64().max(1e-9);
            let tps = (self.state.tokens - start_tokens) as f64 / secs;
            if let (Some(v), false) = (val, show_progress) {
                // Without a terminal there is no bar: report evaluations as lines.
                tracing::info!(
                    "step {step}/{} | train loss {loss:.4} | val loss {v:.4} | {tps:.0} tok/s",
                    self.total_steps
                );
            }
            bar.set_position(step);
            bar.set_message(format!(
                "loss {loss:.4}{} | {:.0} tok/s",
                last.1.map(|v| format!(" val {v:.4}")).unwrap_or_default(),
                tps
            ));
        }
        bar.finish_and_clear();
        metrics.sync()?;
        let secs = start.elapsed().as_secs_f64().max(1e-9);
        Ok(RunSummary {
            steps: self.state.step,
            tokens: self.state.tokens,
            final_train_loss: last.0,
            final_val_loss: last.1,
            resumed_from: self.resumed_from,
            tokens_per_second: (self.state.tokens - start_tokens) as f64 / secs,
            last_checkpoint: last.2,
        })
    }
}

/// Mean loss of `model` over `batches` of `seq_len`-token sequences.
pub fn evaluate(model: &Llama, batches: &[Batch], seq_len: usize, device: &Device) -> Result<f64> {
    // No graph: nothing here is differentiated, so activations (and the
    // fused head's saved gradient) need not be kept.
    let model = model.detached();
    let mut total = 0.0;
    for b in batches {
        let shape = (b.inputs.len() / seq_len, seq_len);
        let x = Tensor::from_slice(&b.inputs, shape, device)?;
        let y = Tensor::from_slice(&b.targets, shape, device)?;
        total += model.loss(&x, &y)?.to_scalar::<f32>()? as f64;
    }
    Ok(total / batches.len().max(1) as f64)
}

fn progress_bar(show: bool, total: u64, pos: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} step {pos}/{len} [{bar:30}] {msg} | ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_position(pos);
    bar
}

/// Names the first top-level section that differs, for the error message.
fn describe_difference(a: &TrainConfig, b: &TrainConfig) -> String {
    let mut out = Vec::new();
    if a.model != b.model {
        out.push("model");
    }
    if a.data != b.data {
        out.push("data");
    }
    if a.train != b.train {
        out.push("train");
    }
    if a.schedule != b.schedule {
        out.push("schedule");
    }
    if a.eval != b.eval {
        out.push("eval");
    }
    if a.checkpoint != b.checkpoint {
        out.push("checkpoint");
    }
    if a.averaging != b.averaging {
        out.push("averaging");
    }
    format!("sections differ: {}", out.join(", "))
}

use anyhow::Result;
use candle_core::Tensor;
use clap::{Args, Subcommand};
use frugal_model::{Llama, LlamaConfig, ParamStore, Precision};
use frugal_train::optim::{clip_grad_norm, collect_grads, AdamW, AdamWConfig};
use rand::{Rng, SeedableRng};
use std::time::Instant;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Training-step throughput on random tokens; prints one JSON line.
    Train(TrainBenchArgs),
    /// Checks the fused kernels on a device against the CPU kernels (values
    /// and gradients); exits non-zero when any is off.
    Kernels(KernelsArgs),
}

#[derive(Args)]
pub struct KernelsArgs {
    /// The device whose kernels are checked: cuda or cuda:N.
    #[arg(long, default_value = "cuda")]
    pub device: String,
    /// The attention to check: the one-op kernel (what the fused path uses by
    /// default), or matmul + causal softmax + matmul, the fallback that
    /// FRUGAL_FLASH_ATTENTION=0 selects, without the one-op kernel's checks.
    #[arg(long, value_enum, default_value_t = AttentionArg::OneOp)]
    pub attention: AttentionArg,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum AttentionArg {
    OneOp,
    Matmul,
}

#[derive(Args)]
pub struct TrainBenchArgs {
    /// Vocabulary size.
    #[arg(long, default_value_t = 8192)]
    pub vocab: usize,
    /// Model width.
    #[arg(long, default_value_t = 128)]
    pub d_model: usize,
    /// Transformer blocks.
    #[arg(long, default_value_t = 4)]
    pub layers: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    /// Key/value heads, for grouped-query attention (default: --heads).
    #[arg(long)]
    pub kv_heads: Option<usize>,
    /// SwiGLU hidden width (default: 8/3 of --d-model rounded up to 256).
    #[arg(long)]
    pub ffn: Option<usize>,
    /// Sequences per step.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 256)]
    pub seq: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed steps before them.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Seed of the initialisation and of the random tokens.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A separate output head instead of the tied embedding (the 162 M
    /// anchor of data-and-gpu.md is the 124m shape untied).
    #[arg(long)]
    pub untied: bool,
    /// cpu, cuda or cuda:N (CUDA needs the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Matmul dtype: f32, or bf16 (f32 master weights, AdamW state, norms, loss)
    #[arg(long, value_name = "f32|bf16", default_value = "f32")]
    pub dtype: Precision,
}

pub fn run(c: BenchCommand) -> Result<()> {
    match c {
        BenchCommand::Train(a) => train(&a),
        BenchCommand::Kernels(a) => kernels(&a),
    }
}

fn kernels(a: &KernelsArgs) -> Result<()> {
    use frugal_model::fused_check::{check_all, Attention};
    let device = crate::device::parse(&a.device)?;
    let attention = match a.attention {
        AttentionArg::OneOp => Attention::OneOp,
        AttentionArg::Matmul => Attention::Matmul,
    };
    let checks = check_all(&device, attention)?;
    println!("| kernel | forward | gradients | bound | |");
    println!("| --- | ---: | --- | ---: | --- |");
    for c in &checks {
        if let Some(e) = &c.error {
            // One table row: the driver's messages may span lines.
            let e = e.replace('\n', " ").replace('|', "/");
            println!("| {} | error: {e} | | | OFF |", c.name);
            continue;
        }
        let mut grads: Vec<String> = c.grad_gaps.iter().map(|g| format!("{g:.1e}")).collect();
        if grads.is_empty() {
            grads.push("- (no backward)".into());
        }
        let verdict = if c.passed() { "ok" } else { "OFF" };
        println!(
            "| {} | {:.1e} | {} | {:.0e} | {verdict} |",
            c.name,
            c.forward_gap,
            grads.join(", "),
            c.tolerance
        );
    }
    let failed: Vec<_> = checks.iter().filter(|c| !c.passed()).collect();
    if !failed.is_empty() {
        let errored = checks.iter().filter(|c| c.error.is_some()).count();
        if errored > 0 {
            eprintln!(
                "{errored} checks could not run; after an illegal address a CUDA context stays \
                 unusable, so errors after the first may only be its consequence"
            );
        }
        if attention == Attention::OneOp && failed.iter().all(|c| c.uses_one_op_attention()) {
            eprintln!(
                "only the one-op attention and the steps that use it failed: \
                 `frugal bench kernels --attention matmul` checks the fallback \
                 (FRUGAL_CUDA_FUSED=1 FRUGAL_FLASH_ATTENTION=0)"
            );
        }
        anyhow::bail!(
            "{} of {} kernel checks failed on {} (the table's last column): {}",
            failed.len(),
            checks.len(),
            a.device,
            failed
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!(
        "all {} checks within their bounds of the CPU kernels",
        checks.len()
    );
    Ok(())
}

fn train(a: &TrainBenchArgs) -> Result<()> {
    let device = crate::device::parse(&a.device)?;
    let mut c = LlamaConfig::new(a.vocab, a.d_model, a.layers, a.heads);
    c.n_kv_heads = a.kv_heads.unwrap_or(a.heads);
    if let Some(f) = a.ffn {
        c.ffn_hidden = f;
    }
    c.max_seq_len = a.seq;
    c.tie_embeddings = !a.untied;
    let params = ParamStore::init(&c, &device, a.seed)?;
    let mut opt = AdamW::new(AdamWConfig::default(), &params)?;
    // One fixed batch of B×(T+1) random tokens reused every step, as the
    // PyTorch reference (bench/torch_llama.py) does, so the loss falls.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed);
    let n = a.batch * a.seq;
    let tokens: Vec<u32> = (0..a.batch * (a.seq + 1))
        .map(|_| rng.gen_range(0..a.vocab as u32))
        .collect();
    let rows = Tensor::from_vec(tokens, (a.batch, a.seq + 1), &device)?;
    let x = rows.narrow(1, 0, a.seq)?.contiguous()?;
    let y = rows.narrow(1, 1, a.seq)?.contiguous()?;
    let mut times = Vec::new();
    let (mut first, mut last) = (f32::NAN, f32::NAN);
    for i in 0..a.warmup + a.steps {
        let t0 = Instant::now();
        let model = Llama::new(&c, &params)?.with_precision(a.dtype);
        let (loss, store) = model.loss_and_grads(&x, &y, 1.0)?;
        let mut grads = collect_grads(&params, &store)?;
        clip_grad_norm(&mut grads, 1.0)?;
        opt.step(&params, &grads, 1e-3)?;
        // Reading the loss waits for the device, so the step is timed whole.
        let l = loss.to_scalar::<f32>()?;
        if i >= a.warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
        if i == 0 {
            first = l;
        }
        last = l;
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    let out = serde_json::json!({
        "impl": "frugal",
        "params": c.param_count(),
        "tokens_per_s": n as f64 / median,
        "step_ms_median": median * 1e3,
        "loss_first": first,
        "loss_last": last,
        "threads": candle_core::utils::get_num_threads(),
        "device": a.device,
        "dtype": a.dtype.to_string(),
    });
    println!("{out}");
    Ok(())
}

//! `frugal`: a thin command line over the frugal libraries.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod commands;
mod device;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "frugal",
    version,
    about = "Compute-saving training methods on candle"
)]
struct Cli {
    /// CPU threads for tensor ops (default: all cores; set for reproducible timings).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch, list and prepare corpora.
    #[command(subcommand)]
    Data(commands::data::DataCommand),
    /// Train a byte-level BPE tokenizer.
    #[command(subcommand)]
    Tokenizer(commands::tokenizer::TokenizerCommand),
    /// Train a Llama-style model from a TOML config (resumes if RUN_DIR has checkpoints).
    Train(commands::train::TrainArgs),
    /// Branch a cooldown off a run's checkpoint (resumes if OUT has one).
    Cooldown(commands::cooldown::CooldownArgs),
    /// Validation loss and perplexity of a checkpoint.
    Eval(commands::eval::EvalArgs),
    /// Sample text from a checkpoint, or from a GGUF file or Hugging Face model (--model).
    Generate(commands::generate::GenerateArgs),
    /// Export a checkpoint to another format.
    #[command(subcommand)]
    Export(commands::export::ExportCommand),
    /// Fit a Chinchilla scaling law (approaches 3 and 2) to (N, D, loss) points.
    Fit(commands::fit::FitArgs),
    /// Scaling studies: WSD runs with cooldown branches vs cosine grids.
    #[command(subcommand)]
    Study(commands::study::StudyCommand),
    /// ProLong long-dependency scores of documents, and selection by score.
    #[command(subcommand)]
    Prolong(commands::prolong::ProlongCommand),
    /// Phased Consistency Models: teacher, distillation, sampling, FID evaluation.
    #[command(subcommand)]
    Pcm(commands::pcm::PcmCommand),
    /// Micro-benchmarks (training throughput).
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
    /// Fetch the default corpus, train a tokenizer and a tiny model, show what it learned.
    Demo(commands::demo::DemoArgs),
}

/// mimalloc's `mi_option_purge_delay` (index in `mi_option_e`, mimalloc v2).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // Training frees and reallocates the same large activation buffers every
    // step; letting the allocator hand them back to the kernel made 40 % of
    // CPU time go to zeroing fresh pages (perf: clear_page_erms). Keep them.
    // SAFETY: sets a process-wide allocator option before any threads start.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        // candle and rayon read this once, before their thread pools start.
        std::env::set_var("RAYON_NUM_THREADS", n.max(1).to_string());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FRUGAL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,frugal_train=info")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
    if let Err(e) = run(cli.command) {
        // A reader that stopped early (`frugal generate ... | head`) is not
        // an error of ours.
        let broken_pipe = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        });
        if broken_pipe {
            std::process::exit(0);
        }
        eprintln!("error: {}", one_line(&e));
        std::process::exit(1);
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Data(c) => commands::data::run(c),
        Command::Tokenizer(c) => commands::tokenizer::run(c),
        Command::Train(a) => commands::train::run(&a),
        Command::Cooldown(a) => commands::cooldown::run(&a),
        Command::Eval(a) => commands::eval::run(&a),
        Command::Generate(a) => commands::generate::run(&a),
        Command::Export(c) => commands::export::run(c),
        Command::Fit(a) => commands::fit::run(&a),
        Command::Study(c) => commands::study::run(c),
        Command::Prolong(c) => commands::prolong::run(c),
        Command::Pcm(c) => commands::pcm::run(c),
        Command::Bench(c) => commands::bench::run(c),
        Command::Demo(a) => commands::demo::run(&a),
    }
}

/// The error and its causes on one line: "context: cause: cause".
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = without_backtrace(&cause.to_string());
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}

/// candle appends a captured backtrace ("\n   0: frame…") to some errors'
/// messages; a CLI error is the message alone.
fn without_backtrace(s: &str) -> String {
    let frame = |line: &str| {
        let t = line.trim_start();
        t.split_once(':')
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            && t.len() < line.len()
    };
    let lines: Vec<&str> = s.split('\n').collect();
    let end = lines.iter().position(|l| frame(l)).unwrap_or(lines.len());
    lines[..end].join("\n")
}

#[cfg(test)]
mod tests {
    use super::without_backtrace;

    #[test]
    fn backtraces_are_cut_from_messages() {
        let s = "cannot open CUDA device 0: CublasError(X)\n   0: <unknown>\n   1: main\n             at x.rs:3:1";
        assert_eq!(
            without_backtrace(s),
            "cannot open CUDA device 0: CublasError(X)"
        );
        // Text with a colon after a number at the start of a line is kept.
        assert_eq!(without_backtrace("a\n2: b"), "a\n2: b");
        assert_eq!(without_backtrace("plain"), "plain");
    }
}

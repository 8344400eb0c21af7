//! `frugal fit`: fit a Chinchilla scaling law (approaches 3 and 2) to
//! (N, D-or-C, loss) runs and print/write the report. All logic lives in
//! frugal-fit; this only parses arguments and does I/O.

use anyhow::{Context, Result};
use clap::Args;
use frugal_fit::{
    fit_report, load_observations, BootstrapOptions, BootstrapStarts, Columns, ReportOptions,
};
use std::path::PathBuf;

#[derive(Args)]
pub struct FitArgs {
    /// CSV (header row) or JSONL (.jsonl/.ndjson) file of runs.
    #[arg(long)]
    pub data: PathBuf,
    /// Column names for N, D (or compute C) and loss. The middle column is read
    /// as compute when written `C=name`, named `C`, or containing "FLOP"; then
    /// D = C / (6 N). E.g. "Model Size,Training FLOP,loss".
    #[arg(long, default_value = "N,D,loss")]
    pub columns: String,
    /// Drop the K highest-loss runs first (Besiroglu et al. drop 5).
    #[arg(long, default_value_t = 0)]
    pub exclude_top_loss: usize,
    /// Bootstrap resamples for standard errors (0 = none).
    #[arg(long, default_value_t = 0)]
    pub bootstrap: usize,
    /// Write the full report as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seed of the bootstrap resampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: &FitArgs) -> Result<()> {
    let columns = Columns::parse(&args.columns)?;
    let obs = load_observations(&args.data, &columns)?;
    let opts = ReportOptions {
        exclude_top_loss: args.exclude_top_loss,
        bootstrap: (args.bootstrap > 0).then_some(BootstrapOptions {
            resamples: args.bootstrap,
            seed: args.seed,
            starts: BootstrapStarts::Best(4),
        }),
        ..ReportOptions::default()
    };
    let report = fit_report(&obs, &opts)?;
    print!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, report.to_json()? + "\n")
            .with_context(|| format!("writing {}", out.display()))?;
        println!("wrote {}", out.display());
    }
    Ok(())
}

//! Times the full 4500-start approach-3 grid fit on the Chinchilla data.
//!
//!     cargo run -p frugal-fit --release --example grid_timing [-- REPEATS]
//!
//! Prints each run's wall time and the fitted law; the best of the repeats is
//! the number to quote (the first run also pays for rayon's thread start-up).

use std::time::Instant;

use frugal_fit::{exclude_top_loss, fit_approach3, load_observations, Columns, FitOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repeats: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(3);
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/chinchilla_svg_extracted_data.csv"
    );
    let columns = Columns::parse("Model Size,Training FLOP,loss")?;
    let obs = exclude_top_loss(&load_observations(path, &columns)?, 5);
    let opts = FitOptions::default();
    let mut best = f64::INFINITY;
    for run in 1..=repeats {
        let started = Instant::now();
        let fit = fit_approach3(&obs, &opts)?;
        let secs = started.elapsed().as_secs_f64();
        best = best.min(secs);
        println!(
            "run {run}: {secs:.3} s, {} of {} starts converged, objective {:.12e}, {:?}",
            fit.n_converged, fit.n_starts, fit.objective, fit.law
        );
    }
    println!(
        "best {best:.3} s on {} rayon threads",
        rayon::current_num_threads()
    );
    Ok(())
}

use frugal_fit::approach3::{fit_approach3, FitOptions};
use frugal_fit::data::{exclude_top_loss, load_observations, Columns};
fn env(k: &str, d: f64) -> f64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}
fn main() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/chinchilla_svg_extracted_data.csv"
    );
    let obs = load_observations(
        path,
        &Columns::parse("Model Size,Training FLOP,loss").unwrap(),
    )
    .unwrap();
    let obs = exclude_top_loss(&obs, 5);
    let mut o = FitOptions::default();
    o.tol_grad = env("TG", o.tol_grad);
    o.tol_cost = env("TC", o.tol_cost);
    o.memory = env("M", o.memory as f64) as usize;
    let t = std::time::Instant::now();
    let fit = fit_approach3(&obs, &o).unwrap();
    let its: u64 = fit.top.iter().map(|r| r.iterations).sum();
    println!(
        "{:.3}s obj={:.16e} conv={} {:?} {:?} top-iters {}",
        t.elapsed().as_secs_f64(),
        fit.objective,
        fit.n_converged,
        fit.law,
        fit.gradient_norm,
        its
    );
}

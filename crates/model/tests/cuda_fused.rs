//! The CUDA fused kernels against the CPU ones (themselves checked against
//! plain candle ops in `llama::tests`): forward values and every input
//! gradient at training shapes (`frugal_model::fused_check`). Needs a build
//! with `--features cuda` and a GPU; anywhere else it says it is skipped and
//! checks nothing. The same check ships in the binary: `frugal bench kernels
//! --device cuda`.
//!
//!     cargo test -p frugal-model --features cuda --test cuda_fused -- --nocapture

use frugal_model::fused_check::{check_all, Attention};

#[test]
fn cuda_kernels_match_the_cpu_kernels() {
    let gpu = match frugal_model::cuda_device::open_cuda(0) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("skipped: no CUDA device ({e})");
            return;
        }
    };
    let checks = check_all(&gpu, Attention::OneOp).unwrap();
    for c in &checks {
        match &c.error {
            Some(e) => println!("{:<32} error: {e}", c.name),
            None => println!(
                "{:<32} forward {:.2e}  grads {:?}",
                c.name, c.forward_gap, c.grad_gaps
            ),
        }
    }
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.passed())
        .map(|c| c.name.as_str())
        .collect();
    assert!(failed.is_empty(), "over their bound: {failed:?}");
}

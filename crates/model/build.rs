//! With the `cuda` feature, compiles kernels/{fused,attention,attention_tc}.cu
//! to PTX (embedded by src/fused_cuda.rs). Needs `nvcc` on PATH (or `NVCC`); scripts/build-cuda.sh
//! sets that up from pinned PyPI wheels. `CUDA_COMPUTE_CAP` (default 90)
//! picks the virtual architecture.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=kernels/fused.cu");
    println!("cargo:rerun-if-changed=kernels/attention.cu");
    println!("cargo:rerun-if-changed=kernels/attention_tc.cu");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo:rerun-if-env-changed=NVCC");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".into());
    for name in ["fused", "attention", "attention_tc"] {
        let src = format!("kernels/{name}.cu");
        let status = Command::new(&nvcc)
            .args(["--ptx", "-O3", "-std=c++17"])
            .arg(format!("--gpu-architecture=compute_{cap}"))
            .arg("-o")
            .arg(out_dir.join(format!("{name}.ptx")))
            .arg(&src)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => panic!("{nvcc} failed ({s}) on {src}"),
            Err(e) => panic!(
                "cannot run {nvcc}: {e}; the `cuda` feature needs the CUDA toolkit (scripts/build-cuda.sh sets it up)"
            ),
        }
    }
}

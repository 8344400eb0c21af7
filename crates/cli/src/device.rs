//! `--device` parsing shared by every command that runs a model.

use anyhow::{bail, Result};
use candle_core::Device;

/// `cpu`, `cuda` or `cuda:N`; CUDA needs the `cuda` feature and a GPU.
pub fn parse(spec: &str) -> Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = match s.strip_prefix("cuda:") {
                Some(n) => n
                    .parse::<usize>()
                    .map_err(|_| anyhow::anyhow!("invalid device '{s}': expected cuda:N"))?,
                None => 0,
            };
            if !candle_core::utils::cuda_is_available() {
                bail!(
                    "device '{s}' requested but this frugal was built without the `cuda` feature"
                );
            }
            frugal_model::cuda_device::open_cuda(ordinal)
                .map_err(|e| anyhow::anyhow!("cannot open CUDA device {ordinal}: {e}"))
        }
        other => bail!("unknown device '{other}' (expected cpu, cuda or cuda:N)"),
    }
}

//! A Llama-style decoder on candle, written to be trained as well as run.
//!
//! * [`config`]: the architecture as data, presets, parameter counts.
//! * [`cuda_device`]: a CUDA device opened with the memory pool and event
//!   settings a training step wants.
//! * [`flops`]: exact FLOPs per token as pure functions.
//! * [`params`]: named parameters (candle `Var`s), seeded init, safetensors I/O.
//! * [`precision`]: f32 or autocast-style bf16 matmuls.
//! * [`llama`]: the model itself — every op differentiable (candle's fused
//!   `rms_norm`/`softmax_last_dim` have no backward and are not used here).
//! * [`fused`], [`fused_adamw`], [`fused_attention`], [`fused_head`] ([`fastexp`]):
//!   fused kernels with CPU and CUDA versions.
//! * [`fused_linear`]: projections (and the residual adds around them) as one
//!   autograd node each, over candle's own matmul on any device.
//! * [`fused_block`]: q/k with their rotary embedding, and the MLP's gate and
//!   up projections with SwiGLU, as one node each.
//! * [`tape`]: the training step's backward without candle's zero-fill + add
//!   per node ([`Llama::loss_and_grads`]).
//! * [`rope`]: RoPE frequencies, plain or Llama 3.1-scaled, as pure functions.
//! * [`hf`]: Hugging Face `config.json` for export.
//! * [`gguf`]: llama.cpp GGUF files, dequantised to f32 under HF names.
//! * [`gguf_export`]: the inverse, a model written as a llama.cpp GGUF file.

pub mod config;
pub mod cuda_device;
pub mod error;
pub mod fastexp;
pub mod flops;
pub mod fused;
pub mod fused_adamw;
pub mod fused_attention;
pub mod fused_block;
pub mod fused_check;
#[cfg(feature = "cuda")]
mod fused_cuda;
pub mod fused_head;
pub mod fused_linear;
pub mod gguf;
pub mod gguf_export;
pub mod hf;
pub mod llama;
pub mod params;
pub mod precision;
pub mod presets;
pub mod rope;
mod small_gemm;
pub mod tape;

pub use config::LlamaConfig;
pub use error::ModelError;
pub use llama::Llama;
pub use params::ParamStore;
pub use precision::Precision;

pub type Result<T> = std::result::Result<T, ModelError>;

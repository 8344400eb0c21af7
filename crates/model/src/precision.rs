//! Mixed precision as PyTorch's autocast does it: weights, optimizer state,
//! the residual stream, reductions and the loss stay in f32; the matmuls
//! (projections, both attention products, the output head) run in bf16, and
//! the activations between them are stored in bf16. Every fused kernel
//! (norm, softmax, SwiGLU, RoPE, cross-entropy) computes in f32 on the
//! widened values and rounds its output once.

use crate::Result;
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

/// The dtype the matmuls compute in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" => Ok(Self::F32),
            "bf16" => Ok(Self::Bf16),
            other => Err(format!("unknown dtype '{other}' (expected f32 or bf16)")),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
        })
    }
}

/// Rounds an f32 tensor to the nearest bf16 value, keeping dtype f32. The
/// casts have backward passes, so gradients flow (rounded the same way).
fn round_bf16(t: &Tensor) -> Result<Tensor> {
    Ok(t.to_dtype(DType::BF16)?.to_dtype(DType::F32)?)
}

impl Precision {
    /// The dtype activations are stored in between ops.
    pub fn activation_dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
        }
    }

    /// A weight as a matmul operand: cast to bf16 once, before any transpose
    /// (a contiguous cast), on a GPU in bf16; unchanged otherwise.
    pub fn weight(self, w: &Tensor) -> Result<Tensor> {
        match self {
            Self::Bf16 if !w.device().is_cpu() => Ok(w.to_dtype(DType::BF16)?),
            _ => Ok(w.clone()),
        }
    }

    /// `a · b` with the product in [`Precision::activation_dtype`]; operands
    /// are activations (f32 or bf16) or f32 weights. In bf16 on a GPU this is
    /// one cuBLAS bf16 GEMM (f32 accumulation, bf16 result). candle's CPU
    /// GEMM has no bf16 kernel, so on the CPU it is emulated exactly: f32
    /// operands rounded to bf16, bf16 ones widened, an f32 product rounded
    /// to bf16. Gradients flow through the casts and are rounded the same way.
    pub fn matmul_act(self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        match self {
            Self::F32 => Ok(a.matmul(b)?),
            Self::Bf16 if a.device().is_cpu() => {
                let widen = |t: &Tensor| -> Result<Tensor> {
                    match t.dtype() {
                        DType::BF16 => Ok(t.to_dtype(DType::F32)?),
                        _ => round_bf16(t),
                    }
                };
                Ok(widen(a)?.matmul(&widen(b)?)?.to_dtype(DType::BF16)?)
            }
            Self::Bf16 => Ok(a.to_dtype(DType::BF16)?.matmul(&b.to_dtype(DType::BF16)?)?),
        }
    }

    /// `a · b` of f32 tensors, returning f32. In bf16 the inputs are cast to
    /// bf16 and the product accumulates in f32 and is rounded to bf16, as a
    /// tensor-core GEMM does. candle's CPU GEMM has no bf16 kernel, so on the
    /// CPU that is emulated exactly: round the inputs, multiply in f32,
    /// round the output. The numbers match the GPU path up to summation order.
    pub fn matmul(self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        Ok(self.matmul_act(a, b)?.to_dtype(DType::F32)?)
    }
}

impl Precision {
    /// [`Precision::matmul`] with the batch dimensions broadcast (a weight
    /// matrix against a batch of inputs, as a convolution written as a
    /// matmul does).
    pub fn broadcast_matmul(self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        match self {
            Self::F32 => Ok(a.broadcast_matmul(b)?),
            Self::Bf16 if a.device().is_cpu() => {
                round_bf16(&round_bf16(a)?.broadcast_matmul(&round_bf16(b)?)?)
            }
            Self::Bf16 => Ok(a
                .to_dtype(DType::BF16)?
                .broadcast_matmul(&b.to_dtype(DType::BF16)?)?
                .to_dtype(DType::F32)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn parses_and_prints() {
        for p in [Precision::F32, Precision::Bf16] {
            assert_eq!(p.to_string().parse::<Precision>().unwrap(), p);
        }
        let e = "fp16".parse::<Precision>().unwrap_err();
        assert!(e.contains("fp16") && e.contains("bf16"), "{e}");
    }

    #[test]
    fn bf16_matmul_rounds_inputs_and_output() {
        // 1 + 2^-10 is not a bf16 value (8 mantissa bits): it rounds to 1.
        let a = Tensor::new(&[[1.0f32 + 1.0 / 1024.0, 3.0]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[[1.0f32], [1.0 / 3.0]], &Device::Cpu).unwrap();
        let f = Precision::F32
            .matmul(&a, &b)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()[0][0];
        let h = Precision::Bf16
            .matmul(&a, &b)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()[0][0];
        // By hand: bf16(1/3) = 0.333984375, 3 · that = 1.001953125, plus 1 =
        // 2.001953125, which bf16 (step 2^-6 in [2, 4)) rounds to 2.0.
        assert!((f - (2.0 + 1.0 / 1024.0)).abs() < 1e-6, "{f}");
        assert_eq!(h, 2.0);
        // Broadcast over a batch: the same rounding in every batch entry.
        let bb = Tensor::stack(&[&b, &b], 0).unwrap();
        let hb = Precision::Bf16.broadcast_matmul(&a, &bb).unwrap();
        assert_eq!(
            hb.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [2.0, 2.0]
        );
        let fb = Precision::F32.broadcast_matmul(&a, &bb).unwrap();
        assert_eq!(fb.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [f, f]);
    }
}

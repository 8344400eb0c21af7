//! Helpers shared by the unit tests' parity checks.

use candle_core::Tensor;
use frugal_model::fused_check::nan_max;

/// max |t| over all elements (the scale a tolerance is relative to); NaN
/// when any element is, so that a gap of garbage fails every bound (candle's
/// `max_all`, like `f32::max`, can pass over a NaN).
pub fn max_abs(t: &Tensor) -> f32 {
    let v = t.flatten_all().unwrap().to_dtype(candle_core::DType::F32);
    let v = v.unwrap().to_vec1::<f32>().unwrap();
    v.iter().map(|x| x.abs()).fold(0f32, nan_max)
}

/// max |a − b| over all elements, NaN when any is.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    frugal_model::fused_check::max_abs_gap(a, b).unwrap()
}

/// (max |a − b|, max |a|): a gap and the scale a relative tolerance uses.
pub fn diff_and_scale(a: &Tensor, b: &Tensor) -> (f32, f32) {
    (max_abs_diff(a, b), max_abs(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nan_anywhere_makes_the_gap_nan() {
        let a = Tensor::new(&[1f32, 2.0, 3.0], &candle_core::Device::Cpu).unwrap();
        let b = Tensor::new(&[1f32, f32::NAN, 3.5], &candle_core::Device::Cpu).unwrap();
        assert_eq!(max_abs_diff(&a, &a), 0.0);
        assert!(max_abs_diff(&a, &b).is_nan());
        assert!(max_abs_diff(&b, &a).is_nan());
        assert_eq!(max_abs(&a.neg().unwrap()), 3.0);
    }
}

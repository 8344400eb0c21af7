//! Helpers shared by the unit tests' parity checks.

use candle_core::Tensor;

/// max |t| over all elements (the scale a tolerance is relative to).
pub fn max_abs(t: &Tensor) -> f32 {
    t.abs().unwrap().max_all().unwrap().to_scalar().unwrap()
}

/// max |a − b| over all elements.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    max_abs(&(a - b).unwrap())
}

/// (max |a − b|, max |a|): a gap and the scale a relative tolerance uses.
pub fn diff_and_scale(a: &Tensor, b: &Tensor) -> (f32, f32) {
    (max_abs_diff(a, b), max_abs(a))
}

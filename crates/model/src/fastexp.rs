//! A branch-free f32 `exp` for the fused CPU kernels' inner loops.
//!
//! libm's `expf` is an opaque call, so a loop over a row that calls it runs
//! one element at a time; at the 1m model's size, `expf` was 17 % of a CPU
//! training step (`perf record`), mostly the cross-entropy over an 8 192-word
//! vocabulary. This version is plain arithmetic and bit operations that the
//! compiler inlines and vectorises, with Cephes' `expf` polynomial (relative
//! error about 1e-7; the test below compares it with std on a dense grid).
//! Loops that use it keep their sums in separate passes, since a running f32
//! sum cannot be vectorised without reordering it.

/// 1.5·2²³: adding it rounds an f32 of magnitude < 2²² to an integer.
const ROUND: f32 = 12_582_912.0;
/// ln 2 as Cephes splits it: `k·LN2_HI` is exact for the k met here.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Below this e^x is subnormal (ln of f32::MIN_POSITIVE); 0 is returned.
const MIN_X: f32 = -87.336_55;
/// e^88 ≈ 1.65e38 stands in for overflow (inputs here are ≤ 0 after the
/// row maximum is subtracted, or −a in a sigmoid, where it gives 0 anyway).
const MAX_X: f32 = 88.0;

/// e^x; NaN propagates (through `e_r`).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let underflow = x < MIN_X;
    // Comparisons rather than `clamp`, whose NaN handling blocks vectorising.
    let x = if x > MAX_X { MAX_X } else { x };
    let x = if x < MIN_X { MIN_X } else { x };
    // x = k·ln 2 + r, |r| ≤ ln 2 / 2.
    let rounded = x * std::f32::consts::LOG2_E + ROUND;
    let k = rounded - ROUND;
    let r = x - k * LN2_HI - k * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes: 5.0000001e-1, which is 0.5 in f32
    let e_r = p * r * r + r + 1.0;
    // 2^k from k's integer bits, which the rounding left at the bottom of
    // `rounded`'s mantissa (`k as i32` would be a saturating, scalar cast).
    let k_int = rounded.to_bits().wrapping_sub(ROUND.to_bits());
    let two_k = f32::from_bits(k_int.wrapping_add(127) << 23);
    if underflow {
        0.0
    } else {
        e_r * two_k
    }
}

/// Σ x with eight independent partial sums (vectorises; see the module doc).
pub fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for l in 0..8 {
            acc[l] += c[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y[j] = e^(x[j] − shift)` for every j, returning Σ y.
pub fn exp_shifted(x: &[f32], shift: f32, y: &mut [f32]) -> f32 {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = exp(x - shift);
    }
    sum(&y[..x.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Within 2e-7 relative of std's exp from the underflow bound to 88, on
    /// a grid of 2 million points (the range softmax, cross-entropy and SiLU
    /// use); 0 below it, NaN for NaN.
    #[test]
    fn matches_std_exp() {
        let n = 2_000_000;
        let mut worst = 0f64;
        for i in 0..=n {
            let x = MIN_X + (MAX_X - MIN_X) * i as f32 / n as f32;
            let want = (x as f64).exp();
            let rel = ((exp(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 2e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn exp_shifted_sums_what_it_writes() {
        let x: Vec<f32> = (0..37).map(|i| i as f32 * 0.1 - 2.0).collect();
        let mut y = vec![0f32; 37];
        let s = exp_shifted(&x, 1.5, &mut y);
        let want: f64 = x.iter().map(|&v| ((v - 1.5) as f64).exp()).sum();
        assert!(((s as f64 - want) / want).abs() < 1e-6);
        assert!((y[3] as f64 - ((x[3] - 1.5) as f64).exp()).abs() < 1e-7);
    }
}

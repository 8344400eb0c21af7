//! Branch-free `exp` and `ln` for the objective's inner loop.
//!
//! The grid fit evaluates ~10^6 objectives of ~240 points, each needing three
//! exponentials and a logarithm. libm's `exp`/`ln` are opaque calls (~18 ns
//! each on the 2-core CI machine), which made the 4500-start grid take ~8 s.
//! These versions are plain arithmetic and bit operations on f64/u64 that the
//! compiler inlines and vectorises (SSE2 on baseline x86-64), and they are
//! accurate to a few ulp on the ranges the objective uses (tests below
//! compare them with std).

/// 1.5 * 2^52: adding it rounds a small f64 to an integer held in the low
/// mantissa bits (the classic "magic number" round).
const ROUND_MAGIC: f64 = 6_755_399_441_055_744.0;
/// ln 2 split as in fdlibm: LN2_HI has trailing zero bits so k * LN2_HI is
/// exact for the k we meet, and LN2_LO carries the rest.
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
const INV_LN2: f64 = std::f64::consts::LOG2_E;

/// e^x. Inputs are clamped to [-708, 709] so that the result stays a normal
/// number: exp(-708) ~ 3e-308 stands in for 0 and exp(709) ~ 8e307 for
/// overflow, which is harmless where it is used (terms after subtracting the
/// maximum, so inputs are <= 0). NaN propagates.
#[inline(always)]
pub fn exp(x: f64) -> f64 {
    // Not `clamp`: it has NaN handling that blocks vectorisation, and a NaN
    // must survive anyway (comparisons with NaN are false, so it passes).
    let x = if x < -708.0 { -708.0 } else { x };
    let x = if x > 709.0 { 709.0 } else { x };
    // x = k ln2 + r with |r| <= ln2 / 2; k rounded via the magic constant.
    let kf = x * INV_LN2 + ROUND_MAGIC;
    let k = kf - ROUND_MAGIC;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    // Taylor series of e^r to r^12: truncation error < 2e-16 for |r| <= 0.347.
    let mut p = 1.0 / 479_001_600.0;
    p = p * r + 1.0 / 39_916_800.0;
    p = p * r + 1.0 / 3_628_800.0;
    p = p * r + 1.0 / 362_880.0;
    p = p * r + 1.0 / 40_320.0;
    p = p * r + 1.0 / 5_040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // 2^k built directly in the exponent field. The low bits of kf hold k in
    // two's complement relative to the magic constant's bits.
    let k_int = kf.to_bits().wrapping_sub(ROUND_MAGIC.to_bits());
    let scale = f64::from_bits(k_int.wrapping_add(1023) << 52);
    p * scale
}

/// ln x for finite, positive, normal x (the objective only takes logs of sums
/// in [1, 3]). Other inputs give unspecified results, NaN for NaN.
#[inline(always)]
pub fn ln(x: f64) -> f64 {
    const MANTISSA: u64 = (1 << 52) - 1;
    const ONE_BITS: u64 = 1023 << 52;
    let bits = x.to_bits();
    // x = 2^e * m with m in [1, 2).
    let m = f64::from_bits((bits & MANTISSA) | ONE_BITS);
    // The biased exponent as an f64, via the same magic-number trick in reverse.
    let e_biased = f64::from_bits((bits >> 52) | 0x4330_0000_0000_0000) - 4_503_599_627_370_496.0;
    // Recentre m to [sqrt(1/2), sqrt(2)) so the series below converges fast.
    let big = m > std::f64::consts::SQRT_2;
    let m = if big { 0.5 * m } else { m };
    let e = e_biased - 1023.0 + if big { 1.0 } else { 0.0 };
    // ln m = 2 atanh(f) = 2 (f + f^3/3 + f^5/5 + ...), f = (m-1)/(m+1), |f| <= 0.172.
    let f = (m - 1.0) / (m + 1.0);
    let s = f * f;
    let mut p = 1.0 / 19.0;
    p = p * s + 1.0 / 17.0;
    p = p * s + 1.0 / 15.0;
    p = p * s + 1.0 / 13.0;
    p = p * s + 1.0 / 11.0;
    p = p * s + 1.0 / 9.0;
    p = p * s + 1.0 / 7.0;
    p = p * s + 1.0 / 5.0;
    p = p * s + 1.0 / 3.0;
    let ln_m = 2.0 * f + 2.0 * f * s * p;
    let result = e * LN2_HI + (ln_m + e * LN2_LO);
    // A NaN's bits decode to an ordinary-looking exponent and mantissa, so
    // pass it through explicitly (a select, which still vectorises).
    if x.is_nan() {
        x
    } else {
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f64, b: f64) -> f64 {
        ((a - b) / b).abs()
    }

    #[test]
    fn exp_matches_std() {
        let mut worst: f64 = 0.0;
        for i in 0..=200_000 {
            let x = -700.0 + 1400.0 * i as f64 / 200_000.0;
            worst = worst.max(rel(exp(x), x.exp()));
        }
        for i in 0..=100_000 {
            let x = -3.0 + 6.0 * i as f64 / 100_000.0;
            worst = worst.max(rel(exp(x), x.exp()));
        }
        assert!(worst < 1e-15, "worst relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f64::NAN).is_nan());
        assert!(exp(-1e6) < 1e-300 && exp(-1e6) >= 0.0);
        assert!(exp(1e6) > 1e307);
    }

    #[test]
    fn ln_matches_std() {
        // Relative error over the whole normal range (ln x near 0 only at x = 1).
        let mut x = 1e-300;
        while x < 1e300 {
            let err = (ln(x) - x.ln()).abs();
            assert!(
                err <= 4.0 * f64::EPSILON * x.ln().abs().max(1.0),
                "x={x} err={err:e}"
            );
            x *= 1.000_7;
        }
        // Dense on [1, 3], where the objective uses it; relative to ln x itself.
        for i in 1..=100_000 {
            let x = 1.0 + 2.0 * i as f64 / 100_000.0;
            let err = (ln(x) - x.ln()).abs();
            assert!(
                err <= 4.0 * f64::EPSILON * x.ln().abs(),
                "x={x} err={err:e}"
            );
        }
        assert_eq!(ln(1.0), 0.0);
        assert!(ln(f64::NAN).is_nan());
    }
}

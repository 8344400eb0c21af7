//! Compute-optimal allocation implied by a fitted law.
//!
//! Minimising L(N, D) = E + A/N^alpha + B/D^beta subject to C = 6 N D gives
//! (Hoffmann et al. 2022, eq. 4)
//!   N*(C) = G (C/6)^a,  D*(C) = G^-1 (C/6)^b,
//!   G = (alpha A / (beta B))^(1/(alpha+beta)),  a = beta/(alpha+beta),  b = alpha/(alpha+beta).
//! E does not move the optimum.

use serde::Serialize;

use crate::objective::ScalingLaw;

/// N*(C) = G (C/6)^a and D*(C) = (C/6) / N*(C).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ComputeOptimal {
    #[serde(rename = "G")]
    pub g: f64,
    /// Exponent of N* in C: beta / (alpha + beta).
    pub a: f64,
    /// Exponent of D* in C: alpha / (alpha + beta).
    pub b: f64,
}

impl ComputeOptimal {
    /// The allocation for `law`; `None` when it is undefined (alpha + beta
    /// not positive, or non-positive A, B, alpha or beta).
    pub fn from_law(law: &ScalingLaw) -> Option<Self> {
        let ScalingLaw {
            a: big_a,
            b: big_b,
            alpha,
            beta,
            ..
        } = *law;
        let all_positive = [big_a, big_b, alpha, beta].iter().all(|v| *v > 0.0);
        if !all_positive {
            return None;
        }
        let sum = alpha + beta;
        let g = (alpha * big_a / (beta * big_b)).powf(1.0 / sum);
        let out = ComputeOptimal {
            g,
            a: beta / sum,
            b: alpha / sum,
        };
        out.g.is_finite().then_some(out)
    }

    /// Compute-optimal parameter count at `compute` FLOPs.
    pub fn n_opt(&self, compute: f64) -> f64 {
        self.g * (compute / 6.0).powf(self.a)
    }

    /// Compute-optimal token count at `compute` FLOPs.
    pub fn d_opt(&self, compute: f64) -> f64 {
        (compute / 6.0) / self.n_opt(compute)
    }

    /// N*, D* and tokens per parameter at `compute`.
    pub fn at(&self, compute: f64) -> AllocationPoint {
        let n = self.n_opt(compute);
        let d = self.d_opt(compute);
        AllocationPoint {
            compute,
            n_opt: n,
            d_opt: d,
            tokens_per_param: d / n,
        }
    }
}

/// The optimum at one budget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AllocationPoint {
    pub compute: f64,
    pub n_opt: f64,
    pub d_opt: f64,
    pub tokens_per_param: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimum_minimises_loss_on_the_isoflop() {
        let law = ScalingLaw {
            e: 1.82,
            a: 482.01,
            b: 2085.43,
            alpha: 0.3478,
            beta: 0.3658,
        };
        let opt = ComputeOptimal::from_law(&law).unwrap();
        assert!((opt.a + opt.b - 1.0).abs() < 1e-15);
        let c = 1e22;
        let n_star = opt.n_opt(c);
        let loss = |n: f64| law.predict(n, c / (6.0 * n));
        // Moving N either way along C = 6ND raises the loss.
        for f in [0.9, 0.99, 1.01, 1.1] {
            assert!(loss(n_star * f) > loss(n_star));
        }
        assert!((6.0 * n_star * opt.d_opt(c) - c).abs() / c < 1e-12);
    }

    #[test]
    fn undefined_for_non_positive_exponents() {
        let law = ScalingLaw {
            e: 1.0,
            a: 1.0,
            b: 1.0,
            alpha: 0.0,
            beta: 0.3,
        };
        assert!(ComputeOptimal::from_law(&law).is_none());
    }
}

//! The Chinchilla approach-3 objective and its analytic gradient.
//!
//! With theta = (a, b, e, alpha, beta), the model's log loss is
//!   p_i = LSE(a - alpha ln N_i, b - beta ln D_i, e)
//!       = ln(exp(a)/N^alpha + exp(b)/D^beta + exp(e)),
//! i.e. L = E + A/N^alpha + B/D^beta with A = e^a, B = e^b, E = e^e, and the
//! objective is  sum_i Huber_delta(p_i - ln L_i).  Working in logs keeps
//! A and B (hundreds to thousands) and E on the same scale for L-BFGS and
//! keeps them positive without constraints.
//!
//! The sum (not the mean) matters: with delta = 1e-3 the mean objective is so
//! small that a quasi-Newton solver's absolute tolerances stop it early, which
//! is the bug Besiroglu et al. (2024) found in the original fit.

use serde::{Deserialize, Serialize};

use crate::data::Observation;
use crate::fastmath;

/// Chinchilla's Huber threshold on log-loss residuals.
pub const HUBER_DELTA: f64 = 1e-3;

/// Parameters in the optimiser's (log) space.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Theta {
    /// ln A
    pub a: f64,
    /// ln B
    pub b: f64,
    /// ln E
    pub e: f64,
    pub alpha: f64,
    pub beta: f64,
}

impl Theta {
    pub fn to_array(self) -> [f64; 5] {
        [self.a, self.b, self.e, self.alpha, self.beta]
    }

    pub fn from_slice(x: &[f64]) -> Option<Theta> {
        match *x {
            [a, b, e, alpha, beta] => Some(Theta {
                a,
                b,
                e,
                alpha,
                beta,
            }),
            _ => None,
        }
    }

    /// The law on its natural scale.
    pub fn law(self) -> ScalingLaw {
        ScalingLaw {
            e: self.e.exp(),
            a: self.a.exp(),
            b: self.b.exp(),
            alpha: self.alpha,
            beta: self.beta,
        }
    }

    pub fn is_finite(self) -> bool {
        self.to_array().iter().all(|v| v.is_finite())
    }
}

/// L(N, D) = E + A / N^alpha + B / D^beta.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScalingLaw {
    #[serde(rename = "E")]
    pub e: f64,
    #[serde(rename = "A")]
    pub a: f64,
    #[serde(rename = "B")]
    pub b: f64,
    pub alpha: f64,
    pub beta: f64,
}

impl ScalingLaw {
    /// Back to log space (requires positive E, A, B).
    pub fn theta(self) -> Theta {
        Theta {
            a: self.a.ln(),
            b: self.b.ln(),
            e: self.e.ln(),
            alpha: self.alpha,
            beta: self.beta,
        }
    }

    /// Predicted loss at `n` parameters and `d` tokens.
    pub fn predict(&self, n: f64, d: f64) -> f64 {
        self.e + self.a / n.powf(self.alpha) + self.b / d.powf(self.beta)
    }
}

/// Huber loss with threshold `delta`.
pub fn huber(r: f64, delta: f64) -> f64 {
    let abs = r.abs();
    if abs <= delta {
        0.5 * r * r
    } else {
        delta * (abs - 0.5 * delta)
    }
}

/// Points processed together; a multiple of every SIMD width we care about,
/// so the chunk loops below vectorise without remainder handling.
const LANES: usize = 8;

/// Observations pre-transformed to logs, so each evaluation does only the
/// log-sum-exp (the grid fit evaluates the objective ~10^6 times).
///
/// Each point carries a weight: 1 for a plain fit, its multiplicity in a
/// bootstrap resample, and 0 for the padding that rounds the length up to a
/// multiple of `LANES`. A weighted sum is exactly the summed objective over
/// the resample, without copying data.
#[derive(Debug, Clone)]
pub struct LogData {
    log_n: Vec<f64>,
    log_d: Vec<f64>,
    log_loss: Vec<f64>,
    weight: Vec<f64>,
    len: usize,
}

impl LogData {
    pub fn new(obs: &[Observation]) -> Self {
        Self::weighted(obs, &vec![1.0; obs.len()])
    }

    /// Data with per-point weights (`weights.len()` must equal `obs.len()`;
    /// missing weights count as 0).
    pub fn weighted(obs: &[Observation], weights: &[f64]) -> Self {
        let padded = obs.len().div_ceil(LANES) * LANES;
        // Padding points are finite (all logs 0) so that weight 0 zeroes them.
        let col = |f: &dyn Fn(&Observation) -> f64| {
            let mut v: Vec<f64> = obs.iter().map(f).collect();
            v.resize(padded, 0.0);
            v
        };
        let mut weight: Vec<f64> = (0..obs.len())
            .map(|i| weights.get(i).copied().unwrap_or(0.0))
            .collect();
        weight.resize(padded, 0.0);
        LogData {
            log_n: col(&|o| o.n.ln()),
            log_d: col(&|o| o.d.ln()),
            log_loss: col(&|o| o.loss.ln()),
            weight,
            len: obs.len(),
        }
    }

    /// Number of observations (padding excluded).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Objective value only.
    pub fn objective(&self, theta: &[f64; 5], delta: f64) -> f64 {
        self.objective_and_gradient(theta, delta).0
    }

    /// Objective and its gradient with respect to (a, b, e, alpha, beta).
    ///
    /// d p_i / d(a, b, e) are the softmax weights w_i of the three terms, and
    /// d p_i / d alpha = -w_1 ln N_i, d p_i / d beta = -w_2 ln D_i; Huber's
    /// derivative is the residual clipped to [-delta, delta].
    pub fn objective_and_gradient(&self, theta: &[f64; 5], delta: f64) -> (f64, [f64; 5]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2, checked just above.
                return unsafe { kernel_avx2(self, theta, delta) };
            }
        }
        kernel(self, theta, delta)
    }
}

/// The same kernel compiled for AVX2 (4 f64 lanes instead of SSE2's 2), chosen
/// at run time so the crate still runs on any x86-64. It roughly halves the
/// grid fit's time. No FMA is enabled and Rust never contracts `a * b + c`, so
/// both versions perform the same IEEE operations in the same order and give
/// bit-identical results.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn kernel_avx2(data: &LogData, theta: &[f64; 5], delta: f64) -> (f64, [f64; 5]) {
    kernel(data, theta, delta)
}

#[inline(always)]
fn kernel(data: &LogData, theta: &[f64; 5], delta: f64) -> (f64, [f64; 5]) {
    let [a, b, e, alpha, beta] = *theta;
    // Per-lane partial sums: independent lanes let the loop vectorise.
    let mut f = [0.0; LANES];
    let mut g = [[0.0; LANES]; 5];
    let chunks = lanes(&data.log_n)
        .zip(lanes(&data.log_d))
        .zip(lanes(&data.log_loss))
        .zip(lanes(&data.weight));
    for (((ln_n, ln_d), ln_l), w) in chunks {
        for j in 0..LANES {
            let t1 = a - alpha * ln_n[j];
            let t2 = b - beta * ln_d[j];
            // Shift by the largest term so no exponential overflows. (Plain
            // comparisons, not f64::max, whose NaN rules block vectorising.)
            let m12 = if t1 > t2 { t1 } else { t2 };
            let m = if m12 > e { m12 } else { e };
            let x1 = fastmath::exp(t1 - m);
            let x2 = fastmath::exp(t2 - m);
            let x3 = fastmath::exp(e - m);
            let s = x1 + x2 + x3;
            let r = m + fastmath::ln(s) - ln_l[j];
            let abs = r.abs();
            let h = if abs <= delta {
                0.5 * r * r
            } else {
                delta * (abs - 0.5 * delta)
            };
            f[j] += w[j] * h;
            let psi = if r > delta {
                delta
            } else if r < -delta {
                -delta
            } else {
                r
            };
            // x_k / s are the softmax weights of the three terms.
            let k = w[j] * psi / s;
            g[0][j] += k * x1;
            g[1][j] += k * x2;
            g[2][j] += k * x3;
            g[3][j] -= k * x1 * ln_n[j];
            g[4][j] -= k * x2 * ln_d[j];
        }
    }
    (f.iter().sum(), g.map(|lane| lane.iter().sum()))
}

/// A padded column as fixed-size chunks; fixed sizes let the compiler drop
/// bounds checks and vectorise the inner loop.
fn lanes(v: &[f64]) -> impl Iterator<Item = &[f64; LANES]> {
    v.chunks_exact(LANES).filter_map(|c| c.try_into().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The objective written the obvious way, with libm, one point at a time.
    fn reference(obs: &[Observation], t: &[f64; 5], delta: f64) -> f64 {
        let [a, b, e, alpha, beta] = *t;
        obs.iter()
            .map(|o| {
                let pred = (a.exp() / o.n.powf(alpha) + b.exp() / o.d.powf(beta) + e.exp()).ln();
                huber(pred - o.loss.ln(), delta)
            })
            .sum()
    }

    fn sample() -> Vec<Observation> {
        // Deterministic spread of sizes, tokens and losses around a real law.
        (0..37)
            .map(|i| {
                let n = 1e7 * 1.3f64.powi(i);
                let d = 2e8 * 1.17f64.powi((i * 7) % 37);
                let law = 1.8 + 480.0 / n.powf(0.34) + 2000.0 / d.powf(0.37);
                Observation {
                    n,
                    d,
                    loss: law * (1.0 + 0.01 * ((i * 13 % 7) as f64 - 3.0)),
                }
            })
            .collect()
    }

    const THETAS: [[f64; 5]; 5] = [
        [6.17, 7.67, 0.597, 0.347, 0.367],
        [0.0, 0.0, -1.0, 0.0, 0.0],
        [25.0, 25.0, 1.0, 2.0, 2.0],
        [10.0, 3.0, 0.5, 0.5, 1.5],
        [-5.0, 40.0, 2.0, -0.3, 0.1],
    ];

    #[test]
    fn matches_reference_implementation() {
        let obs = sample();
        let data = LogData::new(&obs);
        for t in THETAS {
            let want = reference(&obs, &t, HUBER_DELTA);
            let got = data.objective(&t, HUBER_DELTA);
            assert!(
                (got - want).abs() <= 1e-12 * want.abs(),
                "{t:?}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn gradient_matches_central_differences() {
        let obs = sample();
        let data = LogData::new(&obs);
        for t in THETAS {
            let (_, g) = data.objective_and_gradient(&t, HUBER_DELTA);
            let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
            for k in 0..5 {
                let h = 1e-6 * t[k].abs().max(1.0);
                let (mut up, mut down) = (t, t);
                up[k] += h;
                down[k] -= h;
                let fd = (data.objective(&up, HUBER_DELTA) - data.objective(&down, HUBER_DELTA))
                    / (2.0 * h);
                // Huber is only C1, so differences straddling |r| = delta
                // carry an O(h) error; relative to the gradient's size it is tiny.
                assert!(
                    (fd - g[k]).abs() <= 1e-6 * norm.max(1e-12),
                    "theta {t:?}, component {k}: analytic {} vs fd {fd}",
                    g[k]
                );
            }
        }
    }

    #[test]
    fn weights_equal_duplicated_points() {
        let obs = sample();
        let mut weights = vec![0.0; obs.len()];
        let mut dup = Vec::new();
        for (i, o) in obs.iter().enumerate() {
            let k = i % 3; // 0, 1 or 2 copies
            weights[i] = k as f64;
            dup.extend(std::iter::repeat_n(*o, k));
        }
        let t = THETAS[0];
        let (fw, gw) = LogData::weighted(&obs, &weights).objective_and_gradient(&t, HUBER_DELTA);
        let (fd, gd) = LogData::new(&dup).objective_and_gradient(&t, HUBER_DELTA);
        assert!((fw - fd).abs() <= 1e-13 * fd);
        for k in 0..5 {
            assert!((gw[k] - gd[k]).abs() <= 1e-12 * gd[k].abs().max(1e-9));
        }
    }

    #[test]
    fn dispatched_kernel_is_bit_identical_to_portable_one() {
        let data = LogData::new(&sample());
        for t in THETAS {
            assert_eq!(
                data.objective_and_gradient(&t, HUBER_DELTA),
                kernel(&data, &t, HUBER_DELTA)
            );
        }
    }

    #[test]
    fn huber_pieces() {
        assert_eq!(huber(0.0005, 1e-3), 0.5 * 0.0005 * 0.0005);
        assert!((huber(-0.01, 1e-3) - 1e-3 * (0.01 - 0.0005)).abs() < 1e-18);
        // Continuous at the threshold.
        assert!((huber(1e-3, 1e-3) - 0.5e-6).abs() < 1e-18);
    }

    #[test]
    fn non_finite_theta_gives_non_finite_objective() {
        let data = LogData::new(&sample());
        let f = data.objective(&[f64::NAN, 0.0, 0.0, 0.3, 0.3], HUBER_DELTA);
        assert!(!f.is_finite());
    }

    #[test]
    fn law_round_trips_through_theta() {
        let t = Theta {
            a: 6.0,
            b: 7.5,
            e: 0.6,
            alpha: 0.34,
            beta: 0.37,
        };
        let back = t.law().theta();
        for (x, y) in t.to_array().iter().zip(back.to_array()) {
            assert!((x - y).abs() < 1e-12);
        }
        let law = t.law();
        let (n, d) = (1e9f64, 2e10f64);
        let want = 0.6f64.exp() + 6.0f64.exp() / n.powf(0.34) + 7.5f64.exp() / d.powf(0.37);
        assert!((law.predict(n, d) - want).abs() < 1e-12);
    }
}

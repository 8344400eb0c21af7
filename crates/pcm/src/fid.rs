//! Fréchet distance between Gaussians fitted to two feature sets:
//! ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁^{½} Σ₂ Σ₁^{½})^{½}), in f64, with a Jacobi
//! eigensolver (the feature dimension is ~128, so no LAPACK is needed).

use crate::{PcmError, Result};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    pub n: usize,
    pub mean: Vec<f64>,
    /// Row-major d×d covariance (unbiased).
    pub cov: Vec<f64>,
}

impl Stats {
    pub fn of(features: &[Vec<f32>]) -> Result<Self> {
        let n = features.len();
        if n < 2 {
            return Err(PcmError::arg("FID needs at least 2 samples"));
        }
        let d = features[0].len();
        let mut mean = vec![0f64; d];
        for f in features {
            for (m, &v) in mean.iter_mut().zip(f) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut cov = vec![0f64; d * d];
        let mut c = vec![0f64; d];
        for f in features {
            for i in 0..d {
                c[i] = f[i] as f64 - mean[i];
            }
            for i in 0..d {
                let ci = c[i];
                let row = &mut cov[i * d..(i + 1) * d];
                for j in i..d {
                    row[j] += ci * c[j];
                }
            }
        }
        for i in 0..d {
            for j in i..d {
                let v = cov[i * d + j] / (n - 1) as f64;
                cov[i * d + j] = v;
                cov[j * d + i] = v;
            }
        }
        Ok(Self { n, mean, cov })
    }
    pub fn dim(&self) -> usize {
        self.mean.len()
    }
}

/// Eigenvalues and eigenvectors (columns of `v`, row-major) of a symmetric
/// matrix by cyclic Jacobi rotations.
pub fn sym_eigen(a: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0f64; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    let scale: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * d + j] * a[i * d + j])
            .sum::<f64>()
            .sqrt();
        if off <= 1e-14 * scale {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (akp, akq) = (a[k * d + p], a[k * d + q]);
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p * d + k], a[q * d + k]);
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[k * d + p], v[k * d + q]);
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| a[i * d + i]).collect(), v)
}

fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut out = vec![0f64; d * d];
    for i in 0..d {
        for k in 0..d {
            let aik = a[i * d + k];
            if aik == 0.0 {
                continue;
            }
            for j in 0..d {
                out[i * d + j] += aik * b[k * d + j];
            }
        }
    }
    out
}

/// The FID between two fitted Gaussians.
pub fn fid(a: &Stats, b: &Stats) -> Result<f64> {
    let d = a.dim();
    if b.dim() != d {
        return Err(PcmError::arg(
            "FID of feature sets with different dimensions",
        ));
    }
    let mean_term: f64 = a
        .mean
        .iter()
        .zip(&b.mean)
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    let trace = |m: &[f64]| (0..d).map(|i| m[i * d + i]).sum::<f64>();
    // Σ₁^{½} = V diag(√λ) Vᵀ.
    let (l, v) = sym_eigen(&a.cov, d);
    let mut half = vec![0f64; d * d];
    for i in 0..d {
        for j in 0..d {
            half[i * d + j] = (0..d)
                .map(|k| v[i * d + k] * l[k].max(0.0).sqrt() * v[j * d + k])
                .sum();
        }
    }
    let m = matmul(&matmul(&half, &b.cov, d), &half, d);
    // Symmetrise against rounding before the second decomposition.
    let mut ms = m.clone();
    for i in 0..d {
        for j in 0..d {
            ms[i * d + j] = 0.5 * (m[i * d + j] + m[j * d + i]);
        }
    }
    let (l2, _) = sym_eigen(&ms, d);
    let tr_sqrt: f64 = l2.iter().map(|x| x.max(0.0).sqrt()).sum();
    Ok((mean_term + trace(&a.cov) + trace(&b.cov) - 2.0 * tr_sqrt).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigen_of_a_known_matrix() {
        // [[2, 1], [1, 2]] has eigenvalues 1 and 3.
        let (mut l, _) = sym_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
        l.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert!((l[0] - 1.0).abs() < 1e-12 && (l[1] - 3.0).abs() < 1e-12);
    }

    #[test]
    fn fid_of_gaussians_with_known_answer() {
        // Diagonal covariances: FID = ‖Δμ‖² + Σ (σ₁ᵢ − σ₂ᵢ)².
        let a = Stats {
            n: 10,
            mean: vec![0.0, 1.0, 0.0],
            cov: vec![4.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 9.0],
        };
        let b = Stats {
            n: 10,
            mean: vec![1.0, 1.0, 2.0],
            cov: vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        };
        let want = (1.0 + 4.0) + (1.0 + 0.0 + 4.0);
        assert!((fid(&a, &b).unwrap() - want).abs() < 1e-9);
        assert!(fid(&a, &a).unwrap() < 1e-9);
        // A rotated, correlated covariance against itself is 0 too.
        let c = Stats {
            n: 10,
            mean: vec![0.0; 2],
            cov: vec![2.0, 0.9, 0.9, 1.0],
        };
        assert!(fid(&c, &c).unwrap() < 1e-9);
    }

    #[test]
    fn stats_of_samples() {
        let f = vec![vec![1.0f32, 0.0], vec![3.0, 2.0], vec![2.0, 1.0]];
        let s = Stats::of(&f).unwrap();
        assert_eq!(s.mean, vec![2.0, 1.0]);
        assert_eq!(s.cov, vec![1.0, 1.0, 1.0, 1.0]);
        assert!(Stats::of(&f[..1]).is_err());
    }
}

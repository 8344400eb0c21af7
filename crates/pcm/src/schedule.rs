//! The arithmetic of PCM (papers.md §3), separate from any network so that
//! every formula has a unit test against a hand computation.
//!
//! Timesteps are integers 0..=999 indexing ᾱ (diffusers' convention:
//! `ᾱ[0] = 1 − β₀`, not 1). A DDIM jump from `t` to `s` with the network's
//! ε is linear in `(x_t, ε)`, so every jump here is a pair `(a, b)` with
//! `x_s = a·x_t + b·ε`: the consistency functions, the teacher's solver
//! step and the samplers all share it.

use crate::{PcmError, Result};

pub const TRAIN_STEPS: usize = 1000;
/// DDIM solver grid size and the skip between its points (k = 1000/50).
pub const SOLVER_STEPS: usize = 50;
pub const SKIP: usize = TRAIN_STEPS / SOLVER_STEPS;
/// LCM's boundary scalings (the reference's `sigma_data`, `t / 0.1`).
pub const LCM_SIGMA_DATA: f64 = 0.5;
pub const LCM_TIMESTEP_SCALING: f64 = 10.0;

/// DDPM's linear β schedule from 1e-4 to 0.02 over 1000 steps.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub alphas_cumprod: Vec<f64>,
}

impl Default for Schedule {
    fn default() -> Self {
        Self::ddpm()
    }
}

impl Schedule {
    pub fn ddpm() -> Self {
        let n = TRAIN_STEPS;
        let mut acp = Vec::with_capacity(n);
        let mut prod = 1.0;
        for i in 0..n {
            let beta = 1e-4 + (0.02 - 1e-4) * i as f64 / (n - 1) as f64;
            prod *= 1.0 - beta;
            acp.push(prod);
        }
        Self {
            alphas_cumprod: acp,
        }
    }
    /// √ᾱ_t.
    pub fn alpha(&self, t: usize) -> f64 {
        self.alphas_cumprod[t].sqrt()
    }
    /// √(1 − ᾱ_t).
    pub fn sigma(&self, t: usize) -> f64 {
        (1.0 - self.alphas_cumprod[t]).sqrt()
    }
    /// `(a, b)` of the DDIM jump `x_s = α_s (x_t − σ_t ε)/α_t + σ_s ε`.
    pub fn ddim(&self, t: usize, s: usize) -> (f64, f64) {
        if t == s {
            // Exactly the identity (α_s σ_t / α_t need not round back to σ_s).
            return (1.0, 0.0);
        }
        let (at, st, as_, ss) = (self.alpha(t), self.sigma(t), self.alpha(s), self.sigma(s));
        (as_ / at, ss - as_ * st / at)
    }
    /// `(a, b)` of x̂₀ = (x_t − σ_t ε)/α_t.
    pub fn x0(&self, t: usize) -> (f64, f64) {
        let (at, st) = (self.alpha(t), self.sigma(t));
        (1.0 / at, -st / at)
    }
    /// `(a, b)` of LCM's consistency function c_skip·x_t + c_out·x̂₀.
    pub fn lcm(&self, t: usize) -> (f64, f64) {
        let (c_skip, c_out) = lcm_scalings(t);
        let (a0, b0) = self.x0(t);
        (c_skip + c_out * a0, c_out * b0)
    }
}

/// LCM's c_skip and c_out at timestep t.
pub fn lcm_scalings(t: usize) -> (f64, f64) {
    let scaled = t as f64 * LCM_TIMESTEP_SCALING;
    let sd2 = LCM_SIGMA_DATA * LCM_SIGMA_DATA;
    let c_skip = sd2 / (scaled * scaled + sd2);
    let c_out = scaled / (scaled * scaled + sd2).sqrt();
    (c_skip, c_out)
}

/// The 50 solver timesteps `(1..=50)·20 − 1` = 19, 39, …, 999.
pub fn solver_grid() -> Vec<usize> {
    (1..=SOLVER_STEPS).map(|i| i * SKIP - 1).collect()
}

/// The solver point below grid index `n`: t_n for t_{n+1} = grid[n]
/// (timestep 0 below the first point, as the reference clamps).
pub fn prev_timestep(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (n * SKIP) - 1
    }
}

/// Grid indices where phases start: ⌊linspace(0, 50, M, endpoint = false)⌋.
pub fn phase_start_indices(phases: usize) -> Result<Vec<usize>> {
    if phases == 0 || phases > SOLVER_STEPS {
        return Err(PcmError::arg(format!(
            "phases (or sampling steps) must be in 1..={SOLVER_STEPS}, got {phases}"
        )));
    }
    Ok((0..phases)
        .map(|i| (i as f64 * SOLVER_STEPS as f64 / phases as f64).floor() as usize)
        .collect())
}

/// Phase edges s_0 < … < s_M as timesteps: the solver point below each
/// phase's first grid index, then the top of the grid (999).
pub fn phase_edges(phases: usize) -> Result<Vec<usize>> {
    let mut edges: Vec<usize> = phase_start_indices(phases)?
        .into_iter()
        .map(prev_timestep)
        .collect();
    edges.push(TRAIN_STEPS - 1);
    Ok(edges)
}

/// Which phase grid index `n` belongs to: the last start ≤ n.
pub fn phase_of(n: usize, starts: &[usize]) -> usize {
    starts.iter().rposition(|&s| s <= n).unwrap_or(0)
}

/// The timesteps a sampler visits with `steps` network evaluations, from
/// 999 down to 0: the phase edges of a `steps`-phase model, reversed. With
/// `steps = M` this is exactly PCM's edge-to-edge sampling; 50 steps is
/// the full DDIM grid.
pub fn sampler_timesteps(steps: usize) -> Result<Vec<usize>> {
    let mut e = phase_edges(steps)?;
    e.reverse();
    Ok(e)
}

/// How the student's consistency function is parametrised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// PCM: DDIM jump to the lower edge of the phase (boundary condition by
    /// construction).
    Pcm { phases: usize },
    /// LCM: one phase to x₀ with c_skip/c_out.
    Lcm,
}

/// The consistency function's coefficients for every grid index.
#[derive(Debug, Clone)]
pub struct Consistency {
    pub param: Param,
    starts: Vec<usize>,
    edges: Vec<usize>,
}

impl Consistency {
    pub fn new(param: Param) -> Result<Self> {
        let phases = match param {
            Param::Pcm { phases } => phases,
            Param::Lcm => 1,
        };
        Ok(Self {
            param,
            starts: phase_start_indices(phases)?,
            edges: phase_edges(phases)?,
        })
    }
    /// The lower edge of the phase holding grid index `n`.
    pub fn lower_edge(&self, n: usize) -> usize {
        self.edges[phase_of(n, &self.starts)]
    }
    /// The upper edge of the phase holding grid index `n`.
    pub fn upper_edge(&self, n: usize) -> usize {
        self.edges[phase_of(n, &self.starts) + 1]
    }
    /// Coefficients `(a, b)` of f(x_t, t) = a·x_t + b·ε̂ for timestep `t`
    /// inside the phase of grid index `n`.
    pub fn coeffs(&self, sched: &Schedule, t: usize, n: usize) -> (f64, f64) {
        match self.param {
            Param::Pcm { .. } => sched.ddim(t, self.lower_edge(n)),
            Param::Lcm => sched.lcm(t),
        }
    }
}

/// Element-wise pseudo-Huber √(d² + c²) − c, averaged (the reference's
/// form; c = 0.001).
pub fn pseudo_huber(a: &[f32], b: &[f32], c: f64) -> f64 {
    let s: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = (x - y) as f64;
            (d * d + c * c).sqrt() - c
        })
        .sum();
    s / a.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_and_phase_edges_match_the_reference() {
        let g = solver_grid();
        assert_eq!((g[0], g[1], g[49], g.len()), (19, 39, 999, 50));
        assert_eq!(phase_edges(1).unwrap(), vec![0, 999]);
        assert_eq!(phase_edges(2).unwrap(), vec![0, 499, 999]);
        assert_eq!(phase_edges(4).unwrap(), vec![0, 239, 499, 739, 999]);
        assert_eq!(phase_start_indices(4).unwrap(), vec![0, 12, 25, 37]);
        assert!(phase_edges(0).is_err() && phase_edges(51).is_err());
        // Every edge but 0 is a solver point.
        for m in [2, 4, 8, 16] {
            let e = phase_edges(m).unwrap();
            assert!(e[1..].iter().all(|t| g.contains(t)), "{m}: {e:?}");
        }
    }

    #[test]
    fn phase_membership() {
        let c = Consistency::new(Param::Pcm { phases: 4 }).unwrap();
        // Index 11 → t = 239, the top of phase 0; 12 → 259, phase 1 (edge 239).
        assert_eq!(c.lower_edge(11), 0);
        assert_eq!(c.lower_edge(12), 239);
        assert_eq!(c.lower_edge(36), 499); // t = 739 belongs below its edge
        assert_eq!(c.lower_edge(49), 739);
        assert_eq!((c.upper_edge(11), c.upper_edge(49)), (239, 999));
        let l = Consistency::new(Param::Lcm).unwrap();
        assert_eq!(l.lower_edge(49), 0);
    }

    #[test]
    fn ddim_step_matches_hand_computation() {
        let s = Schedule::ddpm();
        // ᾱ_0 = 1 − 1e-4; ᾱ_1 = (1 − 1e-4)(1 − β_1), β_1 = 1e-4 + 0.0199/999.
        let b1 = 1e-4 + (0.02 - 1e-4) / 999.0;
        assert!((s.alphas_cumprod[0] - 0.9999).abs() < 1e-15);
        assert!((s.alphas_cumprod[1] - 0.9999 * (1.0 - b1)).abs() < 1e-15);
        let (t, u) = (999, 499);
        let (x, eps) = (0.7f64, -1.3f64);
        let (at, st) = (
            s.alphas_cumprod[t].sqrt(),
            (1.0 - s.alphas_cumprod[t]).sqrt(),
        );
        let (au, su) = (
            s.alphas_cumprod[u].sqrt(),
            (1.0 - s.alphas_cumprod[u]).sqrt(),
        );
        let x0 = (x - st * eps) / at;
        let want = au * x0 + su * eps;
        let (a, b) = s.ddim(t, u);
        assert!((a * x + b * eps - want).abs() < 1e-12);
        // A jump to itself is the identity: the boundary condition.
        assert_eq!(s.ddim(u, u), (1.0, 0.0));
    }

    #[test]
    fn boundary_condition_holds_at_every_edge() {
        let s = Schedule::ddpm();
        for m in [1, 2, 4] {
            let c = Consistency::new(Param::Pcm { phases: m }).unwrap();
            for (i, &start) in phase_start_indices(m).unwrap().iter().enumerate() {
                let edge = phase_edges(m).unwrap()[i];
                // The target at t_n = s_m (grid index = the phase's start).
                assert_eq!(prev_timestep(start), edge);
                assert_eq!(c.coeffs(&s, edge, start), (1.0, 0.0), "M={m} edge {edge}");
            }
        }
        // LCM's boundary at t = 0: c_skip = 1, c_out = 0.
        assert_eq!(lcm_scalings(0), (1.0, 0.0));
        let (a, b) = s.lcm(0);
        assert_eq!((a, b), (1.0, 0.0));
        // LCM at large t is x̂₀ almost exactly.
        let (a, b) = s.lcm(999);
        let (a0, b0) = s.x0(999);
        assert!((a - a0).abs() < 1e-3 && (b - b0).abs() < 1e-3);
    }

    #[test]
    fn pseudo_huber_values() {
        let c = 0.001;
        assert_eq!(pseudo_huber(&[1.0, 2.0], &[1.0, 2.0], c), 0.0);
        // d = 3: √(9 + 1e-6) − 1e-3 ≈ 2.999000167.
        let v = pseudo_huber(&[3.0], &[0.0], c);
        assert!((v - ((9.0f64 + 1e-6).sqrt() - 1e-3)).abs() < 1e-12);
        // Small d: ≈ d²/(2c).
        let v = pseudo_huber(&[1e-5], &[0.0], c);
        assert!((v - 1e-10 / 2e-3).abs() < 1e-10);
    }

    #[test]
    fn sampler_timestep_sequences() {
        assert_eq!(sampler_timesteps(1).unwrap(), vec![999, 0]);
        assert_eq!(sampler_timesteps(2).unwrap(), vec![999, 499, 0]);
        assert_eq!(sampler_timesteps(4).unwrap(), vec![999, 739, 499, 239, 0]);
        let s8 = sampler_timesteps(8).unwrap();
        assert_eq!(s8, vec![999, 859, 739, 619, 499, 359, 239, 119, 0]);
        let s50 = sampler_timesteps(50).unwrap();
        assert_eq!(s50.len(), 51);
        assert_eq!(&s50[..3], &[999, 979, 959]);
        assert_eq!(&s50[48..], &[39, 19, 0]);
    }
}

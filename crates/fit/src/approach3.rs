//! Chinchilla approach 3: L-BFGS on the summed Huber objective from every
//! point of a grid of starts, keeping the best converged result.
//!
//! The objective is non-convex (the three terms trade off, and for alpha or
//! beta near 0 a term is constant and merges with E), so one start is not
//! enough; Hoffmann et al. start from a 4500-point grid and so do we.

use std::cell::RefCell;

use argmin::core::{
    CostFunction, Error as ArgminError, Executor, Gradient, State, TerminationReason,
};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use rayon::prelude::*;
use serde::Serialize;

use crate::data::Observation;
use crate::error::{FitError, Result};
use crate::objective::{LogData, ScalingLaw, Theta, HUBER_DELTA};

/// Starting points, one list per parameter; starts are their Cartesian product.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StartGrid {
    pub alpha: Vec<f64>,
    pub beta: Vec<f64>,
    pub e: Vec<f64>,
    pub a: Vec<f64>,
    pub b: Vec<f64>,
}

impl StartGrid {
    /// Hoffmann et al.'s grid: alpha, beta in {0, 0.5, ..., 2},
    /// e in {-1, -0.5, ..., 1}, a, b in {0, 5, ..., 25}: 4500 starts.
    pub fn chinchilla() -> Self {
        let steps = |lo: f64, step: f64, n: usize| (0..n).map(|i| lo + step * i as f64).collect();
        StartGrid {
            alpha: steps(0.0, 0.5, 5),
            beta: steps(0.0, 0.5, 5),
            e: steps(-1.0, 0.5, 5),
            a: steps(0.0, 5.0, 6),
            b: steps(0.0, 5.0, 6),
        }
    }

    /// All starts, in the order alpha, beta, e, a, b (outermost first).
    pub fn starts(&self) -> Vec<Theta> {
        let mut out = Vec::with_capacity(self.len());
        for &alpha in &self.alpha {
            for &beta in &self.beta {
                for &e in &self.e {
                    for &a in &self.a {
                        for &b in &self.b {
                            out.push(Theta {
                                a,
                                b,
                                e,
                                alpha,
                                beta,
                            });
                        }
                    }
                }
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.alpha.len() * self.beta.len() * self.e.len() * self.a.len() * self.b.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for StartGrid {
    fn default() -> Self {
        StartGrid::chinchilla()
    }
}

/// Optimiser settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FitOptions {
    pub huber_delta: f64,
    pub grid: StartGrid,
    /// L-BFGS iteration cap per start.
    pub max_iters: u64,
    /// Stop when the gradient's L2 norm falls below this.
    pub tol_grad: f64,
    /// Stop when one iteration lowers the objective by less than this
    /// (absolute; the summed objective is O(1e-3) on Chinchilla-like data, so
    /// this must be tiny, which is why the sum and not the mean is used).
    pub tol_cost: f64,
    /// L-BFGS history length.
    pub memory: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            huber_delta: HUBER_DELTA,
            grid: StartGrid::chinchilla(),
            max_iters: 1000,
            tol_grad: 1e-9,
            tol_cost: 1e-14,
            memory: 10,
        }
    }
}

impl FitOptions {
    fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(FitError::InvalidOption(m.to_string()));
        if !(self.huber_delta.is_finite() && self.huber_delta > 0.0) {
            return bad("huber_delta must be positive");
        }
        if self.grid.is_empty() {
            return bad("the start grid is empty");
        }
        if self.memory == 0 || self.max_iters == 0 {
            return bad("memory and max_iters must be positive");
        }
        if !(self.tol_grad >= 0.0 && self.tol_cost >= 0.0) {
            return bad("tolerances must be non-negative");
        }
        Ok(())
    }
}

/// Outcome of one L-BFGS run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StartResult {
    pub start: Theta,
    pub theta: Theta,
    pub objective: f64,
    pub converged: bool,
    pub iterations: u64,
}

/// The approach-3 fit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Approach3Fit {
    pub law: ScalingLaw,
    /// Same parameters in log space (a = ln A, b = ln B, e = ln E).
    pub theta: Theta,
    /// Summed Huber objective at `theta`.
    pub objective: f64,
    pub gradient_norm: f64,
    pub n_observations: usize,
    pub n_starts: usize,
    pub n_converged: usize,
    /// The start that produced the best fit.
    pub best_start: Theta,
    /// Best few converged results (by objective), best first; the bootstrap
    /// restarts from these.
    #[serde(skip)]
    pub top: Vec<StartResult>,
}

/// A point with its objective and gradient.
type Evaluation = ([f64; 5], f64, [f64; 5]);

/// The problem as argmin sees it. argmin asks for cost and gradient
/// separately, usually at the same point, so the last evaluation is cached to
/// compute the log-sum-exp pass once.
struct Problem<'a> {
    data: &'a LogData,
    delta: f64,
    cache: RefCell<Option<Evaluation>>,
}

impl Problem<'_> {
    fn eval(&self, x: &[f64]) -> std::result::Result<(f64, [f64; 5]), ArgminError> {
        let theta: [f64; 5] = x
            .try_into()
            .map_err(|_| ArgminError::msg("parameter vector must have 5 entries"))?;
        if let Some((p, f, g)) = *self.cache.borrow() {
            if p == theta {
                return Ok((f, g));
            }
        }
        let (f, g) = self.data.objective_and_gradient(&theta, self.delta);
        *self.cache.borrow_mut() = Some((theta, f, g));
        Ok((f, g))
    }
}

impl CostFunction for Problem<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, x: &Vec<f64>) -> std::result::Result<f64, ArgminError> {
        // A non-finite cost makes the line search shrink its step rather than
        // accept a point where the exponentials overflowed.
        let (f, _) = self.eval(x)?;
        Ok(if f.is_finite() { f } else { f64::INFINITY })
    }
}

impl Gradient for Problem<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, x: &Vec<f64>) -> std::result::Result<Vec<f64>, ArgminError> {
        Ok(self.eval(x)?.1.to_vec())
    }
}

/// Run L-BFGS (More-Thuente line search) from one start.
pub fn fit_from(data: &LogData, start: Theta, opts: &FitOptions) -> Result<StartResult> {
    let problem = Problem {
        data,
        delta: opts.huber_delta,
        cache: RefCell::new(None),
    };
    let optim = |e: ArgminError| FitError::Optimizer(e.to_string());
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), opts.memory)
        .with_tolerance_grad(opts.tol_grad)
        .map_err(optim)?
        .with_tolerance_cost(opts.tol_cost)
        .map_err(optim)?;
    let res = Executor::new(problem, solver)
        .configure(|s| s.param(start.to_array().to_vec()).max_iters(opts.max_iters))
        .timer(false)
        .run();
    let failed = StartResult {
        start,
        theta: start,
        objective: f64::INFINITY,
        converged: false,
        iterations: 0,
    };
    // A start whose very first evaluation is non-finite errors out inside
    // argmin; that is a failed start, not a failed fit.
    let Ok(res) = res else {
        return Ok(failed);
    };
    let state = res.state();
    let Some(theta) = state.get_best_param().and_then(|p| Theta::from_slice(p)) else {
        return Ok(failed);
    };
    let objective = state.get_best_cost();
    let converged = matches!(
        state.get_termination_reason(),
        Some(TerminationReason::SolverConverged)
    ) && objective.is_finite()
        && theta.is_finite();
    Ok(StartResult {
        start,
        theta,
        objective,
        converged,
        iterations: state.get_iter(),
    })
}

/// Minimum number of observations for a five-parameter fit.
pub const MIN_OBSERVATIONS: usize = 5;

/// Fit approach 3 from every start of `opts.grid`, in parallel.
pub fn fit_approach3(obs: &[Observation], opts: &FitOptions) -> Result<Approach3Fit> {
    opts.validate()?;
    if obs.len() < MIN_OBSERVATIONS {
        return Err(FitError::TooFewObservations {
            needed: MIN_OBSERVATIONS,
            got: obs.len(),
        });
    }
    let data = LogData::new(obs);
    fit_starts(&data, &opts.grid.starts(), opts)
}

/// Fit from an explicit list of starts (the bootstrap uses a short list).
pub(crate) fn fit_starts(
    data: &LogData,
    starts: &[Theta],
    opts: &FitOptions,
) -> Result<Approach3Fit> {
    let results: Vec<StartResult> = starts
        .par_iter()
        .map(|&s| fit_from(data, s, opts))
        .collect::<Result<_>>()?;
    let n_converged = results.iter().filter(|r| r.converged).count();
    let mut top: Vec<StartResult> = results.into_iter().filter(|r| r.converged).collect();
    // Ties broken by start order so the answer does not depend on scheduling.
    top.sort_by(|x, y| x.objective.total_cmp(&y.objective));
    top.truncate(TOP_KEPT);
    let best = *top.first().ok_or(FitError::NoConvergence)?;
    let (objective, grad) = data.objective_and_gradient(&best.theta.to_array(), opts.huber_delta);
    Ok(Approach3Fit {
        law: best.theta.law(),
        theta: best.theta,
        objective,
        gradient_norm: grad.iter().map(|g| g * g).sum::<f64>().sqrt(),
        n_observations: data.len(),
        n_starts: starts.len(),
        n_converged,
        best_start: best.start,
        top,
    })
}

/// How many of the best converged results `Approach3Fit::top` keeps.
pub const TOP_KEPT: usize = 16;

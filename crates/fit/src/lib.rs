//! Scaling-law fitting for frugal.
//!
//! * [`approach3`]: Chinchilla's parametric fit L(N, D) = E + A/N^alpha + B/D^beta,
//!   by L-BFGS on the summed Huber loss of log-loss residuals from a grid of
//!   4500 starts (Hoffmann et al. 2022, App. D.2, as corrected by Besiroglu et
//!   al. 2024).
//! * [`bootstrap`]: standard errors by resampling observations.
//! * [`allocation`]: the compute-optimal N*(C), D*(C) implied by a fit.
//! * [`approach2`]: isoFLOP parabolas, when the data has several runs per budget.
//! * [`predict`]: predictions and held-out checks.
//! * [`report`]: all of the above as one JSON-serialisable report.

pub mod allocation;
pub mod approach2;
pub mod approach3;
pub mod bootstrap;
pub mod data;
pub mod error;
mod fastmath;
pub mod objective;
pub mod predict;
pub mod report;

pub use allocation::{AllocationPoint, ComputeOptimal};
pub use approach2::{fit_approach2, Approach2Fit, BudgetOptimum, IsoFlopOptions};
pub use approach3::{fit_approach3, Approach3Fit, FitOptions, StartGrid};
pub use bootstrap::{bootstrap, Bootstrap, BootstrapOptions, BootstrapStarts, ParamErrors};
pub use data::{exclude_top_loss, load_observations, Columns, Middle, Observation};
pub use error::{FitError, Result};
pub use objective::{ScalingLaw, Theta, HUBER_DELTA};
pub use predict::{evaluate, held_out_check, predict, prediction_band, HeldOutReport};
pub use report::{fit_report, FitReport, ReportOptions};

//! Scaling studies without fixed durations (Hägele et al. 2024).
//!
//! * [`spec`]: the study description (`STUDY.toml`).
//! * [`plan`]: the work graph as data: which runs, which branches off which
//!   checkpoints, tokens and FLOPs; any executor (local pool here, Slurm
//!   later) consumes the same [`plan::Plan`].
//! * [`local`]: a local worker pool launching `frugal train` / `frugal
//!   cooldown` subprocesses, skipping finished jobs and resuming the rest.
//! * [`results`]: final losses per (N, D), the scaling-law fit and the
//!   markdown report; [`plots`] its SVG figures ([`chart`]).

pub mod chart;
pub mod error;
pub mod local;
pub mod plan;
pub mod plots;
pub mod results;
pub mod spec;

pub use error::{Result, StudyError};
pub use plan::{Family, Job, JobAction, Plan};
pub use spec::StudySpec;

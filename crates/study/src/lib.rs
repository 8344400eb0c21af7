//! Scaling studies without fixed durations (Hägele et al. 2024).
//!
//! * [`spec`]: the study description (`STUDY.toml`).
//! * [`plan`]: the work graph as data: which runs, which branches off which
//!   checkpoints, tokens and FLOPs; any executor (local pool here, Slurm
//!   later) consumes the same [`plan::Plan`].
//! * [`local`]: a local worker pool launching `frugal train` / `frugal
//!   cooldown` subprocesses, skipping finished jobs and resuming the rest.
//! * [`work`]: the command each job runs, shared by both executors, and
//!   the segmented task graph; [`cluster`] submits it to Slurm through
//!   [`slurm`] (batch scripts, `sbatch`, `squeue`) and reports job status.
//! * [`results`]: final losses per (N, D) (cooldowns, cosine runs, SWA of
//!   the constant runs) and the scaling-law fits; [`report`] writes
//!   `fit.json`, `points.csv` and `report.md`, [`plots`] its PNG figures
//!   ([`chart`]).

pub mod chart;
pub mod cluster;
pub mod error;
pub mod local;
pub mod plan;
pub mod plots;
pub mod report;
pub mod results;
pub mod slurm;
pub mod spec;
pub mod work;

pub use error::{Result, StudyError};
pub use plan::{Family, Job, JobAction, Plan};
pub use spec::StudySpec;

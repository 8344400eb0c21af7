//! The report's figures as SVG files.

use crate::chart::{Chart, Series, Style};
use crate::plan::{Family, JobAction, Plan};
use crate::results::{FamilyFit, Results};
use crate::{Result, StudyError};
use frugal_train::metrics::{self, METRICS_FILE};
use std::path::{Path, PathBuf};

/// (tokens, val_loss) of a run's evaluations.
fn curve(run: &Path) -> Vec<(f64, f64)> {
    metrics::read(&run.join(METRICS_FILE))
        .unwrap_or_default()
        .iter()
        .filter_map(|r| Some((r["tokens"].as_f64()?, r["val_loss"].as_f64()?)))
        .collect()
}

fn write(dir: &Path, name: &str, chart: &Chart) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, chart.svg()).map_err(|e| StudyError::io(&path, e))?;
    Ok(path)
}

/// Writes every figure into `dir`; returns their paths.
pub fn write_all(
    plan: &Plan,
    study_dir: &Path,
    results: &Results,
    fits: &[FamilyFit],
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| StudyError::io(dir, e))?;
    let mut out = Vec::new();
    let mut sizes: Vec<&str> = plan.jobs.iter().map(|j| j.size.as_str()).collect();
    sizes.dedup();
    // Loss curves per size: the constant run, its branches, the cosine runs.
    for size in &sizes {
        let mut series = Vec::new();
        for j in plan.jobs.iter().filter(|j| j.size == *size) {
            let (style, color) = match (&j.action, j.family) {
                (JobAction::Train { .. }, Family::Wsd) => (Style::Line, 0),
                (JobAction::Cooldown { .. }, _) => (Style::Line, 1),
                _ => (Style::Dashed, 2),
            };
            let pts = curve(&study_dir.join(&j.out));
            if !pts.is_empty() {
                series.push(Series {
                    name: j.id.clone(),
                    points: pts,
                    style,
                    color,
                });
            }
        }
        let c = Chart {
            title: format!("validation loss, size {size}"),
            x_label: "tokens".into(),
            y_label: "val loss".into(),
            series,
            ..Chart::default()
        };
        out.push(write(dir, &format!("curves-{size}.svg"), &c)?);
    }
    // The diagonal: cooldown vs cosine at equal (N, D).
    let pairs: Vec<(f64, f64)> = results
        .points
        .iter()
        .filter(|p| p.family == Family::Wsd)
        .filter_map(|w| {
            let c = results
                .points
                .iter()
                .find(|c| c.family == Family::Cosine && c.n == w.n && c.d == w.d)?;
            Some((c.loss, w.loss))
        })
        .collect();
    let (lo, hi) = pairs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |a, p| {
            (a.0.min(p.0.min(p.1)), a.1.max(p.0.max(p.1)))
        });
    let diag = Chart {
        title: "cooldown vs cosine at equal (N, D)".into(),
        x_label: "cosine final val loss".into(),
        y_label: "cooldown final val loss".into(),
        series: vec![
            Series {
                name: "y = x".into(),
                points: vec![(lo, lo), (hi, hi)],
                style: Style::Dashed,
                color: 7,
            },
            Series {
                name: "(N, D) points".into(),
                points: pairs,
                style: Style::Markers,
                color: 1,
            },
        ],
        ..Chart::default()
    };
    out.push(write(dir, "diagonal.svg", &diag)?);
    // Loss vs FLOPs with each family's envelope (best loss at ≤ C).
    let mut series = Vec::new();
    for (i, fam) in [Family::Wsd, Family::Cosine].into_iter().enumerate() {
        let mut pts: Vec<(f64, f64)> = results
            .points
            .iter()
            .filter(|p| p.family == fam)
            .map(|p| (p.flops, p.loss))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut best = f64::INFINITY;
        let mut env: Vec<(f64, f64)> = Vec::new();
        for &(c, l) in &pts {
            if l < best {
                best = l;
                env.push((c, l));
            }
        }
        series.push(Series {
            name: format!("{fam:?}"),
            points: pts,
            style: Style::Markers,
            color: i + 1,
        });
        series.push(Series {
            name: format!("{fam:?} envelope"),
            points: env,
            style: Style::Line,
            color: i + 1,
        });
    }
    let env = Chart {
        title: "final loss vs training FLOPs".into(),
        x_label: "FLOPs".into(),
        y_label: "val loss".into(),
        log_x: true,
        series,
        ..Chart::default()
    };
    out.push(write(dir, "envelope.svg", &env)?);
    // Fitted laws: observed points and L(N, D) per size, and the frontier.
    for f in fits {
        let mut series = Vec::new();
        let mut ns: Vec<usize> = results
            .points
            .iter()
            .filter(|p| p.family == f.family)
            .map(|p| p.n)
            .collect();
        ns.sort();
        ns.dedup();
        for (i, n) in ns.iter().enumerate() {
            let obs: Vec<(f64, f64)> = results
                .points
                .iter()
                .filter(|p| p.family == f.family && p.n == *n)
                .map(|p| (p.d as f64, p.loss))
                .collect();
            let (d0, d1) = obs
                .iter()
                .fold((f64::INFINITY, 0.0f64), |a, p| (a.0.min(p.0), a.1.max(p.0)));
            let law: Vec<(f64, f64)> = (0..=20)
                .map(|k| {
                    let d = d0 * (d1 / d0).powf(k as f64 / 20.0);
                    (d, f.fit.law.predict(*n as f64, d))
                })
                .collect();
            series.push(Series {
                name: format!("N={n}"),
                points: obs,
                style: Style::Markers,
                color: i,
            });
            series.push(Series {
                name: format!("fit N={n}"),
                points: law,
                style: Style::Line,
                color: i,
            });
        }
        let c = Chart {
            title: format!("{:?}: fitted L(N, D)", f.family),
            x_label: "tokens D".into(),
            y_label: "val loss".into(),
            log_x: true,
            series,
            ..Chart::default()
        };
        out.push(write(
            dir,
            &format!("law-{:?}.svg", f.family).to_lowercase(),
            &c,
        )?);
        if let Some(co) = &f.compute_optimal {
            let cs: Vec<f64> = (0..=24)
                .map(|k| 10f64.powf(12.0 + k as f64 / 4.0))
                .collect();
            let c = Chart {
                title: format!("{:?}: compute-optimal frontier", f.family),
                x_label: "compute C (FLOPs)".into(),
                y_label: "N*, D*".into(),
                log_x: true,
                log_y: true,
                series: vec![
                    Series {
                        name: "N*(C)".into(),
                        points: cs.iter().map(|&c| (c, co.n_opt(c))).collect(),
                        style: Style::Line,
                        color: 0,
                    },
                    Series {
                        name: "D*(C)".into(),
                        points: cs.iter().map(|&c| (c, co.d_opt(c))).collect(),
                        style: Style::Line,
                        color: 1,
                    },
                ],
            };
            out.push(write(
                dir,
                &format!("frontier-{:?}.svg", f.family).to_lowercase(),
                &c,
            )?);
        }
    }
    Ok(out)
}

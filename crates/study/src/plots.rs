//! The report's figures as PNG files.

use crate::chart::{Chart, Series, Style};
use crate::plan::{Family, JobAction, Plan};
use crate::results::{FamilyFit, Results, Source};
use crate::{Result, StudyError};
use frugal_fit::{prediction_band, ScalingLaw};
use frugal_train::metrics::{self, METRICS_FILE};
use std::path::{Path, PathBuf};

/// (tokens, `key`) of a run's evaluations.
fn curve(run: &Path, key: &str) -> Vec<(f64, f64)> {
    metrics::read(&run.join(METRICS_FILE))
        .unwrap_or_default()
        .iter()
        .filter_map(|r| Some((r["tokens"].as_f64()?, r[key].as_f64()?)))
        .collect()
}

fn write(dir: &Path, name: &str, chart: &Chart) -> Result<PathBuf> {
    let path = dir.join(name);
    chart.png(&path).map_err(|source| StudyError::Chart {
        path: path.display().to_string(),
        source,
    })?;
    Ok(path)
}

fn series(name: impl Into<String>, points: Vec<(f64, f64)>, style: Style, color: usize) -> Series {
    Series {
        name: name.into(),
        points,
        style,
        color,
    }
}

/// `steps + 1` points spaced evenly in log space over [lo, hi].
fn log_grid(lo: f64, hi: f64, steps: usize) -> Vec<f64> {
    (0..=steps)
        .map(|k| lo * (hi / lo).powf(k as f64 / steps as f64))
        .collect()
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
    for size in &sizes {
        out.push(write(
            dir,
            &format!("curves-{size}.png"),
            &curves(plan, study_dir, size),
        )?);
    }
    out.push(write(dir, "diagonal.png", &diagonal(results))?);
    out.push(write(dir, "envelope.png", &envelope(results))?);
    for f in fits {
        let key = f.source.key();
        out.push(write(dir, &format!("law-{key}.png"), &law(results, f))?);
        if let Some(c) = frontier(f) {
            out.push(write(dir, &format!("frontier-{key}.png"), &c)?);
        }
    }
    Ok(out)
}

/// Loss curves of one size: the constant run (and its SWA), its branches,
/// the cosine runs.
fn curves(plan: &Plan, study_dir: &Path, size: &str) -> Chart {
    let mut s = Vec::new();
    for j in plan.jobs.iter().filter(|j| j.size == size) {
        let run = study_dir.join(&j.out);
        let constant = matches!(j.action, JobAction::Train { .. }) && j.family == Family::Wsd;
        // Branches are short (often one or two evaluations): markers.
        let (style, color) = match (&j.action, constant) {
            (_, true) => (Style::Line, 0),
            (JobAction::Cooldown { .. }, _) => (Style::Markers, 1),
            _ => (Style::Dashed, 2),
        };
        let pts = curve(&run, "val_loss");
        if !pts.is_empty() {
            s.push(series(j.id.clone(), pts, style, color));
        }
        // Branches inherit the parent's SWA; only the constant run's is shown.
        let swa = curve(&run, "val_loss_swa");
        if constant && !swa.is_empty() {
            s.push(series(format!("{} SWA", j.id), swa, Style::Dashed, 4));
        }
    }
    Chart {
        title: format!("validation loss, size {size}"),
        x_label: "tokens".into(),
        y_label: "val loss".into(),
        series: s,
        ..Chart::default()
    }
}

/// Cooldown vs cosine at equal (N, D): on the diagonal when they agree.
fn diagonal(results: &Results) -> Chart {
    let pairs: Vec<(f64, f64)> = results
        .diagonal()
        .iter()
        .map(|(w, c)| (c.loss, w.loss))
        .collect();
    let (lo, hi) = pairs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |a, p| {
            (a.0.min(p.0.min(p.1)), a.1.max(p.0.max(p.1)))
        });
    let mut s = Vec::new();
    if lo.is_finite() {
        s.push(series("y = x", vec![(lo, lo), (hi, hi)], Style::Dashed, 7));
    }
    s.push(series("(N, D) points", pairs, Style::Markers, 1));
    Chart {
        title: "cooldown vs cosine at equal (N, D)".into(),
        x_label: "cosine final val loss".into(),
        y_label: "cooldown final val loss".into(),
        series: s,
        ..Chart::default()
    }
}

/// Loss vs FLOPs per source, with each envelope (best loss at ≤ C).
fn envelope(results: &Results) -> Chart {
    let mut s = Vec::new();
    for (i, source) in Source::ALL.into_iter().enumerate() {
        let mut pts: Vec<(f64, f64)> = results.of(source).map(|p| (p.flops, p.loss)).collect();
        if pts.is_empty() {
            continue;
        }
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut best = f64::INFINITY;
        let mut env = Vec::new();
        for &(c, l) in &pts {
            if l < best {
                best = l;
                env.push((c, l));
            }
        }
        s.push(series(source.label(), pts, Style::Markers, i + 1));
        s.push(series(
            format!("{} envelope", source.label()),
            env,
            Style::Line,
            i + 1,
        ));
    }
    Chart {
        title: "final loss vs training FLOPs".into(),
        x_label: "FLOPs".into(),
        y_label: "val loss".into(),
        log_x: true,
        series: s,
        ..Chart::default()
    }
}

/// The fitted L(N, D) per size over the observed points, the bootstrap's
/// 90 % band, and the law fitted without the largest size on that size.
fn law(results: &Results, f: &FamilyFit) -> Chart {
    let mut s = Vec::new();
    let mut ns: Vec<usize> = results.of(f.source).map(|p| p.n).collect();
    ns.sort();
    ns.dedup();
    let curve_of = |law: &ScalingLaw, n: usize, ds: &[f64]| -> Vec<(f64, f64)> {
        ds.iter().map(|&d| (d, law.predict(n as f64, d))).collect()
    };
    for (i, &n) in ns.iter().enumerate() {
        let obs: Vec<(f64, f64)> = results
            .of(f.source)
            .filter(|p| p.n == n)
            .map(|p| (p.d as f64, p.loss))
            .collect();
        let (d0, d1) = obs
            .iter()
            .fold((f64::INFINITY, 0.0f64), |a, p| (a.0.min(p.0), a.1.max(p.0)));
        // Extend the curves a little past the data on both sides.
        let ds = log_grid(d0 / 1.3, d1 * 1.3, 24);
        if let Some(b) = &f.bootstrap {
            let band: Vec<(f64, f64)> = ds
                .iter()
                .filter_map(|&d| prediction_band(&b.laws, n as f64, d, 0.9))
                .collect();
            if band.len() == ds.len() {
                let (lo, hi): (Vec<f64>, Vec<f64>) = band.into_iter().unzip();
                s.push(Series::band(format!("90 % band N={n}"), &ds, &lo, &hi, i));
            }
        }
        s.push(series(format!("N={n}"), obs, Style::Markers, i));
        s.push(series(
            format!("fit N={n}"),
            curve_of(&f.fit.law, n, &ds),
            Style::Line,
            i,
        ));
        if let Some(h) = f.held_out.as_ref().filter(|h| h.n == n) {
            s.push(series(
                format!("fit without N={n}"),
                curve_of(&h.law, n, &ds),
                Style::Dashed,
                7,
            ));
        }
    }
    Chart {
        title: format!("{}: fitted L(N, D)", f.source.label()),
        x_label: "tokens D".into(),
        y_label: "val loss".into(),
        log_x: true,
        series: s,
        ..Chart::default()
    }
}

/// N*(C) and D*(C) of the fitted law.
fn frontier(f: &FamilyFit) -> Option<Chart> {
    let co = f.compute_optimal.as_ref()?;
    let cs = log_grid(1e12, 1e18, 24);
    Some(Chart {
        title: format!("{}: compute-optimal frontier", f.source.label()),
        x_label: "compute C (FLOPs)".into(),
        y_label: "N*, D*".into(),
        log_x: true,
        log_y: true,
        series: vec![
            series(
                "N*(C)",
                cs.iter().map(|&c| (c, co.n_opt(c))).collect(),
                Style::Line,
                0,
            ),
            series(
                "D*(C)",
                cs.iter().map(|&c| (c, co.d_opt(c))).collect(),
                Style::Line,
                1,
            ),
        ],
    })
}

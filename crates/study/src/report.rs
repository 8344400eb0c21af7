//! `frugal study fit` and `report`: the fits of every source of points,
//! `fit.json`, `points.csv`, the figures and `report.md`.

use crate::plan::{Family, Plan};
use crate::results::{self, FamilyFit, Results, Source};
use crate::spec::FitSpec;
use crate::{Result, StudyError};
use frugal_fit::bootstrap::show_error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Fits the law to each source with enough points (SWA only when asked
/// for); returns the fits and a line per source that could not be fitted.
pub fn fit_all(res: &Results, spec: &FitSpec) -> Result<(Vec<FamilyFit>, Vec<String>)> {
    let (mut fits, mut skipped) = (Vec::new(), Vec::new());
    for source in Source::ALL {
        if source == Source::Swa && !spec.include_swa {
            continue;
        }
        match results::fit_source(res, source, spec.bootstrap) {
            Ok(f) => fits.push(f),
            Err(StudyError::Spec(m)) => skipped.push(format!("no fit: {m}")),
            Err(e) => return Err(e),
        }
    }
    Ok((fits, skipped))
}

/// Collects the results, fits them and writes `fit.json`.
pub fn fit(plan: &Plan, study_dir: &Path, spec: &FitSpec) -> Result<(Vec<FamilyFit>, Vec<String>)> {
    let res = results::collect(plan, study_dir)?;
    fit_and_save(&res, spec, study_dir)
}

/// Fits every family and writes `fit.json`; returns the fits and the lines
/// explaining what was skipped.
fn fit_and_save(
    res: &results::Results,
    spec: &FitSpec,
    study_dir: &Path,
) -> Result<(Vec<FamilyFit>, Vec<String>)> {
    let out = fit_all(res, spec)?;
    write(
        &study_dir.join("fit.json"),
        &serde_json::to_vec_pretty(&out.0)?,
    )?;
    Ok(out)
}

/// Writes `points.csv`, `fit.json`, `plots/*.png` and `report.md`; returns
/// the report's path.
pub fn write_report(plan: &Plan, study_dir: &Path, spec: &FitSpec) -> Result<PathBuf> {
    let res = results::collect(plan, study_dir)?;
    let mut csv = String::from("id,size,source,N,D,C,loss\n");
    for p in &res.points {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{:.6e},{}",
            p.id,
            p.size,
            p.source.key(),
            p.n,
            p.d,
            p.flops,
            p.loss
        );
    }
    write(&study_dir.join("points.csv"), csv.as_bytes())?;
    let (fits, skipped) = fit_and_save(&res, spec, study_dir)?;
    let figures = crate::plots::write_all(plan, study_dir, &res, &fits, &study_dir.join("plots"))?;
    let mut md = markdown(plan, &res, &fits);
    for line in skipped {
        let _ = writeln!(md, "{line}\n");
    }
    md.push_str("## Figures\n\n");
    for f in figures {
        if let Ok(rel) = f.strip_prefix(study_dir) {
            let _ = writeln!(md, "![{0}]({0})\n", rel.display());
        }
    }
    let path = study_dir.join("report.md");
    write(&path, md.as_bytes())?;
    Ok(path)
}

/// Atomic, so an interrupted report never leaves a torn file behind.
fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(frugal_data::atomic::write_bytes(path, bytes)?)
}

fn saving(w: f64, c: f64) -> String {
    if w > 0.0 && c > 0.0 {
        format!("{:.1} %", 100.0 * (1.0 - w / c))
    } else {
        "-".into()
    }
}

/// `report.md`: compute, the diagonal comparison, SWA, the fits.
pub fn markdown(plan: &Plan, res: &Results, fits: &[FamilyFit]) -> String {
    let mut s = String::from("# Scaling study report\n\n## Compute\n\n");
    let (pw, pc) = (
        plan.family_flops(Family::Wsd),
        plan.family_flops(Family::Cosine),
    );
    let [rw, rc] = res.flops_run;
    s.push_str("| | wsd FLOPs | cosine FLOPs | saving |\n|---|---|---|---|\n");
    let _ = writeln!(s, "| planned | {pw:.3e} | {pc:.3e} | {} |", saving(pw, pc));
    let _ = writeln!(s, "| run | {rw:.3e} | {rc:.3e} | {} |", saving(rw, rc));
    s.push_str("\n## Cooldown vs cosine at equal (N, D)\n\n");
    s.push_str(
        "| size | N | D | cooldown | cosine | cooldown − cosine |\n|---|---|---|---|---|---|\n",
    );
    let diag = res.diagonal();
    let (mut le, mut worst) = (0, 0.0f64);
    for (w, c) in &diag {
        let gap = w.loss - c.loss;
        le += (gap <= 0.0) as usize;
        if gap.abs() > worst.abs() {
            worst = gap;
        }
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.4} | {:.4} | {:+.4} |",
            w.size, w.n, w.d, w.loss, c.loss, gap
        );
    }
    let _ = writeln!(
        s,
        "\nCooldown ≤ cosine at {le} of {} points; largest gap {worst:+.4} nats.\n",
        diag.len()
    );
    if !res.swa.is_empty() {
        s.push_str("## SWA on the constant-LR runs\n\n");
        s.push_str("At each budget's step: the raw constant-LR weights, their SWA average, and the cooldown branch ending there.\n\n");
        s.push_str(
            "| run | step | raw | SWA | SWA − raw | cooldown |\n|---|---|---|---|---|---|\n",
        );
        for p in &res.swa {
            let cd = p.cooldown.map_or("-".into(), |c| format!("{c:.4}"));
            let _ = writeln!(
                s,
                "| {} | {} | {:.4} | {:.4} | {:+.4} | {cd} |",
                p.id,
                p.step,
                p.raw,
                p.swa,
                p.swa - p.raw
            );
        }
        let better = res.swa.iter().filter(|p| p.swa < p.raw).count();
        let _ = writeln!(
            s,
            "\nSWA below the raw weights at {better} of {} steps.\n",
            res.swa.len()
        );
    }
    for f in fits {
        fit_section(&mut s, f);
    }
    s
}

fn fit_section(s: &mut String, f: &FamilyFit) {
    let l = &f.fit.law;
    let _ = writeln!(
        s,
        "## Fit: {} ({} points)\n\nL(N, D) = {:.4} + {:.4e}/N^{:.4} + {:.4e}/D^{:.4} (objective {:.3e})\n",
        f.source.label(),
        f.points,
        l.e,
        l.a,
        l.alpha,
        l.b,
        l.beta,
        f.fit.objective
    );
    if let Some(b) = &f.bootstrap {
        let e = &b.standard_errors;
        let _ = writeln!(
            s,
            "Bootstrap ({} of {} resamples converged) standard errors: E {}, A {}, B {}, α {}, β {}. The law plot shades the 90 % band of the resampled laws.\n",
            b.successful,
            b.successful + b.failed,
            show_error(e.e, 3, false),
            show_error(e.a, 3, true),
            show_error(e.b, 3, true),
            show_error(e.alpha, 3, false),
            show_error(e.beta, 3, false)
        );
    }
    if let Some(h) = &f.held_out {
        let _ = writeln!(
            s,
            "Fitted without the largest size (N = {}), predicting it: mean |relative error| {:.2} %, max {:.2} %.\n",
            h.n,
            100.0 * h.report.mean_abs_rel_error,
            100.0 * h.report.max_abs_rel_error
        );
        s.push_str("| D | loss | predicted | relative error |\n|---|---|---|---|\n");
        for p in &h.report.points {
            let _ = writeln!(
                s,
                "| {} | {:.4} | {:.4} | {:+.2} % |",
                p.d,
                p.loss,
                p.predicted,
                100.0 * p.rel_error
            );
        }
        s.push('\n');
    }
    if let Some(co) = &f.compute_optimal {
        let _ = writeln!(
            s,
            "Compute-optimal allocation: N* ∝ C^{:.3}, D* ∝ C^{:.3}.\n",
            co.a, co.b
        );
        s.push_str("| C (FLOPs) | N* | D* |\n|---|---|---|\n");
        for c in [1e15, 1e16, 1e17, 1e18] {
            let _ = writeln!(s, "| {c:.0e} | {:.3e} | {:.3e} |", co.n_opt(c), co.d_opt(c));
        }
        s.push('\n');
    }
}

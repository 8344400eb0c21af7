//! The end-to-end report: JSON and the readable table.

mod common;

use frugal_fit::{fit_report, BootstrapOptions, BootstrapStarts, ReportOptions};
use serde_json::Value;

#[test]
fn chinchilla_report_has_every_section() {
    let opts = ReportOptions {
        exclude_top_loss: 5,
        bootstrap: Some(BootstrapOptions {
            resamples: 20,
            seed: 1,
            starts: BootstrapStarts::Best(2),
        }),
        ..ReportOptions::default()
    };
    let report = fit_report(&common::chinchilla_all(), &opts).expect("report");
    assert_eq!(report.n_observations_total, 245);
    assert_eq!(report.excluded_top_loss, 5);
    assert_eq!(report.n_observations, 240);

    let json: Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
    let law = &json["approach3"]["law"];
    for key in ["E", "A", "B", "alpha", "beta"] {
        assert!(law[key].as_f64().is_some(), "law.{key}");
        assert!(json["bootstrap"]["standard_errors"][key].as_f64().unwrap() > 0.0);
    }
    let co = &json["compute_optimal"];
    let (a, b) = (co["a"].as_f64().unwrap(), co["b"].as_f64().unwrap());
    assert!((a + b - 1.0).abs() < 1e-12);
    // Besiroglu et al.: a = 0.5126 from their refit.
    assert!((a - 0.5126).abs() < 0.01, "a = {a}");
    assert!(json["approach2"]["a"].as_f64().is_some());
    assert!(json["approach2_note"].is_null());
    assert_eq!(json["allocation_examples"].as_array().unwrap().len(), 4);

    let table = report.to_string();
    for needle in [
        "alpha",
        "beta",
        "±",
        "objective",
        "Compute-optimal",
        "Approach 2",
    ] {
        assert!(table.contains(needle), "table lacks {needle}:\n{table}");
    }
}

#[test]
fn report_without_isoflop_structure_explains_why() {
    // Every run at its own budget: approach 2 does not apply.
    let obs: Vec<_> = common::chinchilla()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 40 == 0)
        .map(|(_, o)| o)
        .collect();
    let opts = ReportOptions {
        isoflop: frugal_fit::IsoFlopOptions {
            rel_tol: 0.0,
            min_points: 3,
        },
        ..ReportOptions::default()
    };
    let report = fit_report(&obs, &opts).expect("report");
    assert!(report.approach2.is_none());
    assert!(report
        .approach2_note
        .as_deref()
        .unwrap()
        .contains("approach 2"));
    assert!(report.bootstrap.is_none());
    assert!(report.to_string().contains("not applicable"));
}

//! Bad files and options give typed errors (with the row), never panics.

use std::io::Write;

use frugal_fit::{
    fit_approach3, load_observations, Columns, FitError, FitOptions, Observation, StartGrid,
};

fn file(ext: &str, body: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new()
        .suffix(ext)
        .tempfile()
        .expect("temp file");
    f.write_all(body.as_bytes()).expect("write");
    f
}

fn load(ext: &str, body: &str, columns: &str) -> Result<Vec<Observation>, FitError> {
    let f = file(ext, body);
    load_observations(f.path(), &Columns::parse(columns).expect("valid mapping"))
}

#[test]
fn good_csv_and_jsonl_agree() {
    let csv = load(
        ".csv",
        "N,C,loss\n1e8,6e18,3.5\n2e8, 1.2e19 ,3.1\n",
        "N,C,loss",
    )
    .unwrap();
    let jsonl = load(
        ".jsonl",
        "{\"N\": 1e8, \"C\": 6e18, \"loss\": 3.5}\n\n{\"N\": \"2e8\", \"C\": 1.2e19, \"loss\": 3.1}\n",
        "N,C,loss",
    )
    .unwrap();
    assert_eq!(csv, jsonl);
    assert_eq!(csv.len(), 2);
    assert!((csv[0].d - 1e10).abs() < 1e-3);
}

#[test]
fn missing_file() {
    let err = load_observations("/nonexistent/frugal.csv", &Columns::default()).unwrap_err();
    assert!(matches!(err, FitError::Io { .. }), "{err}");
}

#[test]
fn missing_column_names_the_alternatives() {
    let err = load(".csv", "N,tokens,loss\n1,2,3\n", "N,D,loss").unwrap_err();
    match &err {
        FitError::MissingColumn {
            column, available, ..
        } => {
            assert_eq!(column, "D");
            assert!(available.contains("tokens"));
        }
        other => panic!("unexpected {other}"),
    }
}

fn assert_bad_value(err: FitError, want_line: usize, want_column: &str, want_reason: &str) {
    match &err {
        FitError::BadValue {
            line,
            column,
            reason,
            ..
        } => {
            assert_eq!(*line, want_line, "{err}");
            assert_eq!(column, want_column, "{err}");
            assert_eq!(*reason, want_reason, "{err}");
            assert!(err.to_string().contains(&format!("line {want_line}")));
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn non_numeric_value_reports_its_line() {
    let err = load(".csv", "N,D,loss\n1e8,1e9,3\n1e8,lots,3\n", "N,D,loss").unwrap_err();
    assert_bad_value(err, 3, "D", "not a number");
}

#[test]
fn non_positive_and_non_finite_values_are_rejected() {
    let err = load(".csv", "N,D,loss\n1e8,1e9,0\n", "N,D,loss").unwrap_err();
    assert_bad_value(err, 2, "loss", "must be positive");
    let err = load(".csv", "N,D,loss\n1e8,1e9,3\n-1e8,1e9,3\n", "N,D,loss").unwrap_err();
    assert_bad_value(err, 3, "N", "must be positive");
    let err = load(".csv", "N,D,loss\n1e8,inf,3\n", "N,D,loss").unwrap_err();
    assert_bad_value(err, 2, "D", "not finite");
    let err = load(".csv", "N,D,loss\n1e8,NaN,3\n", "N,D,loss").unwrap_err();
    assert_bad_value(err, 2, "D", "not finite");
    let err = load(".csv", "N,D,loss\n1e8,,3\n", "N,D,loss").unwrap_err();
    assert_bad_value(err, 2, "D", "not a number");
}

#[test]
fn ragged_and_empty_csv() {
    let err = load(".csv", "N,D,loss\n1e8,1e9\n", "N,D,loss").unwrap_err();
    assert!(matches!(err, FitError::Csv { .. }), "{err}");
    let err = load(".csv", "N,D,loss\n", "N,D,loss").unwrap_err();
    assert!(
        matches!(err, FitError::TooFewObservations { got: 0, .. }),
        "{err}"
    );
    let err = load(".csv", "", "N,D,loss").unwrap_err();
    assert!(matches!(err, FitError::MissingColumn { .. }), "{err}");
    let err = load(".csv", "\u{0}\u{ff}garbage", "N,D,loss").unwrap_err();
    assert!(
        matches!(err, FitError::MissingColumn { .. } | FitError::Csv { .. }),
        "{err}"
    );
}

#[test]
fn bad_jsonl_lines() {
    let err = load(
        ".jsonl",
        "{\"N\":1,\"D\":1,\"loss\":1}\n{oops\n",
        "N,D,loss",
    )
    .unwrap_err();
    assert!(matches!(err, FitError::Json { line: 2, .. }), "{err}");
    let err = load(".jsonl", "{\"N\":1,\"loss\":1}\n", "N,D,loss").unwrap_err();
    assert_bad_value(err, 1, "D", "missing key");
    let err = load(".jsonl", "[1,2,3]\n", "N,D,loss").unwrap_err();
    assert_bad_value(err, 1, "", "expected a JSON object");
    let err = load(".jsonl", "{\"N\":1,\"D\":true,\"loss\":1}\n", "N,D,loss").unwrap_err();
    assert_bad_value(err, 1, "D", "not a number");
    let err = load(".ndjson", "{\"N\":1,\"D\":-2,\"loss\":1}\n", "N,D,loss").unwrap_err();
    assert_bad_value(err, 1, "D", "must be positive");
}

#[test]
fn bad_column_specs() {
    for spec in ["", "N,D", "N,D,loss,extra", "N, ,loss", "N,C=,loss"] {
        assert!(
            matches!(Columns::parse(spec), Err(FitError::InvalidColumns { .. })),
            "{spec:?}"
        );
    }
}

#[test]
fn fitting_too_little_data_or_bad_options_errors() {
    let obs = vec![
        Observation {
            n: 1e8,
            d: 1e9,
            loss: 3.0
        };
        4
    ];
    let err = fit_approach3(&obs, &FitOptions::default()).unwrap_err();
    assert!(matches!(
        err,
        FitError::TooFewObservations { needed: 5, got: 4 }
    ));
    assert!(fit_approach3(&[], &FitOptions::default()).is_err());

    let obs = vec![
        Observation {
            n: 1e8,
            d: 1e9,
            loss: 3.0
        };
        10
    ];
    let bad_delta = FitOptions {
        huber_delta: 0.0,
        ..FitOptions::default()
    };
    assert!(matches!(
        fit_approach3(&obs, &bad_delta),
        Err(FitError::InvalidOption(_))
    ));
    let empty_grid = FitOptions {
        grid: StartGrid {
            alpha: vec![],
            ..StartGrid::chinchilla()
        },
        ..FitOptions::default()
    };
    assert!(matches!(
        fit_approach3(&obs, &empty_grid),
        Err(FitError::InvalidOption(_))
    ));
}

#[test]
fn degenerate_data_does_not_panic() {
    // Identical points: the law is unidentified, but the fit must still
    // return (any exact fit) or a typed error, not panic.
    let obs = vec![
        Observation {
            n: 1e8,
            d: 1e9,
            loss: 3.0
        };
        10
    ];
    let small = FitOptions {
        grid: StartGrid {
            alpha: vec![0.0, 1.0],
            beta: vec![0.0, 1.0],
            e: vec![-1.0, 1.0],
            a: vec![0.0, 25.0],
            b: vec![0.0, 25.0],
        },
        ..FitOptions::default()
    };
    if let Ok(fit) = fit_approach3(&obs, &small) {
        assert!(fit.objective < 1e-12);
        assert!((fit.law.predict(1e8, 1e9) - 3.0).abs() < 1e-4);
    }
}

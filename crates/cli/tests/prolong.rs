//! `frugal prolong score | select` through the CLI on a tiny trained frugal
//! checkpoint: Parquet output, selection with texts copied from the input,
//! and a clear error for an unwritable output.

mod common;
use common::*;

#[test]
fn score_to_parquet_then_select_with_texts() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, _) = train_tiny(tmp.path(), 2);
    let ckpt = run.join("checkpoints/step-0000002");

    // Six passages of Hamlet and one broken line.
    let hamlet = std::fs::read_to_string(fixture_texts().join("hamlet_acts_1-3.txt")).unwrap();
    let texts: Vec<String> = hamlet
        .split("\n\n")
        .collect::<Vec<_>>()
        .chunks(40)
        .take(6)
        .map(|c| c.join("\n\n"))
        .collect();
    let input = tmp.path().join("docs.jsonl");
    let mut lines: Vec<String> = texts
        .iter()
        .map(|t| serde_json::json!({ "text": t }).to_string())
        .collect();
    lines.push("{broken".into());
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();

    let scores = tmp.path().join("scores.parquet");
    let tok = tmp.path().join("tok.json");
    // The scorer and its tokenizer, as `--model` and `--tokenizer` name them.
    let score_with =
        |model: &std::path::Path, tok: Option<&std::path::Path>, out: &std::path::Path| {
            let mut c = frugal();
            c.args(["prolong", "score", "--model"]).arg(model);
            if let Some(tok) = tok {
                c.arg("--tokenizer").arg(tok);
            }
            c.arg("--input").arg(&input).arg("--output").arg(out).args([
                "--chunk-size",
                "16",
                "--window",
                "128",
                "--sample-pairs",
                "6",
            ]);
            c
        };
    let score = |out: &std::path::Path| score_with(&ckpt, Some(&tok), out);
    let out = run_ok(&mut score(&scores));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("invalid_json"), "{stdout}");
    let bytes = std::fs::read(&scores).unwrap();
    assert_eq!(&bytes[..4], b"PAR1", "a Parquet file");
    let journal = tmp.path().join("scores.parquet.partial.jsonl");
    assert!(!journal.exists(), "journal removed");

    let selected = tmp.path().join("selected.jsonl");
    run_ok(
        frugal()
            .args(["prolong", "select", "--top", "50%", "--scores"])
            .arg(&scores)
            .arg("--output")
            .arg(&selected)
            .arg("--input")
            .arg(&input),
    );
    let kept: Vec<serde_json::Value> = std::fs::read_to_string(&selected)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(kept.len(), 3, "half of the 6 scored documents");
    let lds: Vec<f64> = kept.iter().map(|r| r["lds"].as_f64().unwrap()).collect();
    assert!(lds.windows(2).all(|w| w[0] >= w[1]), "best first: {lds:?}");
    for r in &kept {
        // ids are `path:line`; the text is that line's.
        let id = r["id"].as_str().unwrap();
        let line: usize = id.rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(r["text"].as_str().unwrap(), texts[line - 1], "{id}");
    }

    fails_with(
        &mut score(&tmp.path().join("no/such/dir/scores.jsonl")),
        "no/such/dir",
    );

    // The run directory stands for its latest checkpoint, and the tokenizer
    // `frugal train` keeps there is found without --tokenizer: the same scores.
    let again = tmp.path().join("again.jsonl");
    let out = run_ok(&mut score_with(&run, None, &again));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("scorer: ") && err.contains("step-0000002"),
        "{err}"
    );
    let by_id = |text: &str| -> Vec<(String, Option<f64>)> {
        let mut v: Vec<(String, Option<f64>)> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|r| (r["id"].as_str().unwrap().to_string(), r["lds"].as_f64()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let first = tmp.path().join("first.jsonl");
    run_ok(&mut score(&first));
    let want = by_id(&std::fs::read_to_string(&first).unwrap());
    assert_eq!(want.iter().filter(|r| r.1.is_some()).count(), 6);
    assert_eq!(by_id(&std::fs::read_to_string(&again).unwrap()), want);
    fails_with(
        frugal()
            .args(["prolong", "score", "--model"])
            .arg(tmp.path())
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(tmp.path().join("none.jsonl")),
        "nor a frugal run directory with checkpoints",
    );
}

//! `--weights ema | swa | swa:K` on `eval`, `generate`, `export hf` and
//! `prolong score`: the averages a run kept beside its checkpoints, read back
//! as models. `eval` must give the losses the run itself logged for them at
//! that step.

mod common;
use candle_core::Device;
use common::*;
use std::path::Path;

fn eval(run: &Path, step: u64, weights: &str) -> f64 {
    let out = run_ok(
        frugal()
            .arg("eval")
            .arg("--checkpoint")
            .arg(run.join(format!("checkpoints/step-{step:07}")))
            .args(["--weights", weights]),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["weights"], weights);
    v["val_loss"].as_f64().unwrap()
}

#[test]
fn averaged_weights_evaluate_to_the_losses_their_run_logged() {
    let tmp = tempfile::tempdir().unwrap();
    // EMA from the end of warmup (step 5); SWA windows of 4 steps, a
    // snapshot every step; evaluations at steps 5, 10 and 12.
    let (run, _) = train_tiny_with(
        tmp.path(),
        12,
        &[
            "--set",
            "averaging.ema.decay=0.9",
            "--set",
            "averaging.swa.interval=1",
            "--set",
            "averaging.swa.horizon=4",
        ],
    );
    let metrics: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let logged = |step: u64, key: &str| {
        metrics
            .iter()
            .find(|m| m["step"] == step && m[key].is_number())
            .unwrap_or_else(|| panic!("no {key} at step {step}"))[key]
            .as_f64()
            .unwrap()
    };
    // Step 10 is inside an SWA window (the checkpoint holds its running
    // sum); step 12 ends one (saved whole under RUN/swa/).
    for step in [10, 12] {
        for (weights, key) in [
            ("raw", "val_loss"),
            ("ema", "val_loss_ema"),
            ("swa", "val_loss_swa"),
        ] {
            let (got, want) = (eval(&run, step, weights), logged(step, key));
            assert!(
                (got - want).abs() <= 1e-6 * want,
                "step {step} {weights}: eval {got} vs logged {want}"
            );
        }
    }
    let raw = eval(&run, 12, "raw");
    assert!((eval(&run, 12, "ema") - raw).abs() > 1e-4, "EMA is not raw");
    let last_window = eval(&run, 12, "swa:1");
    assert_eq!(last_window, eval(&run, 12, "swa"));
    let two = eval(&run, 12, "swa:2");
    assert!(two.is_finite() && two != last_window, "{two} {last_window}");

    let eval_cmd = |step: u64, weights: &str| {
        let mut c = frugal();
        c.arg("eval")
            .arg("--checkpoint")
            .arg(run.join(format!("checkpoints/step-{step:07}")))
            .args(["--weights", weights]);
        c
    };
    fails_with(&mut eval_cmd(10, "swa:3"), "has 2 SWA windows, 3 requested");
    fails_with(&mut eval_cmd(3, "ema"), "has no EMA weights at step 3");
    fails_with(&mut eval_cmd(12, "mean"), "expected raw, ema, swa or swa:K");

    // export writes the average, generate runs on it.
    let hf = tmp.path().join("hf-ema");
    run_ok(
        frugal()
            .args(["export", "hf", "--weights", "ema", "--checkpoint"])
            .arg(&run)
            .arg("--out")
            .arg(&hf),
    );
    let exported = candle_core::safetensors::load(hf.join("model.safetensors"), &Device::Cpu);
    let ema = candle_core::safetensors::load(
        run.join("checkpoints/step-0000012/ema.safetensors"),
        &Device::Cpu,
    );
    let (exported, ema) = (exported.unwrap(), ema.unwrap());
    assert_eq!(exported.len(), ema.len());
    for (name, t) in &ema {
        let gap = frugal_model::fused_check::max_abs_gap(&exported[name], t).unwrap();
        assert_eq!(gap, 0.0, "{name}");
    }
    let out = run_ok(
        frugal()
            .args(["generate", "--weights", "swa:2", "--prompt", "The king"])
            .arg("--checkpoint")
            .arg(&run),
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("The king"));

    // prolong score --weights ema on the run scores as the exported EMA does
    // (same scores to the bit), and names the weights.
    let hamlet = std::fs::read_to_string(fixture_texts().join("hamlet_acts_1-3.txt")).unwrap();
    let docs: String = hamlet
        .split("\n\n")
        .collect::<Vec<_>>()
        .chunks(30)
        .take(3)
        .map(|c| serde_json::json!({ "text": c.join("\n\n") }).to_string() + "\n")
        .collect();
    let input = tmp.path().join("docs.jsonl");
    std::fs::write(&input, docs).unwrap();
    let score = |model: &Path, weights: &str, out: &str| {
        let mut c = frugal();
        c.args(["prolong", "score", "--model"])
            .arg(model)
            .args(["--weights", weights, "--input"])
            .arg(&input)
            .arg("--output")
            .arg(tmp.path().join(out))
            .args([
                "--chunk-size",
                "16",
                "--window",
                "128",
                "--sample-pairs",
                "-1",
            ]);
        c
    };
    let lds = |out: &str| -> Vec<f64> {
        std::fs::read_to_string(tmp.path().join(out))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["lds"]
                    .as_f64()
                    .unwrap()
            })
            .collect()
    };
    let err = run_ok(&mut score(&run, "ema", "ema.jsonl")).stderr;
    assert!(String::from_utf8_lossy(&err).contains("(ema weights)"));
    run_ok(&mut score(&hf, "raw", "hf.jsonl"));
    run_ok(&mut score(&run, "raw", "raw.jsonl"));
    assert_eq!(lds("ema.jsonl").len(), 3);
    assert_eq!(lds("ema.jsonl"), lds("hf.jsonl"));
    assert_ne!(lds("ema.jsonl"), lds("raw.jsonl"));
    fails_with(&mut score(&hf, "ema", "x.jsonl"), "not one");
}

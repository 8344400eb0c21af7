//! A cooldown branched from step N of a constant-LR run is bit-identical to
//! a fresh WSD run whose cooldown starts exactly at N: same metrics after N,
//! same final weights, optimizer state and weight averages.

mod common;
use common::*;
use std::path::Path;

/// Nano model with SWA and EMA on, evaluated every 5 steps.
fn config(dir: &Path, name: &str, ds: &Path, steps: u64, schedule: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    let text = format!(
        r#"
[model]
preset = "nano"
[data]
dataset = {:?}
[train]
seq_len = 32
batch_size = 4
steps = {steps}
lr = 3e-3
log_every = 1
[schedule]
{schedule}
warmup_steps = 3
[eval]
every = 5
batches = 2
[checkpoint]
every = 4
[averaging.swa]
interval = 2
horizon = 8
[averaging.ema]
decay = 0.9
"#,
        ds.display().to_string()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn lines_after(path: &Path, step: u64) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["step"].as_u64().unwrap() > step
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn branch_equals_fresh_wsd_run() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let ds = tiny_dataset(t);
    // Parent: constant LR for 16 steps (it need not have finished).
    let parent_cfg = config(t, "const.toml", &ds, 16, "kind = \"constant\"");
    let parent = t.join("parent");
    run_ok(
        frugal()
            .arg("train")
            .arg("--config")
            .arg(&parent_cfg)
            .arg("--out")
            .arg(&parent),
    );
    // Branch at 8, 4 cooldown steps.
    let branch = t.join("branch");
    let cooldown = |out: &Path| {
        run_ok(
            frugal()
                .arg("cooldown")
                .arg("--from")
                .arg(parent.join("checkpoints/step-0000008"))
                .args(["--steps", "4", "--shape", "1-sqrt", "--out"])
                .arg(out)
                .arg("--quiet"),
        )
    };
    cooldown(&branch);
    // Reference: WSD over 12 steps with floor(0.34·12) = 4 cooldown steps.
    let wsd_cfg = config(
        t,
        "wsd.toml",
        &ds,
        12,
        "kind = \"wsd\"\ncooldown_fraction = 0.34\ncooldown_shape = \"1-sqrt\"",
    );
    let wsd = t.join("wsd");
    run_ok(
        frugal()
            .arg("train")
            .arg("--config")
            .arg(&wsd_cfg)
            .arg("--out")
            .arg(&wsd),
    );

    let a = lines_after(&branch.join("metrics.jsonl"), 8);
    let b = lines_after(&wsd.join("metrics.jsonl"), 8);
    assert_eq!(a.len(), 4);
    assert_eq!(a, b, "metrics after the branch point differ");
    assert!(a.iter().any(|l| l.contains("val_loss_swa")));
    assert!(a.iter().any(|l| l.contains("val_loss_ema")));
    // The branch's own metrics start after the branch point.
    assert_eq!(
        std::fs::read_to_string(branch.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count(),
        4
    );
    let last = "checkpoints/step-0000012";
    // SWA windows of 8 steps: at 12 the pending sum holds steps 10 and 12.
    for f in [
        "model.safetensors",
        "optimizer.safetensors",
        "swa.safetensors",
        "ema.safetensors",
    ] {
        let read = |d: &Path| std::fs::read(d.join(last).join(f)).unwrap();
        assert!(read(&branch) == read(&wsd), "{f} differs");
    }
    // The window that ended at the branch point belongs to the parent.
    assert!(parent.join("swa/step-0000008.safetensors").is_file());
    // The parent's metrics up to N are the WSD run's too.
    let upto = |p: &Path| -> Vec<String> {
        let all = std::fs::read_to_string(p.join("metrics.jsonl")).unwrap();
        all.lines().take(8).map(str::to_string).collect()
    };
    assert_eq!(upto(&parent), upto(&wsd));
    // Provenance, and a re-run is a no-op resume.
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(branch.join("branch.json")).unwrap()).unwrap();
    assert_eq!(info["branch_step"], 8);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(branch.join(last).join("state.json")).unwrap())
            .unwrap();
    assert!(state["parent"].as_str().unwrap().ends_with("step-0000008"));
    let out = cooldown(&branch);
    assert!(String::from_utf8_lossy(&out.stdout).contains("step 12"));
    // A different branch into the same directory is refused.
    let bad = frugal()
        .arg("cooldown")
        .arg("--from")
        .arg(parent.join("checkpoints/step-0000004"))
        .args(["--steps", "4", "--out"])
        .arg(&branch)
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

//! Shared fixtures for the CLI's integration tests: a tiny tokenizer and
//! dataset built from the real text committed under crates/data/tests/fixtures.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn frugal() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_frugal"));
    // Fixed thread count: CPU results are bit-identical for a given count.
    c.arg("--threads").arg("1");
    c
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn frugal");
    assert!(
        out.status.success(),
        "frugal failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn fixture_texts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/tests/fixtures")
}

/// Tokenizer (vocab 512) and dataset from the fixture text, in `dir`.
pub fn tiny_dataset(dir: &Path) -> PathBuf {
    let tok = dir.join("tok.json");
    let ds = dir.join("ds");
    run_ok(
        frugal()
            .args(["tokenizer", "train", "--vocab", "512"])
            .arg("--input")
            .arg(fixture_texts())
            .arg("--out")
            .arg(&tok),
    );
    run_ok(
        frugal()
            .args(["data", "prepare", "--val-fraction", "0.2"])
            .arg("--input")
            .arg(fixture_texts())
            .arg("--tokenizer")
            .arg(&tok)
            .arg("--out")
            .arg(&ds),
    );
    ds
}

/// A nano model config over `dataset`, checkpointing every step.
pub fn tiny_config(dir: &Path, dataset: &Path, steps: u64) -> PathBuf {
    let path = dir.join("tiny.toml");
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
kind = "wsd"
warmup_steps = 5
[eval]
every = 5
batches = 2
[checkpoint]
every = 1
"#,
        dataset.display().to_string()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `cmd`, which must fail with a one-line `error: …` containing
/// `needle` (and no panic).
pub fn fails_with(cmd: &mut std::process::Command, needle: &str) {
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    assert!(
        !err.contains("panicked"),
        "panic instead of an error: {err}"
    );
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in: {err}"));
    assert!(
        line.contains(needle),
        "error line {line:?} lacks {needle:?}"
    );
}

/// Trains the nano model of [`tiny_config`] for `steps` steps into
/// `dir/run` (tokenizer `dir/tok.json`); returns the training output.
pub fn train_tiny(dir: &Path, steps: u64) -> (PathBuf, Output) {
    train_tiny_with(dir, steps, &[])
}

/// [`train_tiny`] with more arguments for `frugal train` (`--set ...`).
pub fn train_tiny_with(dir: &Path, steps: u64, extra: &[&str]) -> (PathBuf, Output) {
    let ds = tiny_dataset(dir);
    let cfg = tiny_config(dir, &ds, steps);
    let run = dir.join("run");
    let out = run_ok(
        frugal()
            .arg("train")
            .arg("--config")
            .arg(&cfg)
            .arg("--out")
            .arg(&run)
            .arg("--quiet")
            .args(extra),
    );
    (run, out)
}

//! End-to-end use of the CLI on a tiny model: train, eval, generate, export,
//! and clear one-line errors (never a panic) for bad input.

mod common;
use common::*;
use std::path::Path;

#[test]
fn train_eval_generate_export_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, out) = train_tiny(tmp.path(), 12);
    let cfg = tmp.path().join("tiny.toml");
    assert!(String::from_utf8_lossy(&out.stdout).contains("done: step 12"));
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    for key in ["step", "tokens", "lr", "train_loss"] {
        assert!(first.get(key).is_some(), "metrics lack {key}");
    }
    let evals = metrics.lines().filter(|l| l.contains("val_loss")).count();
    assert_eq!(evals, 3, "eval every 5 steps plus the last: {metrics}");

    let ckpt = run.join("checkpoints/step-0000012");
    let out = run_ok(frugal().arg("eval").arg("--checkpoint").arg(&ckpt));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let loss = v["val_loss"].as_f64().unwrap();
    assert!(loss > 0.0 && loss < (512f64).ln() + 0.5, "{loss}");
    // The eval command agrees with the loss the run logged at its last step.
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    assert!((last["val_loss"].as_f64().unwrap() - loss).abs() < 1e-5);
    // bf16 matmuls move the loss by bf16 rounding only.
    let out = run_ok(
        frugal()
            .arg("eval")
            .arg("--checkpoint")
            .arg(&ckpt)
            .args(["--dtype", "bf16"]),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bf16 = v["val_loss"].as_f64().unwrap();
    assert!((bf16 - loss).abs() < 0.02, "f32 {loss} vs bf16 {bf16}");

    let out = run_ok(
        frugal()
            .arg("generate")
            .arg("--checkpoint")
            .arg(&ckpt)
            .args(["--prompt", "The king", "--max-tokens", "10"]),
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("The king"));
    check_context_and_run_dirs(&run, &ckpt, loss);

    let hf = tmp.path().join("hf");
    run_ok(
        frugal()
            .args(["export", "hf"])
            .arg("--checkpoint")
            .arg(&ckpt)
            .arg("--out")
            .arg(&hf),
    );
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(hf.join(f).exists(), "{f}");
    }
    check_gguf_export(tmp.path(), &ckpt);

    // Same run directory, different model: refused.
    fails_with(
        frugal()
            .arg("train")
            .arg("--config")
            .arg(&cfg)
            .args(["--set", "model.preset=micro"])
            .arg("--out")
            .arg(&run),
        "different configuration",
    );
    check_errors(tmp.path(), &cfg);
}

/// A run directory stands for its latest checkpoint where a model is read,
/// and generation says when the context cuts it short.
fn check_context_and_run_dirs(run: &Path, ckpt: &Path, loss: f64) {
    let out = run_ok(frugal().arg("eval").arg("--checkpoint").arg(run));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["val_loss"].as_f64().unwrap(), loss);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("step-0000012, the latest checkpoint of"),
        "{err}"
    );

    // The tiny model's context is 32 tokens.
    let generate = |extra: &[&str]| {
        let mut c = frugal();
        c.arg("generate").arg("--checkpoint").arg(ckpt).args(extra);
        c
    };
    let out = run_ok(&mut generate(&[
        "--prompt",
        "The king",
        "--max-tokens",
        "100",
        "--temperature",
        "0",
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not 100: the prompt takes"), "{err}");
    assert!(err.contains("32-token context"), "{err}");
    fails_with(
        &mut generate(&["--prompt", "hi", "--temperature", "-1"]),
        "--temperature must be a finite number >= 0",
    );
    fails_with(
        &mut generate(&["--prompt", &"the king ".repeat(40)]),
        "no room to generate",
    );
    // A cooldown branches from a step the user names; a run directory is
    // refused with its checkpoints listed.
    fails_with(
        frugal()
            .args(["cooldown", "--steps", "2", "--from"])
            .arg(run)
            .arg("--out")
            .arg(run.with_file_name("branch")),
        "is a run directory, not a checkpoint; pass one of its checkpoints (",
    );
}

/// `export gguf` writes the checkpoint and its run's tokenizer as one file
/// that reads back (through the GGUF reader prolong's scorer uses) as the
/// same weights and a tokenizer that gives the same ids.
fn check_gguf_export(tmp: &Path, ckpt: &Path) {
    use candle_core::Device;
    let gguf = tmp.join("tiny.gguf");
    run_ok(
        frugal()
            .args(["export", "gguf", "--checkpoint"])
            .arg(ckpt)
            .arg("--out")
            .arg(&gguf),
    );
    let g = frugal_model::gguf::load_gguf(&gguf, &Device::Cpu).unwrap();
    let (config, params) = frugal_train::checkpoint::load_model(ckpt, &Device::Cpu).unwrap();
    assert_eq!(
        (g.config.vocab_size, g.config.d_model),
        (config.vocab_size, config.d_model)
    );
    for (name, t) in params.tensors() {
        let gap = frugal_model::fused_check::max_abs_gap(&g.tensors[&name], &t).unwrap();
        assert_eq!(gap, 0.0, "{name}");
    }
    let from_gguf = frugal_prolong::model::gguf_tokenizer(&g.tokenizer).unwrap();
    let run_tok = frugal_data::tokenizer::load(&ckpt.join("../../tokenizer.json")).unwrap();
    let text = "The king's 3 daughters — naïve, 1200 years!\n\n\tExeunt<|endoftext|>Act II";
    let ids = |t| frugal_data::tokenizer::encode(t, text).unwrap();
    assert_eq!(ids(&from_gguf), ids(&run_tok));

    // generate --model on the file writes what it writes from the checkpoint.
    let greedy = |source: &str, path: &Path| {
        let out = run_ok(frugal().arg("generate").arg(source).arg(path).args([
            "--prompt",
            "The king",
            "--max-tokens",
            "12",
            "--temperature",
            "0",
        ]));
        String::from_utf8(out.stdout).unwrap()
    };
    let text = greedy("--model", &gguf);
    assert!(text.len() > "The king\n".len(), "{text:?}");
    assert_eq!(text, greedy("--checkpoint", ckpt));
    fails_with(
        frugal()
            .args(["generate", "--prompt", "x", "--weights", "ema", "--model"])
            .arg(&gguf),
        "not --model's",
    );
    // --tokenizer stands in for the file's own (here: the same BPE).
    let with_tokenizer = run_ok(
        frugal()
            .args(["generate", "--prompt", "The king", "--max-tokens", "12"])
            .args(["--temperature", "0", "--model"])
            .arg(&gguf)
            .arg("--tokenizer")
            .arg(ckpt.join("../../tokenizer.json")),
    );
    assert_eq!(String::from_utf8(with_tokenizer.stdout).unwrap(), text);
    fails_with(
        frugal()
            .args([
                "generate",
                "--prompt",
                "x",
                "--tokenizer",
                "t.json",
                "--checkpoint",
            ])
            .arg(ckpt),
        "--model",
    );

    let q8 = tmp.join("tiny-q8.gguf");
    fails_with(
        frugal()
            .args(["export", "gguf", "--dtype", "q4_k", "--checkpoint"])
            .arg(ckpt)
            .arg("--out")
            .arg(&q8),
        "expected f32, f16 or q8_0",
    );
}

fn check_errors(tmp: &Path, cfg: &Path) {
    let train = |extra: &[&str]| {
        let mut c = frugal();
        c.arg("train")
            .arg("--config")
            .arg(cfg)
            .arg("--out")
            .arg(tmp.join("e"));
        c.args(extra);
        c
    };
    fails_with(
        &mut train(&["--set", "model.preset=giant"]),
        "unknown model preset 'giant'",
    );
    fails_with(&mut train(&["--set", "train.lrr=1"]), "unknown field");
    fails_with(&mut train(&["--dtype", "fp16"]), "unknown dtype 'fp16'");
    fails_with(&mut train(&["--set", "train.precision=f16"]), "f16");
    fails_with(
        frugal().args(["bench", "kernels", "--attention", "sdpa"]),
        "invalid value 'sdpa' for '--attention",
    );
    if !cfg!(feature = "cuda") {
        fails_with(
            &mut train(&["--device", "cuda"]),
            "without the `cuda` feature",
        );
        fails_with(
            frugal().args(["bench", "kernels"]),
            "without the `cuda` feature",
        );
    }
    fails_with(&mut train(&["--set", "train.steps=0"]), "train.steps");
    fails_with(
        &mut train(&["--set", "data.dataset=\"/nonexistent\""]),
        "/nonexistent",
    );
    fails_with(
        frugal()
            .arg("train")
            .arg("--config")
            .arg(tmp.join("missing.toml"))
            .arg("--out")
            .arg(tmp.join("e")),
        "missing.toml",
    );
    std::fs::write(tmp.join("bad.toml"), "[model\npreset = 1").unwrap();
    fails_with(
        frugal()
            .arg("train")
            .arg("--config")
            .arg(tmp.join("bad.toml"))
            .arg("--out")
            .arg(tmp.join("e")),
        "bad.toml",
    );
    fails_with(
        frugal()
            .arg("train")
            .arg("--config")
            .arg(cfg)
            .arg("--out")
            .arg("/proc/frugal-cannot-write"),
        "frugal-cannot-write",
    );
    let empty = tmp.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    fails_with(
        frugal()
            .args(["data", "prepare"])
            .arg("--input")
            .arg(&empty)
            .arg("--tokenizer")
            .arg(tmp.join("tok.json"))
            .arg("--out")
            .arg(tmp.join("x")),
        "empty corpus",
    );
    fails_with(
        frugal()
            .arg("eval")
            .arg("--checkpoint")
            .arg(tmp.join("nope")),
        "nope",
    );
    // A checkpoint whose weights do not fit its recorded shape.
    let run = tmp.join("run");
    let bad = run.join("checkpoints/step-0000099");
    std::fs::create_dir_all(&bad).unwrap();
    let state = std::fs::read_to_string(run.join("checkpoints/step-0000012/state.json")).unwrap();
    std::fs::write(
        bad.join("state.json"),
        state.replace("\"d_model\": 64", "\"d_model\": 128"),
    )
    .unwrap();
    std::fs::copy(
        run.join("checkpoints/step-0000012/model.safetensors"),
        bad.join("model.safetensors"),
    )
    .unwrap();
    fails_with(
        frugal().arg("eval").arg("--checkpoint").arg(&bad),
        "different model shape",
    );
    std::fs::remove_dir_all(&bad).unwrap();
}

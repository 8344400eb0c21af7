//! A run killed with SIGKILL at arbitrary moments (mid-step, mid-checkpoint)
//! and restarted with the same command ends bit-identical to a run that was
//! never interrupted: same metrics.jsonl bytes, same final weights.

mod common;
use common::*;
use std::time::{Duration, Instant};

fn train_cmd(config: &std::path::Path, out: &std::path::Path) -> std::process::Command {
    let mut c = frugal();
    c.arg("train")
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out)
        .arg("--quiet");
    c
}

fn checkpoint_count(run: &std::path::Path) -> usize {
    std::fs::read_dir(run.join("checkpoints"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("step-"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn sigkill_and_resume_is_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tiny_dataset(tmp.path());
    let steps = 30;
    let cfg = tiny_config(tmp.path(), &ds, steps);

    let reference = tmp.path().join("reference");
    run_ok(&mut train_cmd(&cfg, &reference));

    let killed = tmp.path().join("killed");
    // Kill at several points: each time wait for more progress, then add a
    // varying delay so the kill lands at different phases of a step.
    let mut kills = 0;
    for (round, extra_ms) in [(1usize, 0u64), (2, 7), (3, 13), (4, 29), (5, 3)].into_iter() {
        let mut child = train_cmd(&cfg, &killed).spawn().unwrap();
        let target = round * 5;
        let deadline = Instant::now() + Duration::from_secs(120);
        while checkpoint_count(&killed) < target && Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(extra_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(
        kills >= 3,
        "the run finished before it could be killed enough times"
    );
    run_ok(&mut train_cmd(&cfg, &killed));

    let read = |p: std::path::PathBuf| {
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let a = read(reference.join("metrics.jsonl"));
    let b = read(killed.join("metrics.jsonl"));
    assert_eq!(
        String::from_utf8_lossy(&a),
        String::from_utf8_lossy(&b),
        "metrics differ"
    );
    assert_eq!(a.lines_count(), steps as usize);
    let last = format!("checkpoints/step-{steps:07}");
    for f in ["model.safetensors", "optimizer.safetensors", "state.json"] {
        assert!(
            read(reference.join(&last).join(f)) == read(killed.join(&last).join(f)),
            "{f} differs after resume"
        );
    }
    // No temporaries survive.
    for e in std::fs::read_dir(killed.join("checkpoints"))
        .unwrap()
        .flatten()
    {
        assert!(
            !e.file_name().to_string_lossy().contains(".tmp"),
            "{:?}",
            e.file_name()
        );
    }
}

trait Lines {
    fn lines_count(&self) -> usize;
}
impl Lines for Vec<u8> {
    fn lines_count(&self) -> usize {
        self.iter().filter(|&&b| b == b'\n').count()
    }
}

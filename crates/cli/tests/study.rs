//! A tiny study killed midway (the whole process group, SIGKILL) and run
//! again finishes without redoing finished jobs; fit and report then work.

mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

fn spec(dir: &Path, ds: &Path) -> std::path::PathBuf {
    let path = dir.join("study.toml");
    let text = format!(
        r#"
families = ["wsd", "cosine"]
[[size]]
name = "a"
d_model = 16
n_layers = 1
n_heads = 2
[[size]]
name = "b"
d_model = 32
n_layers = 1
n_heads = 2
[[size]]
name = "c"
preset = "nano"
[budgets]
tokens = [1280, 2560, 5120]
[wsd]
lr = 2e-3
swa = {{ interval = 2, horizon = 8 }}
[cosine]
lr = 4e-3
[base]
data = {{ dataset = {:?} }}
train = {{ seq_len = 32, batch_size = 4, log_every = 5 }}
schedule = {{ warmup_steps = 2 }}
eval = {{ every = 10, batches = 2 }}
checkpoint = {{ every = 5 }}
"#,
        ds.display().to_string()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn signal(sig: &str, pid: u32) {
    std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
}

/// Direct children of `pid`, from /proc.
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let child: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // Fields after the parenthesised command: state, ppid, ...
            let rest = &stat[stat.rfind(')')? + 2..];
            let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == pid).then_some(child)
        })
        .collect()
}

fn study(args: &[&str], spec: &Path, out: &Path) -> std::process::Command {
    let mut c = frugal();
    c.arg("study")
        .args(args)
        .arg("--spec")
        .arg(spec)
        .arg("--out")
        .arg(out);
    c
}

fn finished(out: &Path) -> Vec<(String, SystemTime)> {
    let mut v: Vec<_> = std::fs::read_dir(out.join("runs"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let m = std::fs::metadata(e.path().join("metrics.jsonl")).ok()?;
            let id = e.file_name().to_string_lossy().into_owned();
            Some((id, m.modified().ok()?))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn interrupted_study_resumes_without_redoing() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tiny_dataset(tmp.path());
    let spec = spec(tmp.path(), &ds);
    let out = tmp.path().join("study");
    let plan = run_ok(&mut study(&["plan"], &spec, &out));
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        text.contains("a-wsd-20") && text.contains("wsd saves"),
        "{text}"
    );

    let mut child = study(&["run", "--jobs", "2"], &spec, &out).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("plan.json")).unwrap()).unwrap();
    let done_count = |out: &Path| {
        plan["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| {
                let step = j["final_step"].as_u64().unwrap();
                out.join(j["out"].as_str().unwrap())
                    .join(format!("checkpoints/step-{step:07}/state.json"))
                    .is_file()
            })
            .count()
    };
    while done_count(&out) < 3 && Instant::now() < deadline {
        assert!(child.try_wait().unwrap().is_none(), "study ended too early");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Kill the study and its workers (by pid): stop the study so it spawns
    // nothing more, SIGKILL its children, then the study itself.
    let pid = child.id();
    signal("-STOP", pid);
    for worker in children_of(pid) {
        signal("-KILL", worker);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = finished(&out);
    std::thread::sleep(Duration::from_millis(50));

    let again = run_ok(&mut study(&["run", "--jobs", "2"], &spec, &out));
    let log = String::from_utf8_lossy(&again.stderr);
    let skipped: Vec<&str> = log
        .lines()
        .find_map(|l| l.strip_prefix("already finished: "))
        .unwrap_or_else(|| panic!("nothing was skipped: {log}"))
        .split_whitespace()
        .collect();
    assert!(skipped.len() >= 3, "{log}");
    // The finished jobs' files were not touched by the second run.
    let after = finished(&out);
    for id in &skipped {
        let t = |v: &Vec<(String, SystemTime)>| v.iter().find(|(i, _)| i == id).map(|x| x.1);
        assert_eq!(t(&before), t(&after), "{id} was redone");
    }
    // Everything is done now: a third run does nothing.
    let third = run_ok(&mut study(&["run"], &spec, &out));
    assert!(String::from_utf8_lossy(&third.stderr).contains("0 jobs run, 21 already finished"));
    let rep = run_ok(&mut study(&["report"], &spec, &out));
    assert!(String::from_utf8_lossy(&rep.stdout).contains("report.md"));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("Cooldown ≤ cosine at"), "{md}");
    assert!(md.contains("SWA on the constant-LR runs"), "{md}");
    assert!(md.contains("## Fit: wsd cooldowns (9 points)"), "{md}");
    assert!(md.contains("Bootstrap ("), "{md}");
    // Every figure the report links is a PNG file that exists.
    let figures: Vec<&str> = md
        .lines()
        .filter_map(|l| l.strip_prefix("![")?.split(']').next())
        .collect();
    assert!(figures.contains(&"plots/law-wsd.png"), "{md}");
    assert!(figures.contains(&"plots/diagonal.png"), "{md}");
    for f in figures {
        let bytes = std::fs::read(out.join(f)).unwrap();
        assert_eq!(&bytes[..4], b"\x89PNG", "{f}");
    }
}

//! `frugal pcm sd15` fails with a clear one-line message: without the `sd15`
//! feature it says how to get it, with it a missing model directory is named.

use std::process::Command;

#[test]
fn sd15_without_weights_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_frugal"))
        .args(["pcm", "sd15", "--model"])
        .arg(tmp.path().join("no-such-sd15"))
        .args(["--prompt", "a cat", "--out"])
        .arg(tmp.path().join("img.png"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    if cfg!(feature = "sd15") {
        assert!(err.contains("no-such-sd15: no such directory"), "{err}");
    } else {
        assert!(err.contains("--features sd15"), "{err}");
    }
    assert!(!tmp.path().join("img.png").exists());
}

//! `frugal pcm classifier`: eval's FID classifier trained ahead into
//! EVAL_DIR/classifier, reused by a second call, and one trained with other
//! settings refused with a clear error.

mod common;
use common::*;
use frugal_pcm::data::write_idx;
use std::path::Path;

/// 40 train and 20 test 28×28 images: class k is a bright row 2k + 4.
fn idx_dir(dir: &Path) {
    for (split, n) in [("train", 40), ("t10k", 20)] {
        let mut pixels = Vec::new();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        for &k in &labels {
            for y in 0..28 {
                for _ in 0..28 {
                    pixels.push(if y == 2 * k as usize + 4 { 255 } else { 0 });
                }
            }
        }
        write_idx(
            &dir.join(format!("{split}-images-idx3-ubyte")),
            &[n, 28, 28],
            &pixels,
        )
        .unwrap();
        write_idx(
            &dir.join(format!("{split}-labels-idx1-ubyte")),
            &[n],
            &labels,
        )
        .unwrap();
    }
}

#[test]
fn classifier_is_trained_once_and_other_settings_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("idx");
    std::fs::create_dir_all(&data).unwrap();
    idx_dir(&data);
    let eval = tmp.path().join("eval");
    let classifier = |steps: &str| {
        let mut c = frugal();
        c.args(["pcm", "classifier", "--data"])
            .arg(&data)
            .args(["--classifier-steps", steps, "--quiet", "--out"])
            .arg(&eval);
        c
    };
    let first = run_ok(&mut classifier("30"));
    let said = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(
        said.contains("classifier (30 steps)") && said.contains("on 20 test images"),
        "{said}"
    );
    let saved = eval.join("classifier/classifier.safetensors");
    let stamp = std::fs::metadata(&saved).unwrap().modified().unwrap();
    // A second call (or an eval with the same settings) loads it.
    let again = run_ok(&mut classifier("30"));
    assert_eq!(String::from_utf8_lossy(&again.stdout), said);
    assert_eq!(
        std::fs::metadata(&saved).unwrap().modified().unwrap(),
        stamp
    );
    fails_with(&mut classifier("31"), "other settings");
}

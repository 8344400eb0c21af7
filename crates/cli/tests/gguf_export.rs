//! `frugal export gguf` against transformers' GGUF loader. The fixture
//! (`scripts/gguf_export_fixture.py FRUGAL OUT`) is a tiny trained run and
//! what transformers made of its f32 and q8_0 exports: token ids of a text,
//! logits, and the SHA-256 of both files. Here the export is run again: it
//! must write the same bytes (so the files transformers read are the ones
//! frugal writes today), transformers' tokenizer from the file must give the
//! run's own ids, and its logits must be frugal's.

mod common;
use candle_core::{Device, Tensor};
use common::*;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf_export")
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(std::fs::read(path).unwrap());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn max_gap(a: &Tensor, b: &Tensor) -> f32 {
    frugal_model::fused_check::max_abs_gap(a, b).unwrap()
}

#[test]
fn transformers_reads_the_export_as_the_trained_model() {
    let dir = fixture();
    let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let made_by: serde_json::Value =
        serde_json::from_str(&meta.metadata().as_ref().unwrap()["made_by"]).unwrap();
    let expected =
        candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    let text = made_by["text"].as_str().unwrap();
    let ids = expected["input_ids"]
        .to_dtype(candle_core::DType::U32)
        .unwrap();

    // transformers' tokenizer, built from the GGUF's vocabulary, gives the
    // ids of the run's own tokenizer.
    let run = dir.join("run");
    let tok = frugal_data::tokenizer::load(&run.join("tokenizer.json")).unwrap();
    let ours = frugal_data::tokenizer::encode(&tok, text).unwrap();
    assert_eq!(ids.flatten_all().unwrap().to_vec1::<u32>().unwrap(), ours);

    let (config, params) =
        frugal_train::checkpoint::load_model(&run.join("checkpoints/step-0000006"), &Device::Cpu)
            .unwrap();
    let logits = frugal_model::Llama::new(&config, &params)
        .unwrap()
        .forward(&ids)
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for (dtype, key, bound) in [("f32", "logits", 1e-4), ("q8_0", "logits_q8_0", 1e-4)] {
        let out = tmp.path().join(format!("model-{dtype}.gguf"));
        run_ok(
            frugal()
                .args(["export", "gguf", "--dtype", dtype, "--checkpoint"])
                .arg(&run)
                .arg("--out")
                .arg(&out),
        );
        assert_eq!(
            sha256(&out),
            made_by["gguf_sha256"][dtype].as_str().unwrap(),
            "{dtype}: the export's bytes changed; regenerate the fixture"
        );
        // frugal reading the same file gives transformers' logits.
        let g = frugal_model::gguf::load_gguf(&out, &Device::Cpu).unwrap();
        let gp = frugal_model::ParamStore::from_tensors(&g.config, g.tensors, "export").unwrap();
        let from_file = frugal_model::Llama::new(&g.config, &gp)
            .unwrap()
            .forward(&ids)
            .unwrap();
        let want = &expected[key];
        let (file_gap, ckpt_gap) = (max_gap(&from_file, want), max_gap(&logits, want));
        eprintln!("{dtype}: transformers vs frugal on the file {file_gap:.1e}, on the checkpoint {ckpt_gap:.1e}");
        assert!(
            file_gap < bound,
            "{dtype}: frugal on the file vs transformers {file_gap}"
        );
        if dtype == "f32" {
            // The f32 file is the trained model itself.
            assert!(
                ckpt_gap < bound,
                "checkpoint vs transformers on its export {ckpt_gap}"
            );
        } else {
            // q8_0 rounds the weights: visible, but small.
            assert!(
                ckpt_gap > 1e-4 && ckpt_gap < 0.1,
                "q8_0 vs the checkpoint {ckpt_gap}"
            );
        }
    }
}

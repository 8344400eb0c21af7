//! The scoring loop end to end on a tiny random model saved as a Hugging
//! Face directory: bad records become error records, a re-run scores
//! nothing twice, shards partition the input.

use candle_core::Device;
use frugal_model::{hf::to_hf_config, LlamaConfig, ParamStore};
use frugal_prolong::model::{load_scorer, Scorer};
use frugal_prolong::run::{score, Heatmaps, ScoreOptions, ScoreRecord};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

fn words(seed: usize, n: usize) -> String {
    let vocab = [
        "alpha", "beta", "gamma", "delta", "kappa", "omega", "sigma", "theta",
    ];
    (0..n)
        .map(|k| vocab[(k * 7 + seed * 3 + k / 5) % vocab.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

fn tiny_hf_dir(dir: &Path) {
    let texts: Vec<String> = (0..20).map(|s| words(s, 200)).collect();
    let tok =
        frugal_data::tokenizer::train_bpe(texts.iter(), 300, &dir.join("tokenizer.json")).unwrap();
    let mut c = LlamaConfig::new(tok.get_vocab_size(true), 32, 2, 4);
    c.ffn_hidden = 64;
    c.max_seq_len = 64;
    std::fs::write(
        dir.join("config.json"),
        to_hf_config(&c, None, None).unwrap().to_string(),
    )
    .unwrap();
    ParamStore::init(&c, &Device::Cpu, 3)
        .unwrap()
        .save(&dir.join("model.safetensors"))
        .unwrap();
}

/// A scorer over a tiny random model saved under `dir/model`.
fn tiny_scorer(dir: &Path) -> Scorer {
    let model_dir = dir.join("model");
    std::fs::create_dir(&model_dir).unwrap();
    tiny_hf_dir(&model_dir);
    load_scorer(&model_dir, None, &Device::Cpu).unwrap()
}

fn records(p: &Path) -> Vec<ScoreRecord> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn errors_resume_and_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let scorer = tiny_scorer(tmp.path());

    let input = tmp.path().join("in.jsonl");
    let mut f = std::fs::File::create(&input).unwrap();
    for s in 0..6 {
        writeln!(f, "{}", serde_json::json!({ "text": words(s, 120) })).unwrap();
    }
    writeln!(f, "{{broken").unwrap();
    writeln!(f, "{}", serde_json::json!({ "body": "no text" })).unwrap();
    writeln!(f, "{}", serde_json::json!({ "text": "short" })).unwrap();
    drop(f);

    let maps = tmp.path().join("maps");
    let opt = ScoreOptions {
        chunk_size: 16,
        window: 256,
        sample_pairs: 10,
        heatmaps: Some(Heatmaps {
            dir: maps.clone(),
            every: 2,
        }),
        ..Default::default()
    };
    let out = tmp.path().join("scores.jsonl");
    let s1 = score(
        &scorer,
        std::slice::from_ref(&input),
        &out,
        &opt,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(s1.scored, 6);
    let kinds: BTreeMap<String, usize> = s1.errors.clone();
    assert_eq!(kinds.get("invalid_json"), Some(&1));
    assert_eq!(kinds.get("missing_field"), Some(&1));
    assert_eq!(kinds.get("too_short"), Some(&1));
    let r1 = records(&out);
    assert_eq!(r1.len(), 9);
    // Heatmaps for the scored documents at input ordinals 0, 2, 4 (the
    // error records at 6–8 have none).
    let mut pngs: Vec<String> = std::fs::read_dir(&maps)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pngs.sort();
    assert_eq!(pngs.len(), 3, "{pngs:?}");
    for (name, k) in pngs.iter().zip(["000000-", "000002-", "000004-"]) {
        assert!(name.starts_with(k) && name.ends_with(".png"), "{name}");
        let bytes = std::fs::read(maps.join(name)).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }
    for r in r1.iter().filter(|r| r.status == "ok") {
        assert!(r.lds.unwrap().is_finite() && r.lds.unwrap() >= 0.0);
        assert!(r.chunks >= 2);
        // Fewer pairs than the sample size: all pairs (not LDS 0).
        assert_eq!(r.pairs, (r.chunks * (r.chunks - 1) / 2).min(10));
    }

    // A killed run leaves a torn line; the re-run cuts it and rescoring
    // adds exactly the missing documents.
    let text = std::fs::read_to_string(&out).unwrap();
    let keep: Vec<&str> = text.lines().take(4).collect();
    std::fs::write(&out, format!("{}\n{{\"id\":\"torn", keep.join("\n"))).unwrap();
    let s2 = score(
        &scorer,
        std::slice::from_ref(&input),
        &out,
        &opt,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(s2.already_done, 4);
    let r2 = records(&out);
    assert_eq!(r2.len(), 9);
    let mut ids: Vec<&str> = r2.iter().map(|r| r.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 9, "no duplicates");
    // Same scores as the uninterrupted run.
    for r in &r2 {
        let first = r1.iter().find(|x| x.id == r.id).unwrap();
        assert_eq!(first.lds, r.lds, "{}", r.id);
    }

    // Two shards partition the documents.
    let (a, b) = (tmp.path().join("s0.jsonl"), tmp.path().join("s1.jsonl"));
    for (i, p) in [(0, &a), (1, &b)] {
        let o = ScoreOptions {
            shard: (i, 2),
            ..opt.clone()
        };
        score(&scorer, std::slice::from_ref(&input), p, &o, &mut |_| {}).unwrap();
    }
    let mut all: Vec<String> = records(&a)
        .into_iter()
        .chain(records(&b))
        .map(|r| r.id)
        .collect();
    all.sort();
    let mut want: Vec<String> = r1.iter().map(|r| r.id.clone()).collect();
    want.sort();
    assert_eq!(all, want);
}

/// A run resuming into an output must score as it was begun: its settings
/// are recorded beside it, another chunk size or scorer is refused before
/// anything is written, and what does not change scores (batching, the
/// device) may change. A merge refuses shards scored differently.
#[test]
fn resuming_with_other_settings_is_refused() {
    use frugal_prolong::merge::{merge, shard_path};
    use frugal_prolong::settings::{read, settings_path};
    let tmp = tempfile::tempdir().unwrap();
    let scorer = tiny_scorer(tmp.path());
    let input = tmp.path().join("in.jsonl");
    let docs: String = (0..4)
        .map(|s| {
            serde_json::json!({ "id": format!("d{s}"), "text": words(s, 120) }).to_string() + "\n"
        })
        .collect();
    std::fs::write(&input, docs).unwrap();
    let opt = ScoreOptions {
        chunk_size: 16,
        window: 256,
        sample_pairs: 10,
        input: frugal_prolong::input::InputOptions {
            id_field: Some("id".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let out = tmp.path().join("scores.jsonl");
    let run = |o: &ScoreOptions, s: &Scorer, out: &Path| {
        score(s, std::slice::from_ref(&input), out, o, &mut |_| {})
    };
    run(&opt, &scorer, &out).unwrap();
    let recorded = read(&out).unwrap().unwrap();
    assert_eq!(
        (recorded.chunk_size, recorded.precision.as_str()),
        (16, "f32")
    );
    assert!(recorded.scorer.ends_with("model"), "{}", recorded.scorer);

    // Another chunk size: refused, naming the field, output untouched.
    let before = std::fs::read(&out).unwrap();
    let other = ScoreOptions {
        chunk_size: 8,
        ..opt.clone()
    };
    let err = run(&other, &scorer, &out).unwrap_err().to_string();
    assert!(err.contains("chunk_size 16 (now 8)"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), before);

    // Another scorer (the same model under a replaced tokenizer).
    let model_dir = tmp.path().join("model");
    let retok = load_scorer(
        &model_dir,
        Some(&model_dir.join("tokenizer.json")),
        &Device::Cpu,
    )
    .unwrap();
    let err = run(&opt, &retok, &out).unwrap_err().to_string();
    assert!(
        err.contains("scorer") && err.contains("with tokenizer"),
        "{err}"
    );

    // Batching is not a setting: the re-run resumes (nothing left to do).
    let mut batched = opt.clone();
    batched.group_chunks = 3;
    assert_eq!(run(&batched, &scorer, &out).unwrap().already_done, 4);

    // An output from before settings were recorded adopts the run's.
    std::fs::remove_file(settings_path(&out)).unwrap();
    run(&opt, &scorer, &out).unwrap();
    assert_eq!(read(&out).unwrap().unwrap(), recorded);

    // Shards scored differently are not merged.
    let merged = tmp.path().join("merged.jsonl");
    for (i, o) in [(0, &opt), (1, &other)] {
        let o = ScoreOptions {
            shard: (i, 2),
            ..o.clone()
        };
        run(&o, &scorer, &shard_path(&merged, i, 2)).unwrap();
    }
    let err = merge(std::slice::from_ref(&input), &opt.input, &merged, 2)
        .unwrap_err()
        .to_string();
    assert!(err.contains("chunk_size 16 (now 8)"), "{err}");
    assert!(!merged.exists());
    // Re-run the odd shard into a fresh file with the common settings.
    let odd = shard_path(&merged, 1, 2);
    std::fs::remove_file(&odd).unwrap();
    std::fs::remove_file(settings_path(&odd)).unwrap();
    let o = ScoreOptions {
        shard: (1, 2),
        ..opt.clone()
    };
    run(&o, &scorer, &odd).unwrap();
    merge(std::slice::from_ref(&input), &opt.input, &merged, 2).unwrap();
    assert_eq!(read(&merged).unwrap().unwrap(), recorded);
}

/// `--output OUT.parquet`: records go to a JSONL journal while running
/// (resumable after a kill like any JSONL output) and become one Parquet
/// file at the end; a re-run over the finished file scores nothing again.
#[cfg(feature = "parquet")]
#[test]
fn parquet_output_resumes_through_its_journal() {
    use frugal_prolong::run::journal_path;
    use frugal_prolong::select::read_records;
    let tmp = tempfile::tempdir().unwrap();
    let scorer = tiny_scorer(tmp.path());
    let input = tmp.path().join("in.jsonl");
    let mut f = std::fs::File::create(&input).unwrap();
    for s in 0..5 {
        writeln!(f, "{}", serde_json::json!({ "text": words(s, 100) })).unwrap();
    }
    writeln!(f, "{{broken").unwrap();
    drop(f);
    let opt = ScoreOptions {
        chunk_size: 16,
        window: 256,
        sample_pairs: 10,
        keep_text: true,
        ..Default::default()
    };
    let run = |out: &Path| {
        score(
            &scorer,
            std::slice::from_ref(&input),
            out,
            &opt,
            &mut |_| {},
        )
    };
    let by_id = |mut v: Vec<ScoreRecord>| {
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    };
    let jsonl = tmp.path().join("scores.jsonl");
    run(&jsonl).unwrap();
    let want = by_id(records(&jsonl));
    assert_eq!(want.len(), 6);

    // A kill after two records: the journal holds them and a torn line.
    let out = tmp.path().join("scores.parquet");
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let two: Vec<&str> = text.lines().take(2).collect();
    std::fs::write(
        journal_path(&out),
        format!("{}\n{{\"id\":\"to", two.join("\n")),
    )
    .unwrap();
    let s = run(&out).unwrap();
    assert_eq!(
        (s.already_done, s.scored + s.errors.values().sum::<usize>()),
        (2, 4)
    );
    assert!(!journal_path(&out).exists(), "journal removed at the end");
    assert_eq!(by_id(read_records(&out).unwrap()), want);

    // Re-running over the finished Parquet file scores nothing twice.
    let s = run(&out).unwrap();
    assert_eq!((s.already_done, s.scored), (6, 0));
    assert_eq!(by_id(read_records(&out).unwrap()), want);
}

/// The scorer carries the end-of-sequence id its files state (generation
/// stops there): config.json's `eos_token_id`, the first of a list.
#[test]
fn scorer_takes_its_eos_from_config_json() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(tiny_scorer(tmp.path()).eos, None);
    let cfg = tmp.path().join("model/config.json");
    for (eos, want) in [(serde_json::json!([5, 7]), 5), (serde_json::json!(9), 9)] {
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
        json["eos_token_id"] = eos;
        std::fs::write(&cfg, json.to_string()).unwrap();
        let s = load_scorer(&tmp.path().join("model"), None, &Device::Cpu).unwrap();
        assert_eq!(s.eos, Some(want));
    }
}

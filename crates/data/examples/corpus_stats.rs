//! Fetches a registry corpus, trains a byte-level BPE tokenizer on it and
//! prepares a train/validation data set, printing sizes and timings.
//!
//! `cargo run --release -p frugal-data --example corpus_stats -- [NAME] [VOCAB] [OUT_DIR]`
//! (defaults: `default`, 16384, a temporary directory).

use frugal_data::{corpus, dataset, tokenizer};
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "default".into());
    let vocab: usize = args.next().map_or(Ok(16_384), |v| v.parse())?;
    let tmp = tempfile::tempdir()?;
    let out = args
        .next()
        .map_or_else(|| tmp.path().to_path_buf(), PathBuf::from);

    let t = Instant::now();
    for part in corpus::fetch(&name)? {
        let m = &part.manifest;
        println!(
            "{:<12} {:<45} docs {:>6} chars {:>11}",
            part.name,
            m.package,
            m.n_docs.unwrap_or(0),
            m.n_chars.unwrap_or(0)
        );
    }
    let docs = corpus::load(&name)?;
    let chars: usize = docs.iter().map(|d| d.text.chars().count()).sum();
    println!(
        "{name}: {} docs, {chars} chars (~{} tokens at 4 chars/token), fetch+load {:.1}s",
        docs.len(),
        chars / 4,
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let tok_path = out.join("tokenizer-trained.json");
    std::fs::create_dir_all(&out)?;
    let tok = tokenizer::train_bpe(docs.iter().map(|d| d.text.as_str()), vocab, &tok_path)?;
    println!(
        "train_bpe vocab {} in {:.1}s",
        tokenizer::vocab_size(&tok),
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let meta = dataset::prepare(docs, &tok_path, &out, 0.01, 0)?;
    println!(
        "prepare: train {} tokens / {} docs, val {} tokens / {} docs, {:?}, in {:.1}s",
        meta.train.n_tokens,
        meta.train.n_docs,
        meta.val.n_tokens,
        meta.val.n_docs,
        meta.train.dtype,
        t.elapsed().as_secs_f64()
    );
    println!(
        "total tokens {}, chars/token {:.2}",
        meta.train.n_tokens + meta.val.n_tokens,
        chars as f64 / (meta.train.n_tokens + meta.val.n_tokens) as f64
    );
    Ok(())
}

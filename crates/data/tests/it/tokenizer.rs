use super::common::{fixture_text, scenes};
use frugal_data::tokenizer::{self, EOT};
use frugal_data::Error;

#[test]
fn trained_bpe_round_trips_the_fixture_and_compresses_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tokenizer.json");
    let docs = scenes();
    let tok = tokenizer::train_bpe(docs.iter().map(|d| d.text.as_str()), 2_000, &out).unwrap();

    assert_eq!(tokenizer::eot_id(&tok).unwrap(), 0);
    assert_eq!(tok.token_to_id(EOT), Some(0));
    let vocab = tokenizer::vocab_size(&tok);
    assert!(vocab > 1_000 && vocab <= 2_000, "vocab {vocab}");
    // Every byte symbol is in the vocabulary: no input is ever unknown.
    assert!(tok.token_to_id("Ġ").is_some() && tok.token_to_id("Ċ").is_some());

    let text = fixture_text();
    let ids = tokenizer::encode(&tok, &text).unwrap();
    assert_eq!(tokenizer::decode(&tok, &ids).unwrap(), text);
    let ratio = text.len() as f64 / ids.len() as f64;
    assert!(ratio > 2.5, "only {ratio:.2} bytes per token");

    // Text never seen in training, including bytes outside ASCII.
    let unseen = "Quantum café — naïve 🚀 zebras\tjumped.";
    let ids = tokenizer::encode(&tok, unseen).unwrap();
    assert_eq!(tokenizer::decode(&tok, &ids).unwrap(), unseen);

    // The separator is one token, even inside text.
    let ids = tokenizer::encode(&tok, &format!("a{EOT}b")).unwrap();
    assert!(ids.contains(&0));
}

#[test]
fn saved_tokenizer_loads_identically() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tok.json");
    let texts: Vec<String> = scenes().into_iter().map(|d| d.text).collect();
    let tok = tokenizer::train_bpe(&texts, 600, &out).unwrap();
    let loaded = tokenizer::load(&out).unwrap();
    let sample = &texts[1];
    assert_eq!(
        tokenizer::encode(&tok, sample).unwrap(),
        tokenizer::encode(&loaded, sample).unwrap()
    );
    let sha = tokenizer::sha256(&loaded).unwrap();
    assert_eq!(sha, tokenizer::sha256(&tok).unwrap());
    assert_eq!(sha.len(), 64);
    // The hash is that of the saved file's bytes.
    let file_sha = frugal_data::corpus::sha256_file(&out).unwrap();
    assert_eq!(sha, file_sha);
}

#[test]
fn bad_arguments_and_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = tokenizer::train_bpe(["some text"], 100, &dir.path().join("t.json")).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");

    let err = tokenizer::load(&dir.path().join("missing.json")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");

    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "{not a tokenizer").unwrap();
    let err = tokenizer::load(&garbage).unwrap_err();
    assert!(matches!(err, Error::Tokenizer(_)), "{err:?}");
}

#[test]
fn loading_drops_truncation_so_documents_stay_whole() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tok.json");
    let texts: Vec<String> = scenes().into_iter().map(|d| d.text).collect();
    let mut tok = tokenizer::train_bpe(&texts, 500, &out).unwrap();
    let truncation = tokenizers::TruncationParams {
        max_length: 8,
        ..Default::default()
    };
    tok.with_truncation(Some(truncation)).unwrap();
    assert_eq!(tokenizer::encode(&tok, &texts[0]).unwrap().len(), 8);
    tokenizer::save(&tok, &out).unwrap();
    let loaded = tokenizer::load(&out).unwrap();
    assert!(tokenizer::encode(&loaded, &texts[0]).unwrap().len() > 100);
}

#[test]
fn a_trained_bpe_flattens_into_a_gguf_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let texts: Vec<String> = scenes().into_iter().map(|d| d.text).collect();
    let tok = tokenizer::train_bpe(&texts, 600, &dir.path().join("tok.json")).unwrap();
    let v = tokenizer::bpe_vocabulary(&tok).unwrap();
    assert_eq!(v.tokens.len(), tokenizer::vocab_size(&tok));
    for (id, token) in v.tokens.iter().enumerate() {
        assert_eq!(tok.token_to_id(token), Some(id as u32), "{token:?}");
    }
    assert_eq!(v.special.iter().filter(|&&s| s).count(), 1);
    assert!(v.special[0] && v.tokens[0] == EOT);
    // Every merge joins two tokens into a third, in rank order.
    assert_eq!(v.merges.len(), v.tokens.len() - 257);
    for m in &v.merges {
        let (a, b) = m.split_once(' ').unwrap();
        assert!(tok.token_to_id(&format!("{a}{b}")).is_some(), "{m}");
    }

    // Another pre-tokenizer would split text otherwise in llama.cpp: refused.
    let mut other = tok.clone();
    other.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::whitespace::Whitespace {}));
    let e = tokenizer::bpe_vocabulary(&other).unwrap_err().to_string();
    assert!(e.contains("pre-tokenizer is not GPT-2's"), "{e}");
}

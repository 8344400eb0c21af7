use super::common::scenes;
use frugal_data::dataset::{self, Dataset};
use frugal_data::{tokenizer, Error};

#[test]
fn prepare_then_open_gives_consistent_shards() {
    let dir = tempfile::tempdir().unwrap();
    let docs = scenes();
    let tok_path = dir.path().join("trained.json");
    tokenizer::train_bpe(docs.iter().map(|d| d.text.as_str()), 700, &tok_path).unwrap();
    let out = dir.path().join("ds");
    let meta = dataset::prepare(docs.clone(), &tok_path, &out, 0.25, 3).unwrap();

    for f in ["train.bin", "val.bin", "tokenizer.json", "dataset.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert_eq!((meta.train.n_docs + meta.val.n_docs) as usize, docs.len());
    assert!(meta.val.n_docs >= 1 && meta.train.n_docs >= 1);
    assert_eq!(meta.val_doc_ids.len() as u64, meta.val.n_docs);

    let ds = Dataset::open(&out).unwrap();
    assert_eq!(ds.meta, meta);
    assert_eq!(ds.train.len() as u64, meta.train.n_tokens);
    assert_eq!(ds.val.len() as u64, meta.val.n_tokens);
    // The validation shard decodes to exactly the validation documents.
    let val_text = tokenizer::decode(&ds.tokenizer, &ds.val.get(0, ds.val.len()).unwrap()).unwrap();
    let expected: Vec<&str> = docs
        .iter()
        .filter(|d| meta.val_doc_ids.contains(&d.id))
        .map(|d| d.text.as_str())
        .collect();
    assert_eq!(val_text, expected.join(tokenizer::EOT));
}

#[test]
fn opening_with_a_different_tokenizer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let docs = scenes();
    let tok_path = dir.path().join("a.json");
    tokenizer::train_bpe(docs.iter().map(|d| d.text.as_str()), 500, &tok_path).unwrap();
    let out = dir.path().join("ds");
    dataset::prepare(docs.clone(), &tok_path, &out, 0.2, 0).unwrap();
    // Replace the stored tokenizer with another one.
    tokenizer::train_bpe(
        docs.iter().map(|d| d.text.as_str()),
        450,
        &out.join("tokenizer.json"),
    )
    .unwrap();
    let err = Dataset::open(&out).unwrap_err();
    assert!(matches!(err, Error::Shard { .. }), "{err:?}");
    assert!(err.to_string().contains("re-run prepare"));
}

#[test]
fn prepare_needs_two_documents() {
    let dir = tempfile::tempdir().unwrap();
    let one = scenes().into_iter().take(1).collect();
    let err = dataset::prepare(one, &dir.path().join("t.json"), dir.path(), 0.1, 0).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)));
}

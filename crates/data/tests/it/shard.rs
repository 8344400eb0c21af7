use super::common::scenes;
use frugal_data::shard::{meta_path, Dtype, ShardMeta};
use frugal_data::{tokenizer, write_shard, Error, TokenShard};

#[test]
fn shard_round_trip_joins_documents_with_eot() {
    let dir = tempfile::tempdir().unwrap();
    let docs = scenes();
    let tok = tokenizer::train_bpe(
        docs.iter().map(|d| d.text.as_str()),
        800,
        &dir.path().join("tok.json"),
    )
    .unwrap();
    let path = dir.path().join("train.bin");
    let meta = write_shard(&tok, &docs, &path).unwrap();

    let mut expected: Vec<u32> = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            expected.push(0);
        }
        expected.extend(tokenizer::encode(&tok, &d.text).unwrap());
    }
    assert_eq!(meta.n_tokens as usize, expected.len());
    assert_eq!(meta.n_docs as usize, docs.len());
    assert_eq!(meta.dtype, Dtype::U16);
    assert_eq!(meta.eot_id, 0);
    assert_eq!(meta.tokenizer_sha256, tokenizer::sha256(&tok).unwrap());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 2 * meta.n_tokens);

    let shard = TokenShard::open(&path).unwrap();
    assert_eq!(shard.meta(), &meta);
    assert_eq!(shard.len(), expected.len());
    assert_eq!(shard.get(0, shard.len()).unwrap(), expected);
    assert_eq!(shard.get(17, 5).unwrap(), expected[17..22].to_vec());
    assert_eq!(
        shard
            .get(0, shard.len())
            .unwrap()
            .iter()
            .filter(|&&t| t == 0)
            .count(),
        docs.len() - 1
    );
    // Text comes back from the tokens.
    let first_doc_len = expected.iter().position(|&t| t == 0).unwrap();
    let text = tokenizer::decode(&tok, &shard.get(0, first_doc_len).unwrap()).unwrap();
    assert_eq!(text, docs[0].text);
}

#[test]
fn out_of_range_reads_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.bin");
    super::common::raw_shard(&path, &[1, 2, 3, 4]);
    let shard = TokenShard::open(&path).unwrap();
    assert_eq!(shard.get(2, 2).unwrap(), vec![3, 4]);
    assert_eq!(shard.get(4, 0).unwrap(), Vec::<u32>::new());
    assert!(matches!(shard.get(3, 2), Err(Error::Shard { .. })));
    assert!(matches!(shard.get(usize::MAX, 2), Err(Error::Shard { .. })));
}

#[test]
fn a_shard_whose_length_disagrees_with_its_meta_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.bin");
    super::common::raw_shard(&path, &[10, 11, 12, 13, 14]);
    // Truncate by one byte: a torn or corrupted file.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    let err = TokenShard::open(&path).unwrap_err();
    assert!(matches!(err, Error::Shard { .. }), "{err:?}");
    assert!(err.to_string().contains("9 bytes"), "{err}");

    // A meta claiming u32 tokens for the same 10-byte file.
    std::fs::write(&path, &bytes).unwrap();
    let mut meta: ShardMeta =
        serde_json::from_slice(&std::fs::read(meta_path(&path)).unwrap()).unwrap();
    meta.dtype = Dtype::U32;
    std::fs::write(meta_path(&path), serde_json::to_vec(&meta).unwrap()).unwrap();
    assert!(matches!(TokenShard::open(&path), Err(Error::Shard { .. })));

    // No meta at all.
    std::fs::remove_file(meta_path(&path)).unwrap();
    assert!(matches!(TokenShard::open(&path), Err(Error::Io { .. })));
}

#[test]
fn large_vocabularies_use_u32_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let docs = scenes();
    let mut tok = tokenizer::train_bpe(
        docs.iter().map(|d| d.text.as_str()),
        400,
        &dir.path().join("tok.json"),
    )
    .unwrap();
    let extra: Vec<tokenizers::AddedToken> = (0..66_000)
        .map(|i| tokenizers::AddedToken::from(format!("<extra_{i}>"), true))
        .collect();
    tok.add_special_tokens(&extra);
    assert!(tokenizer::vocab_size(&tok) > 65_536);
    let path = dir.path().join("big.bin");
    let text = "<extra_65999> To be".to_string();
    let doc = frugal_data::Document {
        id: "x".into(),
        text: text.clone(),
    };
    let meta = write_shard(&tok, &[doc], &path).unwrap();
    assert_eq!(meta.dtype, Dtype::U32);
    let shard = TokenShard::open(&path).unwrap();
    let ids = shard.get(0, shard.len()).unwrap();
    assert!(ids[0] > 65_535, "{ids:?}");
    assert_eq!(ids, tokenizer::encode(&tok, &text).unwrap());
}

#[test]
fn a_truncating_tokenizer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let docs = scenes();
    let mut tok = tokenizer::train_bpe(
        docs.iter().map(|d| d.text.as_str()),
        300,
        &dir.path().join("tok.json"),
    )
    .unwrap();
    tok.with_truncation(Some(tokenizers::TruncationParams::default()))
        .unwrap();
    let err = write_shard(&tok, &docs, &dir.path().join("s.bin")).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert!(!dir.path().join("s.bin").exists());
}

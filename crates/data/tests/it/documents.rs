use frugal_data::{load_documents, Error};
use std::path::PathBuf;

#[test]
fn a_txt_file_is_one_document() {
    let path = super::common::fixture_path();
    let docs = load_documents(std::slice::from_ref(&path), "text").unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].id, path.display().to_string());
    assert!(docs[0].text.starts_with("HAMLET, PRINCE OF DENMARK"));
}

#[test]
fn directories_are_walked_recursively_in_sorted_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("b/nested")).unwrap();
    std::fs::write(d.join("b/nested/z.rst"), "rst text").unwrap();
    std::fs::write(d.join("b/a.md"), "markdown").unwrap();
    std::fs::write(d.join("c.txt"), "plain").unwrap();
    std::fs::write(d.join("a.txt"), "  \n").unwrap(); // blank: skipped
    std::fs::write(d.join("image.png"), [0u8, 159, 146, 150]).unwrap(); // not text: ignored
    let docs = load_documents(&[d.to_path_buf()], "text").unwrap();
    let texts: Vec<&str> = docs.iter().map(|x| x.text.as_str()).collect();
    assert_eq!(texts, ["markdown", "rst text", "plain"]);
    assert!(docs[1].id.ends_with("b/nested/z.rst"));
}

#[test]
fn jsonl_uses_the_text_field_and_file_line_ids() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.jsonl");
    std::fs::write(
        &p,
        "{\"body\": \"first\"}\n\n{\"body\": \"second\", \"id\": \"named\"}\n",
    )
    .unwrap();
    let docs = load_documents(std::slice::from_ref(&p), "body").unwrap();
    assert_eq!(docs[0].id, format!("{}:1", p.display()));
    assert_eq!(docs[0].text, "first");
    assert_eq!(docs[1].id, "named");
    assert_eq!(docs[1].text, "second");
}

#[test]
fn a_malformed_jsonl_line_is_an_error_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.jsonl");
    std::fs::write(
        &p,
        "{\"text\": \"ok\"}\n{\"text\": \"ok\"}\n{\"text\": oops}\n",
    )
    .unwrap();
    let err = load_documents(std::slice::from_ref(&p), "text").unwrap_err();
    match &err {
        Error::Parse { path, line, .. } => {
            assert_eq!(path, &p);
            assert_eq!(*line, 3);
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    assert!(err.to_string().contains("bad.jsonl:3"), "{err}");

    std::fs::write(&p, "{\"other\": \"x\"}\n").unwrap();
    let err = load_documents(&[p], "text").unwrap_err();
    assert!(err.to_string().contains("no field `text`"), "{err}");
}

#[test]
fn nothing_to_read_is_an_empty_corpus_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.csv"), "a,b").unwrap();
    let err = load_documents(&[dir.path().to_path_buf()], "text").unwrap_err();
    assert!(matches!(err, Error::EmptyCorpus(_)), "{err:?}");
    assert!(err.to_string().starts_with("empty corpus"));
    let err = load_documents(&[], "text").unwrap_err();
    assert!(matches!(err, Error::EmptyCorpus(_)));
}

#[test]
fn a_missing_path_is_an_io_error_naming_it() {
    let p = PathBuf::from("/nonexistent/frugal/corpus.txt");
    let err = load_documents(&[p], "text").unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/frugal/corpus.txt"));
}

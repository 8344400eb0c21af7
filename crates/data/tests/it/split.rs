use super::common::scenes;
use frugal_data::{train_val_split, Document};
use std::collections::HashSet;

fn ids(docs: &[Document]) -> Vec<String> {
    docs.iter().map(|d| d.id.clone()).collect()
}

#[test]
fn split_is_deterministic_disjoint_and_complete() {
    let docs = scenes();
    assert!(docs.len() >= 10, "fixture should give many scenes");
    let (train, val) = train_val_split(docs.clone(), 0.3, 7);
    let (train2, val2) = train_val_split(docs.clone(), 0.3, 7);
    assert_eq!(ids(&train), ids(&train2));
    assert_eq!(ids(&val), ids(&val2));
    let t: HashSet<String> = ids(&train).into_iter().collect();
    let v: HashSet<String> = ids(&val).into_iter().collect();
    assert!(t.is_disjoint(&v));
    assert_eq!(t.len() + v.len(), docs.len());
    assert!(!train.is_empty() && !val.is_empty());
    // Order within each side follows the input.
    let order: Vec<String> = ids(&docs).into_iter().filter(|i| v.contains(i)).collect();
    assert_eq!(ids(&val), order);
}

#[test]
fn a_documents_side_depends_only_on_its_id_and_the_seed() {
    let docs = scenes();
    let (_, val) = train_val_split(docs.clone(), 0.5, 1);
    let fewer: Vec<Document> = docs.into_iter().skip(3).collect();
    let (_, val_fewer) = train_val_split(fewer.clone(), 0.5, 1);
    let kept: HashSet<String> = ids(&fewer).into_iter().collect();
    let expected: Vec<String> = ids(&val).into_iter().filter(|i| kept.contains(i)).collect();
    assert_eq!(ids(&val_fewer), expected);
}

#[test]
fn seeds_change_the_split() {
    let docs: Vec<Document> = (0..200)
        .map(|i| Document {
            id: format!("doc-{i}"),
            text: "x".into(),
        })
        .collect();
    let (_, a) = train_val_split(docs.clone(), 0.1, 1);
    let (_, b) = train_val_split(docs, 0.1, 2);
    assert_ne!(ids(&a), ids(&b));
    // The fraction is honoured roughly: 20 expected of 200.
    assert!((8..=35).contains(&a.len()), "{}", a.len());
}

#[test]
fn each_side_gets_a_document_whenever_there_are_two() {
    let two = vec![
        Document {
            id: "a".into(),
            text: "1".into(),
        },
        Document {
            id: "b".into(),
            text: "2".into(),
        },
    ];
    for fraction in [0.0, 1e-9, 0.5, 1.0, f64::NAN, -3.0, 7.0] {
        let (train, val) = train_val_split(two.clone(), fraction, 0);
        assert_eq!((train.len(), val.len()), (1, 1), "fraction {fraction}");
    }
    let (train, val) = train_val_split(two[..1].to_vec(), 0.5, 0);
    assert_eq!(train.len() + val.len(), 1);
}

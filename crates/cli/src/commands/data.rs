use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use frugal_data::corpus;
use frugal_data::documents::{load_documents, Document};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Download pinned corpora (and models) into the cache ($FRUGAL_CACHE or ~/.cache/frugal).
    Fetch(FetchArgs),
    /// What can be fetched, and what is in the cache.
    List,
    /// Tokenise documents into memory-mapped train/validation shards.
    Prepare(PrepareArgs),
}

#[derive(Args)]
pub struct FetchArgs {
    /// Names from `frugal data list` (default: the default corpus).
    pub names: Vec<String>,
}

#[derive(Args)]
pub struct PrepareArgs {
    /// .txt files, directories, .jsonl files.
    #[arg(long = "input")]
    pub inputs: Vec<PathBuf>,
    /// Fetched corpus names.
    #[arg(long)]
    pub corpus: Vec<String>,
    /// A Hugging Face tokenizer.json.
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// Dataset directory to write (token shards and meta.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Share of the documents held out for validation.
    #[arg(long, default_value_t = 0.01)]
    pub val_fraction: f64,
    /// Seed of the train/validation split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// JSON field (or Parquet column) with the text of .jsonl/.parquet inputs.
    #[arg(long, default_value = "text")]
    pub text_field: String,
}

/// Documents from local paths and fetched corpora together.
pub fn gather(inputs: &[PathBuf], corpora: &[String], text_field: &str) -> Result<Vec<Document>> {
    if inputs.is_empty() && corpora.is_empty() {
        bail!("give --input PATH or --corpus NAME");
    }
    let mut docs = Vec::new();
    if !inputs.is_empty() {
        docs.extend(load_documents(inputs, text_field)?);
    }
    for name in corpora {
        docs.extend(corpus::load(name)?);
    }
    Ok(docs)
}

pub fn run(c: DataCommand) -> Result<()> {
    match c {
        DataCommand::List => {
            println!("cache: {}", frugal_data::cache::cache_dir().display());
            let list = corpus::list();
            let width = list.iter().map(|i| i.name.len()).max().unwrap_or(0);
            for info in list {
                println!(
                    "{:<width$} {:<8} {}  [{}]",
                    info.name,
                    if info.fetched { "fetched" } else { "-" },
                    info.description,
                    info.version,
                );
            }
            Ok(())
        }
        DataCommand::Fetch(a) => {
            let names = if a.names.is_empty() {
                vec!["default".to_string()]
            } else {
                a.names
            };
            for name in names {
                for f in corpus::fetch(&name)? {
                    println!("{:<14} {}", f.name, f.dir.display());
                }
            }
            Ok(())
        }
        DataCommand::Prepare(a) => {
            let docs = gather(&a.inputs, &a.corpus, &a.text_field)?;
            let meta =
                frugal_data::dataset::prepare(docs, &a.tokenizer, &a.out, a.val_fraction, a.seed)?;
            println!(
                "wrote {}: {} train tokens, {} validation tokens, vocab {}",
                a.out.display(),
                meta.train.n_tokens,
                meta.val.n_tokens,
                meta.vocab_size
            );
            Ok(())
        }
    }
}

use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum TokenizerCommand {
    /// Train a byte-level BPE tokenizer (Hugging Face `tokenizers`) on text.
    Train(TrainTokArgs),
}

#[derive(Args)]
pub struct TrainTokArgs {
    /// Text inputs: .txt files, directories, .jsonl, or a fetched corpus name with --corpus.
    #[arg(long = "input")]
    pub inputs: Vec<PathBuf>,
    /// A fetched corpus (see `frugal data list`), instead of or besides --input.
    #[arg(long)]
    pub corpus: Vec<String>,
    #[arg(long, default_value_t = 8192)]
    pub vocab: usize,
    #[arg(long)]
    pub out: PathBuf,
    /// Train on at most this many characters (documents in order).
    #[arg(long)]
    pub max_chars: Option<usize>,
    #[arg(long, default_value = "text")]
    pub text_field: String,
}

pub fn run(c: TokenizerCommand) -> Result<()> {
    match c {
        TokenizerCommand::Train(a) => {
            let docs = super::data::gather(&a.inputs, &a.corpus, &a.text_field)?;
            let texts = take_chars(docs.iter().map(|d| d.text.as_str()), a.max_chars);
            let tok = frugal_data::tokenizer::train_bpe(texts, a.vocab, &a.out)?;
            println!(
                "wrote {} (vocab {})",
                a.out.display(),
                frugal_data::tokenizer::vocab_size(&tok)
            );
            Ok(())
        }
    }
}

/// The texts in order until `max` characters have been taken.
pub fn take_chars<'a>(texts: impl Iterator<Item = &'a str>, max: Option<usize>) -> Vec<&'a str> {
    let mut left = max.unwrap_or(usize::MAX);
    let mut out = Vec::new();
    for t in texts {
        if left == 0 {
            break;
        }
        out.push(t);
        left = left.saturating_sub(t.len());
    }
    out
}

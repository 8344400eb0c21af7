pub mod bench;
pub mod data;
pub mod demo;
pub mod eval;
pub mod export;
pub mod generate;
pub mod tokenizer;
pub mod train;

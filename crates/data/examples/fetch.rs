//! Lists the corpus registry, or fetches the named entries.
//!
//! `cargo run -p frugal-data --example fetch -- [NAME...]`

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let names: Vec<String> = std::env::args().skip(1).collect();
    if names.is_empty() {
        for c in frugal_data::corpus::list() {
            let state = if c.fetched { "fetched" } else { "-" };
            println!(
                "{:<14} {:<8} {:<52} {}",
                c.name, state, c.version, c.description
            );
        }
        return Ok(());
    }
    for name in names {
        for f in frugal_data::corpus::fetch(&name)? {
            println!("{} -> {}", f.name, f.dir.display());
            for file in f.files {
                let len = std::fs::metadata(&file)?.len();
                println!("  {} ({len} bytes)", file.display());
            }
        }
    }
    Ok(())
}

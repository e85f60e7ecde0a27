//! `palaver-load`: the command line of the load-test harness (the scenarios live in the
//! library, `src/lib.rs`). See `loadtest/README.md`.

use clap::Parser as _;
use palaver_load::cli::Cli;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(common) = cli.command.common() {
        palaver_load::raise_fd_limit();
        palaver_load::pin_generator(common)?;
    }
    let doc = palaver_load::run(&cli.command)?;
    if !doc.is_null() {
        palaver_load::print_summary(&doc);
    }
    Ok(())
}

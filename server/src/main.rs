//! `palaver`: runs the chat server. See `palaver --help` and docs/OPERATIONS.md.

use std::io::IsTerminal;

use clap::Parser;
use palaver_server::{Cli, Config};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,fjall=warn,lsm_tree=warn")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let config = Config::resolve(Cli::parse())?;
    palaver_server::run(config)?;
    Ok(())
}

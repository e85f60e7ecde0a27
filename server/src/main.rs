//! `palaver`: runs the chat server. See `palaver --help` and docs/OPERATIONS.md.

use std::io::IsTerminal;

use clap::Parser;
use palaver_server::{Cli, Config};

/// mimalloc instead of glibc malloc: argon2 allocates and frees a 19 MiB block per hash,
/// and glibc's arenas fragment around it (long-lived storage allocations land in the
/// freed space), growing RSS by megabytes per login. mimalloc reuses the block.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,fjall=warn,lsm_tree=warn")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    // A panic is a bug. In a thread-per-core server a panicking shard would leave a
    // process that silently drops its rooms and sockets; stop the whole process instead
    // (acknowledged data is in the synced journal, so a restart loses nothing).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
    let config = Config::resolve(Cli::parse())?;
    palaver_server::run(config)?;
    Ok(())
}

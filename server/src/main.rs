//! `palaver`: runs the chat server. See `palaver --help` and docs/OPERATIONS.md.

use std::io::IsTerminal;

use palaver_server::config::{Command, LogFormat};
use palaver_server::{Config, Settings};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc malloc: argon2 allocates and frees a 19 MiB block per hash,
/// and glibc's arenas fragment around it (long-lived storage allocations land in the
/// freed space), growing RSS by megabytes per login. mimalloc reuses the block.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What is logged when neither `--log-level` nor `RUST_LOG` says: fjall's own info lines
/// (every flush and compaction) would drown the server's.
const DEFAULT_LOG_FILTER: &str = "info,fjall=warn,lsm_tree=warn";

fn main() -> anyhow::Result<()> {
    let mut settings = Settings::parse_with_defaults();
    match settings.command.take() {
        Some(Command::Backup { data_dir, out }) => {
            let manifest = palaver_server::backup::request(&data_dir, &out)?;
            println!("backup written to {}:\n{manifest:#}", out.display());
            return Ok(());
        }
        Some(Command::Restore { from, data_dir }) => {
            let manifest = palaver_server::backup::restore(&from, &data_dir)?;
            println!("restored {} into {}: {manifest:#}", from.display(), data_dir.display());
            return Ok(());
        }
        Some(Command::Compact { data_dir }) => {
            println!("{}", palaver_server::operator::compact(&data_dir)?);
            return Ok(());
        }
        Some(Command::Admin { action, data_dir }) => {
            println!("{}", palaver_server::operator::admin(&data_dir, &action)?);
            return Ok(());
        }
        Some(Command::ApiKey { action, data_dir }) => {
            println!("{}", palaver_server::operator::api_key(&data_dir, &action)?);
            return Ok(());
        }
        None => {}
    }
    let config = Config::resolve(settings)?;
    init_logging(&config)?;
    // A panic is a bug. In a thread-per-core server a panicking shard would leave a
    // process that silently drops its rooms and sockets; stop the whole process instead
    // (acknowledged data is in the synced journal, so a restart loses nothing).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
    palaver_server::run(config)?;
    Ok(())
}

/// Logs to stderr in the configured format, filtered by `--log-level`, else `RUST_LOG`,
/// else [`DEFAULT_LOG_FILTER`]. A bare level keeps fjall at `warn` below `debug`.
fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = match &config.log_level {
        Some(level) if matches!(level.as_str(), "error" | "warn" | "info") => {
            EnvFilter::try_new(format!("{level},fjall=warn,lsm_tree=warn"))?
        }
        Some(directives) => EnvFilter::try_new(directives)
            .map_err(|e| anyhow::anyhow!("invalid --log-level {directives:?}: {e}"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER)),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
    Ok(())
}

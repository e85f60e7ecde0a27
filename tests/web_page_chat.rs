//! The built-in page in a real browser, as a newcomer meets Palaver: the server runs with
//! its development secret, and two headless Chromium tabs at `/` (driven by
//! `tests/browser/web_page_chat.mjs` through playwright-core) register, create and join
//! a room, see each other typing, chat, see the read receipt and each other online —
//! with no Content-Security-Policy violation.
//!
//! Needs `/usr/bin/chromium` (or `PALAVER_CHROMIUM`), `node`, and `npm ci` in
//! `tests/browser`; without them the test is skipped with a notice, except under CI (`CI`
//! set), where it fails.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use std::path::{Path, PathBuf};
use std::process::Command;

use palaver_e2e::Server;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

fn tools() -> Result<(PathBuf, PathBuf), String> {
    let chromium = std::env::var_os("PALAVER_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !chromium.is_file() {
        return Err(format!("{} not found (apt-get install chromium)", chromium.display()));
    }
    let node = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("node"))
        .find(|p| p.is_file())
        .ok_or("node not found")?;
    if !browser_dir().join("node_modules/playwright-core").is_dir() {
        return Err("playwright-core not installed (cd tests/browser && npm ci)".into());
    }
    Ok((chromium, node))
}

#[test]
fn two_tabs_of_the_built_in_page_chat_with_typing_receipts_and_presence() {
    let (chromium, node) = match tools() {
        Ok(tools) => tools,
        Err(why) if std::env::var_os("CI").is_none() => {
            eprintln!("skipping the web page test: {why}");
            return;
        }
        Err(why) => panic!("the web page test cannot run under CI: {why}"),
    };
    let server = Server::start_with_development_secret(&[]);
    let screenshot = tempfile::tempdir().unwrap();
    let shot = screenshot.path().join("page.png");
    let status = Command::new(node)
        .current_dir(browser_dir())
        .arg("web_page_chat.mjs")
        .arg(chromium)
        .arg(server.url("/"))
        .arg(&shot)
        .status()
        .unwrap();
    assert!(status.success(), "the page did not chat (see the driver's output above)");
    assert!(shot.is_file());
    if let Some(keep) = std::env::var_os("PALAVER_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}

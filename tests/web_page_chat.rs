//! The built-in page in a real browser, as a newcomer meets Palaver: the server runs with
//! its development secret, and two headless Chromium tabs at `/` (driven by
//! `tests/browser/web_page_chat.mjs` through playwright-core) register, create and join
//! a room, see each other typing, chat, see the read receipt and each other online —
//! with no Content-Security-Policy violation.
//!
//! Needs Chromium, Node.js and `npm ci` in `tests/browser`: `./x test` installs them and
//! passes their paths in `PALAVER_CHROMIUM` and `PALAVER_NODE`. Run directly without
//! them, the test fails saying what to install.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use std::path::{Path, PathBuf};
use std::process::Command;

use palaver_e2e::{CHROMIUM, NODE, Server, outside_tool};

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// The tools this test needs; panics, saying how to install them, when one is missing.
fn tools() -> (PathBuf, PathBuf) {
    let (chromium, node) = (outside_tool(CHROMIUM), outside_tool(NODE));
    assert!(
        browser_dir().join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: ./x test, or cd tests/browser && npm ci"
    );
    (chromium, node)
}

#[test]
fn two_tabs_of_the_built_in_page_chat_with_typing_receipts_and_presence() {
    let (chromium, node) = tools();
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

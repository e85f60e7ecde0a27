//! The Python package (`sdk/python`: the Rust SDK through PyO3) against the real server.
//! It is built and installed from the repository with pip (maturin as the build backend),
//! then `tests/python/sdk_client.py` chats, pages, searches, shares files and resumes
//! across a server `kill -9`; and every ```` ```python ```` block of README.md and
//! docs/SDK.md runs as written (pointed at this test's server).
//!
//! The Python is `$PALAVER_TEST_PYTHON`, else `python3`: Python 3.10 or newer with pip,
//! `maturin` (`pip install 'maturin>=1.9.4,<2'`) and `websockets` (for the README's
//! protocol example). Without them the test fails, saying what is missing.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use palaver_e2e::Server;

/// The environment variable naming the Python to test with.
const PYTHON_VAR: &str = "PALAVER_TEST_PYTHON";

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn python() -> String {
    std::env::var(PYTHON_VAR).unwrap_or_else(|_| "python3".into())
}

/// `target/` of this build (the test binary is `target/<profile>/deps/…`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

/// Runs `python -c code`; whether it succeeded.
fn python_can(code: &str) -> bool {
    Command::new(python())
        .args(["-c", code])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Builds the package with pip from `sdk/python` into `target/palaver-python/site` (once
/// per run of this test binary) and returns that directory, for `PYTHONPATH`.
fn installed_package() -> &'static Path {
    static SITE: OnceLock<PathBuf> = OnceLock::new();
    SITE.get_or_init(|| {
        let python = python();
        let provision = format!(
            "set {PYTHON_VAR} to a Python 3.10+ that has them, or run \
             `{python} -m pip install 'maturin>=1.9.4,<2' websockets`"
        );
        assert!(
            python_can("import sys; assert sys.version_info >= (3, 10)"),
            "the Python SDK test needs Python 3.10 or newer at `{python}`: {provision}"
        );
        assert!(python_can("import pip"), "`{python}` has no pip: {provision}");
        assert!(
            python_can("import maturin"),
            "`{python}` has no maturin (the package's build backend): {provision}"
        );
        // pip runs the build backend, which runs the `maturin` program installed next to
        // this Python; without build isolation pip does not put it on PATH itself.
        let scripts = Command::new(&python)
            .args(["-c", "import sysconfig; print(sysconfig.get_path('scripts'))"])
            .output()
            .unwrap();
        let scripts = PathBuf::from(String::from_utf8_lossy(&scripts.stdout).trim());
        assert!(
            scripts.join("maturin").exists(),
            "no `maturin` program in {}: {provision}",
            scripts.display()
        );
        let path = std::env::join_paths(
            std::iter::once(scripts)
                .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
        )
        .unwrap();
        let work = target_dir().join("palaver-python");
        let site = work.join("site");
        let _ = std::fs::remove_dir_all(&site);
        // The Rust build keeps its own target dir under target/, so reruns are incremental.
        let output = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-build-isolation"])
            .args(["--no-deps", "--target"])
            .arg(&site)
            .arg(repository().join("sdk/python"))
            .env("CARGO_TARGET_DIR", work.join("cargo"))
            .env("PATH", path)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "pip install ./sdk/python failed\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        site
    })
}

#[test]
fn the_python_package_chats_and_resumes_across_a_server_kill_9() {
    let site = installed_package();
    let mut server = Server::start(&["--shards", "2", "--presence-interval-ms", "100"]);
    let mut child = Command::new(python())
        .arg(repository().join("tests/python/sdk_client.py"))
        .arg(server.url(""))
        .env("PYTHONPATH", site)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let mut transcript = String::new();
    let mut killed = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        transcript.push_str(&line);
        transcript.push('\n');
        if line == "KILL" {
            server.kill9();
            server.restart();
            killed = true;
            writeln!(stdin, "RESTARTED").unwrap();
        }
    }
    let status = child.wait().unwrap();
    let stderr = stderr.join().unwrap();
    assert!(status.success(), "the Python client failed\nstdout:\n{transcript}\nstderr:\n{stderr}");
    assert!(killed, "the script never asked for the crash:\n{transcript}");
    assert!(transcript.contains("ALL CHECKS PASSED"), "{transcript}");
}

/// The fenced ```` ```python ```` blocks of a Markdown file.
fn python_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match &mut current {
            None if line.trim_end() == "```python" => current = Some(String::new()),
            Some(_) if line.trim_end() == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

#[test]
fn the_python_blocks_of_the_docs_run_as_written() {
    let site = installed_package();
    assert!(
        python_can("import websockets"),
        "the README's protocol example needs `websockets` in `{}`",
        python()
    );
    let mut ran = 0;
    for doc in ["README.md", "docs/SDK.md"] {
        let text = std::fs::read_to_string(repository().join(doc)).unwrap();
        for (i, block) in python_blocks(&text).into_iter().enumerate() {
            // Each block on a new server, at the address the docs use.
            let server = Server::start(&[]);
            let script = block.replace("127.0.0.1:8080", &server.addr.to_string());
            let output =
                Command::new(python()).args(["-c", &script]).env("PYTHONPATH", site).output().unwrap();
            assert!(
                output.status.success(),
                "python block {i} of {doc} failed\n{block}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            ran += 1;
        }
    }
    assert!(ran >= 2, "the docs show the Python SDK and the raw protocol ({ran} blocks)");
}

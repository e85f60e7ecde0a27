//! The Rust snippets of README.md and docs/SDK.md run as written. Each ```` ```rust ````
//! block of those two files is, byte for byte, a file of `tests/snippets/`; this test
//! checks that, compiles every snippet into itself and runs it against the real server.
//! (Their ```` ```python ```` blocks are run by `sdk_python.rs`.)
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use palaver_e2e::{Server, WAIT, png_bytes};
use palaver_protocol::RoomKind;
use palaver_sdk::{Client, Credentials};

/// Each snippet in a module of its own, with a `run` that calls it (its functions are
/// private, as written in the docs).
mod snippets {
    pub mod readme_quickstart {
        include!("snippets/readme_quickstart.rs");
        pub async fn run(url: &str) -> Result<(), palaver_sdk::Error> {
            hello(url).await
        }
    }
    pub mod sdk_quic {
        include!("snippets/sdk_quic.rs");
        pub async fn run(url: &str, quic_addr: &str, data_dir: &Path) -> Result<Client, palaver_sdk::Error> {
            over_quic(url, quic_addr, data_dir).await
        }
    }
    pub mod sdk_tls {
        include!("snippets/sdk_tls.rs");
        pub async fn run(url: &str, data_dir: &Path) -> Result<Client, palaver_sdk::Error> {
            over_tls(url, data_dir).await
        }
    }
    pub mod sdk_files_search {
        include!("snippets/sdk_files_search.rs");
        pub async fn run(client: &Client, room: &RoomId, png: Vec<u8>) -> Result<usize, Error> {
            share_and_find(client, room, png).await
        }
    }
    pub mod sdk_e2ee {
        include!("snippets/sdk_e2ee.rs");
        pub async fn run(alice: &Client, bob: &Client) -> Result<String, Error> {
            encrypted_dm(alice, bob).await
        }
    }
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The fenced blocks of `lang` in a Markdown file.
pub fn fenced_blocks(markdown: &str, lang: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match &mut current {
            None if line.trim_end() == format!("```{lang}") => current = Some(String::new()),
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
fn every_rust_block_of_the_docs_is_a_snippet_run_here() {
    let snippets: BTreeMap<String, String> = std::fs::read_dir(repository().join("tests/snippets"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .map(|path| {
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&path).unwrap(),
            )
        })
        .collect();
    let mut used = BTreeMap::new();
    for doc in ["README.md", "docs/SDK.md"] {
        let text = std::fs::read_to_string(repository().join(doc)).unwrap();
        let blocks = fenced_blocks(&text, "rust");
        assert!(!blocks.is_empty(), "{doc} has no rust block");
        for block in blocks {
            let name = snippets
                .iter()
                .find(|(_, snippet)| **snippet == block)
                .map(|(name, _)| name.clone())
                .unwrap_or_else(|| {
                    panic!("a rust block of {doc} is not a file of tests/snippets/:\n{block}")
                });
            used.insert(name, doc);
        }
    }
    let unused: Vec<&String> = snippets.keys().filter(|name| !used.contains_key(*name)).collect();
    assert!(unused.is_empty(), "snippets no doc shows: {unused:?}");
    // And each is run by a test of this file.
    let this = std::fs::read_to_string(repository().join("tests/sdk_docs.rs")).unwrap();
    for name in snippets.keys() {
        assert!(this.contains(&format!("include!(\"snippets/{name}\")")), "{name} is not compiled here");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_quickstart() {
    let server = Server::start(&[]);
    tokio::time::timeout(WAIT, snippets::readme_quickstart::run(&server.url(""))).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_quic_and_tls() {
    let server = Server::start(&[]);
    let client = snippets::sdk_quic::run(&server.url(""), &server.quic_addr.to_string(), server.data_dir())
        .await
        .unwrap();
    assert!(client.is_connected());
    client.ping().await.unwrap();

    let tls = Server::start(&["--http-tls"]);
    assert!(tls.url("").starts_with("https://"));
    let client = snippets::sdk_tls::run(&tls.url(""), tls.data_dir()).await.unwrap();
    client.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_files_and_search() {
    let server = Server::start(&[]);
    let client =
        Client::connect(&server.url(""), Credentials::register("alice", "password-123")).await.unwrap();
    let room = client.create_room("charts", RoomKind::Public).await.unwrap().room_id;
    client.join(&room).await.unwrap();
    // The search index commits about twice a second: run until the message is found.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut hits = 0;
    while hits == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the shared file's message was never found");
        hits = snippets::sdk_files_search::run(&client, &room, png_bytes(64, 32)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_e2ee() {
    let server = Server::start(&[]);
    let url = server.url("");
    let alice = Client::connect(&url, Credentials::register("alice", "password-123")).await.unwrap();
    let bob = Client::connect(&url, Credentials::register("bob", "password-123")).await.unwrap();
    let text = tokio::time::timeout(WAIT, snippets::sdk_e2ee::run(&alice, &bob)).await.unwrap().unwrap();
    assert_eq!(text, "see you at nine");
}

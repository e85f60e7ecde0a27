//! The server crate's modules form layers, and a module imports only from layers below
//! its own: this test reads every source file's `crate::…` paths (a module reaches
//! another top-level module only that way) and fails on an import that points up or
//! sideways into a later layer, naming the file and the import; a new top-level module
//! must be placed in a layer. docs/ARCHITECTURE.md ("Layers")
//! describes the same list.
#![allow(clippy::unwrap_used, clippy::panic, reason = "a test: failing loudly is the point")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// From the bottom up. A module may import from its own layer's other modules only when
/// they are listed together here; the rest import strictly downwards.
const LAYERS: &[&[&str]] = &[
    // Leaves: time, ids, settings, measurements and the resources shared by every layer.
    &["clock", "ids", "metrics", "descriptors", "blocking", "spam_limits", "config", "data_dir"],
    // Accounts, files, webhook signing and Web Push encryption, below everything that serves a request.
    &["auth", "files", "webhooks", "web_push", "browser_certificates"],
    // Bytes on a socket: WebSocket framing and a connection's outbound plumbing.
    &["ws"],
    // HTTP/3 and WebTransport, sans-IO: what a browser's session on the QUIC port says.
    &["webtransport"],
    &["io"],
    // What shards say to each other, and the state they share.
    &["mesh"],
    &["cluster"],
    &["shared"],
    // The outbound queue's sender thread: webhooks and Web Push, off the shard cores.
    &["outbound"],
    // The shards: the drivers of the pure machines, fan-out, relay.
    &["shard"],
    // Background work that asks the shards: retention's sweeper.
    &["retention_sweeper"],
    // Transports and connections: QUIC sessions, HTTP, WebSocket sockets, routes.
    &["quic"],
    &["conn"],
    // The process.
    &["backup", "operator"],
    &["server"],
    &["fuzzing", "benching"],
];

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`None`: the crate root, `lib.rs` or `main.rs`).
fn module_of(file: &Path) -> Option<String> {
    let relative = file.strip_prefix(source_dir()).unwrap();
    let first = relative.components().next()?.as_os_str().to_str()?.to_owned();
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => None,
        Some(name) => Some(name.to_owned()),
        None => Some(first),
    }
}

/// The top-level modules named by `crate::NAME` in `text`, outside comments.
fn imports(text: &str) -> BTreeSet<String> {
    let code: String =
        text.lines().map(|line| line.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n");
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let name: String = rest.chars().take_while(|c| ident(*c)).collect();
        if !name.is_empty() {
            found.insert(name);
            continue;
        }
        // `crate::{a, b::{c, d}, e}`: the first name of every top-level item.
        let Some(group) = rest.strip_prefix('{') else { continue };
        let (mut depth, mut start_of_item, mut name) = (0usize, true, String::new());
        for c in group.chars() {
            if start_of_item && ident(c) {
                name.push(c);
                continue;
            }
            if start_of_item && !name.is_empty() {
                found.insert(std::mem::take(&mut name));
                start_of_item = false;
            }
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => start_of_item = true,
                _ => {}
            }
        }
        if !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

#[test]
fn modules_import_only_from_layers_below_their_own() {
    let mut files = Vec::new();
    rust_files(&source_dir(), &mut files);
    let mut modules = BTreeSet::new();
    let mut wrong: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(file) else { continue };
        modules.insert(module.clone());
        let Some(own) = layer_of(&module) else { continue };
        let text = std::fs::read_to_string(file).unwrap();
        for import in imports(&text) {
            if import == module {
                continue;
            }
            let Some(theirs) = layer_of(&import) else { continue };
            if theirs > own || (theirs == own && !LAYERS[own].contains(&import.as_str())) {
                let name = file.strip_prefix(source_dir()).unwrap().display().to_string();
                wrong.entry(name).or_default().insert(import);
            }
        }
    }
    let unplaced: Vec<&String> = modules.iter().filter(|m| layer_of(m).is_none()).collect();
    assert!(unplaced.is_empty(), "modules in no layer (add them to LAYERS): {unplaced:?}");
    assert!(wrong.is_empty(), "imports from a layer above the importer's: {wrong:#?}");
}

#[test]
fn the_import_reader_finds_grouped_and_nested_paths() {
    let text = "use crate::{\n    mesh::{Mesh, ShardMsg},\n    io::wire,\n    ids,\n};\nlet x = crate::clock::now_ms(); // crate::conn";
    let found = imports(text);
    assert_eq!(found, ["clock", "ids", "io", "mesh"].into_iter().map(String::from).collect());
}

//! `docs/PROTOCOL.md` names every op and every event the code has, and no other. The
//! names come from the protocol crate itself: serde's refusal of an unknown tag lists
//! every variant's wire name. They are compared, both ways, with the summary tables of
//! §3.5 (ops) and §3.6 (events), and each must also have a section heading of its own.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use std::collections::BTreeSet;

use palaver_protocol::{Event, Op};
use serde::de::DeserializeOwned;

fn protocol_doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// Every wire name of an internally tagged enum: serde lists them all when it refuses a
/// tag it does not know ("unknown variant `?`, expected one of `a`, `b`, …").
fn wire_names<T: DeserializeOwned + std::fmt::Debug>(tag: &str) -> BTreeSet<String> {
    let probe = format!(r#"{{"{tag}":"not a name"}}"#);
    let refusal = serde_json::from_str::<T>(&probe).unwrap_err().to_string();
    let (_, expected) = refusal
        .split_once("expected one of ")
        .unwrap_or_else(|| panic!("serde's refusal no longer lists the variants: {refusal}"));
    let names = backticked(expected);
    assert!(names.len() > 3, "too few names in {refusal:?}");
    names
}

/// The `code` spans of a line.
fn backticked(text: &str) -> BTreeSet<String> {
    text.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// The lines from the heading that starts with `from` up to the next line starting with
/// `until`.
fn section<'a>(doc: &'a str, from: &str, until: &str) -> Vec<&'a str> {
    let mut lines = doc.lines().skip_while(|l| !l.starts_with(from));
    let heading = lines.next().unwrap_or_else(|| panic!("no section {from:?} in docs/PROTOCOL.md"));
    std::iter::once(heading).chain(lines.take_while(|l| !l.starts_with(until))).collect()
}

/// The names in the first column of the first table of a section (its summary).
fn first_column(lines: &[&str]) -> BTreeSet<String> {
    lines
        .iter()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .flat_map(|l| backticked(l.split('|').nth(1).unwrap_or_default()))
        .collect()
}

fn assert_same(what: &str, code: &BTreeSet<String>, doc: &BTreeSet<String>) {
    let undocumented: Vec<_> = code.difference(doc).collect();
    let unknown: Vec<_> = doc.difference(code).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "{what}: in the code but not in docs/PROTOCOL.md: {undocumented:?}; \
         in docs/PROTOCOL.md but not in the code: {unknown:?}"
    );
}

#[test]
fn every_op_is_documented_and_every_documented_op_exists() {
    let doc = protocol_doc();
    let ops = wire_names::<Op>("op");
    let summary = section(&doc, "### 3.5 Ops", "#### 3.5.1 ");
    assert_same("ops in §3.5's summary table", &ops, &first_column(&summary));
    let headings: BTreeSet<String> = section(&doc, "### 3.5 Ops", "### 3.6 ")
        .iter()
        .filter(|l| l.starts_with("#### 3.5."))
        .flat_map(|l| backticked(l))
        .collect();
    let without_section: Vec<_> = ops.difference(&headings).collect();
    assert!(without_section.is_empty(), "ops without a §3.5.x section: {without_section:?}");
}

#[test]
fn every_event_is_documented_and_every_documented_event_exists() {
    let doc = protocol_doc();
    let events = wire_names::<Event>("ev");
    let lines = section(&doc, "### 3.6 Events", "### 3.7 ");
    assert_same("events in §3.6's summary table", &events, &first_column(&lines));
    let headings: BTreeSet<String> =
        lines.iter().filter(|l| l.starts_with("#### ")).flat_map(|l| backticked(l)).collect();
    let without_section: Vec<_> = events.difference(&headings).collect();
    assert!(without_section.is_empty(), "events without a §3.6 section: {without_section:?}");
}

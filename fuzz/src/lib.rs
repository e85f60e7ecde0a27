//! The bodies of Palaver's fuzz targets, as plain functions of a byte slice.
//!
//! Each `fuzz/libfuzzer/fuzz_targets/<name>.rs` (cargo-fuzz, nightly, a workspace of its
//! own) is one line calling the function of the same name here; `tests/corpus_replay.rs`
//! calls the same functions on every committed corpus file and regression reproducer,
//! so `cargo test --workspace` replays them on stable Rust without libFuzzer.
//!
//! A harness returns normally for any input and panics only when a property fails:
//! that panic is the finding. Not here: the code under test (protocol, server, core).

#![allow(clippy::unwrap_used, reason = "a harness reports a broken property by panicking")]

mod frames;
#[cfg(feature = "server")]
mod http_request;
mod room_model;
#[cfg(feature = "server")]
mod ws_frame;

pub use frames::{json_frame, rkyv_frame};
#[cfg(feature = "server")]
pub use http_request::http_request;
pub use room_model::room_model;
#[cfg(feature = "server")]
pub use ws_frame::ws_frame;

/// A harness: returns for any input, panics when a property fails.
pub type Harness = fn(&[u8]);

/// Every target by name, for the corpus replay.
pub const TARGETS: &[(&str, Harness)] = &[
    ("json_frame", json_frame),
    ("rkyv_frame", rkyv_frame),
    #[cfg(feature = "server")]
    ("ws_frame", ws_frame),
    #[cfg(feature = "server")]
    ("http_request", http_request),
    ("room_model", room_model),
];

/// Deterministic chunk lengths (1 to `max`) from a seed, to split a stream the same way
/// on every replay.
#[cfg(feature = "server")]
pub(crate) fn chunk_lengths(seed: u8, max: usize) -> impl Iterator<Item = usize> {
    let mut state = u32::from(seed) | 0x1_0000;
    std::iter::repeat_with(move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state as usize % max.max(1)) + 1
    })
}

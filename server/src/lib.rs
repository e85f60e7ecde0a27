//! The Palaver server: the `palaver` binary's library. It carries out what the pure
//! `palaver-core` state machines decide — it owns the sockets, the clock, the threads
//! and the storage handles.
//!
//! - [`server::run`] starts everything: storage and its group-commit thread, one shard
//!   per core, the shared listening port.
//! - `shard`: a thread with its own monoio runtime; owns the rooms that hash to it and
//!   delivers events to its own sockets. Shards talk only by messages.
//! - `conn`: HTTP/1.1 routes and the WebSocket connection (reader, writer), and the
//!   shard's half of a QUIC session.
//! - `io`: a connection's outbound plumbing below it (queue, writer, pacing, framing per
//!   transport, connection limits); `mesh`: what shards say to each other and the
//!   presence they share.
//! - [`quic`]: the QUIC listener, on a thread of its own, bridging sessions into shards.
//! - `ws`: the WebSocket handshake and frame codec, sans-IO.
//! - [`webtransport`]: HTTP/3 and WebTransport for browsers on the QUIC port, sans-IO.
//! - `auth`: passwords, access tokens, refresh tokens.
//! - [`operator`]: commands on a stopped server's data directory (the admin role).
//! - [`backup`]: online backup through the data directory's control socket, and restore;
//!   [`data_dir`]: the data directory's layout version and its upgrades.
//!
//! Not here: the chat rules (`palaver-core`), the wire types (`palaver-protocol`), the
//! on-disk layout (`palaver-storage`).

pub mod auth;
pub mod backup;
#[doc(hidden)]
pub mod benching;
mod blocking;
pub mod browser_certificates;
pub mod clock;
pub mod cluster;
pub mod config;
mod conn;
pub mod data_dir;
mod descriptors;
pub mod files;
#[doc(hidden)]
pub mod fuzzing;
mod ids;
mod io;
mod mesh;
pub mod metrics;
pub mod operator;
mod outbound;
pub mod quic;
mod retention_sweeper;
pub mod server;
mod shard;
mod shared;
mod spam_limits;
pub mod web_push;
pub mod webhooks;
pub mod webtransport;
pub mod ws;

pub use config::{Config, Settings};
pub use server::{StartError, run};

//! The Palaver client SDK, for Rust programs (tokio) and web pages (WebAssembly).
//!
//! A [`Client`] is one authenticated connection to a Palaver server that **does not drop
//! messages and does not repeat them**, whatever the network does:
//!
//! - **Reconnect is invisible.** When the socket drops, the client reconnects with
//!   bounded exponential backoff and jitter, refreshes the access token if it has
//!   expired (or logs in again with the password), re-authenticates, and re-joins every
//!   room with `since` = the last seq it delivered. The [`Events`] stream goes on with
//!   no gap and no duplicate: each room's messages arrive once each, in seq order
//!   (duplicates are dropped, gaps are filled from `history`).
//! - **Exactly-once send.** [`Client::send`] gives every message a `cid` and keeps it in
//!   an outbox until the server acknowledges it, re-sending it with the same `cid` after a
//!   reconnect. The server stores a `cid` once, so a message is stored exactly once and
//!   `send` returns its `seq`.
//! - **Typed.** Every op of the protocol (`docs/PROTOCOL.md`) is a method returning the
//!   `palaver-protocol` type of its answer, every server event a [`ClientEvent`]
//!   variant; errors are one [`Error`] enum. Files ([`Client::upload`]) and search
//!   ([`SearchQuery`]) included.
//! - **Patient.** [`Client::connect`] retries a server that is not up yet (30 s by
//!   default), and each [`Events`] stream has a bounded queue: a stream read too slowly
//!   drops its oldest events and yields [`ClientEvent::Lagged`], never slowing the client.
//!
//! ```no_run
//! use palaver_protocol::RoomKind;
//! use palaver_sdk::{Client, ClientEvent, Credentials};
//!
//! # async fn demo() -> Result<(), palaver_sdk::Error> {
//! // Log in (Credentials::register creates the account first).
//! let client = Client::connect("http://127.0.0.1:8080", Credentials::password("alice", "correct horse")).await?;
//! let mut events = client.events(); // every event after `Connected`: nothing is missed
//!
//! let room = client.create_room("general", RoomKind::Public).await?;
//! client.join(&room.room_id).await?;
//! let sent = client.send(&room.room_id, "hello 👋").await?; // durable once this returns
//! println!("stored as seq {}", sent.seq);
//!
//! while let Some(event) = events.next().await {
//!     match event {
//!         ClientEvent::Message(m) => {
//!             println!("[{}] {}: {}", m.seq, m.sender, m.text);
//!             client.mark_read(&m.room, m.seq);
//!         }
//!         ClientEvent::Disconnected { reason, .. } => eprintln!("reconnecting: {reason}"),
//!         ClientEvent::Tokens(tokens) => { /* persist: refresh tokens rotate */ let _ = tokens; }
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Layers
//!
//! - [`core`]: the protocol logic as a sans-IO state machine ([`core::ClientCore`]): no
//!   sockets, no clock, no runtime. It is where resume positions, the outbox, request
//!   timeouts, backoff, token refresh and receipts live, and it is tested by a
//!   deterministic simulation against a fake server.
//! - A driver that moves bytes and time between the core and a transport, shared by:
//!   - feature **`native`** (default): tokio + tokio-tungstenite WebSocket and a small
//!     HTTP/1.1 client for the auth routes (`http://`/`ws://`, or `https://`/`wss://`
//!     over rustls with the system roots or [`ClientOptions::trust`]), or **QUIC**
//!     (quinn, TLS 1.3, ALPN `palaver/1`) for the event connection when
//!     [`ClientOptions::quic`] is set — see [`quic`];
//!   - feature **`wasm`** (on `wasm32`): the browser's `WebTransport` (falling back to
//!     `WebSocket`) and `fetch`, and the
//!     `#[wasm_bindgen]` class `WasmClient` that the JavaScript package `@palaver/client`
//!     (`sdk/js/`) wraps.
//!
//! On `wasm32` the `native` feature compiles to nothing, so the default build works for
//! both targets; enable `wasm` there to get the browser transport.
//!
//! # What it does not do
//!
//! No client certificates and no HTTP/2; no local message store (the
//! application keeps what it wants, and resumes a room with [`Client::join_since`]).
//! Requests other than `send` are not queued forever: they fail with [`Error::Timeout`]
//! after the request timeout, and a `room.create` in flight when the connection drops
//! fails with [`Error::ConnectionLost`] (it is the one op that is not safe to repeat).

pub mod core;
pub mod e2ee;
mod endpoint;
mod error;
mod tokens;

#[cfg(any(
    all(feature = "native", not(target_arch = "wasm32")),
    all(feature = "wasm", target_arch = "wasm32")
))]
mod auth_route;
#[cfg(any(
    all(feature = "native", not(target_arch = "wasm32")),
    all(feature = "wasm", target_arch = "wasm32")
))]
mod client;
#[cfg(any(
    all(feature = "native", not(target_arch = "wasm32")),
    all(feature = "wasm", target_arch = "wasm32")
))]
mod driver;
#[cfg(any(
    all(feature = "native", not(target_arch = "wasm32")),
    all(feature = "wasm", target_arch = "wasm32")
))]
mod event_stream;
#[cfg(any(
    all(feature = "native", not(target_arch = "wasm32")),
    all(feature = "wasm", target_arch = "wasm32")
))]
mod file_route;
#[cfg(any(test, all(feature = "wasm", target_arch = "wasm32")))]
mod length_prefixed;
#[cfg(all(feature = "native", not(target_arch = "wasm32")))]
mod native;
#[cfg(all(feature = "native", not(target_arch = "wasm32")))]
mod native_quic;
#[cfg(all(feature = "native", not(target_arch = "wasm32")))]
mod native_trust;
/// Ops read from JSON for the JavaScript package (tested natively).
#[cfg(any(test, all(feature = "wasm", target_arch = "wasm32")))]
mod op_json;
pub mod quic;
#[cfg(any(
    all(feature = "native", not(target_arch = "wasm32")),
    all(feature = "wasm", target_arch = "wasm32")
))]
mod report_route;
mod search_query;
mod trust;
#[cfg(all(feature = "wasm", target_arch = "wasm32"))]
mod wasm;
#[cfg(all(feature = "wasm", target_arch = "wasm32"))]
mod wasm_webtransport;

#[cfg(any(
    all(feature = "native", not(target_arch = "wasm32")),
    all(feature = "wasm", target_arch = "wasm32")
))]
pub use client::{Client, ClientOptions, HistoryPager, SearchPager, Session};
pub use core::{ClientEvent, Outgoing};
pub use endpoint::Endpoint;
pub use error::Error;
#[cfg(any(
    all(feature = "native", not(target_arch = "wasm32")),
    all(feature = "wasm", target_arch = "wasm32")
))]
pub use event_stream::{DEFAULT_EVENT_BUFFER, Events};
#[cfg(any(
    all(feature = "native", not(target_arch = "wasm32")),
    all(feature = "wasm", target_arch = "wasm32")
))]
pub use file_route::MAX_DOWNLOAD_BYTES;
/// The wire types (`RoomId`, `Message`, `RoomKind`, …), re-exported.
pub use palaver_protocol as protocol;
pub use quic::{QuicOptions, QuicTrust};
#[cfg(any(
    all(feature = "native", not(target_arch = "wasm32")),
    all(feature = "wasm", target_arch = "wasm32")
))]
pub use report_route::{Report, ReportPage, ReportResolution};
pub use search_query::SearchQuery;
pub use tokens::{Credentials, TokenAnswer, TokenFuture, TokenSource, Tokens, jwt_expiry_secs};
pub use trust::TlsTrust;
#[cfg(all(feature = "wasm", target_arch = "wasm32"))]
pub use wasm::WasmClient;

//! palaver-sdk (work in progress).

pub mod core;
mod endpoint;
mod error;
mod tokens;

#[cfg(any(all(feature = "native", not(target_arch = "wasm32")), all(feature = "wasm", target_arch = "wasm32")))]
mod client;
#[cfg(any(all(feature = "native", not(target_arch = "wasm32")), all(feature = "wasm", target_arch = "wasm32")))]
mod driver;
#[cfg(all(feature = "native", not(target_arch = "wasm32")))]
mod native;
#[cfg(all(feature = "wasm", target_arch = "wasm32"))]
mod wasm;
#[cfg(all(feature = "wasm", target_arch = "wasm32"))]
pub use wasm::PalaverClient;

#[cfg(any(all(feature = "native", not(target_arch = "wasm32")), all(feature = "wasm", target_arch = "wasm32")))]
pub use client::{Client, ClientOptions, Events, HistoryPager, Session};
pub use endpoint::Endpoint;
pub use error::Error;
pub use tokens::{Credentials, Tokens, jwt_expiry_secs};

//! palaver-sdk (work in progress).

pub mod core;
mod error;
mod tokens;

pub use error::Error;
pub use tokens::{Credentials, Tokens, jwt_expiry_secs};

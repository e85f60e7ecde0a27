//! Protocol error codes: what a client is told when a request fails.

use serde::{Deserialize, Serialize};

/// The closed set of error codes a reply may carry. Every failure a client can cause maps
/// to exactly one of these; `internal` is reserved for the server's own faults.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not authenticated, or the credentials are wrong or expired.
    Unauthorized,
    /// Authenticated, but not allowed to do this.
    Forbidden,
    /// The room, user or message does not exist (or is not visible to the caller).
    NotFound,
    /// The request is malformed or a field is out of range.
    Invalid,
    /// The request conflicts with existing state (a taken username).
    Conflict,
    /// A text, frame or body exceeds its limit.
    TooLarge,
    /// Too many requests; retry after `retry_after_ms`.
    RateLimited,
    /// The server cannot take this now (storage refusing writes, shutting down).
    Unavailable,
    /// A fault on the server's side.
    Internal,
    /// The request's outcome is unknown: the write may or may not have been stored (a
    /// cluster's log did not answer in time). Retry it as it was — a send with the same
    /// `cid` is stored once and answered with the seq it got.
    Unknown,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::Invalid => "invalid",
            Self::Conflict => "conflict",
            Self::TooLarge => "too_large",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::Unknown => "unknown",
        }
    }

    /// The HTTP status that carries this code on the REST routes.
    pub fn http_status(self) -> u16 {
        match self {
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::Invalid => 400,
            Self::Conflict => 409,
            Self::TooLarge => 413,
            Self::RateLimited => 429,
            Self::Unavailable => 503,
            Self::Internal => 500,
            Self::Unknown => 503,
        }
    }
}

/// The body of a failed reply: `{"code","message","retry_after_ms"?}`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct ErrorBody {
    /// The error code.
    pub code: ErrorCode,
    /// A human-readable explanation (not for matching on).
    pub message: String,
    /// With `rate_limited`: how long to wait before retrying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ErrorBody {
    /// An error body without retry hint.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after_ms: None }
    }
}

//! The SDK's one error type.

use palaver_protocol::{ErrorBody, ErrorCode};

/// Everything that can go wrong in a client call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server refused the request (an `err` reply or an HTTP error body).
    #[error("server refused the request: {code:?}: {message}")]
    Server {
        /// The protocol error code.
        code: ErrorCode,
        /// The server's human-readable explanation.
        message: String,
        /// With `rate_limited`: how long to wait before retrying.
        retry_after_ms: Option<u64>,
    },
    /// No reply arrived within the request timeout.
    #[error("the request timed out")]
    Timeout,
    /// The connection dropped while this request was in flight, and the request is not
    /// safe to repeat automatically (`room.create`): it may or may not have happened.
    #[error("the connection was lost before the reply arrived")]
    ConnectionLost,
    /// The client was closed (or its driver stopped).
    #[error("the client is closed")]
    Closed,
    /// The server could not be reached or the socket failed.
    #[error("transport error: {0}")]
    Transport(String),
    /// An HTTP answer that is not the JSON the contract describes.
    #[error("unexpected HTTP answer (status {status}): {body}")]
    Http {
        /// The HTTP status.
        status: u16,
        /// The body, shortened.
        body: String,
    },
    /// The URL given to the client is not usable.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The credentials cannot produce an access token any more (refresh refused and no
    /// password to log in with).
    #[error("authentication failed: {0}")]
    Auth(String),
    /// An identifier or argument is malformed (caught before it reaches the server).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The server answered with an `ok` of a shape this request does not expect.
    #[error("unexpected reply to {op}")]
    UnexpectedReply {
        /// The op whose reply was odd.
        op: &'static str,
    },
    /// A frame could not be encoded or decoded.
    #[error("codec error: {0}")]
    Codec(String),
    /// End-to-end encryption failed: a message that does not decrypt (no key, tampered,
    /// not bound to this room or device), a device that cannot be encrypted to, a pickle
    /// that does not open (`e2ee` module).
    #[error("end-to-end encryption: {0}")]
    Crypto(String),
}

impl Error {
    /// The protocol error code, when the server refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: the server was unreachable, overloaded,
    /// shutting down or faulty, or answered something that is not the contract (a proxy's
    /// error page). Refusals of the request itself (`invalid`, `unauthorized`,
    /// `forbidden`, …) are not.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Server { code, .. } => {
                matches!(
                    code,
                    ErrorCode::RateLimited
                        | ErrorCode::Unavailable
                        | ErrorCode::Internal
                        | ErrorCode::Unknown
                )
            }
            Error::Timeout | Error::ConnectionLost | Error::Transport(_) | Error::Http { .. } => true,
            Error::Closed
            | Error::InvalidUrl { .. }
            | Error::Auth(_)
            | Error::Invalid(_)
            | Error::UnexpectedReply { .. }
            | Error::Codec(_)
            | Error::Crypto(_) => false,
        }
    }

    /// `{"code": <protocol code or null>, "message": <the error's text>}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "code": self.code().map(ErrorCode::as_str), "message": self.to_string() })
    }
}

impl From<ErrorBody> for Error {
    fn from(body: ErrorBody) -> Self {
        Error::Server { code: body.code, message: body.message, retry_after_ms: body.retry_after_ms }
    }
}

impl From<palaver_protocol::IdError> for Error {
    fn from(e: palaver_protocol::IdError) -> Self {
        Error::Invalid(e.to_string())
    }
}

//! Credentials and tokens, and reading a JWT's expiry.

use std::future::Future;
use std::pin::Pin;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// How a client gets its access tokens.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// Log in with a username and password (and again if refreshing ever fails).
    Password {
        /// The username (case-insensitive).
        username: String,
        /// The password.
        password: String,
    },
    /// Register a new account first, then behave like `Password`.
    Register {
        /// The username to register.
        username: String,
        /// Its password.
        password: String,
    },
    /// Use tokens obtained earlier (from a previous session's [`Tokens`]).
    Tokens(Tokens),
    /// Ask the application for every access token: its backend mints them (or gets them
    /// from an identity provider). Called for the first connection, shortly before each
    /// token expires, and whenever the server refuses one (e.g. it expired while the
    /// server was down).
    Source(TokenSource),
}

impl Credentials {
    /// Log in with a username and password.
    pub fn password(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials::Password { username: username.into(), password: password.into() }
    }

    /// Register a new account, then log in with it on later reconnects.
    pub fn register(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials::Register { username: username.into(), password: password.into() }
    }

    /// Start from tokens obtained earlier.
    pub fn tokens(tokens: Tokens) -> Self {
        Credentials::Tokens(tokens)
    }

    /// Get every access token from `source`.
    pub fn source(source: TokenSource) -> Self {
        Credentials::Source(source)
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Password { username, .. } => write!(f, "Password({username:?}, ***)"),
            Credentials::Register { username, .. } => write!(f, "Register({username:?}, ***)"),
            Credentials::Tokens(_) => f.write_str("Tokens(***)"),
            Credentials::Source(_) => f.write_str("Source"),
        }
    }
}

/// What a [`TokenSource`] answers: a fresh access token; `Ok(None)` when the user is
/// signed out (the client then stops for good, unauthorized); `Err` when no token could be
/// had now (retried with backoff, a bounded number of times: see
/// [`Config::max_token_failures`](crate::core::Config::max_token_failures)).
pub type TokenAnswer = Result<Option<String>, String>;

/// The future a [`TokenSource`] returns.
#[cfg(not(target_arch = "wasm32"))]
pub type TokenFuture = Pin<Box<dyn Future<Output = TokenAnswer> + Send>>;
/// The future a [`TokenSource`] returns (in the browser, a page's promise).
#[cfg(target_arch = "wasm32")]
pub type TokenFuture = Pin<Box<dyn Future<Output = TokenAnswer>>>;

#[cfg(not(target_arch = "wasm32"))]
type TokenFn = std::sync::Arc<dyn Fn() -> TokenFuture + Send + Sync>;
#[cfg(target_arch = "wasm32")]
type TokenFn = std::rc::Rc<dyn Fn() -> TokenFuture>;

/// Where a client gets access tokens on demand: a function returning a future of a
/// [`TokenAnswer`], typically a call to the application's own backend, which mints
/// tokens for its signed-in user with the server's secret (docs/PROTOCOL.md §2.6).
///
/// ```
/// use palaver_sdk::{Credentials, TokenSource};
///
/// let source = TokenSource::new(|| async {
///     // e.g. GET /chat-token on the application's backend, with its session cookie
///     Ok(Some("eyJhbGciOiJIUzI1NiJ9…".to_owned()))
/// });
/// let credentials = Credentials::source(source);
/// # let _ = credentials;
/// ```
#[derive(Clone)]
pub struct TokenSource(TokenFn);

impl TokenSource {
    /// A source that calls `fetch` for each token.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new<F, Fut>(fetch: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = TokenAnswer> + Send + 'static,
    {
        TokenSource(std::sync::Arc::new(move || Box::pin(fetch())))
    }

    /// A source that calls `fetch` for each token.
    #[cfg(target_arch = "wasm32")]
    pub fn new<F, Fut>(fetch: F) -> Self
    where
        F: Fn() -> Fut + 'static,
        Fut: Future<Output = TokenAnswer> + 'static,
    {
        TokenSource(std::rc::Rc::new(move || Box::pin(fetch())))
    }

    /// Asks for a token.
    pub fn fetch(&self) -> TokenFuture {
        (self.0)()
    }
}

impl PartialEq for TokenSource {
    fn eq(&self, other: &Self) -> bool {
        #[cfg(not(target_arch = "wasm32"))]
        return std::sync::Arc::ptr_eq(&self.0, &other.0);
        #[cfg(target_arch = "wasm32")]
        return std::rc::Rc::ptr_eq(&self.0, &other.0);
    }
}

impl Eq for TokenSource {}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSource")
    }
}

/// An access token and (usually) the refresh token that renews it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// The access JWT, for the socket's `auth`.
    pub access_token: String,
    /// The single-use refresh token; replaced by every refresh (store the newest one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The access token's lifetime in seconds when it was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
}

impl Tokens {
    /// Tokens from an access token alone (no refresh possible).
    pub fn access_only(access_token: impl Into<String>) -> Self {
        Tokens { access_token: access_token.into(), refresh_token: None, expires_in: None }
    }
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("access_token", &"***")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "***"))
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Reads the `exp` claim (seconds since the epoch) of a JWT **without verifying it**:
/// only to schedule a refresh. `None` when the token is not a readable JWT.
pub fn jwt_expiry_secs(token: &str) -> Option<u64> {
    #[derive(Deserialize)]
    struct Claims {
        exp: u64,
    }
    let payload = token.split('.').nth(1)?;
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<Claims>(&bytes).ok().map(|c| c.exp)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn jwt(claims: &str) -> String {
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.sig", enc.encode(br#"{"alg":"HS256","typ":"JWT"}"#), enc.encode(claims))
    }

    #[test]
    fn reads_exp_without_verifying() {
        assert_eq!(jwt_expiry_secs(&jwt(r#"{"sub":"u_1","exp":1764000900,"iat":1}"#)), Some(1_764_000_900));
        assert_eq!(jwt_expiry_secs("not a jwt"), None);
        assert_eq!(jwt_expiry_secs(&jwt(r#"{"sub":"u_1"}"#)), None);
        assert_eq!(jwt_expiry_secs("a.!!!.c"), None);
    }

    #[test]
    fn secrets_are_not_debug_printed() {
        let c = Credentials::password("alice", "hunter2hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        let t =
            Tokens { access_token: "secret".into(), refresh_token: Some("secret2".into()), expires_in: None };
        assert!(!format!("{t:?}").contains("secret"));
    }
}

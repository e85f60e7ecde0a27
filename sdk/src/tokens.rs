//! Credentials and tokens, and reading a JWT's expiry.

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
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Password { username, .. } => write!(f, "Password({username:?}, ***)"),
            Credentials::Register { username, .. } => write!(f, "Register({username:?}, ***)"),
            Credentials::Tokens(_) => f.write_str("Tokens(***)"),
        }
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

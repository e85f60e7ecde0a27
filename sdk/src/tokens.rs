//! Credentials, tokens and the HTTP auth routes' bodies (`/v1/auth/register|login|refresh`).
//! Pure data: the transports carry the requests.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::Error;

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
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<Claims>(&bytes).ok().map(|c| c.exp)
}

/// Reads the `sub` claim (the user id) of a JWT without verifying it.
pub(crate) fn jwt_subject(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Claims {
        sub: String,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<Claims>(&bytes).ok().map(|c| c.sub)
}

/// The body of `POST /v1/auth/register` and `/login`.
#[derive(Serialize)]
pub(crate) struct PasswordBody<'a> {
    pub username: &'a str,
    pub password: &'a str,
}

/// The body of `POST /v1/auth/refresh`.
#[derive(Serialize)]
pub(crate) struct RefreshBody<'a> {
    pub refresh_token: &'a str,
}

/// The success answer of the three auth routes.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    refresh_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    user_id: Option<String>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: palaver_protocol::ErrorBody,
}

/// Which auth route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthRoute {
    Register,
    Login,
    Refresh,
}

impl AuthRoute {
    pub(crate) fn path(self) -> &'static str {
        match self {
            AuthRoute::Register => "/v1/auth/register",
            AuthRoute::Login => "/v1/auth/login",
            AuthRoute::Refresh => "/v1/auth/refresh",
        }
    }
}

/// Turns an HTTP answer of an auth route into tokens (and the user id, when given) or
/// the error it carries.
pub(crate) fn parse_token_answer(status: u16, body: &str) -> Result<(Tokens, Option<String>), Error> {
    if (200..300).contains(&status) {
        let answer: TokenAnswer = serde_json::from_str(body)
            .map_err(|_| Error::Http { status, body: body.chars().take(200).collect() })?;
        let tokens = Tokens {
            access_token: answer.access_token,
            refresh_token: Some(answer.refresh_token),
            expires_in: answer.expires_in,
        };
        return Ok((tokens, answer.user_id));
    }
    match serde_json::from_str::<ErrorAnswer>(body) {
        Ok(answer) => Err(answer.error.into()),
        Err(_) => Err(Error::Http { status, body: body.chars().take(200).collect() }),
    }
}

/// The JSON body for an auth route.
pub(crate) fn auth_body(route: AuthRoute, credentials: &Credentials, refresh_token: Option<&str>) -> Option<String> {
    let body = match (route, credentials) {
        (AuthRoute::Refresh, _) => serde_json::to_string(&RefreshBody { refresh_token: refresh_token? }),
        (
            AuthRoute::Register | AuthRoute::Login,
            Credentials::Password { username, password } | Credentials::Register { username, password },
        ) => serde_json::to_string(&PasswordBody { username, password }),
        (_, Credentials::Tokens(_)) => return None,
    };
    body.ok()
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
    fn token_answers_and_errors_parse() {
        let (t, user) = parse_token_answer(
            201,
            r#"{"user_id":"u_1","access_token":"a","refresh_token":"r","expires_in":900,"extra":1}"#,
        )
        .unwrap();
        assert_eq!((t.access_token.as_str(), t.refresh_token.as_deref(), t.expires_in), ("a", Some("r"), Some(900)));
        assert_eq!(user.as_deref(), Some("u_1"));
        let err = parse_token_answer(401, r#"{"error":{"code":"unauthorized","message":"no"}}"#).unwrap_err();
        assert_eq!(err.code(), Some(palaver_protocol::ErrorCode::Unauthorized));
        assert!(matches!(parse_token_answer(502, "<html>"), Err(Error::Http { status: 502, .. })));
    }

    #[test]
    fn secrets_are_not_debug_printed() {
        let c = Credentials::password("alice", "hunter2hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        let t = Tokens { access_token: "secret".into(), refresh_token: Some("secret2".into()), expires_in: None };
        assert!(!format!("{t:?}").contains("secret"));
    }
}

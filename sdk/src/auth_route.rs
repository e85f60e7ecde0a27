//! The HTTP auth routes (`/v1/auth/register|login|refresh`, and the logout and password
//! routes that take an access token): request bodies and answers,
//! and the error body every HTTP route answers with.
//! Pure data: the transports carry the requests.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::tokens::{Credentials, Tokens};

/// Reads the `sub` claim (the user id) of a JWT without verifying it.
pub(crate) fn jwt_subject(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Claims {
        sub: String,
    }
    let payload = token.split('.').nth(1)?;
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
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
    Logout,
    LogoutAll,
    Password,
    DeleteAccount,
}

impl AuthRoute {
    pub(crate) fn path(self) -> &'static str {
        match self {
            AuthRoute::Register => "/v1/auth/register",
            AuthRoute::Login => "/v1/auth/login",
            AuthRoute::Refresh => "/v1/auth/refresh",
            AuthRoute::Logout => "/v1/auth/logout",
            AuthRoute::LogoutAll => "/v1/auth/logout-all",
            AuthRoute::Password => "/v1/auth/password",
            AuthRoute::DeleteAccount => "/v1/account/delete",
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
    Err(error_answer(status, body))
}

/// The error an HTTP error answer carries (`{"error":{"code","message"}}`, PROTOCOL.md
/// §2.2), or [`Error::Http`] when the body is not that (a proxy's error page).
pub(crate) fn error_answer(status: u16, body: &str) -> Error {
    match serde_json::from_str::<ErrorAnswer>(body) {
        Ok(answer) => answer.error.into(),
        Err(_) => Error::Http { status, body: body.chars().take(200).collect() },
    }
}

/// The JSON body for an auth route.
pub(crate) fn auth_body(
    route: AuthRoute,
    credentials: &Credentials,
    refresh_token: Option<&str>,
) -> Option<String> {
    let body = match (route, credentials) {
        (AuthRoute::Refresh, _) => serde_json::to_string(&RefreshBody { refresh_token: refresh_token? }),
        (
            AuthRoute::Register | AuthRoute::Login,
            Credentials::Password { username, password } | Credentials::Register { username, password },
        ) => serde_json::to_string(&PasswordBody { username, password }),
        (_, Credentials::Tokens(_) | Credentials::Source(_))
        | (AuthRoute::Logout | AuthRoute::LogoutAll | AuthRoute::Password | AuthRoute::DeleteAccount, _) => {
            return None;
        }
    };
    body.ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn token_answers_and_errors_parse() {
        let (t, user) = parse_token_answer(
            201,
            r#"{"user_id":"u_1","access_token":"a","refresh_token":"r","expires_in":900,"extra":1}"#,
        )
        .unwrap();
        assert_eq!(
            (t.access_token.as_str(), t.refresh_token.as_deref(), t.expires_in),
            ("a", Some("r"), Some(900))
        );
        assert_eq!(user.as_deref(), Some("u_1"));
        let err = parse_token_answer(401, r#"{"error":{"code":"unauthorized","message":"no"}}"#).unwrap_err();
        assert_eq!(err.code(), Some(palaver_protocol::ErrorCode::Unauthorized));
        assert!(matches!(parse_token_answer(502, "<html>"), Err(Error::Http { status: 502, .. })));
    }
}

//! Access tokens (JWT, HS256 only) and refresh-token hashing.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use palaver_core::logins::Login;
use palaver_protocol::UserId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Malformed, wrongly signed, of another algorithm, expired, or not yet valid.
    #[error("invalid or expired token")]
    InvalidToken,
    /// The token could not be signed (a server fault).
    #[error("cannot sign token")]
    Signing,
    /// Correctly signed, for a user who does not exist (deleted, or minted for an id
    /// this server never registered).
    #[error("the token's user does not exist")]
    UnknownUser,
    /// The token's login was ended (logout, log out everywhere, a new password).
    #[error("this session has ended; log in again")]
    SessionEnded,
    /// An admin suspended the account.
    #[error("this account is suspended")]
    Suspended,
    /// The user could not be looked up now (storage is not answering).
    #[error("cannot check the token's user now; try again")]
    Unavailable,
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id.
    pub sub: String,
    /// The login (a refresh-token family) this access token belongs to.
    pub sid: String,
    /// The user's session epoch when the login started (absent in tokens a backend
    /// minted: see `palaver_core::logins`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sep: Option<u64>,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Not valid before, seconds since the Unix epoch.
    pub nbf: u64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: u64,
}

/// Issues and verifies access tokens with one HS256 secret.
pub struct TokenService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    access_ttl_secs: u64,
    /// Keys the admin console's CSRF tokens: HMAC-SHA256 under the signing secret.
    csrf_key: Vec<u8>,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService").field("access_ttl_secs", &self.access_ttl_secs).finish_non_exhaustive()
    }
}

impl TokenService {
    /// A token service for `secret`; access tokens live `access_ttl_secs`.
    pub fn new(secret: &[u8], access_ttl_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = 5;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "nbf", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            access_ttl_secs,
            csrf_key: secret.to_vec(),
        }
    }

    /// Access-token lifetime in seconds.
    pub fn access_ttl_secs(&self) -> u64 {
        self.access_ttl_secs
    }

    /// Signs an access token for `user` in the login `family`, started in session
    /// `epoch`.
    pub fn issue(&self, user: &UserId, family: &str, epoch: u64, now_secs: u64) -> Result<String, AuthError> {
        let claims = AccessClaims {
            sub: user.to_string(),
            sid: family.to_owned(),
            sep: Some(epoch),
            iat: now_secs,
            nbf: now_secs,
            exp: now_secs + self.access_ttl_secs,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|_| AuthError::Signing)
    }

    /// The admin console's anti-forgery token for `login`: a MAC of the login's id, so
    /// it needs no storage, differs for every login and cannot be computed without the
    /// signing secret. A page from another origin never learns it (it is only in
    /// same-origin answers), so it cannot send it.
    pub fn console_csrf(&self, login: &str) -> String {
        use base64::Engine as _;
        use hmac::Mac as _;
        #[allow(clippy::expect_used, reason = "HMAC takes a key of any length")]
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&self.csrf_key).expect("any key length");
        mac.update(b"palaver admin console csrf\0");
        mac.update(login.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Verifies an access token and returns its user and login.
    pub fn verify(&self, token: &str) -> Result<Verified, AuthError> {
        // One rule wherever a token comes from: spaces and tabs around it are not part of
        // it (as HTTP already has it for a header's value), and inside it nothing but the
        // compact form's characters is.
        let token = token.trim_matches([' ', '\t']);
        let compact = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
        if token.len() > palaver_protocol::limits::MAX_TOKEN_BYTES || !token.bytes().all(compact) {
            return Err(AuthError::InvalidToken);
        }
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map_err(|_| AuthError::InvalidToken)?;
        let user = UserId::parse(&data.claims.sub).map_err(|_| AuthError::InvalidToken)?;
        let claims = data.claims;
        Ok(Verified { user, login: Login { id: claims.sid, epoch: claims.sep, issued_secs: claims.iat } })
    }
}

/// A verified access token: whose, and of which login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The user.
    pub user: UserId,
    /// The login the token belongs to.
    pub login: Login,
}

/// Verifies an access token, that its user exists and that its login is not over: the
/// one check every way in (the `auth` op, an upgrade's `Authorization` header, the HTTP
/// routes) goes through. A bot's API key (`pvk_…`) signs its bot in the same way, in a
/// login of the key's own that ends when the key is revoked.
pub fn authenticate(
    tokens: &TokenService,
    store: &palaver_storage::Store,
    token: &str,
) -> Result<Verified, AuthError> {
    let token = token.trim_matches([' ', '\t']);
    let verified = match token.starts_with(palaver_core::api_keys::KEY_PREFIX) {
        true => bot_key(store, token)?,
        false => tokens.verify(token)?,
    };
    let unavailable = |_| AuthError::Unavailable;
    if store.user(&verified.user).map_err(unavailable)?.is_none() {
        return Err(AuthError::UnknownUser);
    }
    let epoch = store.session_epoch(&verified.user).map_err(unavailable)?;
    let ended_at = store.login_ended(&verified.user, &verified.login.id).map_err(unavailable)?;
    if palaver_core::logins::is_over(&verified.login, epoch, ended_at) {
        return Err(AuthError::SessionEnded);
    }
    // A backend may mint a token after the suspension ended every session.
    if store.suspension(&verified.user).map_err(unavailable)?.is_some() {
        return Err(AuthError::Suspended);
    }
    Ok(verified)
}

/// The bot a bot's API key signs in, in the key's login (stamped with the bot's session
/// epoch now, so "log out everywhere" and a suspension end it as any other).
fn bot_key(store: &palaver_storage::Store, key: &str) -> Result<Verified, AuthError> {
    let (key_id, secret) = palaver_core::api_keys::split(key).ok_or(AuthError::InvalidToken)?;
    let record = store.api_key(key_id).map_err(|_| AuthError::Unavailable)?.ok_or(AuthError::InvalidToken)?;
    let presented: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    let user = palaver_core::api_keys::bot_login(&record, &presented).map_err(|_| AuthError::InvalidToken)?;
    let epoch = store.session_epoch(&user).map_err(|_| AuthError::Unavailable)?.epoch;
    let now_secs = crate::clock::now_ms() / 1000;
    let login =
        Login { id: palaver_core::api_keys::login_id(key_id), epoch: Some(epoch), issued_secs: now_secs };
    Ok(Verified { user, login })
}

/// The stored form of a refresh token: its SHA-256, so a leaked database holds no token.
pub fn hash_refresh_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn now() -> u64 {
        crate::clock::now_ms() / 1000
    }

    #[test]
    fn issued_tokens_verify_and_others_do_not() {
        let service = TokenService::new(b"secret-one", 900);
        let user = UserId::parse("u_alice").unwrap();
        let token = service.issue(&user, "f1", 3, now()).unwrap();
        let verified = service.verify(&token).unwrap();
        assert_eq!(verified.user, user);
        assert_eq!((verified.login.id.as_str(), verified.login.epoch), ("f1", Some(3)));

        let other = TokenService::new(b"secret-two", 900);
        assert_eq!(other.verify(&token), Err(AuthError::InvalidToken));

        let expired = service.issue(&user, "f1", 0, now() - 10_000).unwrap();
        assert_eq!(service.verify(&expired), Err(AuthError::InvalidToken));
    }

    #[test]
    fn alg_none_is_refused() {
        let service = TokenService::new(b"secret", 900);
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let header = b64(r#"{"alg":"none","typ":"JWT"}"#);
        let claims = b64(&format!(r#"{{"sub":"u_alice","sid":"f","iat":0,"nbf":0,"exp":{}}}"#, now() + 100));
        assert_eq!(service.verify(&format!("{header}.{claims}.")), Err(AuthError::InvalidToken));
    }
}

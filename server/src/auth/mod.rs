//! Accounts and tokens: argon2id password hashes, short-lived HS256 access JWTs with the
//! algorithm pinned, and opaque refresh tokens (stored hashed, rotated on every use).

mod passwords;
mod sign_in_throttle;
mod tokens;

pub use passwords::{hash_password, verify_password, verify_password_or_dummy};
pub use sign_in_throttle::SignInThrottle;
pub use tokens::{AccessClaims, AuthError, TokenService, Verified, authenticate, hash_refresh_token};

//! API keys: what a product's backend presents to the server API (`/v1/server/…`).
//!
//! A key reads `pvk_<id>_<secret>`: the id (16 hex digits) finds its record, the secret
//! (64 hex digits, 256 random bits) is checked against the SHA-256 the record keeps, in
//! constant time. A fast hash loses nothing here — the secret is random and long, not a
//! password — and hashing each request with argon2 would be a denial of service of its
//! own. The randomness and the hashing are the caller's; what is decided here is pure.

use palaver_protocol::UserId;
use serde::{Deserialize, Serialize};

/// What every key starts with (so a leaked one is recognisable, and told apart from an
/// access token at a glance).
pub const KEY_PREFIX: &str = "pvk_";
/// Hex digits of a key's id.
pub const ID_HEX_DIGITS: usize = 16;
/// Hex digits of a key's secret.
pub const SECRET_HEX_DIGITS: usize = 64;
/// Longest key name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Create and read users; mint their access tokens.
    Users,
    /// Act in rooms as a user: create and govern rooms, join, invite, moderate.
    Rooms,
    /// Post as a user: send, edit, delete, react, pin.
    Publish,
    /// Manage API keys and webhooks.
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 4] = [Scope::Users, Scope::Rooms, Scope::Publish, Scope::Admin];

    /// The scope named `name` (`users`, `rooms`, `publish`, `admin`).
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.name() == name)
    }

    /// The scope's name.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Users => "users",
            Scope::Rooms => "rooms",
            Scope::Publish => "publish",
            Scope::Admin => "admin",
        }
    }
}

/// A key as stored: never its secret, only the secret's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// The key's id (the 16 hex digits after `pvk_`).
    pub key_id: String,
    /// What the operator called it.
    pub name: String,
    /// What it may do, sorted, each once.
    pub scopes: Vec<Scope>,
    /// SHA-256 of the secret, in hex.
    pub secret_sha256: String,
    /// When it was made, ms since the Unix epoch.
    pub created_ms: u64,
    /// The admin who made it (`None`: an operator, with the CLI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<UserId>,
    /// When it was revoked, if it was: refused from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_ms: Option<u64>,
    /// The bot account it signs sockets in as, if it is a bot's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot: Option<UserId>,
}

/// The login a bot's socket signed in with `key_id` belongs to (revoking the key ends
/// it).
pub fn login_id(key_id: &str) -> String {
    format!("key:{key_id}")
}

/// Why a key cannot be made, changed or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeyRefusal {
    /// The name is empty, too long or has control characters.
    #[error("a key's name is 1 to {MAX_NAME_CHARS} characters, none of them control characters")]
    BadName,
    /// Signing in with a key that is no bot's.
    #[error("this API key signs no bot in: only a bot's key opens a socket")]
    NotABotKey,
    /// A bot key for an account that is not a bot.
    #[error("a bot's key needs a bot account (made through the server API with \"bot\": true)")]
    NotABot,
    /// No scope, or an unknown one.
    #[error("give the key's scopes: one or more of users, rooms, publish, admin")]
    BadScopes,
    /// Not a key, an unknown key or a wrong secret: told apart to no one.
    #[error("not a valid API key")]
    Invalid,
    /// The key was revoked.
    #[error("this API key was revoked")]
    Revoked,
    /// The key lacks the scope the route needs.
    #[error("this API key lacks the `{}` scope", .0.name())]
    MissingScope(Scope),
    /// Revoking a key revoked already.
    #[error("this API key is revoked already")]
    RevokedAlready,
}

/// Which scopes may carry out the op named `op` as a user through the server API: reads
/// of a room go with either room scope; ops that need a socket (auth, sync, typing,
/// presence) or concern the user's own circle (friends, blocks, keys) with none.
pub fn scopes_for_op(op: &str) -> &'static [Scope] {
    match op {
        "send" | "edit" | "delete" | "react" | "unreact" | "pin" | "unpin" | "forward" => &[Scope::Publish],
        "room.create" | "room.update" | "room.delete" | "dm.open" | "join" | "leave" | "room.invite"
        | "invite.accept" | "invite.decline" | "kick" | "ban" | "unban" | "mute" | "unmute" | "role.set"
        | "room.transfer" => &[Scope::Rooms],
        "history" | "room.get" | "room.members" | "edit.list" | "pin.list" | "receipt.list" => {
            &[Scope::Rooms, Scope::Publish]
        }
        _ => &[],
    }
}

/// A key just made: its record, and the key itself, shown once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// What is stored.
    pub record: ApiKeyRecord,
    /// `pvk_<id>_<secret>`: the only time it exists outside the caller's hands.
    pub key: String,
}

/// What a new key is: its name, scopes, and the bot it signs in as (with whether that
/// account is a bot).
#[derive(Debug, Clone)]
pub struct KeySpec<'a> {
    /// What to call it.
    pub name: &'a str,
    /// What it may do on the server API (none: a bot's key that only opens sockets).
    pub scopes: &'a [Scope],
    /// The bot account it signs sockets in as, and whether that account is a bot.
    pub bot: Option<(UserId, bool)>,
}

/// Makes a key from the caller's random bytes; `sha256` hashes the secret.
pub fn mint(
    id: [u8; 8],
    secret: [u8; 32],
    spec: KeySpec<'_>,
    created_by: Option<UserId>,
    now_ms: u64,
    sha256: impl Fn(&[u8]) -> [u8; 32],
) -> Result<NewKey, ApiKeyRefusal> {
    let KeySpec { name, scopes, bot } = spec;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ApiKeyRefusal::BadName);
    }
    let mut scopes = scopes.to_vec();
    scopes.sort();
    scopes.dedup();
    let bot = match bot {
        Some((_, false)) => return Err(ApiKeyRefusal::NotABot),
        Some((user, true)) => Some(user),
        None if scopes.is_empty() => return Err(ApiKeyRefusal::BadScopes),
        None => None,
    };
    let (key_id, secret) = (hex(&id), hex(&secret));
    let record = ApiKeyRecord {
        key_id: key_id.clone(),
        name: name.to_owned(),
        scopes,
        secret_sha256: hex(&sha256(secret.as_bytes())),
        created_ms: now_ms,
        created_by,
        revoked_ms: None,
        bot,
    };
    Ok(NewKey { record, key: format!("{KEY_PREFIX}{key_id}_{secret}") })
}

/// A key's id and secret, if `key` is shaped like one.
pub fn split(key: &str) -> Option<(&str, &str)> {
    let (id, secret) = key.strip_prefix(KEY_PREFIX)?.split_once('_')?;
    let lower_hex =
        |s: &str, len: usize| s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (lower_hex(id, ID_HEX_DIGITS) && lower_hex(secret, SECRET_HEX_DIGITS)).then_some((id, secret))
}

/// Whether a presented secret (its SHA-256 given) is the key's, and the key may be used
/// for `needed`.
pub fn admit(record: &ApiKeyRecord, secret_sha256: &[u8; 32], needed: Scope) -> Result<(), ApiKeyRefusal> {
    // Compared whole, in time that does not depend on where they differ.
    if !same_bytes(record.secret_sha256.as_bytes(), hex(secret_sha256).as_bytes()) {
        return Err(ApiKeyRefusal::Invalid);
    }
    if record.revoked_ms.is_some() {
        return Err(ApiKeyRefusal::Revoked);
    }
    if !record.scopes.contains(&needed) {
        return Err(ApiKeyRefusal::MissingScope(needed));
    }
    Ok(())
}

/// The bot a socket signs in as with this key (its secret checked as by [`admit`]).
pub fn bot_login(record: &ApiKeyRecord, secret_sha256: &[u8; 32]) -> Result<UserId, ApiKeyRefusal> {
    if !same_bytes(record.secret_sha256.as_bytes(), hex(secret_sha256).as_bytes()) {
        return Err(ApiKeyRefusal::Invalid);
    }
    if record.revoked_ms.is_some() {
        return Err(ApiKeyRefusal::Revoked);
    }
    record.bot.clone().ok_or(ApiKeyRefusal::NotABotKey)
}

/// The record of `record` revoked at `now_ms`.
pub fn revoke(record: &ApiKeyRecord, now_ms: u64) -> Result<ApiKeyRecord, ApiKeyRefusal> {
    if record.revoked_ms.is_some() {
        return Err(ApiKeyRefusal::RevokedAlready);
    }
    Ok(ApiKeyRecord { revoked_ms: Some(now_ms), ..record.clone() })
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    /// Stands in for SHA-256: any fixed function of the bytes will do for these rules.
    fn fake_hash(bytes: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, byte) in bytes.iter().enumerate() {
            out[i % 32] = out[i % 32].wrapping_mul(31).wrapping_add(*byte);
        }
        out
    }

    fn spec<'a>(name: &'a str, scopes: &'a [Scope]) -> KeySpec<'a> {
        KeySpec { name, scopes, bot: None }
    }

    fn key(scopes: &[Scope]) -> NewKey {
        mint([0xab; 8], [0x5c; 32], spec("billing backend", scopes), None, 1_000, fake_hash).unwrap()
    }

    #[test]
    fn a_key_is_prefixed_split_back_and_never_stored() {
        let new = key(&[Scope::Admin, Scope::Users, Scope::Users]);
        assert!(new.key.starts_with("pvk_abababababababab_5c5c"));
        assert_eq!(new.record.scopes, [Scope::Users, Scope::Admin], "sorted, each once");
        let (id, secret) = split(&new.key).unwrap();
        assert_eq!(id, new.record.key_id);
        assert!(!format!("{:?}", new.record).contains(secret), "the secret is not in the record");
        for bad in
            ["", "pvk_", "pvk_abababababababab", "pvk_ABABABABABABABAB_00", "ey.jwt.token", &new.key[1..]]
        {
            assert_eq!(split(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_key_admits_its_secret_and_scopes_only() {
        let new = key(&[Scope::Users]);
        let (_, secret) = split(&new.key).unwrap();
        let right = fake_hash(secret.as_bytes());
        assert_eq!(admit(&new.record, &right, Scope::Users), Ok(()));
        assert_eq!(admit(&new.record, &right, Scope::Admin), Err(ApiKeyRefusal::MissingScope(Scope::Admin)));
        let wrong = fake_hash(b"not the secret");
        assert_eq!(admit(&new.record, &wrong, Scope::Users), Err(ApiKeyRefusal::Invalid));
        let revoked = revoke(&new.record, 2_000).unwrap();
        assert_eq!(revoked.revoked_ms, Some(2_000));
        assert_eq!(admit(&revoked, &right, Scope::Users), Err(ApiKeyRefusal::Revoked));
        assert_eq!(revoke(&revoked, 3_000), Err(ApiKeyRefusal::RevokedAlready));
    }

    #[test]
    fn names_and_scopes_are_checked() {
        let make =
            |name: &str, scopes: &[Scope]| mint([1; 8], [2; 32], spec(name, scopes), None, 0, fake_hash);
        assert_eq!(make("  ", &[Scope::Users]).unwrap_err(), ApiKeyRefusal::BadName);
        assert_eq!(make("a\nb", &[Scope::Users]).unwrap_err(), ApiKeyRefusal::BadName);
        assert_eq!(make(&"x".repeat(65), &[Scope::Users]).unwrap_err(), ApiKeyRefusal::BadName);
        assert_eq!(make("ok", &[]).unwrap_err(), ApiKeyRefusal::BadScopes);
        assert_eq!(make("  trimmed  ", &[Scope::Admin]).unwrap().record.name, "trimmed");
        assert_eq!(Scope::parse("admin"), Some(Scope::Admin));
        assert_eq!(Scope::parse("publish"), Some(Scope::Publish));
    }

    #[test]
    fn a_bots_key_signs_in_its_bot_and_nothing_else_does() {
        let bot = UserId::parse("u_bot").unwrap();
        let with_bot = |is_bot| KeySpec { name: "helper", scopes: &[], bot: Some((bot.clone(), is_bot)) };
        assert_eq!(
            mint([3; 8], [4; 32], with_bot(false), None, 0, fake_hash).unwrap_err(),
            ApiKeyRefusal::NotABot
        );
        let new = mint([3; 8], [4; 32], with_bot(true), None, 0, fake_hash).unwrap();
        let right = fake_hash(split(&new.key).unwrap().1.as_bytes());
        assert_eq!(bot_login(&new.record, &right), Ok(bot.clone()));
        assert_eq!(bot_login(&new.record, &fake_hash(b"x")), Err(ApiKeyRefusal::Invalid));
        assert_eq!(
            admit(&new.record, &right, Scope::Publish),
            Err(ApiKeyRefusal::MissingScope(Scope::Publish))
        );
        let revoked = revoke(&new.record, 1).unwrap();
        assert_eq!(bot_login(&revoked, &right), Err(ApiKeyRefusal::Revoked));
        let plain = key(&[Scope::Users]);
        let plain_secret = fake_hash(split(&plain.key).unwrap().1.as_bytes());
        assert_eq!(bot_login(&plain.record, &plain_secret), Err(ApiKeyRefusal::NotABotKey));
        assert_eq!(login_id("abc"), "key:abc");
    }

    #[test]
    fn ops_as_a_user_need_their_scope() {
        assert_eq!(scopes_for_op("send"), [Scope::Publish]);
        assert_eq!(scopes_for_op("role.set"), [Scope::Rooms]);
        assert_eq!(scopes_for_op("history"), [Scope::Rooms, Scope::Publish]);
        for socket_only in
            ["auth", "sync", "typing.start", "presence.set", "friend.request", "keys.upload", "ping"]
        {
            assert!(scopes_for_op(socket_only).is_empty(), "{socket_only}");
        }
        assert_eq!(Scope::parse("root"), None);
    }
}

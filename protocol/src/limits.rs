//! Every size limit of the protocol, named once. Servers may configure lower values for
//! some of them (message length, frame size); these are the defaults and hard ceilings.

/// Largest client frame the server accepts by default, in bytes (WebSocket payload).
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Default longest message text, in Unicode scalar values (characters), not bytes.
pub const DEFAULT_MAX_TEXT_CHARS: usize = 2_000;
/// Longest client message id (`cid`), in bytes.
pub const MAX_CID_BYTES: usize = 64;
/// Longest room name, in characters.
pub const MAX_ROOM_NAME_CHARS: usize = 100;
/// Shortest and longest username, in bytes (usernames are ASCII).
pub const USERNAME_BYTES: std::ops::RangeInclusive<usize> = 3..=32;
/// Shortest and longest password, in bytes.
pub const PASSWORD_BYTES: std::ops::RangeInclusive<usize> = 8..=128;
/// Longest access token accepted in an `auth` op, in bytes.
pub const MAX_TOKEN_BYTES: usize = 4 * 1024;
/// Longest identifier body after its prefix (`u_`, `r_`, `s_`), in bytes.
pub const MAX_ID_BODY_BYTES: usize = 40;
/// Longest reaction (an emoji with modifiers), in bytes.
pub const MAX_EMOJI_BYTES: usize = 32;
/// Most reacting users listed per emoji in `history` (the count is always exact).
pub const MAX_REACTION_USERS_LISTED: usize = 50;
/// Most messages pinned in one room at a time.
pub const MAX_PINS_PER_ROOM: usize = 100;
/// Most members a room may have for `receipt.list` to list deliveries.
pub const MAX_DELIVERED_LIST_MEMBERS: usize = 100;
/// Most members `receipt.list` examines for one page (a page may end early, with `next`).
pub const MAX_RECEIPT_SCAN: usize = 1_000;
/// Usernames no account may take: `@everyone` and `@here` mention many members.
pub const RESERVED_USERNAMES: &[&str] = &["everyone", "here"];
/// Most users one message may mention.
pub const MAX_MENTIONS: usize = 50;
/// Default page size of `history`.
pub const DEFAULT_HISTORY_LIMIT: u32 = 50;
/// Largest page size of `history`.
pub const MAX_HISTORY_LIMIT: u32 = 100;
/// Default member limit of a group room (owners may raise it up to the server's cap).
pub const DEFAULT_MAX_MEMBERS: u32 = 100;
/// Longest room topic, in characters.
pub const MAX_TOPIC_CHARS: usize = 500;
/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;
/// Longest status text, in characters.
pub const MAX_STATUS_TEXT_CHARS: usize = 140;
/// Longest avatar reference (a file id or URL), in bytes.
pub const MAX_AVATAR_BYTES: usize = 512;
/// Longest moderation reason, in characters.
pub const MAX_REASON_CHARS: usize = 200;
/// Longest `retention.max_age_secs` a room may set (ten years).
pub const MAX_RETENTION_AGE_SECS: u32 = 3_650 * 24 * 3600;
/// Largest `retention.max_count` a room may set.
pub const MAX_RETENTION_COUNT: u32 = 1_000_000_000;
/// Longest mute, in seconds (366 days).
pub const MAX_MUTE_SECS: u64 = 366 * 24 * 3600;
/// Most users one `presence.subscribe` names, and most a socket follows.
pub const MAX_PRESENCE_FOLLOWS: usize = 500;
/// Default and largest page of `user.search`.
pub const DEFAULT_USER_SEARCH_LIMIT: u32 = 20;
/// Largest page of `user.search`.
pub const MAX_USER_SEARCH_LIMIT: u32 = 50;
/// Most pending friend requests and friends per user.
pub const MAX_FRIENDS: usize = 1_000;
/// Most users one user may block.
pub const MAX_BLOCKS: usize = 1_000;
/// Largest ciphertext of an `encrypted` message, in bytes.
pub const MAX_CIPHERTEXT_BYTES: usize = 32 * 1024;
/// Longest public key or key id in the key directory, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Most one-time prekeys per `keys.upload`, and most kept per device.
pub const MAX_ONE_TIME_KEYS_PER_UPLOAD: usize = 100;
/// Most unclaimed one-time prekeys kept per device.
pub const MAX_ONE_TIME_KEYS_PER_DEVICE: usize = 1_000;
/// Most devices per user.
pub const MAX_DEVICES: usize = 50;
/// Pending invitations one user may have; more are refused until they answer some.
pub const MAX_PENDING_INVITES: usize = 200;
/// Most notification keywords per user.
pub const MAX_NOTIFY_KEYWORDS: usize = 50;
/// Longest notification keyword, in characters.
pub const MAX_NOTIFY_KEYWORD_CHARS: usize = 64;
/// Most rooms with their own notification setting per user.
pub const MAX_NOTIFY_ROOMS: usize = 1_000;

//! Notification settings, as rules. A user chooses per room which messages notify them
//! (all, mentions, none), mutes rooms (until a time, or until lifted) and names keywords
//! that count as mentions; [`verdict`] decides, for one message and one recipient, whether
//! it counts as an unread mention and whether it notifies (push to an offline user).
//!
//! Pure: the settings, the message's facts and `now` come in, a [`Verdict`] goes out. The
//! people home validates and applies changes ([`apply_account`], [`apply_room`]); the
//! sockets' shards read the stored settings to count mentions in `sync`.

use palaver_protocol::{
    Message, MessageKind, NotificationSettings, NotifyLevel, RoomId, RoomNotifications, UserId, limits,
};

use crate::error::CoreError;

/// What a recipient's settings make of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Counts as an unread mention.
    pub mention: bool,
    /// Notifies the recipient (a push when they are offline).
    pub notify: bool,
}

/// The facts about one message that notification rules read.
#[derive(Debug, Clone, Copy)]
pub struct MessageFacts<'a> {
    /// The room.
    pub room: &'a RoomId,
    /// A direct room (its default level is `all`).
    pub direct: bool,
    /// The sender.
    pub sender: &'a UserId,
    /// The message names the recipient.
    pub mentions_recipient: bool,
    /// The message mentions the whole room (`@everyone`, `@here`, allowed by the room).
    pub mentions_room: bool,
    /// The message's text; `None` for an end-to-end encrypted message (never read for
    /// keywords) or one without text.
    pub text: Option<&'a str>,
}

/// The room's own setting, if it has one.
fn room_setting<'a>(settings: &'a NotificationSettings, room: &RoomId) -> Option<&'a RoomNotifications> {
    settings.rooms.binary_search_by(|r| r.room.cmp(room)).ok().map(|i| &settings.rooms[i])
}

/// Whether a room's mute holds at `now_ms`.
fn mute_holds(setting: &RoomNotifications, now_ms: u64) -> bool {
    setting.muted && setting.muted_until.is_none_or(|until| now_ms < until)
}

/// The level that applies to `room` for this user.
pub fn effective_level(settings: &NotificationSettings, room: &RoomId, direct: bool) -> NotifyLevel {
    match room_setting(settings, room).and_then(|r| r.level) {
        Some(level) => level,
        None if direct => NotifyLevel::All,
        None => settings.level,
    }
}

/// Whether `room` is silenced at `now_ms`: muted, or at level `none`. A silenced room
/// counts no mentions and notifies nothing.
pub fn silenced(settings: &NotificationSettings, room: &RoomId, direct: bool, now_ms: u64) -> bool {
    room_setting(settings, room).is_some_and(|r| mute_holds(r, now_ms))
        || effective_level(settings, room, direct) == NotifyLevel::None
}

/// Whether `text` contains `keyword` as a whole word, ignoring case. Words are runs of
/// letters, digits and `_`; a keyword of several words matches them in sequence.
pub fn has_keyword(text: &str, keyword: &str) -> bool {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let text = text.to_lowercase();
    let keyword = keyword.to_lowercase();
    if keyword.is_empty() {
        return false;
    }
    text.match_indices(keyword.as_str()).any(|(at, found)| {
        let before = text[..at].chars().next_back();
        let after = text[at + found.len()..].chars().next();
        // A boundary is needed only where the keyword itself starts or ends with a word
        // character ("c++" may be followed by a letter).
        let starts_word = keyword.chars().next().is_some_and(is_word);
        let ends_word = keyword.chars().next_back().is_some_and(is_word);
        let glued_before = starts_word && before.is_some_and(is_word);
        let glued_after = ends_word && after.is_some_and(is_word);
        !glued_before && !glued_after
    })
}

/// What `recipient`'s settings make of a message at `now_ms`.
pub fn verdict(
    settings: &NotificationSettings,
    recipient: &UserId,
    message: &MessageFacts<'_>,
    now_ms: u64,
) -> Verdict {
    if message.sender == recipient || silenced(settings, message.room, message.direct, now_ms) {
        return Verdict::default();
    }
    let keyword = message.text.is_some_and(|text| settings.keywords.iter().any(|k| has_keyword(text, k)));
    let mention = message.mentions_recipient || message.mentions_room || keyword;
    let notify = match effective_level(settings, message.room, message.direct) {
        NotifyLevel::All => true,
        NotifyLevel::Mentions => mention,
        NotifyLevel::None => false,
    };
    Verdict { mention, notify }
}

/// How many of a room's newest unread messages `sync` reads for keyword hits: mentions by
/// name and room-wide ones are indexed when stored, keywords (each user's own, changing
/// at any time) are matched when counted, so the count looks this far back.
pub const KEYWORD_COUNT_WINDOW: usize = 100;

/// How many of `unread` mention `user` through one of their keywords alone: not their
/// own, not deleted, not end-to-end encrypted (never read) or a server notice, and not
/// naming them or the room (the mention index counts those already).
pub fn keyword_only_mentions<'a>(
    settings: &NotificationSettings,
    user: &UserId,
    unread: impl IntoIterator<Item = &'a Message>,
) -> u64 {
    if settings.keywords.is_empty() {
        return 0;
    }
    let hit = |m: &Message| {
        &m.sender != user
            && !m.deleted
            && matches!(m.kind, MessageKind::Text | MessageKind::Image | MessageKind::File)
            && m.mention_all.is_none()
            && !m.mentions.contains(user)
            && settings.keywords.iter().any(|k| has_keyword(&m.text, k))
    };
    unread.into_iter().filter(|m| hit(m)).count() as u64
}

/// Checks and normalizes a keyword list: trimmed, no empty or over-long words, at most
/// [`limits::MAX_NOTIFY_KEYWORDS`], duplicates (ignoring case) dropped.
pub fn check_keywords(keywords: Vec<String>) -> Result<Vec<String>, CoreError> {
    if keywords.len() > limits::MAX_NOTIFY_KEYWORDS {
        return Err(CoreError::Malformed { field: "keywords", rule: "holds at most 50 words" });
    }
    let mut kept: Vec<String> = Vec::with_capacity(keywords.len());
    for keyword in keywords {
        let keyword = keyword.trim().to_string();
        let chars = keyword.chars().count();
        if chars == 0 || chars > limits::MAX_NOTIFY_KEYWORD_CHARS {
            return Err(CoreError::Malformed { field: "keywords", rule: "are words of 1..=64 characters" });
        }
        if keyword.chars().any(char::is_control) {
            return Err(CoreError::Malformed { field: "keywords", rule: "have no control characters" });
        }
        if !kept.iter().any(|k| k.to_lowercase() == keyword.to_lowercase()) {
            kept.push(keyword);
        }
    }
    Ok(kept)
}

/// The settings after `notifications.set`: absent fields are kept.
pub fn apply_account(
    mut settings: NotificationSettings,
    level: Option<NotifyLevel>,
    keywords: Option<Vec<String>>,
) -> Result<NotificationSettings, CoreError> {
    if let Some(keywords) = keywords {
        settings.keywords = check_keywords(keywords)?;
    }
    if let Some(level) = level {
        settings.level = level;
    }
    Ok(settings)
}

/// The settings after `notifications.room` at `now_ms`: the room's setting replaced
/// (removed when it is all defaults), and rooms whose only setting was a mute that has
/// ended dropped.
pub fn apply_room(
    mut settings: NotificationSettings,
    setting: RoomNotifications,
    now_ms: u64,
) -> Result<NotificationSettings, CoreError> {
    if setting.muted_until.is_some() && !setting.muted {
        return Err(CoreError::Malformed { field: "muted_until", rule: "comes with `muted: true`" });
    }
    if setting.muted_until.is_some_and(|until| until <= now_ms) {
        return Err(CoreError::Malformed { field: "muted_until", rule: "is in the future" });
    }
    settings.rooms.retain(|r| r.room != setting.room && (r.level.is_some() || mute_holds(r, now_ms)));
    if setting.level.is_some() || setting.muted {
        let at = settings.rooms.partition_point(|r| r.room < setting.room);
        settings.rooms.insert(at, setting);
    }
    if settings.rooms.len() > limits::MAX_NOTIFY_ROOMS {
        return Err(CoreError::Malformed {
            field: "room",
            rule: "at most 1000 rooms have their own setting",
        });
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

    use super::*;

    fn room(id: &str) -> RoomId {
        RoomId::parse(id).unwrap()
    }

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    fn facts<'a>(room: &'a RoomId, sender: &'a UserId, text: Option<&'a str>) -> MessageFacts<'a> {
        MessageFacts { room, direct: false, sender, mentions_recipient: false, mentions_room: false, text }
    }

    fn setting(id: &str, level: Option<NotifyLevel>, muted: bool, until: Option<u64>) -> RoomNotifications {
        RoomNotifications { room: room(id), level, muted, muted_until: until }
    }

    fn text(seq: u64, sender: &str, text: &str) -> Message {
        Message {
            room: room("r_a"),
            seq,
            ts: seq,
            sender: user(sender),
            cid: palaver_protocol::ClientMsgId::parse("c").unwrap(),
            kind: MessageKind::Text,
            text: text.into(),
            client_ts: None,
            reactions: Vec::new(),
            reply_to: None,
            reply: None,
            mentions: Vec::new(),
            file: None,
            edited_at: None,
            deleted: false,
            system: None,
            blocked: false,
            encryption: None,
            mention_all: None,
            forward: None,
            thread: None,
            also_to_room: false,
            thread_summary: None,
        }
    }

    #[test]
    fn keyword_hits_count_once_and_never_in_what_is_counted_already_or_unreadable() {
        let me = user("u_me");
        let settings = NotificationSettings { keywords: vec!["deploy".into()], ..Default::default() };
        let named = Message { mentions: vec![me.clone()], ..text(3, "u_bob", "deploy now @me") };
        let everyone = Message {
            mention_all: Some(palaver_protocol::MentionAll::Everyone),
            ..text(4, "u_bob", "deploy, everyone")
        };
        let sealed = Message { kind: MessageKind::Encrypted, ..text(5, "u_bob", "deploy") };
        let gone = Message { deleted: true, ..text(6, "u_bob", "deploy") };
        let unread = [
            text(1, "u_bob", "Deploy is done"),
            text(2, "u_bob", "redeployment"),
            named,
            everyone,
            sealed,
            gone,
            text(7, "u_me", "deploy from me"),
            text(8, "u_cat", "who broke the DEPLOY?"),
        ];
        assert_eq!(keyword_only_mentions(&settings, &me, &unread), 2);
        assert_eq!(keyword_only_mentions(&NotificationSettings::default(), &me, &unread), 0, "no keywords");
    }

    #[test]
    fn rooms_notify_mentions_and_direct_rooms_everything_by_default() {
        let settings = NotificationSettings::default();
        let (r, bob, me) = (room("r_a"), user("u_bob"), user("u_me"));
        let plain = facts(&r, &bob, Some("hello"));
        assert_eq!(verdict(&settings, &me, &plain, 0), Verdict { mention: false, notify: false });
        let named = MessageFacts { mentions_recipient: true, ..plain };
        assert_eq!(verdict(&settings, &me, &named, 0), Verdict { mention: true, notify: true });
        let everyone = MessageFacts { mentions_room: true, ..plain };
        assert_eq!(verdict(&settings, &me, &everyone, 0), Verdict { mention: true, notify: true });
        let direct = MessageFacts { direct: true, ..plain };
        assert_eq!(verdict(&settings, &me, &direct, 0), Verdict { mention: false, notify: true });
        let own = MessageFacts { mentions_recipient: true, ..facts(&r, &me, Some("hi")) };
        assert_eq!(verdict(&settings, &me, &own, 0), Verdict::default(), "one's own message");
    }

    #[test]
    fn levels_none_and_mutes_silence_a_room_until_the_mute_ends() {
        let (r, bob, me) = (room("r_a"), user("u_bob"), user("u_me"));
        let named = MessageFacts { mentions_recipient: true, ..facts(&r, &bob, Some("hi")) };
        let none = apply_room(
            NotificationSettings::default(),
            setting("r_a", Some(NotifyLevel::None), false, None),
            0,
        )
        .unwrap();
        assert_eq!(verdict(&none, &me, &named, 5), Verdict::default());
        let muted =
            apply_room(NotificationSettings::default(), setting("r_a", None, true, Some(100)), 10).unwrap();
        assert_eq!(verdict(&muted, &me, &named, 99), Verdict::default());
        assert!(silenced(&muted, &r, false, 99));
        assert_eq!(verdict(&muted, &me, &named, 100), Verdict { mention: true, notify: true }, "mute ended");
        let forever =
            apply_room(NotificationSettings::default(), setting("r_a", None, true, None), 0).unwrap();
        assert!(silenced(&forever, &r, false, u64::MAX));
        assert!(!silenced(&forever, &room("r_b"), false, 0), "other rooms");
        let all = apply_account(NotificationSettings::default(), Some(NotifyLevel::All), None).unwrap();
        assert_eq!(verdict(&all, &me, &facts(&r, &bob, None), 0), Verdict { mention: false, notify: true });
        let direct_none = apply_room(all, setting("r_d", Some(NotifyLevel::None), false, None), 0).unwrap();
        let dm = room("r_d");
        assert!(silenced(&direct_none, &dm, true, 0), "a direct room's own level wins");
    }

    #[test]
    fn keywords_match_whole_words_ignoring_case_and_never_encrypted_messages() {
        assert!(has_keyword("Deploy is DONE", "deploy"));
        assert!(has_keyword("the release-train leaves", "release"));
        assert!(!has_keyword("redeploy it", "deploy"));
        assert!(!has_keyword("deployment", "deploy"));
        assert!(has_keyword("we use c++ here", "C++"));
        assert!(has_keyword("on call: Ünïcode", "ünïcode"));
        assert!(has_keyword("the build farm is down", "build farm"));
        assert!(!has_keyword("anything", ""));
        let settings = apply_account(
            NotificationSettings::default(),
            None,
            Some(vec![" Deploy ".into(), "deploy".into()]),
        )
        .unwrap();
        assert_eq!(settings.keywords, vec!["Deploy".to_string()]);
        let (r, bob, me) = (room("r_a"), user("u_bob"), user("u_me"));
        assert_eq!(
            verdict(&settings, &me, &facts(&r, &bob, Some("deploy now")), 0),
            Verdict { mention: true, notify: true }
        );
        assert_eq!(verdict(&settings, &me, &facts(&r, &bob, None), 0), Verdict::default(), "encrypted");
    }

    #[test]
    fn bad_settings_are_refused() {
        let too_many = (0..51).map(|i| format!("w{i}")).collect();
        assert!(check_keywords(too_many).is_err());
        assert!(check_keywords(vec!["  ".into()]).is_err());
        assert!(check_keywords(vec!["x".repeat(65)]).is_err());
        assert!(check_keywords(vec!["a\nb".into()]).is_err());
        let base = NotificationSettings::default;
        assert!(apply_room(base(), setting("r_a", None, false, Some(50)), 0).is_err(), "until without mute");
        assert!(apply_room(base(), setting("r_a", None, true, Some(50)), 50).is_err(), "in the past");
        let mut full = base();
        for i in 0..limits::MAX_NOTIFY_ROOMS {
            full = apply_room(full, setting(&format!("r_{i:04}"), Some(NotifyLevel::All), false, None), 0)
                .unwrap();
        }
        assert!(apply_room(full.clone(), setting("r_x", Some(NotifyLevel::All), false, None), 0).is_err());
        let cleared = apply_room(full, setting("r_0000", None, false, None), 0).unwrap();
        assert_eq!(cleared.rooms.len(), limits::MAX_NOTIFY_ROOMS - 1, "a default setting is removed");
    }

    #[test]
    fn ended_mutes_are_dropped_and_rooms_stay_sorted() {
        let s = apply_room(NotificationSettings::default(), setting("r_b", None, true, Some(10)), 0).unwrap();
        let s = apply_room(s, setting("r_c", Some(NotifyLevel::All), false, None), 0).unwrap();
        let s = apply_room(s, setting("r_a", Some(NotifyLevel::None), false, None), 20).unwrap();
        let rooms: Vec<&str> = s.rooms.iter().map(|r| r.room.as_str()).collect();
        assert_eq!(rooms, vec!["r_a", "r_c"]);
    }
}

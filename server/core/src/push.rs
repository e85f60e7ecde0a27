//! Push to users with no live socket, as rules: which push subscriptions are accepted,
//! whom a message is pushed to, what the push says (within 4 KB, no content from an
//! end-to-end encrypted room, no preview unless the operator allows previews), the Web
//! Push headers that go with it (`Topic`, `Urgency`, `TTL`), and what a push service's
//! answer means (delivered, retry later, the subscription is gone).
//!
//! Pure: the server encrypts, signs and sends; this decides.

use palaver_protocol::{Message, MessageKind, RoomId, UserId};
use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::notifications::Verdict;
use crate::outbound::{OutboundDelivery, OutboundKind};
use crate::webhooks::{Network, Registrant, TargetRefusal, parse_target};

/// Most push subscriptions per user (one per browser profile or device).
pub const MAX_SUBSCRIPTIONS: usize = 20;
/// The largest plaintext of a push payload: what RFC 8291 encryption fits in the 4 096
/// bytes push services must accept.
pub const MAX_PAYLOAD_BYTES: usize = 3_993;
/// Longest message preview, in characters.
pub const MAX_PREVIEW_CHARS: usize = 200;
/// How long a push service keeps an undelivered push (`TTL`): a day.
pub const TTL_SECS: u32 = 24 * 3600;
/// Length of the base64url `p256dh` key (65 bytes).
const P256DH_CHARS: usize = 87;
/// Length of the base64url `auth` secret (16 bytes).
const AUTH_CHARS: usize = 22;

/// A push subscription as a browser hands it over (`PushSubscription.toJSON()`), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedSubscription {
    /// The push service's URL for this subscription.
    pub endpoint: String,
    /// The user agent's P-256 public key, base64url without padding.
    pub p256dh: String,
    /// The authentication secret, base64url without padding.
    pub auth: String,
}

fn base64url_of_length(text: &str, chars: usize) -> Option<String> {
    let text = text.trim_end_matches('=');
    (text.len() == chars && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| text.to_owned())
}

/// Checks a subscription: the endpoint is an `https://` URL that may not point into the
/// server's own network (the webhook rules), unless its address is in the operator's
/// `allowed` networks, where `http://` is accepted too; `p256dh` is an uncompressed
/// P-256 point and `auth` 16 bytes, both base64url. Whether the point is on the curve is
/// found at the first push (a bad key expires the subscription).
pub fn check_subscription(
    endpoint: &str,
    p256dh: &str,
    auth: &str,
    allowed: &[Network],
) -> Result<CheckedSubscription, CoreError> {
    let refused = |rule| CoreError::Malformed { field: "endpoint", rule };
    match parse_target(endpoint, Registrant::Restricted, allowed) {
        Ok(_) => {}
        Err(TargetRefusal::NotHttps) => {
            // `http://` only to an address the operator allowed.
            let target = parse_target(endpoint, Registrant::Operator, allowed)
                .map_err(|_| refused("is an https:// URL of a push service"))?;
            let inside = target.host.parse().is_ok_and(|addr| allowed.iter().any(|n| n.contains(addr)));
            if !inside {
                return Err(refused("is an https:// URL of a push service"));
            }
        }
        Err(TargetRefusal::Forbidden { .. }) => {
            return Err(refused("may not point into the server's own network"));
        }
        Err(_) => return Err(refused("is an https:// URL of a push service")),
    }
    let p256dh = base64url_of_length(p256dh, P256DH_CHARS).filter(|key| key.starts_with('B')).ok_or(
        CoreError::Malformed { field: "p256dh", rule: "is a P-256 public key (65 bytes, base64url)" },
    )?;
    let auth = base64url_of_length(auth, AUTH_CHARS)
        .ok_or(CoreError::Malformed { field: "auth", rule: "is a 16-byte secret in base64url" })?;
    Ok(CheckedSubscription { endpoint: endpoint.to_owned(), p256dh, auth })
}

/// Whether to push a message to a recipient: their settings say it notifies them, and
/// no socket of theirs is connected anywhere in the cluster (a connected device shows
/// it already).
pub fn should_push(verdict: Verdict, online_anywhere: bool) -> bool {
    verdict.notify && !online_anywhere
}

/// A stored message, as push selection reads it.
#[derive(Debug, Clone, Copy)]
pub struct PushedMessage<'a> {
    /// The room.
    pub room: &'a RoomId,
    /// A direct room.
    pub direct: bool,
    /// The sender.
    pub sender: &'a UserId,
    /// The users it names (`Message::mentions`).
    pub mentions: &'a [UserId],
    /// `@everyone` (reaches every member) or `@here` (only those online, so never a push).
    pub mention_all: Option<palaver_protocol::MentionAll>,
    /// The text; `None` for an end-to-end encrypted message.
    pub text: Option<&'a str>,
}

/// Who among a room's `members` is pushed `message` at `now_ms`, with their verdict:
/// members other than the sender, offline everywhere (`online`), who did not block the
/// sender (`blocked`), whose settings (`settings`) say the message notifies them. The
/// room's deciding node (its owner) runs this once per message, so one node pushes it.
pub fn push_recipients<'a>(
    members: impl IntoIterator<Item = &'a UserId>,
    message: &PushedMessage<'_>,
    settings: impl Fn(&UserId) -> palaver_protocol::NotificationSettings,
    online: impl Fn(&UserId) -> bool,
    blocked: impl Fn(&UserId) -> bool,
    now_ms: u64,
) -> Vec<(UserId, Verdict)> {
    let everyone = message.mention_all == Some(palaver_protocol::MentionAll::Everyone);
    members
        .into_iter()
        .filter(|member| *member != message.sender && !online(member) && !blocked(member))
        .filter_map(|member| {
            let facts = crate::notifications::MessageFacts {
                room: message.room,
                direct: message.direct,
                sender: message.sender,
                mentions_recipient: message.mentions.contains(member),
                mentions_room: everyone,
                text: message.text,
            };
            let verdict = crate::notifications::verdict(&settings(member), member, &facts, now_ms);
            should_push(verdict, false).then(|| (member.clone(), verdict))
        })
        .collect()
}

/// What a push says, as JSON: enough for a service worker to show a notification and
/// open the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushPayload {
    /// The room.
    pub room: RoomId,
    /// The message's seq.
    pub seq: u64,
    /// The sender.
    pub sender: UserId,
    /// The sender's name as shown (display name or username).
    pub sender_name: String,
    /// The room's name (absent for direct rooms: the sender is the name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_name: Option<String>,
    /// The message mentions the recipient (by name, room-wide or by keyword).
    pub mention: bool,
    /// The start of the text: only when the operator allows previews, never for an
    /// end-to-end encrypted message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
}

/// The facts a push payload is made from.
#[derive(Debug, Clone, Copy)]
pub struct PushMessage<'a> {
    /// The room.
    pub room: &'a RoomId,
    /// The room's name, `None` for a direct room.
    pub room_name: Option<&'a str>,
    /// The message's seq.
    pub seq: u64,
    /// The sender.
    pub sender: &'a UserId,
    /// The sender's shown name.
    pub sender_name: &'a str,
    /// The text; `None` when end-to-end encrypted.
    pub text: Option<&'a str>,
}

fn clip(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// The payload's JSON bytes, within [`MAX_PAYLOAD_BYTES`]: names are clipped first, and
/// the preview shortened until it fits. `previews`: the operator allows message text in
/// pushes (it passes through the push service, encrypted to the browser).
pub fn payload(message: &PushMessage<'_>, mention: bool, previews: bool) -> Vec<u8> {
    let mut payload = PushPayload {
        room: message.room.clone(),
        seq: message.seq,
        sender: message.sender.clone(),
        sender_name: clip(message.sender_name, 64),
        room_name: message.room_name.map(|name| clip(name, 100)),
        mention,
        preview: message.text.filter(|_| previews).map(|text| clip(text, MAX_PREVIEW_CHARS)),
    };
    loop {
        let bytes = serde_json::to_vec(&payload).unwrap_or_default();
        if bytes.len() <= MAX_PAYLOAD_BYTES {
            return bytes;
        }
        // Only a preview of many escaped characters can overflow: halve it.
        let Some(preview) = payload.preview.take() else { return bytes };
        let chars = preview.chars().count() / 2;
        if chars > 0 {
            payload.preview = Some(clip(&preview, chars));
        }
    }
}

/// The `Topic` header for a room's pushes: a push service keeps only the newest
/// undelivered push of a topic, so an offline user's device gets one per room, not a
/// backlog. At most 32 characters of the base64url alphabet (RFC 8030 §5.4).
pub fn topic(room: &RoomId) -> String {
    format!("{:016x}", crate::stable_hash(room.as_str().as_bytes()))
}

/// The `Urgency` header (RFC 8030 §5.3): `high` for mentions and direct rooms (worth
/// waking a device), `normal` otherwise.
pub fn urgency(mention: bool, direct: bool) -> &'static str {
    if mention || direct { "high" } else { "normal" }
}

/// What a push service's answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Accepted (201, or any 2xx).
    Delivered,
    /// The subscription is gone (404, 410): forget it.
    Expired,
    /// Try again after this many ms.
    RetryAfter(u64),
    /// Will never succeed as sent (another 4xx: a bad request, a key the push service
    /// does not accept, a payload too large): drop this push.
    Dropped,
}

/// What to do after a push service answered `status` to the `attempt`th try (1 for the
/// first); `retry_after_secs` from its `Retry-After` header. Refusals for load (429) and
/// server errors are retried on the webhook schedule, the push service's own wait when
/// it is longer; the last failure drops the push.
pub fn outcome(
    status: u16,
    attempt: u32,
    retry_after_secs: Option<u64>,
    jitter_permille: u32,
) -> PushOutcome {
    match status {
        200..=299 => PushOutcome::Delivered,
        404 | 410 => PushOutcome::Expired,
        429 | 500..=599 => match crate::webhooks::retry_after_ms(attempt, jitter_permille) {
            Some(ms) => PushOutcome::RetryAfter(ms.max(retry_after_secs.unwrap_or(0).saturating_mul(1_000))),
            None => PushOutcome::Dropped,
        },
        _ => PushOutcome::Dropped,
    }
}

/// The destination of every fan-out entry in the outbound queue (one queue of them).
pub const FAN_OUT_DESTINATION: &str = "push:fan-out";

/// A stored message whose pushes are still to be chosen: the body of an
/// [`OutboundKind::PushFanOut`] delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanOut {
    /// The room.
    pub room: RoomId,
    /// The message's seq.
    pub seq: u64,
}

/// Whether a stored message may push at all: one a user sent, or an announcement the
/// operator posted (not the server's notices of joins, edits or moderation).
pub fn pushable(message: &Message) -> bool {
    let announcement = message
        .system
        .as_ref()
        .is_some_and(|notice| notice.action == palaver_protocol::SystemAction::Announcement);
    !message.deleted && (announcement || (message.kind != MessageKind::System && message.system.is_none()))
}

/// Whether a message's push fan-out is worth queueing: some member other than its sender
/// had no live socket anywhere when the message was decided. Members who were connected
/// got it live, so in a room whose members are all online (most of a busy server's
/// messages) nothing is queued and the outbound sender reads nothing.
pub fn anyone_offline<'a>(
    members: impl IntoIterator<Item = &'a UserId>,
    sender: &UserId,
    connected_anywhere: impl Fn(&UserId) -> bool,
) -> bool {
    members.into_iter().any(|member| member != sender && !connected_anywhere(member))
}

/// The name a push shows for the system's sender (announcements).
pub const SYSTEM_SENDER_NAME: &str = "Announcement";

/// The fan-out entry for `message`, queued with it by its room's owner at `now_ms`.
pub fn fan_out(message: &Message, now_ms: u64) -> OutboundDelivery {
    let body = FanOut { room: message.room.clone(), seq: message.seq };
    OutboundDelivery {
        kind: OutboundKind::PushFanOut,
        destination: FAN_OUT_DESTINATION.to_owned(),
        id: format!("fan_{:016x}_{}", crate::stable_hash(message.room.as_str().as_bytes()), message.seq),
        room: Some(message.room.clone()),
        body: serde_json::to_string(&body).unwrap_or_default(),
        attempts: 0,
        next_at_ms: now_ms,
        created_ms: now_ms,
    }
}

/// One push to one subscription: the body of an [`OutboundKind::Push`] delivery. The
/// payload is kept as plaintext and encrypted at each attempt (a fresh salt each time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushJob {
    /// Whose subscription (expired through their account when the service says it is gone).
    pub user: UserId,
    /// The subscription's `p256dh` key.
    pub p256dh: String,
    /// The subscription's `auth` secret.
    pub auth: String,
    /// The payload's JSON ([`payload`]).
    pub payload: String,
    /// `Topic`.
    pub topic: String,
    /// `Urgency`.
    pub urgency: String,
}

/// The push delivery of `payload` for `user`'s `subscription`: its id is the same for the
/// same message, user and endpoint, so a fan-out expanded twice (after a crash) queues
/// each push once.
pub fn push_delivery(
    message: &PushMessage<'_>,
    direct: bool,
    user: &UserId,
    subscription: &crate::records::PushSubscriptionRecord,
    verdict: Verdict,
    payload: Vec<u8>,
    now_ms: u64,
) -> OutboundDelivery {
    let job = PushJob {
        user: user.clone(),
        p256dh: subscription.p256dh.clone(),
        auth: subscription.auth.clone(),
        payload: String::from_utf8(payload).unwrap_or_default(),
        topic: topic(message.room),
        urgency: urgency(verdict.mention, direct).to_owned(),
    };
    let who = format!("{}\n{}\n{}\n{}", message.room, message.seq, user, subscription.endpoint);
    let salted = format!("push\n{who}");
    OutboundDelivery {
        kind: OutboundKind::Push,
        destination: subscription.endpoint.clone(),
        id: format!(
            "push_{:016x}{:016x}",
            crate::stable_hash(who.as_bytes()),
            crate::stable_hash(salted.as_bytes())
        ),
        room: Some(message.room.clone()),
        body: serde_json::to_string(&job).unwrap_or_default(),
        attempts: 0,
        next_at_ms: now_ms,
        created_ms: now_ms,
    }
}

/// A `notification` webhook event for `user` (to a product's own push gateway): the
/// push payload's fields (the same content rules) with the recipient's id, as
/// `{"type": "notification", "timestamp", "data"}`, for the operator's registration
/// `webhook_id`. Its id is the same for the same message and recipient on every attempt.
pub fn notification_delivery(
    webhook_id: &str,
    message: &PushMessage<'_>,
    user: &UserId,
    payload: &[u8],
    now_ms: u64,
) -> OutboundDelivery {
    let mut data: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
    if let Some(fields) = data.as_object_mut() {
        fields.insert("user".into(), serde_json::json!(user));
    }
    let body = serde_json::json!({ "type": "notification", "timestamp": now_ms, "data": data });
    let who = format!("notification\n{}\n{}\n{}", message.room, message.seq, user);
    let salted = format!("{who}\nid");
    OutboundDelivery {
        kind: OutboundKind::Webhook,
        destination: webhook_id.to_owned(),
        id: format!(
            "msg_{:016x}{:016x}",
            crate::stable_hash(who.as_bytes()),
            crate::stable_hash(salted.as_bytes())
        ),
        room: Some(message.room.clone()),
        body: body.to_string(),
        attempts: 0,
        next_at_ms: now_ms,
        created_ms: now_ms,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

    use super::*;

    const P256DH: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

    fn check(endpoint: &str, allowed: &[Network]) -> Result<CheckedSubscription, CoreError> {
        check_subscription(endpoint, P256DH, AUTH, allowed)
    }

    #[test]
    fn subscriptions_need_an_https_push_service_and_well_formed_keys() {
        let ok = check("https://fcm.googleapis.com/fcm/send/abc", &[]).unwrap();
        assert_eq!((ok.p256dh.as_str(), ok.auth.as_str()), (P256DH, AUTH));
        assert!(check("http://push.example.net/x", &[]).is_err(), "http");
        assert!(check("https://127.0.0.1:8443/x", &[]).is_err(), "loopback");
        assert!(check("https://10.0.0.7/x", &[]).is_err(), "private network");
        assert!(check("ftp://push.example.net/x", &[]).is_err());
        assert!(check("https://push.example.net/x#frag", &[]).is_err());
        let loopback = [Network::parse("127.0.0.0/8").unwrap()];
        assert!(check("http://127.0.0.1:9000/push/1", &loopback).is_ok(), "the operator's network");
        assert!(check("https://127.0.0.1:9000/push/1", &loopback).is_ok());
        assert!(check("http://push.example.net/x", &loopback).is_err(), "http elsewhere");
        let bad =
            |p256dh: &str, auth: &str| check_subscription("https://push.example.net/x", p256dh, auth, &[]);
        assert!(bad(&P256DH[..86], AUTH).is_err());
        assert!(bad(&format!("A{}", &P256DH[1..]), AUTH).is_err(), "not an uncompressed point");
        assert!(bad(P256DH, "short").is_err());
        assert!(bad(P256DH, "BTBZMqHH6r4Tts7J_aSI+g").is_err(), "not base64url");
        assert_eq!(
            bad(&format!("{P256DH}="), &format!("{AUTH}==")).unwrap().auth,
            AUTH,
            "padding is dropped"
        );
    }

    #[test]
    fn only_offline_users_whose_settings_notify_get_a_push() {
        let notify = Verdict { mention: false, notify: true };
        assert!(should_push(notify, false));
        assert!(!should_push(notify, true), "a live socket shows it already");
        assert!(!should_push(Verdict { mention: true, notify: false }, false), "silenced");
    }

    #[test]
    fn a_fan_out_is_queued_only_when_someone_besides_the_sender_missed_it_live() {
        let [ann, bob, cat] = ["ann", "bob", "cat"].map(|n| UserId::parse(&format!("u_{n}")).unwrap());
        let members = [ann.clone(), bob.clone(), cat.clone()];
        let online = |who: &'static [&'static str]| {
            move |user: &UserId| who.iter().any(|n| user.as_str() == format!("u_{n}"))
        };
        assert!(!anyone_offline(&members, &ann, online(&["ann", "bob", "cat"])), "all online");
        assert!(!anyone_offline(&members, &ann, online(&["bob", "cat"])), "only the sender is away");
        assert!(anyone_offline(&members, &ann, online(&["ann", "bob"])), "cat missed it");
        let system = UserId::parse("u_system").unwrap();
        assert!(!anyone_offline(&members, &system, online(&["ann", "bob", "cat"])), "an announcement");
        assert!(!anyone_offline(&[], &ann, online(&[])), "nobody to tell");
    }

    #[test]
    fn one_pass_over_the_members_picks_who_is_pushed() {
        use palaver_protocol::{MentionAll, NotificationSettings, NotifyLevel};
        let room = RoomId::parse("r_ops").unwrap();
        let [bob, ann, cat, dan, eve] =
            ["bob", "ann", "cat", "dan", "eve"].map(|n| UserId::parse(&format!("u_{n}")).unwrap());
        let members = [bob.clone(), ann.clone(), cat.clone(), dan.clone(), eve.clone()];
        let mentions = [ann.clone(), cat.clone(), dan.clone()];
        let message = PushedMessage {
            room: &room,
            direct: false,
            sender: &bob,
            mentions: &mentions,
            mention_all: None,
            text: Some("ship it"),
        };
        let settings = |user: &UserId| {
            let mut s = NotificationSettings::default();
            if user == &dan {
                s.level = NotifyLevel::None;
            }
            s
        };
        let online = |user: &UserId| user == &cat;
        let blocked = |user: &UserId| user == &eve;
        let picked = push_recipients(&members, &message, settings, online, blocked, 0);
        // bob sent it, cat is online, dan silenced the room, eve is not mentioned (and blocked bob).
        assert_eq!(picked, vec![(ann.clone(), Verdict { mention: true, notify: true })]);
        let everyone = PushedMessage { mentions: &[], mention_all: Some(MentionAll::Everyone), ..message };
        let picked: Vec<UserId> =
            push_recipients(&members, &everyone, |_| NotificationSettings::default(), |_| false, blocked, 0)
                .into_iter()
                .map(|(u, _)| u)
                .collect();
        assert_eq!(picked, vec![ann.clone(), cat.clone(), dan.clone()], "eve blocked the sender");
        let here = PushedMessage { mentions: &[], mention_all: Some(MentionAll::Here), ..message };
        assert!(
            push_recipients(&members, &here, |_| NotificationSettings::default(), |_| false, |_| false, 0)
                .is_empty()
        );
    }

    fn message<'a>(room: &'a RoomId, sender: &'a UserId, text: Option<&'a str>) -> PushMessage<'a> {
        PushMessage { room, room_name: Some("ops"), seq: 7, sender, sender_name: "Bob", text }
    }

    #[test]
    fn payloads_carry_no_text_unless_previews_are_on_and_fit_the_limit() {
        let (room, bob) = (RoomId::parse("r_ops").unwrap(), UserId::parse("u_bob").unwrap());
        let plain = payload(&message(&room, &bob, Some("deploy done")), true, false);
        let json: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "room": "r_ops", "seq": 7, "sender": "u_bob", "sender_name": "Bob", "room_name": "ops", "mention": true
            })
        );
        let previewed: serde_json::Value =
            serde_json::from_slice(&payload(&message(&room, &bob, Some("deploy done")), false, true))
                .unwrap();
        assert_eq!(previewed["preview"], "deploy done");
        let encrypted: serde_json::Value =
            serde_json::from_slice(&payload(&message(&room, &bob, None), true, true)).unwrap();
        assert!(encrypted.get("preview").is_none(), "an encrypted message has no text to show");
        let long = "\u{1}".repeat(2_000);
        let clipped = payload(&message(&room, &bob, Some(&long)), false, true);
        assert!(clipped.len() <= MAX_PAYLOAD_BYTES);
        let json: serde_json::Value = serde_json::from_slice(&clipped).unwrap();
        assert!(json["preview"].as_str().unwrap().chars().count() <= MAX_PREVIEW_CHARS + 1);
    }

    #[test]
    fn headers_coalesce_per_room_and_wake_devices_for_mentions() {
        let (a, b) = (RoomId::parse("r_a").unwrap(), RoomId::parse("r_b").unwrap());
        assert_eq!(topic(&a), topic(&a));
        assert_ne!(topic(&a), topic(&b));
        assert!(topic(&a).len() <= 32 && topic(&a).bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(urgency(true, false), "high");
        assert_eq!(urgency(false, true), "high");
        assert_eq!(urgency(false, false), "normal");
    }

    #[test]
    fn a_message_queues_one_fan_out_and_each_push_has_a_stable_id() {
        let (room, bob, ann) = (
            RoomId::parse("r_ops").unwrap(),
            UserId::parse("u_bob").unwrap(),
            UserId::parse("u_ann").unwrap(),
        );
        let message = Message {
            room: room.clone(),
            seq: 9,
            ts: 9,
            sender: bob.clone(),
            cid: palaver_protocol::ClientMsgId::parse("c1").unwrap(),
            kind: MessageKind::Text,
            text: "hi".into(),
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
            also_to_room: false,
            thread: None,
            thread_summary: None,
        };
        assert!(pushable(&message));
        let notice = |action| {
            Some(Box::new(palaver_protocol::SystemNotice {
                action,
                actor: UserId::system(),
                target: None,
                role: None,
                until: None,
                reason: None,
                seq: None,
            }))
        };
        let system =
            |action| Message { kind: MessageKind::System, system: notice(action), ..message.clone() };
        assert!(!pushable(&system(palaver_protocol::SystemAction::Kicked)), "a server notice");
        assert!(
            pushable(&system(palaver_protocol::SystemAction::Announcement)),
            "the operator's announcement"
        );
        let entry = fan_out(&message, 5);
        assert_eq!((entry.kind, entry.destination.as_str()), (OutboundKind::PushFanOut, FAN_OUT_DESTINATION));
        assert_eq!(
            serde_json::from_str::<FanOut>(&entry.body).unwrap(),
            FanOut { room: room.clone(), seq: 9 }
        );
        assert_eq!(fan_out(&message, 6).id, entry.id, "the same message, the same entry");
        let facts = PushMessage {
            room: &room,
            room_name: None,
            seq: 9,
            sender: &bob,
            sender_name: "Bob",
            text: None,
        };
        let sub = |endpoint: &str| crate::records::PushSubscriptionRecord {
            endpoint: endpoint.into(),
            p256dh: "k".into(),
            auth: "a".into(),
            created_ms: 0,
        };
        let verdict = Verdict { mention: false, notify: true };
        let push = |endpoint: &str| {
            push_delivery(&facts, true, &ann, &sub(endpoint), verdict, payload(&facts, false, false), 5)
        };
        let first = push("https://push.example.net/1");
        assert_eq!(first.id, push("https://push.example.net/1").id, "expanded twice, queued once");
        assert_ne!(first.id, push("https://push.example.net/2").id);
        assert_eq!(first.destination, "https://push.example.net/1");
        let event = notification_delivery("wh_1", &facts, &ann, &payload(&facts, true, false), 5);
        let body: serde_json::Value = serde_json::from_str(&event.body).unwrap();
        assert_eq!(
            (body["type"].as_str(), body["data"]["user"].as_str()),
            (Some("notification"), Some("u_ann"))
        );
        assert_eq!((body["data"]["seq"].as_u64(), body["data"]["mention"].as_bool()), (Some(9), Some(true)));
        assert!(body["data"].get("preview").is_none());
        assert!(event.id.starts_with("msg_") && event.id.len() == 36);
        assert_eq!(event.id, notification_delivery("wh_2", &facts, &ann, b"{}", 6).id, "one id per event");
        let job: PushJob = serde_json::from_str(&first.body).unwrap();
        assert_eq!((job.user, job.urgency.as_str(), job.topic), (ann, "high", topic(&room)), "direct: high");
    }

    #[test]
    fn push_service_answers_deliver_retry_expire_or_drop() {
        assert_eq!(outcome(201, 1, None, 0), PushOutcome::Delivered);
        assert_eq!(outcome(410, 1, None, 0), PushOutcome::Expired);
        assert_eq!(outcome(404, 3, None, 0), PushOutcome::Expired);
        assert_eq!(outcome(503, 1, None, 0), PushOutcome::RetryAfter(5_000));
        assert_eq!(outcome(429, 1, Some(60), 0), PushOutcome::RetryAfter(60_000), "the service's wait");
        assert_eq!(outcome(500, 8, None, 0), PushOutcome::Dropped, "the schedule is over");
        assert_eq!(outcome(413, 1, None, 0), PushOutcome::Dropped);
        assert_eq!(outcome(403, 1, None, 0), PushOutcome::Dropped);
    }
}

//! The rules of webhook delivery, without I/O: which targets a webhook may point at, which
//! addresses a delivery may connect to (server-side request forgery), and when a failed
//! delivery is tried again.
//!
//! A target registered by an operator may be anything they allow; one registered by
//! anyone else (a room's owner) must be `https://` and must not reach the server's own
//! network: every address its host resolves to is checked *when connecting*, so a name
//! that resolves somewhere harmless at registration and to `127.0.0.1` later (DNS
//! rebinding) is still refused. An operator's allowlist of networks lets chosen internal
//! addresses through.
//!
//! Registrations ([`WebhookRecord`]) say which events go where; [`events_of`] reads the
//! events out of the writes an owner decided, so the deliveries are queued with the
//! writes that caused them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use palaver_protocol::{Message, MessageKind, RoomId, SystemAction, UserId};
use serde::{Deserialize, Serialize};

use crate::records::Write;

/// Longest target URL, in bytes.
pub const MAX_URL_BYTES: usize = 2_048;

/// Who registered a webhook: what its target may be depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Registrant {
    /// An operator (or an admin): any scheme the server speaks, any address.
    Operator,
    /// Anyone else: `https://` only, public addresses only (or the operator's allowlist).
    Restricted,
}

/// A webhook's target, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Whether the scheme is `https`.
    pub https: bool,
    /// The host: a name, or an IP address (IPv6 without brackets).
    pub host: String,
    /// The port (the scheme's default when the URL gives none).
    pub port: u16,
    /// The path and query (`/` when the URL gives none).
    pub path: String,
}

/// Why a target or an address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetRefusal {
    /// Not a URL this server can deliver to.
    #[error("not an http(s) URL: {0}")]
    Malformed(&'static str),
    /// A restricted registrant gave a URL that is not `https://`.
    #[error("webhook targets must be https:// URLs")]
    NotHttps,
    /// An address the target may not reach.
    #[error("{addr} is a {kind} address, which webhooks may not reach")]
    Forbidden {
        /// The address.
        addr: IpAddr,
        /// What kind of address it is.
        kind: &'static str,
    },
}

/// Checks a target URL (`http[s]://host[:port][/path]`, no user info, no fragment).
pub fn parse_target(url: &str, by: Registrant, allowed: &[Network]) -> Result<Target, TargetRefusal> {
    if url.len() > MAX_URL_BYTES {
        return Err(TargetRefusal::Malformed("longer than 2,048 bytes"));
    }
    if url.bytes().any(|b| b.is_ascii_control() || b == b' ' || !b.is_ascii()) {
        return Err(TargetRefusal::Malformed("spaces, control or non-ASCII characters"));
    }
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(TargetRefusal::Malformed("the scheme must be https:// or http://"));
    };
    if !https && by == Registrant::Restricted {
        return Err(TargetRefusal::NotHttps);
    }
    if url.contains('#') {
        return Err(TargetRefusal::Malformed("a fragment is never sent"));
    }
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) if rest.as_bytes()[at] == b'/' => (&rest[..at], rest[at..].to_owned()),
        Some(at) => (&rest[..at], format!("/{}", &rest[at..])),
        None => (rest, "/".to_owned()),
    };
    if authority.contains('@') {
        return Err(TargetRefusal::Malformed("user info is not allowed"));
    }
    let default_port = if https { 443 } else { 80 };
    let (host, port) = split_host_port(authority, default_port)?;
    if host.is_empty() {
        return Err(TargetRefusal::Malformed("no host"));
    }
    let host_ok = host.parse::<IpAddr>().is_ok()
        || host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
        });
    if !host_ok || host.len() > 253 {
        return Err(TargetRefusal::Malformed("the host is not a name or an IP address"));
    }
    // An address in the URL itself is checked now, as well as at every connection.
    if let Ok(addr) = host.parse::<IpAddr>() {
        check_address(addr, by, allowed)?;
    }
    Ok(Target { https, host: host.to_ascii_lowercase(), port, path })
}

fn split_host_port(authority: &str, default_port: u16) -> Result<(String, u16), TargetRefusal> {
    let bad_port = TargetRefusal::Malformed("the port is not a number from 1 to 65535");
    let port_of = |text: &str| text.parse::<u16>().ok().filter(|p| *p > 0).ok_or(bad_port.clone());
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) =
            rest.split_once(']').ok_or(TargetRefusal::Malformed("an unclosed [IPv6] host"))?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(TargetRefusal::Malformed("not an IPv6 address in []"));
        }
        let port = match after.strip_prefix(':') {
            Some(port) => port_of(port)?,
            None if after.is_empty() => default_port,
            None => return Err(TargetRefusal::Malformed("text after the [IPv6] host")),
        };
        return Ok((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Ok((host.to_owned(), port_of(port)?)),
        None => Ok((authority.to_owned(), default_port)),
    }
}

/// A network in an operator's allowlist (`10.1.2.0/24`, `fd00::/8`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `ADDR/PREFIX` or `ADDR`.
    pub fn parse(text: &str) -> Option<Network> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr.parse::<IpAddr>().ok()?, prefix.parse::<u8>().ok()?),
            None => {
                let addr = text.parse::<IpAddr>().ok()?;
                (addr, if addr.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Network { addr, prefix })
    }

    /// Whether `addr` is in this network.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.addr, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => prefix_eq(&net.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(a)) => prefix_eq(&net.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let (whole, rest) = (usize::from(prefix / 8), prefix % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

/// Whether a delivery may connect to `addr` (each address a target's name resolves to,
/// checked when connecting).
pub fn check_address(addr: IpAddr, by: Registrant, allowed: &[Network]) -> Result<(), TargetRefusal> {
    if by == Registrant::Operator || allowed.iter().any(|net| net.contains(addr)) {
        return Ok(());
    }
    match kind_of(addr) {
        None => Ok(()),
        Some(kind) => Err(TargetRefusal::Forbidden { addr, kind }),
    }
}

/// What kind of non-public address `addr` is (`None`: a public one).
fn kind_of(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(v4) => kind_of_v4(v4),
        IpAddr::V6(v6) => {
            // An IPv4 address in IPv6 clothes is judged as the IPv4 address.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return kind_of_v4(v4);
            }
            let s = v6.segments();
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return kind_of_v4(Ipv4Addr::new(a, b, c, d));
            }
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if s[0] & 0xff00 == 0xff00 {
                Some("multicast")
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                Some("documentation")
            } else if s[..6] == [0, 0, 0, 0, 0, 0] {
                Some("IPv4-compatible (deprecated)")
            } else {
                None
            }
        }
    }
}

fn kind_of_v4(v4: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = v4.octets();
    if v4.is_loopback() {
        Some("loopback")
    } else if v4.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if v4.is_private() {
        Some("private")
    } else if v4.is_link_local() {
        // 169.254.169.254 is where clouds serve instance metadata and credentials.
        Some("link-local (cloud metadata)")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if a == 198 && (18..20).contains(&b) {
        Some("benchmarking")
    } else if a == 192 && b == 0 && c == 0 {
        Some("protocol assignment")
    } else if v4.is_documentation() {
        Some("documentation")
    } else if v4.is_multicast() || a >= 240 {
        Some("multicast or reserved")
    } else {
        None
    }
}

/// When to try a failed delivery again, after `failed` failed attempts (1 after the
/// first): the Standard Webhooks schedule — 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h —
/// stretched by `jitter_permille` (0–1000: up to a tenth longer, so that many endpoints
/// failing together do not retry together). `None`: give up.
pub fn retry_after_ms(failed: u32, jitter_permille: u32) -> Option<u64> {
    const SCHEDULE_SECS: [u64; 7] = [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000];
    let base = SCHEDULE_SECS.get(usize::try_from(failed).ok()?.checked_sub(1)?)? * 1_000;
    Some(base + base * u64::from(jitter_permille.min(1_000)) / 10_000)
}

/// Longest registration description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 200;
/// Most rooms an operator's registration may list.
pub const MAX_ROOMS: usize = 100;
/// Most webhooks a room's owner may register for the room.
pub const MAX_PER_ROOM: usize = 10;
/// How long a rotated-out secret keeps signing unless the rotation says otherwise.
pub const DEFAULT_ROTATION_GRACE_MS: u64 = 24 * 3_600 * 1_000;
/// The longest a rotated-out secret may keep signing.
pub const MAX_ROTATION_GRACE_MS: u64 = 7 * 24 * 3_600 * 1_000;
/// Hex digits of a registration's id (after `wh_`).
pub const ID_HEX_DIGITS: usize = 16;

/// What a webhook can be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// A message was posted (not a system notice).
    #[serde(rename = "message.created")]
    MessageCreated,
    /// A message's text was edited.
    #[serde(rename = "message.edited")]
    MessageEdited,
    /// A message was deleted (its tombstone is the payload).
    #[serde(rename = "message.deleted")]
    MessageDeleted,
    /// A user became a member of a room (joined, was added, or created it).
    #[serde(rename = "member.joined")]
    MemberJoined,
    /// A member left a room (or was removed from it).
    #[serde(rename = "member.left")]
    MemberLeft,
    /// A moderator kicked, banned, unbanned, muted or unmuted someone.
    #[serde(rename = "moderation.action")]
    ModerationAction,
    /// A member reported a message.
    #[serde(rename = "report.created")]
    ReportCreated,
    /// A message notifies a member with no live socket (the selection Web Push makes):
    /// for a product's own push gateway (APNs, FCM). Operators' webhooks only.
    #[serde(rename = "notification")]
    Notification,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 8] = [
        EventKind::MessageCreated,
        EventKind::MessageEdited,
        EventKind::MessageDeleted,
        EventKind::MemberJoined,
        EventKind::MemberLeft,
        EventKind::ModerationAction,
        EventKind::ReportCreated,
        EventKind::Notification,
    ];

    /// The kind's name on the wire (`message.created`, …).
    pub fn name(self) -> &'static str {
        match self {
            EventKind::MessageCreated => "message.created",
            EventKind::MessageEdited => "message.edited",
            EventKind::MessageDeleted => "message.deleted",
            EventKind::MemberJoined => "member.joined",
            EventKind::MemberLeft => "member.left",
            EventKind::ModerationAction => "moderation.action",
            EventKind::ReportCreated => "report.created",
            EventKind::Notification => "notification",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// A secret deliveries are signed with; an old one keeps signing until `until_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningSecret {
    /// `whsec_<base64>`.
    pub secret: String,
    /// When a rotated-out secret stops signing, ms since the Unix epoch (`None`: current).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
}

/// A webhook registration as stored (replicated to every node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRecord {
    /// `wh_` and 16 hex digits.
    pub webhook_id: String,
    /// The target URL (checked by [`parse_target`] for its registrant).
    pub url: String,
    /// Who registered it: what it may reach.
    pub registrant: Registrant,
    /// The events it receives, sorted, each once.
    pub events: Vec<EventKind>,
    /// The rooms it hears from (`None`: every room; a room owner's: their room).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<RoomId>>,
    /// The secrets that sign deliveries: the current one last.
    pub secrets: Vec<SigningSecret>,
    /// Deliveries are queued only while it is enabled.
    pub enabled: bool,
    /// What its registrant called it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// When it was registered, ms since the Unix epoch.
    pub created_ms: u64,
    /// Who registered it (`None`: an operator's API key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<UserId>,
}

impl WebhookRecord {
    /// Whether `event` goes to this webhook.
    pub fn wants(&self, event: &Event<'_>) -> bool {
        self.enabled
            && self.events.contains(&event.kind)
            && self.rooms.as_ref().is_none_or(|rooms| rooms.contains(event.room))
    }

    /// The secrets that sign a delivery sent at `now_ms`: the current one, and rotated-out
    /// ones still in their grace period.
    pub fn signing_secrets(&self, now_ms: u64) -> impl Iterator<Item = &str> {
        self.secrets
            .iter()
            .filter(move |s| s.until_ms.is_none_or(|until| now_ms < until))
            .map(|s| s.secret.as_str())
    }

    /// Replaces the current secret with `new_secret`; the old one keeps signing for
    /// `grace_ms` (secrets whose grace is over are dropped).
    pub fn rotate(&mut self, new_secret: String, now_ms: u64, grace_ms: u64) {
        self.secrets.retain(|s| s.until_ms.is_none_or(|until| now_ms < until));
        for old in self.secrets.iter_mut().filter(|s| s.until_ms.is_none()) {
            old.until_ms = Some(now_ms.saturating_add(grace_ms));
        }
        self.secrets.push(SigningSecret { secret: new_secret, until_ms: None });
    }
}

/// Why a registration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationRefusal {
    /// The target is refused.
    #[error(transparent)]
    Target(#[from] TargetRefusal),
    /// An event name nobody knows.
    #[error(
        "unknown event {0:?} (known: message.created, message.edited, message.deleted, member.joined, member.left, moderation.action, report.created, notification)"
    )]
    UnknownEvent(String),
    /// An event only an operator's webhook may hear (`notification`: who is notified of
    /// what, across rooms).
    #[error("only an operator's webhook may hear {0:?} events")]
    OperatorOnly(&'static str),
    /// No events at all.
    #[error("a webhook needs at least one event")]
    NoEvents,
    /// Too many rooms, or an empty list.
    #[error("rooms lists 1 to {MAX_ROOMS} rooms (leave it out for every room)")]
    Rooms,
    /// Too long a description.
    #[error("the description is longer than {MAX_DESCRIPTION_CHARS} characters")]
    Description,
}

/// Checks the events a registration asks for: known names, sorted, each once.
pub fn parse_events(names: &[String]) -> Result<Vec<EventKind>, RegistrationRefusal> {
    let mut events = names
        .iter()
        .map(|name| EventKind::parse(name).ok_or_else(|| RegistrationRefusal::UnknownEvent(name.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    events.sort();
    events.dedup();
    if events.is_empty() {
        return Err(RegistrationRefusal::NoEvents);
    }
    Ok(events)
}

/// Checks that `registrant` may hear `events`: `notification` is an operator's.
pub fn check_events_for(registrant: Registrant, events: &[EventKind]) -> Result<(), RegistrationRefusal> {
    if registrant != Registrant::Operator && events.contains(&EventKind::Notification) {
        return Err(RegistrationRefusal::OperatorOnly(EventKind::Notification.name()));
    }
    Ok(())
}

/// Checks an operator's room list (`None`: every room).
pub fn check_rooms(rooms: Option<Vec<RoomId>>) -> Result<Option<Vec<RoomId>>, RegistrationRefusal> {
    match rooms {
        None => Ok(None),
        Some(mut rooms) => {
            rooms.sort();
            rooms.dedup();
            if rooms.is_empty() || rooms.len() > MAX_ROOMS {
                return Err(RegistrationRefusal::Rooms);
            }
            Ok(Some(rooms))
        }
    }
}

/// Checks a description.
pub fn check_description(text: &str) -> Result<(), RegistrationRefusal> {
    if text.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(RegistrationRefusal::Description);
    }
    Ok(())
}

/// Something that happened, read from the writes that made it happen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event<'a> {
    /// What kind of thing.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The room it happened in.
    pub room: &'a RoomId,
    /// When, ms since the Unix epoch.
    pub at: u64,
    /// The message (posted, edited, deleted, or the moderation notice).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'a Message>,
    /// The member who joined or left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a UserId>,
    /// The report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<&'a crate::reports::ReportRecord>,
    /// What makes this event itself and no other (for its delivery id).
    #[serde(skip)]
    pub identity: String,
}

/// The events in one decision's writes, at `now_ms`. A membership written with a notice
/// of a role change (or an ownership transfer) for the same user is not a join.
pub fn events_of(writes: &[Write], now_ms: u64) -> Vec<Event<'_>> {
    let role_change_of = |user: &UserId| {
        writes.iter().any(|w| match w {
            Write::AppendMessage(m) => m.system.as_ref().is_some_and(|n| {
                matches!(n.action, SystemAction::RoleChanged | SystemAction::OwnershipTransferred)
                    && (n.target.as_ref() == Some(user) || n.actor == *user)
            }),
            _ => false,
        })
    };
    let mut events = Vec::new();
    for write in writes {
        let event = |kind: EventKind, room, identity: String| Event {
            kind,
            room,
            at: now_ms,
            message: None,
            user: None,
            report: None,
            identity,
        };
        match write {
            // An announcement is posted like a member's message, and reported as one.
            Write::AppendMessage(m) if m.kind == MessageKind::System && !m.has_idempotent_cid() => {
                let moderation = m.system.as_ref().is_some_and(|n| {
                    matches!(
                        n.action,
                        SystemAction::Kicked
                            | SystemAction::Banned
                            | SystemAction::Unbanned
                            | SystemAction::Muted
                            | SystemAction::Unmuted
                    )
                });
                if moderation {
                    let identity = format!("moderation/{}/{}", m.room, m.seq);
                    events.push(Event {
                        message: Some(m),
                        at: m.ts,
                        ..event(EventKind::ModerationAction, &m.room, identity)
                    });
                }
            }
            Write::AppendMessage(m) => {
                let identity = format!("created/{}/{}", m.room, m.seq);
                events.push(Event {
                    message: Some(m),
                    at: m.ts,
                    ..event(EventKind::MessageCreated, &m.room, identity)
                });
            }
            Write::ReplaceMessage(m) if m.deleted => {
                let identity = format!("deleted/{}/{}", m.room, m.seq);
                events
                    .push(Event { message: Some(m), ..event(EventKind::MessageDeleted, &m.room, identity) });
            }
            Write::ReplaceMessage(m) if m.kind != MessageKind::System => {
                if let Some(edited) = m.edited_at {
                    let identity = format!("edited/{}/{}/{edited}", m.room, m.seq);
                    events.push(Event {
                        message: Some(m),
                        at: edited,
                        ..event(EventKind::MessageEdited, &m.room, identity)
                    });
                }
            }
            Write::PutMember { room, user, .. } if !role_change_of(user) => {
                let identity = format!("joined/{room}/{user}/{now_ms}");
                events.push(Event { user: Some(user), ..event(EventKind::MemberJoined, room, identity) });
            }
            Write::RemoveMember { room, user } => {
                let identity = format!("left/{room}/{user}/{now_ms}");
                events.push(Event { user: Some(user), ..event(EventKind::MemberLeft, room, identity) });
            }
            Write::PutReport(report) if report.resolved.is_none() => {
                let identity = format!("report/{}", report.report_id);
                events.push(Event {
                    report: Some(report),
                    at: report.at,
                    ..event(EventKind::ReportCreated, &report.room, identity)
                });
            }
            _ => {}
        }
    }
    events
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn restricted(url: &str) -> Result<Target, TargetRefusal> {
        parse_target(url, Registrant::Restricted, &[])
    }

    #[test]
    fn targets_parse_into_host_port_and_path() {
        let target = restricted("https://Hooks.Example.com/palaver?x=1").unwrap();
        assert_eq!(
            (target.host.as_str(), target.port, target.path.as_str()),
            ("hooks.example.com", 443, "/palaver?x=1")
        );
        assert_eq!(restricted("https://example.com").unwrap().path, "/");
        assert_eq!(restricted("https://example.com?q").unwrap().path, "/?q");
        assert_eq!(restricted("https://example.com:8443/h").unwrap().port, 8443);
        let v6 = parse_target("http://[2606:4700::1111]:8080/", Registrant::Operator, &[]).unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("2606:4700::1111", 8080));
        for bad in [
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "https://example.com/#frag",
            "https://exa mple.com/",
            "https://example.com:0/",
            "https://example.com:99999/",
            "https://[::1/",
            "https:///path",
            "https://-bad.example/",
            "https://ex\u{e4}mple.com/",
        ] {
            assert!(matches!(restricted(bad), Err(TargetRefusal::Malformed(_))), "{bad}");
        }
        assert_eq!(restricted("http://example.com/"), Err(TargetRefusal::NotHttps));
        assert!(parse_target("http://example.com/", Registrant::Operator, &[]).is_ok());
    }

    #[test]
    fn restricted_targets_reach_public_addresses_only() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
            "::127.0.0.1",
        ] {
            let addr: IpAddr = internal.parse().unwrap();
            assert!(check_address(addr, Registrant::Restricted, &[]).is_err(), "{internal}");
            assert!(check_address(addr, Registrant::Operator, &[]).is_ok(), "{internal}: operators may");
        }
        for public in ["93.184.215.14", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"] {
            assert!(check_address(public.parse().unwrap(), Registrant::Restricted, &[]).is_ok(), "{public}");
        }
        let literal = restricted("https://169.254.169.254/latest/meta-data/");
        assert!(matches!(literal, Err(TargetRefusal::Forbidden { .. })), "{literal:?}");
        assert!(matches!(restricted("https://[::ffff:10.0.0.1]/"), Err(TargetRefusal::Forbidden { .. })));
    }

    #[test]
    fn an_operators_allowlist_lets_chosen_networks_through() {
        let allowed = [Network::parse("10.20.0.0/16").unwrap(), Network::parse("fd12::7").unwrap()];
        let check = |addr: &str| check_address(addr.parse().unwrap(), Registrant::Restricted, &allowed);
        assert!(check("10.20.3.4").is_ok() && check("fd12::7").is_ok());
        assert!(check("10.21.0.1").is_err() && check("fd12::8").is_err() && check("127.0.0.1").is_err());
        assert_eq!(Network::parse("10.0.0.0/33"), None);
        assert_eq!(Network::parse("nope"), None);
        assert!(Network::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Network::parse("10.0.0.0/9").unwrap().contains("10.127.0.1".parse().unwrap()));
        assert!(!Network::parse("10.0.0.0/9").unwrap().contains("10.128.0.1".parse().unwrap()));
    }

    #[test]
    fn retries_follow_the_schedule_then_stop() {
        assert_eq!(retry_after_ms(0, 0), None);
        assert_eq!(retry_after_ms(1, 0), Some(5_000));
        assert_eq!(retry_after_ms(2, 0), Some(300_000));
        assert_eq!(retry_after_ms(7, 0), Some(36_000_000));
        assert_eq!(retry_after_ms(8, 0), None);
        assert_eq!(retry_after_ms(1, 1_000), Some(5_500), "at most a tenth longer");
        assert_eq!(retry_after_ms(1, 5_000), Some(5_500), "jitter is capped");
    }

    fn message(seq: u64) -> Message {
        Message {
            room: RoomId::parse("r_t").unwrap(),
            seq,
            ts: seq * 10,
            sender: UserId::parse("u_ann").unwrap(),
            cid: palaver_protocol::ClientMsgId::parse("c").unwrap(),
            kind: MessageKind::Text,
            text: "hello".into(),
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

    fn notice(action: SystemAction, target: &str) -> Message {
        let notice = palaver_protocol::SystemNotice {
            action,
            actor: UserId::parse("u_ann").unwrap(),
            target: Some(UserId::parse(target).unwrap()),
            role: None,
            until: None,
            reason: None,
            seq: None,
        };
        Message { kind: MessageKind::System, system: Some(Box::new(notice)), ..message(9) }
    }

    fn kinds(writes: &[Write]) -> Vec<EventKind> {
        events_of(writes, 1_000).iter().map(|e| e.kind).collect()
    }

    #[test]
    fn events_are_read_out_of_the_writes_that_make_them() {
        let room = RoomId::parse("r_t").unwrap();
        let bob = UserId::parse("u_bob").unwrap();
        assert_eq!(kinds(&[Write::AppendMessage(message(1))]), [EventKind::MessageCreated]);
        let edited = Message { edited_at: Some(50), ..message(1) };
        assert_eq!(kinds(&[Write::ReplaceMessage(edited)]), [EventKind::MessageEdited]);
        let deleted = Message { deleted: true, text: String::new(), ..message(1) };
        assert_eq!(kinds(&[Write::ReplaceMessage(deleted)]), [EventKind::MessageDeleted]);
        // A rewrite that is neither (a thread's summary, say) is no event.
        assert_eq!(kinds(&[Write::ReplaceMessage(message(1))]), []);
        let join = Write::PutMember {
            room: room.clone(),
            user: bob.clone(),
            role: palaver_protocol::RoomRole::Member,
        };
        assert_eq!(kinds(std::slice::from_ref(&join)), [EventKind::MemberJoined]);
        // A role change writes the membership again: not a join.
        let role_change = [Write::AppendMessage(notice(SystemAction::RoleChanged, "u_bob")), join];
        assert_eq!(kinds(&role_change), []);
        let ban = [
            Write::AppendMessage(notice(SystemAction::Banned, "u_bob")),
            Write::RemoveMember { room: room.clone(), user: bob.clone() },
        ];
        assert_eq!(kinds(&ban), [EventKind::ModerationAction, EventKind::MemberLeft]);
        assert_eq!(kinds(&[Write::AppendMessage(notice(SystemAction::Pinned, "u_bob"))]), []);
        // An announcement is posted like a member's message.
        let announcement = Write::AppendMessage(notice(SystemAction::Announcement, "u_bob"));
        assert_eq!(kinds(&[announcement]), [EventKind::MessageCreated]);
        assert_eq!(kinds(&[Write::PutReceipt { room, user: bob, delivered: 1, read: 1 }]), []);
        // Every event has an identity of its own; the same event, the same identity.
        let a = events_of(&[Write::AppendMessage(message(1))], 1)[0].identity.clone();
        let b = events_of(&[Write::AppendMessage(message(2))], 1)[0].identity.clone();
        assert_ne!(a, b);
        assert_eq!(a, events_of(&[Write::AppendMessage(message(1))], 99)[0].identity);
    }

    fn record() -> WebhookRecord {
        WebhookRecord {
            webhook_id: "wh_1".into(),
            url: "https://hooks.example.com/".into(),
            registrant: Registrant::Restricted,
            events: vec![EventKind::MessageCreated],
            rooms: Some(vec![RoomId::parse("r_t").unwrap()]),
            secrets: vec![SigningSecret { secret: "whsec_a".into(), until_ms: None }],
            enabled: true,
            description: String::new(),
            created_ms: 0,
            created_by: None,
        }
    }

    #[test]
    fn a_registration_hears_its_events_in_its_rooms_while_enabled() {
        let writes = [Write::AppendMessage(message(1))];
        let event = &events_of(&writes, 0)[0];
        assert!(record().wants(event));
        assert!(!WebhookRecord { enabled: false, ..record() }.wants(event));
        assert!(!WebhookRecord { events: vec![EventKind::MemberJoined], ..record() }.wants(event));
        assert!(
            !WebhookRecord { rooms: Some(vec![RoomId::parse("r_other").unwrap()]), ..record() }.wants(event)
        );
        assert!(WebhookRecord { rooms: None, ..record() }.wants(event));
    }

    #[test]
    fn a_rotated_out_secret_signs_until_its_grace_ends() {
        let mut hook = record();
        hook.rotate("whsec_b".into(), 1_000, 500);
        assert_eq!(hook.signing_secrets(1_000).collect::<Vec<_>>(), ["whsec_a", "whsec_b"]);
        assert_eq!(hook.signing_secrets(1_500).collect::<Vec<_>>(), ["whsec_b"]);
        // Rotating again drops what has expired and starts the grace of the current one.
        hook.rotate("whsec_c".into(), 2_000, 500);
        assert_eq!(hook.signing_secrets(2_000).collect::<Vec<_>>(), ["whsec_b", "whsec_c"]);
        assert_eq!(hook.secrets.len(), 2);
    }

    #[test]
    fn registrations_name_known_events_and_bounded_rooms() {
        let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            parse_events(&names(&["member.left", "message.created", "member.left"])),
            Ok(vec![EventKind::MessageCreated, EventKind::MemberLeft])
        );
        assert_eq!(parse_events(&[]), Err(RegistrationRefusal::NoEvents));
        assert!(matches!(
            parse_events(&names(&["message.exploded"])),
            Err(RegistrationRefusal::UnknownEvent(_))
        ));
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.name()), Some(kind));
        }
        let notification = parse_events(&names(&["notification"])).unwrap();
        assert!(check_events_for(Registrant::Operator, &notification).is_ok());
        assert_eq!(
            check_events_for(Registrant::Restricted, &notification),
            Err(RegistrationRefusal::OperatorOnly("notification"))
        );
        assert_eq!(check_rooms(None), Ok(None));
        assert_eq!(check_rooms(Some(Vec::new())), Err(RegistrationRefusal::Rooms));
        let many = (0..=MAX_ROOMS).map(|i| RoomId::parse(&format!("r_{i}")).unwrap()).collect();
        assert_eq!(check_rooms(Some(many)), Err(RegistrationRefusal::Rooms));
        assert!(check_description(&"x".repeat(MAX_DESCRIPTION_CHARS)).is_ok());
        assert!(check_description(&"x".repeat(MAX_DESCRIPTION_CHARS + 1)).is_err());
    }
}

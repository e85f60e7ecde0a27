//! Reports: a member tells a room's moderators (and the server's admins) about a
//! message. Who may report what, who may read and resolve a room's reports, and the
//! record that keeps one.

use palaver_protocol::limits::MAX_REASON_CHARS;
use palaver_protocol::{Message, RoomId, RoomRole, UserId};
use serde::{Deserialize, Serialize};

/// Longest text of the reported message a report keeps, in characters.
pub const MAX_REPORTED_TEXT_CHARS: usize = 2_000;

/// One report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRecord {
    /// The report's id (`r_…`, time-ordered).
    pub report_id: String,
    /// The room of the message.
    pub room: RoomId,
    /// The message's seq.
    pub seq: u64,
    /// Who sent the message.
    pub sender: UserId,
    /// The message's text when it was reported (its first characters), so that the
    /// report keeps its evidence after an edit.
    pub text: String,
    /// Who reported it.
    pub reporter: UserId,
    /// Why, if said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When, ms since the Unix epoch.
    pub at: u64,
    /// Set once a moderator or an admin resolved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<Resolution>,
}

/// How a report was closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// Who resolved it.
    pub by: UserId,
    /// When, ms since the Unix epoch.
    pub at: u64,
    /// What was done, if said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Why a report, or a look at reports, is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportRefusal {
    /// Only the room's members report its messages.
    #[error("only members of the room can report its messages")]
    NotMember,
    /// No such message (or it was deleted).
    #[error("no such message")]
    NoMessage,
    /// One's own message.
    #[error("you cannot report your own message")]
    OwnMessage,
    /// A reason or note too long, or with control characters.
    #[error("a reason or note must be at most {MAX_REASON_CHARS} characters, without control characters")]
    BadText,
    /// Reading or resolving a room's reports needs a moderator of the room, or an admin.
    #[error("only the room's moderators and the server's admins see its reports")]
    NotModerator,
    /// Resolved already.
    #[error("the report is resolved already")]
    Resolved,
}

/// Trims an optional reason or note and checks it (an empty one is none).
pub fn free_text(text: Option<&str>) -> Result<Option<String>, ReportRefusal> {
    let text = text.map(str::trim).filter(|t| !t.is_empty());
    if text.is_some_and(|t| t.chars().count() > MAX_REASON_CHARS || t.chars().any(char::is_control)) {
        return Err(ReportRefusal::BadText);
    }
    Ok(text.map(str::to_owned))
}

/// Decides a report of `message` by `reporter`, a member (`role`) of its room or not.
pub fn report(
    report_id: String,
    reporter: &UserId,
    role: Option<RoomRole>,
    message: Option<&Message>,
    reason: Option<&str>,
    now_ms: u64,
) -> Result<ReportRecord, ReportRefusal> {
    if role.is_none() {
        return Err(ReportRefusal::NotMember);
    }
    let message = message.filter(|m| !m.deleted).ok_or(ReportRefusal::NoMessage)?;
    if message.sender == *reporter {
        return Err(ReportRefusal::OwnMessage);
    }
    Ok(ReportRecord {
        report_id,
        room: message.room.clone(),
        seq: message.seq,
        sender: message.sender.clone(),
        text: message.text.chars().take(MAX_REPORTED_TEXT_CHARS).collect(),
        reporter: reporter.clone(),
        reason: free_text(reason)?,
        at: now_ms,
        resolved: None,
    })
}

/// Whether someone with `role` in a room (and admin or not) sees and resolves its
/// reports.
pub fn may_moderate(role: Option<RoomRole>, is_admin: bool) -> Result<(), ReportRefusal> {
    if is_admin || role.is_some_and(|r| r >= RoomRole::Moderator) {
        Ok(())
    } else {
        Err(ReportRefusal::NotModerator)
    }
}

/// Resolves `report` (checked with [`may_moderate`] first).
pub fn resolve(
    mut report: ReportRecord,
    by: &UserId,
    note: Option<&str>,
    now_ms: u64,
) -> Result<ReportRecord, ReportRefusal> {
    if report.resolved.is_some() {
        return Err(ReportRefusal::Resolved);
    }
    report.resolved = Some(Resolution { by: by.clone(), at: now_ms, note: free_text(note)? });
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use palaver_protocol::{ClientMsgId, MessageKind};

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    fn message(sender: &str, text: &str) -> Message {
        Message {
            room: RoomId::parse("r_room").unwrap(),
            seq: 4,
            ts: 1,
            sender: user(sender),
            cid: ClientMsgId::parse("c1").unwrap(),
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
            also_to_room: false,
            thread: None,
            thread_summary: None,
        }
    }

    #[test]
    fn members_report_others_messages() {
        let (bob, carol) = (user("u_bob"), user("u_carol"));
        let spam = message("u_carol", "buy now");
        let member = Some(RoomRole::Member);
        let done = report("r1".into(), &bob, member, Some(&spam), Some(" spam "), 9).unwrap();
        assert_eq!(
            (done.sender, done.seq, done.reason.as_deref(), done.text.as_str()),
            (carol, 4, Some("spam"), "buy now")
        );
        assert_eq!(report("r1".into(), &bob, None, Some(&spam), None, 9), Err(ReportRefusal::NotMember));
        assert_eq!(report("r1".into(), &bob, member, None, None, 9), Err(ReportRefusal::NoMessage));
        let gone = Message { deleted: true, ..spam.clone() };
        assert_eq!(report("r1".into(), &bob, member, Some(&gone), None, 9), Err(ReportRefusal::NoMessage));
        let own = message("u_bob", "mine");
        assert_eq!(report("r1".into(), &bob, member, Some(&own), None, 9), Err(ReportRefusal::OwnMessage));
        let long = "x".repeat(MAX_REASON_CHARS + 1);
        assert_eq!(
            report("r1".into(), &bob, member, Some(&spam), Some(&long), 9),
            Err(ReportRefusal::BadText)
        );
        let huge = message("u_carol", &"y".repeat(MAX_REPORTED_TEXT_CHARS + 5));
        let kept = report("r1".into(), &bob, member, Some(&huge), None, 9).unwrap();
        assert_eq!(kept.text.chars().count(), MAX_REPORTED_TEXT_CHARS);
    }

    #[test]
    fn moderators_and_admins_resolve_once() {
        assert_eq!(may_moderate(Some(RoomRole::Member), false), Err(ReportRefusal::NotModerator));
        assert_eq!(may_moderate(None, false), Err(ReportRefusal::NotModerator));
        assert!(may_moderate(Some(RoomRole::Moderator), false).is_ok());
        assert!(may_moderate(Some(RoomRole::Owner), false).is_ok());
        assert!(may_moderate(None, true).is_ok());
        let open = report(
            "r1".into(),
            &user("u_bob"),
            Some(RoomRole::Member),
            Some(&message("u_carol", "x")),
            None,
            1,
        )
        .unwrap();
        let done = resolve(open, &user("u_mod"), Some("warned"), 5).unwrap();
        assert_eq!(done.resolved, Some(Resolution { by: user("u_mod"), at: 5, note: Some("warned".into()) }));
        assert_eq!(resolve(done, &user("u_mod"), None, 6), Err(ReportRefusal::Resolved));
    }
}

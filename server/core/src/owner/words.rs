//! The words of `system` messages: what a moderation action looks like in the room's log.

use palaver_protocol::{SystemAction, SystemNotice};

use crate::role::Role;

/// A human-readable duration, rounded down to its largest unit (`90 seconds`, `3 hours`).
pub fn duration_words(ms: u64) -> String {
    let secs = ms.div_ceil(1000);
    let (n, unit) = match secs {
        s if s < 120 => (s, "second"),
        s if s < 2 * 3600 => (s / 60, "minute"),
        s if s < 2 * 86_400 => (s / 3600, "hour"),
        s => (s / 86_400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// The text of the `system` message recording `notice`, with the actor's and target's
/// usernames as `name` gives them, at `now_ms`.
pub fn notice_text(
    notice: &SystemNotice,
    name: impl Fn(&palaver_protocol::UserId) -> String,
    now_ms: u64,
) -> String {
    let actor = name(&notice.actor);
    let target = notice.target.as_ref().map(&name).unwrap_or_default();
    let mut text = match notice.action {
        SystemAction::Kicked => format!("{actor} removed {target}"),
        SystemAction::Banned => format!("{actor} banned {target}"),
        SystemAction::Unbanned => format!("{actor} lifted the ban on {target}"),
        SystemAction::Muted => {
            let left = notice.until.unwrap_or(now_ms).saturating_sub(now_ms);
            format!("{actor} muted {target} for {}", duration_words(left))
        }
        SystemAction::Unmuted => format!("{actor} unmuted {target}"),
        SystemAction::RoleChanged => {
            let role = notice.role.unwrap_or(Role::Member);
            let article = if role == Role::Admin { "an" } else { "a" };
            format!("{actor} made {target} {article} {}", role.name())
        }
        SystemAction::OwnershipTransferred => format!("{actor} made {target} the owner"),
        SystemAction::SettingsChanged => format!("{actor} changed the room's name, topic or settings"),
        SystemAction::RoomDeleted => format!("{actor} deleted the room"),
        // The message's content is not repeated: the notice stays when it is deleted.
        SystemAction::Pinned => format!("{actor} pinned a message"),
        SystemAction::Unpinned => format!("{actor} unpinned a message"),
        // Never stored with these words: an announcement's text is its poster's.
        SystemAction::Announcement => format!("{actor} made an announcement"),
    };
    if let Some(reason) = &notice.reason {
        text.push_str(": ");
        text.push_str(reason);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_words(1_000), "1 second");
        assert_eq!(duration_words(90_000), "90 seconds");
        assert_eq!(duration_words(10 * 60_000), "10 minutes");
        assert_eq!(duration_words(3 * 3_600_000), "3 hours");
        assert_eq!(duration_words(3 * 86_400_000), "3 days");
    }
}

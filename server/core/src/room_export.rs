//! Who may export a room's history (`GET /v1/rooms/{id}/export`): the room's owner, and
//! the server's admins. A pure rule over the caller's role and admin flag.

use palaver_protocol::RoomRole;

/// Most messages one page of a room export holds (and the default).
pub const MAX_EXPORT_PAGE: usize = 1_000;

/// Why an export was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExportRefusal {
    /// The caller neither owns the room nor is an admin.
    #[error("only the room's owner or an admin may export its history")]
    NotOwner,
}

/// Whether a caller with `role` in the room (`None`: not a member), and `admin` or not,
/// may export the room's history.
pub fn may_export(role: Option<RoomRole>, admin: bool) -> Result<(), ExportRefusal> {
    if admin || role == Some(RoomRole::Owner) { Ok(()) } else { Err(ExportRefusal::NotOwner) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_and_admins_export_and_nobody_else() {
        assert_eq!(may_export(Some(RoomRole::Owner), false), Ok(()));
        assert_eq!(may_export(None, true), Ok(()));
        assert_eq!(may_export(Some(RoomRole::Member), true), Ok(()));
        for role in [None, Some(RoomRole::Member), Some(RoomRole::Moderator), Some(RoomRole::Admin)] {
            assert_eq!(may_export(role, false), Err(ExportRefusal::NotOwner));
        }
    }
}

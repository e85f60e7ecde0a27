//! Roles in a room.

/// A member's role. Ordered by power: `Owner > Admin > Moderator > Member`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A plain member.
    Member,
    /// May moderate members.
    Moderator,
    /// May manage the room and moderators.
    Admin,
    /// Created the room (or had it transferred).
    Owner,
}

impl Role {
    /// The byte stored for this role.
    pub fn to_byte(self) -> u8 {
        match self {
            Role::Member => 0,
            Role::Moderator => 1,
            Role::Admin => 2,
            Role::Owner => 3,
        }
    }

    /// The role for a stored byte (unknown bytes read as `Member`, the least power).
    pub fn from_byte(byte: u8) -> Role {
        match byte {
            3 => Role::Owner,
            2 => Role::Admin,
            1 => Role::Moderator,
            _ => Role::Member,
        }
    }
}

//! Administration: who may do what to an account, and the audit log's entries.
//!
//! An admin is a user an operator granted the role to (offline, with the `palaver admin`
//! command). Admins suspend and unsuspend accounts; every admin action (and every grant
//! or revocation by an operator) becomes an [`AuditEntry`], which nothing edits or removes.

use palaver_protocol::UserId;
use palaver_protocol::limits::MAX_REASON_CHARS;
use serde::{Deserialize, Serialize};

/// Why an account cannot log in or authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    /// The admin who suspended it.
    pub by: UserId,
    /// When, ms since the Unix epoch.
    pub at: u64,
    /// The reason given, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One administrative act, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AdminAction {
    /// An operator granted the admin role (`palaver admin grant`).
    GrantAdmin {
        /// To whom.
        user: UserId,
    },
    /// An operator revoked the admin role (`palaver admin revoke`).
    RevokeAdmin {
        /// From whom.
        user: UserId,
    },
    /// An admin suspended an account.
    Suspend {
        /// Whose.
        user: UserId,
        /// The reason given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// An admin lifted a suspension.
    Unsuspend {
        /// Whose.
        user: UserId,
    },
    /// An admin deleted a room (recorded when asked, before the room's owner carries it
    /// out).
    DeleteRoom {
        /// The room.
        room: palaver_protocol::RoomId,
    },
    /// An API key was made (by an admin, or by an operator with the CLI).
    CreateApiKey {
        /// The key's id.
        key_id: String,
        /// Its name.
        name: String,
        /// What it may do.
        scopes: Vec<crate::api_keys::Scope>,
    },
    /// An API key was revoked.
    RevokeApiKey {
        /// The key's id.
        key_id: String,
    },
    /// A webhook was registered, changed or removed by an operator or an admin.
    Webhook {
        /// The registration's id.
        webhook_id: String,
        /// What was done: `registered`, `rotated`, `enabled`, `disabled` or `deleted`.
        change: String,
    },
    /// An admin resolved a report.
    ResolveReport {
        /// The report.
        report_id: String,
        /// The note given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When, ms since the Unix epoch.
    pub at: u64,
    /// The admin who acted (`None`: an operator on the server's machine, or an API key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<UserId>,
    /// The API key that acted, by id (`None`: an admin or an operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// What was done.
    #[serde(flatten)]
    pub action: AdminAction,
}

/// Why an admin request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminRefusal {
    /// The caller is not an admin.
    #[error("this needs the admin role")]
    NotAdmin,
    /// An admin cannot suspend an admin (the operator revokes the role first).
    #[error("an admin cannot be suspended; revoke the admin role first (palaver admin revoke)")]
    TargetIsAdmin,
    /// The account is suspended already (or not suspended, to unsuspend).
    #[error("the account is {0} already")]
    Unchanged(&'static str),
    /// A reason longer than the limit, or with control characters.
    #[error("the reason must be at most {MAX_REASON_CHARS} characters, without control characters")]
    BadReason,
}

/// Checks a suspension: by an admin, of a non-admin not suspended yet, with a valid
/// reason (trimmed; an empty one is none). Returns the suspension to store.
pub fn suspend(
    actor: &UserId,
    actor_is_admin: bool,
    target_is_admin: bool,
    current: Option<&Suspension>,
    reason: Option<&str>,
    now_ms: u64,
) -> Result<Suspension, AdminRefusal> {
    if !actor_is_admin {
        return Err(AdminRefusal::NotAdmin);
    }
    if target_is_admin {
        return Err(AdminRefusal::TargetIsAdmin);
    }
    if current.is_some() {
        return Err(AdminRefusal::Unchanged("suspended"));
    }
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    if reason.is_some_and(|r| r.chars().count() > MAX_REASON_CHARS || r.chars().any(char::is_control)) {
        return Err(AdminRefusal::BadReason);
    }
    Ok(Suspension { by: actor.clone(), at: now_ms, reason: reason.map(str::to_owned) })
}

/// Checks an unsuspension: by an admin, of a suspended account.
pub fn unsuspend(actor_is_admin: bool, current: Option<&Suspension>) -> Result<(), AdminRefusal> {
    if !actor_is_admin {
        return Err(AdminRefusal::NotAdmin);
    }
    if current.is_none() {
        return Err(AdminRefusal::Unchanged("not suspended"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    #[test]
    fn only_admins_suspend_and_never_an_admin() {
        let (admin, target) = (user("u_admin"), user("u_target"));
        assert_eq!(suspend(&target, false, false, None, None, 1), Err(AdminRefusal::NotAdmin));
        assert_eq!(suspend(&admin, true, true, None, None, 1), Err(AdminRefusal::TargetIsAdmin));
        let done = suspend(&admin, true, false, None, Some("  spam  "), 7).unwrap();
        assert_eq!(done, Suspension { by: admin.clone(), at: 7, reason: Some("spam".into()) });
        assert_eq!(
            suspend(&admin, true, false, Some(&done), None, 8),
            Err(AdminRefusal::Unchanged("suspended"))
        );
        assert_eq!(suspend(&admin, true, false, None, Some(" "), 9).unwrap().reason, None);
    }

    #[test]
    fn reasons_are_bounded_and_printable() {
        let admin = user("u_admin");
        let long = "x".repeat(MAX_REASON_CHARS + 1);
        assert_eq!(suspend(&admin, true, false, None, Some(&long), 1), Err(AdminRefusal::BadReason));
        assert_eq!(suspend(&admin, true, false, None, Some("a\u{0}b"), 1), Err(AdminRefusal::BadReason));
        let exact = "é".repeat(MAX_REASON_CHARS);
        assert!(suspend(&admin, true, false, None, Some(&exact), 1).is_ok());
    }

    #[test]
    fn unsuspending_needs_a_suspension_and_an_admin() {
        let suspension = Suspension { by: user("u_admin"), at: 1, reason: None };
        assert_eq!(unsuspend(false, Some(&suspension)), Err(AdminRefusal::NotAdmin));
        assert_eq!(unsuspend(true, None), Err(AdminRefusal::Unchanged("not suspended")));
        assert_eq!(unsuspend(true, Some(&suspension)), Ok(()));
    }

    #[test]
    fn audit_entries_read_as_flat_json() {
        let entry = AuditEntry {
            at: 5,
            admin: Some(user("u_admin")),
            api_key: None,
            action: AdminAction::Suspend { user: user("u_target"), reason: Some("spam".into()) },
        };
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"at": 5, "admin": "u_admin", "action": "suspend", "user": "u_target", "reason": "spam"})
        );
        assert_eq!(serde_json::from_value::<AuditEntry>(json).unwrap(), entry);
    }
}

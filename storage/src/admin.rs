//! Administration's records: admins (`user_admin`), suspended accounts
//! (`user_suspension`) and the append-only audit log (`audit_log`, keyed by time-ordered
//! entry ids). The rules are `palaver_core::admin`.

use std::collections::HashMap;

use fjall::OwnedWriteBatch;
use palaver_core::admin::{AuditEntry, Suspension};
use palaver_core::logins::EndReason;
use palaver_core::records::Write;
use palaver_protocol::UserId;

use crate::error::StorageError;
use crate::store::{Engine, Store, decode_json, encode_json};

impl Engine {
    /// Carries out an administrative write; false for any other write.
    pub(crate) fn apply_admin_write(
        &self,
        batch: &mut OwnedWriteBatch,
        write: &Write,
    ) -> Result<bool, StorageError> {
        match write {
            Write::SetAdmin { user, admin: true } => batch.insert(&self.user_admin, user.as_str(), []),
            Write::SetAdmin { user, admin: false } => batch.remove(&self.user_admin, user.as_str()),
            Write::SetSuspension { user, suspension: Some(suspension) } => {
                batch.insert(&self.user_suspension, user.as_str(), encode_json(suspension)?);
            }
            Write::SetSuspension { user, suspension: None } => {
                batch.remove(&self.user_suspension, user.as_str())
            }
            Write::AppendAudit { id, entry } => {
                batch.insert(&self.audit_log, id.as_str(), encode_json(entry)?)
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl Store {
    /// Whether `user` has the admin role.
    pub fn is_admin(&self, user: &UserId) -> Result<bool, StorageError> {
        Ok(self.engine()?.user_admin.get(user.as_str())?.is_some())
    }

    /// Every admin, by user id.
    pub fn admins(&self) -> Result<Vec<UserId>, StorageError> {
        let e = self.engine()?;
        e.user_admin
            .iter()
            .map(|guard| {
                let key = guard.key()?;
                std::str::from_utf8(&key).ok().and_then(|id| UserId::parse(id).ok()).ok_or_else(|| {
                    StorageError::Corrupt { partition: "user_admin", detail: "bad user id".into() }
                })
            })
            .collect()
    }

    /// The account's suspension, if it is suspended.
    pub fn suspension(&self, user: &UserId) -> Result<Option<Suspension>, StorageError> {
        let e = self.engine()?;
        e.user_suspension.get(user.as_str())?.map(|v| decode_json("user_suspension", &v)).transpose()
    }

    /// Grants or revokes the admin role, with its audit entry, in one write.
    pub fn set_admin(
        &self,
        user: &UserId,
        admin: bool,
        audit_id: String,
        entry: AuditEntry,
    ) -> Result<(), StorageError> {
        self.account_write(&[
            Write::SetAdmin { user: user.clone(), admin },
            Write::AppendAudit { id: audit_id, entry },
        ])
    }

    /// Suspends an account: the suspension, the end of every session of the user and
    /// the audit entry, in one write. Returns the end (for the caller to close the
    /// sessions' sockets).
    pub fn suspend(
        &self,
        user: &UserId,
        suspension: Suspension,
        audit_id: String,
        entry: AuditEntry,
    ) -> Result<Write, StorageError> {
        let now_ms = suspension.at;
        let writes = vec![
            Write::SetSuspension { user: user.clone(), suspension: Some(suspension) },
            Write::AppendAudit { id: audit_id, entry },
        ];
        self.raise_epoch_with(user, writes, EndReason::Suspended, now_ms)
    }

    /// Lifts a suspension, with its audit entry, in one write.
    pub fn unsuspend(&self, user: &UserId, audit_id: String, entry: AuditEntry) -> Result<(), StorageError> {
        self.account_write(&[
            Write::SetSuspension { user: user.clone(), suspension: None },
            Write::AppendAudit { id: audit_id, entry },
        ])
    }

    /// At most `limit` audit entries after the entry `after` (oldest first), with
    /// their ids.
    pub fn audit_log(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, AuditEntry)>, StorageError> {
        let e = self.engine()?;
        let iter = match after {
            Some(after) => {
                let mut start = after.as_bytes().to_vec();
                start.push(0);
                e.audit_log.range(start..)
            }
            None => e.audit_log.iter(),
        };
        let mut entries = Vec::new();
        for guard in iter.take(limit) {
            let (key, value) = guard.into_inner()?;
            let id = String::from_utf8(key.to_vec()).map_err(|_| StorageError::Corrupt {
                partition: "audit_log",
                detail: "bad entry id".into(),
            })?;
            entries.push((id, decode_json("audit_log", &value)?));
        }
        Ok(entries)
    }
}

/// Applies `writes` (already checked) as part of an account write.
pub(crate) fn apply_account_write(
    e: &Engine,
    batch: &mut OwnedWriteBatch,
    write: &Write,
    raised: &mut HashMap<UserId, palaver_core::logins::SessionEpoch>,
) -> Result<(), StorageError> {
    if !e.apply_login_write(batch, write, raised)? && !e.apply_admin_write(batch, write)? {
        return Err(StorageError::Corrupt { partition: "account", detail: "not an account write".into() });
    }
    Ok(())
}

//! Administration's records: admins (`user_admin`), suspended accounts
//! (`user_suspension`), API keys (`api_key`) and the append-only audit log (`audit_log`,
//! keyed by time-ordered entry ids). The rules are `palaver_core::admin` and
//! `palaver_core::api_keys`.

use std::collections::HashMap;

use fjall::OwnedWriteBatch;
use palaver_core::admin::{AuditEntry, Suspension};
use palaver_core::api_keys::ApiKeyRecord;
use palaver_core::logins::EndReason;
use palaver_core::records::Write;
use palaver_core::reports::ReportRecord;
use palaver_protocol::{RoomId, UserId};

use crate::error::StorageError;
use crate::keys;
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
            Write::PutApiKey(key) => batch.insert(&self.api_key, key.key_id.as_str(), encode_json(key)?),
            Write::PutWebhook(hook) => {
                batch.insert(&self.webhook, hook.webhook_id.as_str(), encode_json(hook)?)
            }
            Write::RemoveWebhook { webhook_id } => batch.remove(&self.webhook, webhook_id.as_str()),
            Write::PutReport(report) => {
                batch.insert(&self.report, report.report_id.as_str(), encode_json(report)?);
                batch.insert(&self.room_report, keys::pair(report.room.as_str(), &report.report_id), []);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl Store {
    /// An API key's record by its id.
    pub fn api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StorageError> {
        let e = self.engine()?;
        e.api_key.get(key_id)?.map(|v| decode_json("api_key", &v)).transpose()
    }

    /// Every API key (revoked ones too), by id.
    pub fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StorageError> {
        let e = self.engine()?;
        e.api_key.iter().map(|guard| decode_json("api_key", &guard.value()?)).collect()
    }

    /// Stores a key's record (new, or revoked) with its audit entry, in one write.
    pub fn put_api_key(
        &self,
        key: ApiKeyRecord,
        audit_id: String,
        entry: AuditEntry,
    ) -> Result<(), StorageError> {
        self.account_write(&[Write::PutApiKey(key), Write::AppendAudit { id: audit_id, entry }])
    }

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

    /// Adds an entry to the audit log (for an act carried out by another write).
    pub fn append_audit(&self, audit_id: String, entry: AuditEntry) -> Result<(), StorageError> {
        self.account_write(&[Write::AppendAudit { id: audit_id, entry }])
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

/// Most reports one page looks at when it skips resolved ones, so that a page stays cheap
/// however many are resolved: a page may then hold fewer, with a `next` to go on.
const MAX_REPORT_SCAN: usize = 10_000;

impl Store {
    /// Stores a report (new or resolved), with an audit entry if an admin acted and the
    /// outbound deliveries it causes ([`Write::PutOutbound`]), in one write.
    pub fn put_report(
        &self,
        report: ReportRecord,
        audit: Option<(String, AuditEntry)>,
        outbound: Vec<Write>,
    ) -> Result<(), StorageError> {
        let mut writes = vec![Write::PutReport(report)];
        if let Some((id, entry)) = audit {
            writes.push(Write::AppendAudit { id, entry });
        }
        writes.extend(outbound.into_iter().filter(Write::node_local));
        self.account_write(&writes)
    }

    /// A report by id.
    pub fn report(&self, report_id: &str) -> Result<Option<ReportRecord>, StorageError> {
        let e = self.engine()?;
        e.report.get(report_id)?.map(|v| decode_json("report", &v)).transpose()
    }

    /// A page of reports (oldest first) after `after`: of `room`, or of every room; open
    /// ones only if `open_only`. Returns them and the id to go on after, if there may be
    /// more.
    pub fn reports(
        &self,
        room: Option<&RoomId>,
        open_only: bool,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ReportRecord>, Option<String>), StorageError> {
        let e = self.engine()?;
        let ids: Box<dyn Iterator<Item = Result<String, StorageError>>> = match room {
            Some(room) => {
                let prefix = keys::pair_prefix(room.as_str());
                let start = after.map_or_else(
                    || prefix.clone(),
                    |a| {
                        let mut key = keys::pair(room.as_str(), a);
                        key.push(0);
                        key
                    },
                );
                let mut end = prefix.clone();
                end.push(0xff);
                Box::new(e.room_report.range(start..end).map(move |guard| {
                    let key = guard.key()?;
                    String::from_utf8(key[prefix.len()..].to_vec()).map_err(|_| StorageError::Corrupt {
                        partition: "room_report",
                        detail: "bad id".into(),
                    })
                }))
            }
            None => {
                let iter = match after {
                    Some(after) => {
                        let mut start = after.as_bytes().to_vec();
                        start.push(0);
                        e.report.range(start..)
                    }
                    None => e.report.iter(),
                };
                Box::new(iter.map(|guard| {
                    let key = guard.key()?;
                    String::from_utf8(key.to_vec())
                        .map_err(|_| StorageError::Corrupt { partition: "report", detail: "bad id".into() })
                }))
            }
        };
        let (mut found, mut scanned) = (Vec::new(), 0usize);
        for id in ids {
            let id = id?;
            scanned += 1;
            let report = self.report(&id)?.ok_or_else(|| StorageError::Corrupt {
                partition: "room_report",
                detail: format!("{id} has no report"),
            })?;
            if !(open_only && report.resolved.is_some()) {
                found.push(report);
                if found.len() == limit {
                    return Ok((found, Some(id)));
                }
            }
            if scanned >= MAX_REPORT_SCAN {
                return Ok((found, Some(id)));
            }
        }
        Ok((found, None))
    }
}

/// Applies `writes` (already checked) as part of an account write.
pub(crate) fn apply_account_write(
    e: &Engine,
    batch: &mut OwnedWriteBatch,
    write: &Write,
    raised: &mut HashMap<UserId, palaver_core::logins::SessionEpoch>,
) -> Result<(), StorageError> {
    match write {
        Write::DeleteAccount { user, at } => return e.apply_account_deletion(batch, user, *at),
        Write::AccountDeparted { user } => {
            batch.remove(&e.account_departure, user.as_str());
            return Ok(());
        }
        _ => {}
    }
    if !e.apply_login_write(batch, write, raised)? && !e.apply_admin_write(batch, write)? {
        return Err(StorageError::Corrupt { partition: "account", detail: "not an account write".into() });
    }
    Ok(())
}

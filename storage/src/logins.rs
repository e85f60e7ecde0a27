//! Ended logins: one login's end (`user_login_ended`), a user's session epoch
//! (`user_session_epoch`), and the password change that raises it. The rules that read
//! them are `palaver_core::logins`.

use std::collections::HashMap;

use fjall::OwnedWriteBatch;
use palaver_core::logins::{EndReason, SessionEpoch};
use palaver_core::records::{UserRecord, Write};
use palaver_protocol::UserId;

use crate::error::StorageError;
use crate::keys;
use crate::store::{Engine, Store, decode_json, encode_json};

impl Engine {
    /// Carries out a write that ends logins or sets a password; false for any other
    /// write. `raised` holds the standings this batch already wrote, so that two raises
    /// of one user in one batch keep the later.
    pub(crate) fn apply_login_write(
        &self,
        batch: &mut OwnedWriteBatch,
        write: &Write,
        raised: &mut HashMap<UserId, SessionEpoch>,
    ) -> Result<bool, StorageError> {
        match write {
            Write::EndLogin { user, login, at, .. } => {
                batch.insert(&self.user_login_ended, keys::pair(user.as_str(), login), at.to_be_bytes());
            }
            Write::EndAllLogins { user, standing, .. } => {
                let stored = match raised.get(user) {
                    Some(standing) => *standing,
                    None => self.session_epoch(user)?,
                };
                let latest = stored.max(*standing);
                raised.insert(user.clone(), latest);
                batch.insert(&self.user_session_epoch, user.as_str(), encode_json(&latest)?);
            }
            Write::SetPassword { user, password_hash } => {
                // A password for an account this replica does not have (deleted) is moot.
                if let Some(bytes) = self.users.get(user.as_str())? {
                    let mut record: UserRecord = decode_json("users", &bytes)?;
                    record.password_hash.clone_from(password_hash);
                    batch.insert(&self.users, user.as_str(), encode_json(&record)?);
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub(crate) fn login_ended(&self, user: &UserId, login: &str) -> Result<Option<u64>, StorageError> {
        self.user_login_ended
            .get(keys::pair(user.as_str(), login))?
            .map(|v| {
                <[u8; 8]>::try_from(&v[..]).map(u64::from_be_bytes).map_err(|_| StorageError::Corrupt {
                    partition: "user_login_ended",
                    detail: "not a time".into(),
                })
            })
            .transpose()
    }

    pub(crate) fn session_epoch(&self, user: &UserId) -> Result<SessionEpoch, StorageError> {
        Ok(self
            .user_session_epoch
            .get(user.as_str())?
            .map(|v| decode_json("user_session_epoch", &v))
            .transpose()?
            .unwrap_or_default())
    }
}

impl Store {
    /// A user's session epoch (the default for a user who never ended all logins).
    pub fn session_epoch(&self, user: &UserId) -> Result<SessionEpoch, StorageError> {
        self.engine()?.session_epoch(user)
    }

    /// When `login` of `user` was ended by itself (ms since the Unix epoch), if it was.
    pub fn login_ended(&self, user: &UserId, login: &str) -> Result<Option<u64>, StorageError> {
        self.engine()?.login_ended(user, login)
    }

    /// Ends one login of `user` (logout). Durable (and in a cluster, in the log) on return.
    pub fn end_login(
        &self,
        user: &UserId,
        login: &str,
        reason: EndReason,
        now_ms: u64,
    ) -> Result<Write, StorageError> {
        let write = Write::EndLogin { user: user.clone(), login: login.to_owned(), reason, at: now_ms };
        self.account_write(std::slice::from_ref(&write))?;
        Ok(write)
    }

    /// Ends every login of `user` (log out everywhere), returning the write (for the
    /// caller to close the live sockets it covers).
    pub fn end_all_logins(
        &self,
        user: &UserId,
        reason: EndReason,
        now_ms: u64,
    ) -> Result<Write, StorageError> {
        self.raise_epoch(user, None, reason, now_ms)
    }

    /// Sets `user`'s password and ends every login of theirs, in one write. Returns the
    /// end (whose standing new logins are stamped with).
    pub fn change_password(
        &self,
        user: &UserId,
        password_hash: String,
        now_ms: u64,
    ) -> Result<Write, StorageError> {
        self.raise_epoch(user, Some(password_hash), EndReason::PasswordChanged, now_ms)
    }

    fn raise_epoch(
        &self,
        user: &UserId,
        password_hash: Option<String>,
        reason: EndReason,
        now_ms: u64,
    ) -> Result<Write, StorageError> {
        let writes = password_hash
            .map(|password_hash| Write::SetPassword { user: user.clone(), password_hash })
            .into_iter()
            .collect();
        self.raise_epoch_with(user, writes, reason, now_ms)
    }

    /// Ends every login of `user` in one write with `writes`, returning the end.
    pub(crate) fn raise_epoch_with(
        &self,
        user: &UserId,
        mut writes: Vec<Write>,
        reason: EndReason,
        now_ms: u64,
    ) -> Result<Write, StorageError> {
        let e = self.engine()?;
        // Serialized with every other account write: two raises on this node take
        // successive epochs.
        let _guard = self.account_writes.lock().map_err(|_| StorageError::Poisoned)?;
        let standing = e.session_epoch(user)?.raised(now_ms);
        let end = Write::EndAllLogins { user: user.clone(), standing, reason };
        writes.push(end.clone());
        self.account_write_locked(&e, &writes)?;
        Ok(end)
    }

    /// Writes login, password and administrative changes synchronously (outside the
    /// group committer), through the shared log first in a cluster.
    pub(crate) fn account_write(&self, writes: &[Write]) -> Result<(), StorageError> {
        let e = self.engine()?;
        let _guard = self.account_writes.lock().map_err(|_| StorageError::Poisoned)?;
        self.account_write_locked(&e, writes)
    }

    pub(crate) fn account_write_locked(&self, e: &Engine, writes: &[Write]) -> Result<(), StorageError> {
        let mut batch = self.side_batch(e)?;
        let logged = self.replicate(writes)?;
        let mut raised = HashMap::new();
        for write in writes {
            match write {
                // Queued here only, with the write that caused it.
                Write::PutOutbound(delivery) => {
                    batch.insert(
                        &e.outbound,
                        crate::outbound::key(delivery),
                        crate::store::encode_json(delivery)?,
                    );
                }
                _ => crate::admin::apply_account_write(e, &mut batch, write, &mut raised)?,
            }
        }
        self.commit_logged(batch, logged)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::Durability;

    fn alice() -> UserId {
        UserId::parse("u_alice").unwrap()
    }

    fn raise(epoch: u64, raised_ms: u64) -> Write {
        Write::EndAllLogins {
            user: alice(),
            standing: SessionEpoch { epoch, raised_ms },
            reason: EndReason::LoggedOutEverywhere,
        }
    }

    #[test]
    fn a_replica_keeps_the_latest_standing_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Fsync).unwrap();
        assert_eq!(store.session_epoch(&alice()).unwrap(), SessionEpoch::default());
        // Two raises in one batch, the later one first; then an older one alone.
        store.apply(&[raise(3, 30), raise(2, 20)]).unwrap();
        assert_eq!(store.session_epoch(&alice()).unwrap(), SessionEpoch { epoch: 3, raised_ms: 30 });
        store.apply_replicated(&[raise(1, 10)], 7).unwrap();
        assert_eq!(store.session_epoch(&alice()).unwrap(), SessionEpoch { epoch: 3, raised_ms: 30 });
        // Raised here: the next epoch after the stored one.
        let Write::EndAllLogins { standing, .. } =
            store.end_all_logins(&alice(), EndReason::LoggedOutEverywhere, 40).unwrap()
        else {
            panic!("not an end of every login")
        };
        assert_eq!(standing, SessionEpoch { epoch: 4, raised_ms: 40 });
        assert_eq!(store.session_epoch(&alice()).unwrap(), standing);
    }

    #[test]
    fn a_logout_is_kept_with_its_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Fsync).unwrap();
        assert_eq!(store.login_ended(&alice(), "f1").unwrap(), None);
        store.end_login(&alice(), "f1", EndReason::LoggedOut, 1234).unwrap();
        assert_eq!(store.login_ended(&alice(), "f1").unwrap(), Some(1234));
        assert_eq!(store.login_ended(&alice(), "f2").unwrap(), None);
        let bob = UserId::parse("u_bob").unwrap();
        assert_eq!(store.login_ended(&bob, "f1").unwrap(), None, "a login is one user's");
    }
}

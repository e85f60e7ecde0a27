//! Operator commands that work on a data directory with no server running on it:
//! granting, revoking and listing the admin role (`palaver admin`).

use std::path::{Path, PathBuf};

use palaver_core::admin::{AdminAction, AuditEntry};
use palaver_protocol::Username;
use palaver_storage::{Durability, StorageError, Store};

use crate::config::AdminCommand;

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorError {
    /// The data directory does not hold a Palaver store.
    #[error("{0} is not a Palaver data directory (no db/ in it)")]
    NoStore(PathBuf),
    /// The store could not be opened: most often a server is running on it.
    #[error("cannot open the store in {dir} (is a server running on it? stop it first): {source}")]
    Open {
        /// The data directory.
        dir: PathBuf,
        /// The store's error.
        source: StorageError,
    },
    /// No account has that username.
    #[error("no user is named {0:?}")]
    UnknownUser(String),
    /// Reading or writing the store failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

/// Carries out `palaver admin …` on `data_dir`; returns what to print.
pub fn admin(data_dir: &Path, action: &AdminCommand) -> Result<String, OperatorError> {
    let db = data_dir.join("db");
    if !db.is_dir() {
        return Err(OperatorError::NoStore(data_dir.to_owned()));
    }
    let store = Store::open(&db, Durability::Fsync)
        .map_err(|source| OperatorError::Open { dir: data_dir.to_owned(), source })?;
    let (username, grant) = match action {
        AdminCommand::List => {
            let mut lines = Vec::new();
            for user in store.admins()? {
                let name = store.user(&user)?.map_or_else(|| "(deleted)".to_owned(), |u| u.username);
                lines.push(format!("{user} {name}"));
            }
            if lines.is_empty() {
                return Ok("no admins".into());
            }
            return Ok(lines.join("\n"));
        }
        AdminCommand::Grant { username } => (username, true),
        AdminCommand::Revoke { username } => (username, false),
    };
    let record = Username::parse(username)
        .ok()
        .map(|name| store.user_by_name(&name))
        .transpose()?
        .flatten()
        .ok_or_else(|| OperatorError::UnknownUser(username.clone()))?;
    let user = record.user_id;
    if store.is_admin(&user)? == grant {
        let state = if grant { "an admin already" } else { "not an admin" };
        return Ok(format!("{username} ({user}) is {state}; nothing changed"));
    }
    let action = if grant {
        AdminAction::GrantAdmin { user: user.clone() }
    } else {
        AdminAction::RevokeAdmin { user: user.clone() }
    };
    let entry = AuditEntry { at: crate::clock::now_ms(), admin: None, action };
    store.set_admin(&user, grant, crate::ids::audit_id(), entry)?;
    let done = if grant { "is now an admin" } else { "is no longer an admin" };
    Ok(format!("{username} ({user}) {done}"))
}

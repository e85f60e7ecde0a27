//! Operator commands that work on a data directory with no server running on it:
//! granting, revoking and listing the admin role (`palaver admin`), and compacting the
//! store (`palaver compact`).

use std::path::{Path, PathBuf};

use palaver_core::admin::{AdminAction, AuditEntry};
use palaver_protocol::Username;
use palaver_storage::{Durability, StorageError, Store};

use crate::config::{AdminCommand, ApiKeyCommand};
use palaver_core::api_keys::{self, ApiKeyRefusal, Scope};

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
    /// The request was refused (a bad name or scope, an unknown or revoked key).
    #[error("{0}")]
    Refused(String),
    /// Reading or writing the store failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// A file of the data directory could not be moved or removed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The compacted store did not take every record of the export: it was discarded.
    #[error("the compacted store took {found} records instead of {expected}; the store is unchanged")]
    Unverified {
        /// Records before.
        expected: u64,
        /// Records after.
        found: u64,
    },
}

/// Opens the store of a data directory no server is running on.
fn open(data_dir: &Path) -> Result<Store, OperatorError> {
    let db = data_dir.join("db");
    if !db.is_dir() {
        return Err(OperatorError::NoStore(data_dir.to_owned()));
    }
    Store::open(&db, Durability::Fsync)
        .map_err(|source| OperatorError::Open { dir: data_dir.to_owned(), source })
}

use crate::data_dir::{COMPACTED_STORE as COMPACTED, REPLACED_STORE as REPLACED};

/// The export the compacted store is built from.
const EXPORT: &str = "db.compact-export";
/// The search index's directory: derived from the store, so compaction deletes it (its
/// segments still hold what was removed until tantivy merges them) and the server
/// rebuilds it from the compacted store at its next start.
const SEARCH_INDEX: &str = "search";

/// Carries out `palaver compact` on `data_dir`; returns what to print.
///
/// The store is rewritten: exported from one snapshot (live records only), imported into
/// a new store beside it, checked, and swapped in; the old one, whose files and journal
/// still hold what was removed or overwritten, is then deleted. (Compacting in place
/// would not do: the engine's journal keeps every write until it passes 64 MiB.) The
/// search index goes too, to be rebuilt from the compacted store. A command cut short is
/// finished by the next one, and the server refuses to start meanwhile.
pub fn compact(data_dir: &Path) -> Result<String, OperatorError> {
    let started = std::time::Instant::now();
    finish_interrupted(data_dir)?;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| OperatorError::Io { path, source }
    };
    let (db, compacted, export) = (data_dir.join("db"), data_dir.join(COMPACTED), data_dir.join(EXPORT));
    let store = open(data_dir)?;
    let exported = {
        let file = std::fs::File::create(&export).map_err(io(&export))?;
        let mut out = std::io::BufWriter::new(file);
        let summary = store.export(&mut out)?;
        out.into_inner().map_err(|e| io(&export)(e.into_error()))?.sync_all().map_err(io(&export))?;
        summary
    };
    drop(store);
    let input = std::fs::File::open(&export).map_err(io(&export))?;
    let imported = Store::import(&compacted, std::io::BufReader::new(input))?;
    if imported.pairs != exported.pairs {
        std::fs::remove_dir_all(&compacted).map_err(io(&compacted))?;
        std::fs::remove_file(&export).map_err(io(&export))?;
        return Err(OperatorError::Unverified { expected: exported.pairs, found: imported.pairs });
    }
    let replaced = data_dir.join(REPLACED);
    std::fs::rename(&db, &replaced).map_err(io(&db))?;
    std::fs::rename(&compacted, &db).map_err(io(&compacted))?;
    sync_dir(data_dir)?;
    std::fs::remove_dir_all(&replaced).map_err(io(&replaced))?;
    std::fs::remove_file(&export).map_err(io(&export))?;
    let search = data_dir.join(SEARCH_INDEX);
    if search.exists() {
        std::fs::remove_dir_all(&search).map_err(io(&search))?;
    }
    Ok(format!(
        "compacted {}: {} records kept, in {} ms",
        data_dir.display(),
        exported.pairs,
        started.elapsed().as_millis()
    ))
}

/// Finishes or undoes what an interrupted `palaver compact` left.
fn finish_interrupted(data_dir: &Path) -> Result<(), OperatorError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| OperatorError::Io { path, source }
    };
    let (db, compacted, replaced, export) =
        (data_dir.join("db"), data_dir.join(COMPACTED), data_dir.join(REPLACED), data_dir.join(EXPORT));
    // Cut between the two renames: the compacted store was complete.
    if !db.exists() && replaced.exists() && compacted.exists() {
        std::fs::rename(&compacted, &db).map_err(io(&compacted))?;
        sync_dir(data_dir)?;
    }
    if db.exists() && replaced.exists() {
        std::fs::remove_dir_all(&replaced).map_err(io(&replaced))?;
    }
    if compacted.exists() {
        std::fs::remove_dir_all(&compacted).map_err(io(&compacted))?;
    }
    if export.exists() {
        std::fs::remove_file(&export).map_err(io(&export))?;
    }
    Ok(())
}

/// Makes the renames in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), OperatorError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| OperatorError::Io { path: dir.to_owned(), source })
}

/// Carries out `palaver admin …` on `data_dir`; returns what to print.
pub fn admin(data_dir: &Path, action: &AdminCommand) -> Result<String, OperatorError> {
    let store = open(data_dir)?;
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
    let entry = AuditEntry { at: crate::clock::now_ms(), api_key: None, admin: None, action };
    store.set_admin(&user, grant, crate::ids::audit_id(), entry)?;
    let done = if grant { "is now an admin" } else { "is no longer an admin" };
    Ok(format!("{username} ({user}) {done}"))
}

/// Carries out `palaver api-key …` on `data_dir`; returns what to print.
pub fn api_key(data_dir: &Path, action: &ApiKeyCommand) -> Result<String, OperatorError> {
    let store = open(data_dir)?;
    let now = crate::clock::now_ms();
    match action {
        ApiKeyCommand::List => {
            let keys = store.api_keys()?;
            if keys.is_empty() {
                return Ok("no API keys".into());
            }
            let lines = keys.iter().map(|key| {
                let scopes: Vec<&str> = key.scopes.iter().map(|s| s.name()).collect();
                let state = if key.revoked_ms.is_some() { " (revoked)" } else { "" };
                format!("{} {} [{}]{state}", key.key_id, key.name, scopes.join(","))
            });
            Ok(lines.collect::<Vec<_>>().join("\n"))
        }
        ApiKeyCommand::Create { name, scopes, bot } => {
            let scopes = scopes
                .iter()
                .map(|s| Scope::parse(s.trim()).ok_or(ApiKeyRefusal::BadScopes))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| OperatorError::Refused(e.to_string()))?;
            let bot = match bot {
                None => None,
                Some(username) => {
                    let account = Username::parse(username)
                        .ok()
                        .map(|name| store.user_by_name(&name))
                        .transpose()?
                        .flatten()
                        .ok_or_else(|| OperatorError::UnknownUser(username.clone()))?;
                    Some((account.user_id, account.bot))
                }
            };
            let spec = api_keys::KeySpec { name, scopes: &scopes, bot };
            let new = crate::conn::server_api::mint_key(spec, None)
                .map_err(|e| OperatorError::Refused(e.to_string()))?;
            let entry = AuditEntry {
                at: now,
                admin: None,
                api_key: None,
                action: AdminAction::CreateApiKey {
                    key_id: new.record.key_id.clone(),
                    name: new.record.name.clone(),
                    scopes: new.record.scopes.clone(),
                },
            };
            let key_id = new.record.key_id.clone();
            store.put_api_key(new.record, crate::ids::audit_id(), entry)?;
            Ok(format!("created API key {key_id}; it is shown this once:\n{}", new.key))
        }
        ApiKeyCommand::Revoke { key_id } => {
            let record = store
                .api_key(key_id)?
                .ok_or_else(|| OperatorError::Refused(format!("no API key {key_id}")))?;
            let revoked =
                api_keys::revoke(&record, now).map_err(|e| OperatorError::Refused(e.to_string()))?;
            let entry = AuditEntry {
                at: now,
                admin: None,
                api_key: None,
                action: AdminAction::RevokeApiKey { key_id: key_id.clone() },
            };
            store.put_api_key(revoked, crate::ids::audit_id(), entry)?;
            Ok(format!("API key {key_id} is revoked"))
        }
    }
}

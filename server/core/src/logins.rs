//! Which logins are still valid: the rules that end a login (one session, or all of a
//! user's at once) and that decide whether a token or a live socket belongs to an ended
//! one.
//!
//! A *login* is what one sign-in starts: a refresh-token family, the access tokens
//! issued from it, and the sockets they authenticated. It is named by the access token's
//! `sid` claim and stamped with the user's *session epoch* at the time of the sign-in
//! (the `sep` claim). Ending one login records `(user, sid)`; ending all of a user's
//! logins raises the epoch, so everything stamped with a lower one is over, whatever node
//! or shard holds it. A token minted by a backend carries no epoch: it is over when it
//! was issued before the end (its `iat`, to the second).

use palaver_protocol::UserId;
use serde::{Deserialize, Serialize};

use crate::records::Write;

/// One login, as a token (or the socket it authenticated) names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The login's id (the token's `sid`: a refresh-token family, or any string a
    /// backend chose).
    pub id: String,
    /// The session epoch the login was started in (`None`: a token minted by a backend).
    pub epoch: Option<u64>,
    /// When the token was issued, seconds since the Unix epoch.
    pub issued_secs: u64,
}

/// A user's standing for "log out everywhere": logins stamped before `epoch` are over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEpoch {
    /// The current epoch (0: never raised). New logins are stamped with it.
    pub epoch: u64,
    /// When it was last raised, ms since the Unix epoch: backend tokens issued before
    /// are over.
    pub raised_ms: u64,
}

impl SessionEpoch {
    /// The standing after ending every login of the user at `now_ms`.
    pub fn raised(self, now_ms: u64) -> SessionEpoch {
        SessionEpoch { epoch: self.epoch + 1, raised_ms: now_ms.max(self.raised_ms) }
    }

    /// The later of two standings (applying ends in any order gives the same result).
    pub fn max(self, other: SessionEpoch) -> SessionEpoch {
        if (other.epoch, other.raised_ms) > (self.epoch, self.raised_ms) { other } else { self }
    }
}

/// Why logins were ended; the close reason their live sockets get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EndReason {
    /// The user logged this session out.
    LoggedOut,
    /// The user logged out everywhere.
    LoggedOutEverywhere,
    /// The user changed their password.
    PasswordChanged,
    /// A refresh token of the login was presented twice (taken as theft).
    RefreshReplayed,
    /// An admin suspended the account.
    Suspended,
    /// The user deleted their account.
    AccountDeleted,
    /// The API key a bot signed in with was revoked.
    KeyRevoked,
}

impl EndReason {
    /// The close reason a live socket of an ended login is given.
    pub fn close_reason(self) -> &'static str {
        match self {
            EndReason::LoggedOut => "session ended: logged out",
            EndReason::LoggedOutEverywhere => "session ended: logged out everywhere",
            EndReason::PasswordChanged => "session ended: password changed",
            EndReason::RefreshReplayed => "session ended: refresh token reused",
            EndReason::Suspended => "session ended: account suspended",
            EndReason::AccountDeleted => "session ended: account deleted",
            EndReason::KeyRevoked => "session ended: API key revoked",
        }
    }
}

/// Which of a user's logins an end covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The one login `id`.
    One {
        /// The login's id.
        id: String,
    },
    /// Every login stamped before `standing.epoch` (and backend tokens issued before
    /// `standing.raised_ms`).
    AllBefore {
        /// The standing after the end.
        standing: SessionEpoch,
    },
}

/// The end of some of a user's logins, as every shard of every node hears it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnd {
    /// Whose logins.
    pub user: UserId,
    /// Which.
    pub ended: Ended,
    /// Why.
    pub reason: EndReason,
}

impl SessionEnd {
    /// Whether `login` (of this end's user) is one it ends.
    pub fn ends(&self, login: &Login) -> bool {
        match &self.ended {
            Ended::One { id } => login.id == *id,
            Ended::AllBefore { standing } => before(login, *standing),
        }
    }

    /// The end a stored write carries out, if it ends logins.
    pub fn of_write(write: &Write) -> Option<SessionEnd> {
        match write {
            Write::EndLogin { user, login, reason, .. } => Some(SessionEnd {
                user: user.clone(),
                ended: Ended::One { id: login.clone() },
                reason: *reason,
            }),
            Write::EndAllLogins { user, standing, reason } => Some(SessionEnd {
                user: user.clone(),
                ended: Ended::AllBefore { standing: *standing },
                reason: *reason,
            }),
            // No account, no session: every one of them is over.
            Write::DeleteAccount { user, .. } => Some(SessionEnd {
                user: user.clone(),
                ended: Ended::AllBefore { standing: SessionEpoch { epoch: u64::MAX, raised_ms: u64::MAX } },
                reason: EndReason::AccountDeleted,
            }),
            // A bot's sockets signed in with a key end with it.
            Write::PutApiKey(key) if key.revoked_ms.is_some() => key.bot.as_ref().map(|bot| SessionEnd {
                user: bot.clone(),
                ended: Ended::One { id: crate::api_keys::login_id(&key.key_id) },
                reason: EndReason::KeyRevoked,
            }),
            _ => None,
        }
    }
}

/// Whether `login` was started before `standing` was raised.
fn before(login: &Login, standing: SessionEpoch) -> bool {
    match login.epoch {
        Some(epoch) => epoch < standing.epoch,
        None => standing.epoch > 0 && login.issued_secs.saturating_mul(1000) < standing.raised_ms,
    }
}

/// Whether a token of `login` is refused: its login was ended by itself (at
/// `ended_at_ms`, if it was) or with all of the user's (`standing`).
pub fn is_over(login: &Login, standing: SessionEpoch, ended_at_ms: Option<u64>) -> bool {
    let ended_alone = match (ended_at_ms, login.epoch) {
        (None, _) => false,
        // A login the server started has an id of its own: its end is final.
        (Some(_), Some(_)) => true,
        // A backend may give its later tokens the same `sid`: the end covers those
        // issued before it.
        (Some(at), None) => login.issued_secs.saturating_mul(1000) < at,
    };
    ended_alone || before(login, standing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(id: &str, epoch: Option<u64>, issued_secs: u64) -> Login {
        Login { id: id.into(), epoch, issued_secs }
    }

    #[test]
    fn a_login_lives_until_it_or_its_epoch_ends() {
        let fresh = SessionEpoch::default();
        let a = login("a", Some(0), 100);
        assert!(!is_over(&a, fresh, None));
        assert!(is_over(&a, fresh, Some(1)), "a server login's end is final");
        let raised = fresh.raised(200_000);
        assert_eq!(raised, SessionEpoch { epoch: 1, raised_ms: 200_000 });
        assert!(is_over(&a, raised, None));
        assert!(!is_over(&login("b", Some(1), 150), raised, None), "a login of the new epoch lives");
    }

    #[test]
    fn a_backend_sid_ended_once_lives_on_in_later_tokens() {
        let fresh = SessionEpoch::default();
        assert!(is_over(&login("web", None, 99), fresh, Some(100_000)));
        assert!(!is_over(&login("web", None, 101), fresh, Some(100_000)), "minted after the logout");
    }

    #[test]
    fn backend_tokens_end_by_their_issue_time() {
        let raised = SessionEpoch::default().raised(200_500);
        assert!(!is_over(&login("web", None, 100), SessionEpoch::default(), None));
        assert!(is_over(&login("web", None, 199), raised, None));
        // Within the second of the end: refused (`iat` is whole seconds).
        assert!(is_over(&login("web", None, 200), raised, None));
        assert!(!is_over(&login("web", None, 201), raised, None));
    }

    #[test]
    fn standings_merge_to_the_latest_in_any_order() {
        let a = SessionEpoch { epoch: 2, raised_ms: 10 };
        let b = SessionEpoch { epoch: 3, raised_ms: 5 };
        assert_eq!(a.max(b), b);
        assert_eq!(b.max(a), b);
        assert_eq!(a.raised(1), SessionEpoch { epoch: 3, raised_ms: 10 }, "time never goes back");
    }

    #[test]
    fn an_end_covers_only_its_logins() {
        let user = UserId::parse("u_alice").unwrap();
        let one = SessionEnd {
            user: user.clone(),
            ended: Ended::One { id: "a".into() },
            reason: EndReason::LoggedOut,
        };
        assert!(one.ends(&login("a", Some(0), 1)));
        assert!(!one.ends(&login("b", Some(0), 1)));
        let all = SessionEnd {
            user,
            ended: Ended::AllBefore { standing: SessionEpoch { epoch: 1, raised_ms: 5_000 } },
            reason: EndReason::PasswordChanged,
        };
        assert!(all.ends(&login("a", Some(0), 1)));
        assert!(all.ends(&login("web", None, 4)));
        assert!(!all.ends(&login("c", Some(1), 1)));
        assert_eq!(all.reason.close_reason(), "session ended: password changed");
    }

    #[test]
    fn writes_that_end_logins_are_recognised() {
        let user = UserId::parse("u_alice").unwrap();
        let write =
            Write::EndLogin { user: user.clone(), login: "a".into(), reason: EndReason::LoggedOut, at: 7 };
        assert_eq!(SessionEnd::of_write(&write).map(|e| e.ended), Some(Ended::One { id: "a".into() }));
        let standing = SessionEpoch { epoch: 4, raised_ms: 9 };
        let write = Write::EndAllLogins { user, standing, reason: EndReason::LoggedOutEverywhere };
        assert_eq!(SessionEnd::of_write(&write).map(|e| e.ended), Some(Ended::AllBefore { standing }));
        assert_eq!(SessionEnd::of_write(&Write::RemoveFile { file_id: "f".into() }), None);
        let deleted =
            SessionEnd::of_write(&Write::DeleteAccount { user: UserId::parse("u_alice").unwrap(), at: 1 })
                .unwrap();
        assert!(deleted.ends(&login("a", Some(u64::MAX - 1), u64::MAX / 1000 - 1)));
        assert!(deleted.ends(&login("web", None, 2_000_000_000)));
    }
}

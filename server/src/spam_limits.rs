//! Limits on what spam is made of: invitations and new direct rooms aimed at strangers
//! (people who are not the sender's friends), and rooms created. Each is a throttle per
//! sender; direct rooms also per recipient, so that many senders together cannot bury one
//! person. Kept in memory, shared by every shard (a restart forgives; these limit
//! floods, not totals). Friends are never limited here. Requests made with one API key
//! are limited here too.

use std::sync::Mutex;

use palaver_core::Throttle;
use palaver_protocol::UserId;

/// Invitations a user may send to strangers at once; then one per interval.
const STRANGER_INVITES: (u32, u64) = (20, 180_000);
/// New direct rooms a user may open with strangers at once; then one per interval.
const STRANGER_DMS_BY_SENDER: (u32, u64) = (20, 180_000);
/// New direct rooms strangers may open with one user at once; then one per interval.
const STRANGER_DMS_TO_RECIPIENT: (u32, u64) = (50, 72_000);
/// Rooms a user may create at once; then one per interval.
const ROOMS_CREATED: (u32, u64) = (20, 30_000);
/// One-time keys one user may claim of another at once (a key per device per new
/// conversation); then one per interval.
const KEY_CLAIMS_BY_PAIR: (u32, u64) = (5, 60_000);
/// One-time keys all claimers together may take of one user at once; then one per
/// interval (so that many accounts cannot drain them either).
const KEY_CLAIMS_OF_USER: (u32, u64) = (50, 20_000);
/// Reports a user may make at once; then one per interval.
const REPORTS: (u32, u64) = (10, 60_000);
/// Account exports a user may ask for at once (each scans whole partitions); then one
/// per interval.
const EXPORTS: (u32, u64) = (3, 60_000);
/// Pages of an export's messages a user may ask for at once; then one per interval.
const EXPORT_PAGES: (u32, u64) = (100, 1_000);
/// Requests one API key may make at once; then one per interval (200 a second).
const API_KEY_REQUESTS: (u32, u64) = (400, 5);
/// Users each throttle remembers (idle ones are forgotten first).
const MAX_KEYS: usize = 100_000;

/// The throttles, behind one lock (each check is a map lookup).
#[derive(Debug)]
pub struct SpamLimits {
    inner: Mutex<Throttles>,
}

#[derive(Debug)]
struct Throttles {
    invites_by_sender: Throttle<UserId>,
    dms_by_sender: Throttle<UserId>,
    dms_to_recipient: Throttle<UserId>,
    rooms_by_creator: Throttle<UserId>,
    key_claims_by_pair: Throttle<(UserId, UserId)>,
    key_claims_of_user: Throttle<UserId>,
    reports_by_user: Throttle<UserId>,
    exports_by_user: Throttle<UserId>,
    export_pages_by_user: Throttle<UserId>,
    requests_by_api_key: Throttle<String>,
}

impl Default for SpamLimits {
    fn default() -> Self {
        let throttle = |(burst, interval_ms)| Throttle::new(burst, interval_ms, MAX_KEYS);
        SpamLimits {
            inner: Mutex::new(Throttles {
                invites_by_sender: throttle(STRANGER_INVITES),
                dms_by_sender: throttle(STRANGER_DMS_BY_SENDER),
                dms_to_recipient: throttle(STRANGER_DMS_TO_RECIPIENT),
                rooms_by_creator: throttle(ROOMS_CREATED),
                key_claims_by_pair: Throttle::new(KEY_CLAIMS_BY_PAIR.0, KEY_CLAIMS_BY_PAIR.1, MAX_KEYS),
                key_claims_of_user: throttle(KEY_CLAIMS_OF_USER),
                reports_by_user: throttle(REPORTS),
                exports_by_user: throttle(EXPORTS),
                export_pages_by_user: throttle(EXPORT_PAGES),
                requests_by_api_key: Throttle::new(API_KEY_REQUESTS.0, API_KEY_REQUESTS.1, MAX_KEYS),
            }),
        }
    }
}

impl SpamLimits {
    /// Takes an invitation of a stranger by `sender`, or says how many ms to wait.
    pub fn invite_stranger(&self, sender: &UserId, now_ms: u64) -> Result<(), u64> {
        let Ok(mut t) = self.inner.lock() else { return Ok(()) };
        t.invites_by_sender.take(sender, now_ms)
    }

    /// Takes a new direct room between `sender` and the stranger `recipient` (counted
    /// for both only when both allow it), or says how many ms to wait.
    pub fn dm_stranger(&self, sender: &UserId, recipient: &UserId, now_ms: u64) -> Result<(), u64> {
        let Ok(mut t) = self.inner.lock() else { return Ok(()) };
        let wait = t.dms_by_sender.wait_ms(sender, now_ms).max(t.dms_to_recipient.wait_ms(recipient, now_ms));
        if wait > 0 {
            return Err(wait);
        }
        t.dms_by_sender.record(sender, now_ms);
        t.dms_to_recipient.record(recipient, now_ms);
        Ok(())
    }

    /// Takes a claim of `owner`'s one-time keys by `claimer` (counted for the pair and
    /// for the owner only when both allow it), or says how many ms to wait.
    pub fn claim_keys(&self, claimer: &UserId, owner: &UserId, now_ms: u64) -> Result<(), u64> {
        let Ok(mut t) = self.inner.lock() else { return Ok(()) };
        let pair = (claimer.clone(), owner.clone());
        let wait =
            t.key_claims_by_pair.wait_ms(&pair, now_ms).max(t.key_claims_of_user.wait_ms(owner, now_ms));
        if wait > 0 {
            return Err(wait);
        }
        t.key_claims_by_pair.record(&pair, now_ms);
        t.key_claims_of_user.record(owner, now_ms);
        Ok(())
    }

    /// Takes a report by `reporter`, or says how many ms to wait.
    pub fn report(&self, reporter: &UserId, now_ms: u64) -> Result<(), u64> {
        let Ok(mut t) = self.inner.lock() else { return Ok(()) };
        t.reports_by_user.take(reporter, now_ms)
    }

    /// Takes an account export (`pages`: a page of its messages) by `user`, or says how
    /// many ms to wait.
    pub fn export(&self, user: &UserId, pages: bool, now_ms: u64) -> Result<(), u64> {
        let Ok(mut t) = self.inner.lock() else { return Ok(()) };
        if pages { t.export_pages_by_user.take(user, now_ms) } else { t.exports_by_user.take(user, now_ms) }
    }

    /// Takes a request made with the API key `key_id`, or says how many ms to wait.
    pub fn api_request(&self, key_id: &str, now_ms: u64) -> Result<(), u64> {
        let Ok(mut t) = self.inner.lock() else { return Ok(()) };
        t.requests_by_api_key.take(&key_id.to_owned(), now_ms)
    }

    /// Takes a room creation by `creator`, or says how many ms to wait.
    pub fn create_room(&self, creator: &UserId, now_ms: u64) -> Result<(), u64> {
        let Ok(mut t) = self.inner.lock() else { return Ok(()) };
        t.rooms_by_creator.take(creator, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserId {
        UserId::parse(&format!("u_{name}")).unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn many_senders_together_cannot_bury_one_recipient() {
        let limits = SpamLimits::default();
        let victim = user("victim");
        let admitted =
            (0..200).filter(|i| limits.dm_stranger(&user(&format!("s{i}")), &victim, 0).is_ok()).count();
        assert_eq!(admitted, STRANGER_DMS_TO_RECIPIENT.0 as usize);
        // A sender refused for the recipient's sake kept its own allowance.
        assert!(limits.dm_stranger(&user("s199"), &user("someone"), 0).is_ok());
    }

    #[test]
    fn one_sender_is_limited_across_recipients() {
        let limits = SpamLimits::default();
        let spammer = user("spammer");
        let admitted =
            (0..100).filter(|i| limits.dm_stranger(&spammer, &user(&format!("r{i}")), 0).is_ok()).count();
        assert_eq!(admitted, STRANGER_DMS_BY_SENDER.0 as usize);
        assert_eq!(limits.dm_stranger(&spammer, &user("r999"), 0), Err(STRANGER_DMS_BY_SENDER.1));
    }
}

//! The HTTP report routes (`POST /v1/reports`, `GET /v1/rooms/{room}/reports`,
//! `POST /v1/reports/{id}/resolve`, PROTOCOL.md §2.14): bodies and answers. Pure data:
//! the transports carry the requests.

use palaver_protocol::{RoomId, UserId};
use serde::Deserialize;

use crate::auth_route::error_answer;
use crate::error::Error;

/// Largest answer read from a report route (a page of reports).
pub(crate) const MAX_REPORT_ANSWER_BYTES: usize = 4 << 20;
/// Largest answer of a route called by path (an account export: its first 1,000
/// messages and the account's other records).
pub(crate) const MAX_ROUTE_ANSWER_BYTES: usize = 64 << 20;

/// A reported message, as the room's moderators and the admins see it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Report {
    /// The report's id.
    pub report_id: String,
    /// The message's room.
    pub room: RoomId,
    /// The message's seq.
    pub seq: u64,
    /// Who sent the message.
    pub sender: UserId,
    /// The message's text when it was reported.
    pub text: String,
    /// Who reported it.
    pub reporter: UserId,
    /// Why, if said.
    #[serde(default)]
    pub reason: Option<String>,
    /// When, ms since the Unix epoch.
    pub at: u64,
    /// Set once resolved.
    #[serde(default)]
    pub resolved: Option<ReportResolution>,
}

/// How a report was resolved.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReportResolution {
    /// Who resolved it.
    pub by: UserId,
    /// When, ms since the Unix epoch.
    pub at: u64,
    /// What was done, if said.
    #[serde(default)]
    pub note: Option<String>,
}

/// A page of reports and the id to go on after.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReportPage {
    /// The reports, oldest first.
    pub reports: Vec<Report>,
    /// Pass as `after` for the next page; `None` on the last.
    pub next: Option<String>,
}

#[derive(Deserialize)]
struct OneReport {
    report: Report,
}

/// Whether `id` can be a report id (the server issues `rp_` and letters and digits).
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn parse<T: serde::de::DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, Error> {
    let text = String::from_utf8_lossy(body);
    if (200..300).contains(&status) {
        return serde_json::from_str(&text)
            .map_err(|_| Error::Http { status, body: text.chars().take(200).collect() });
    }
    Err(error_answer(status, &text))
}

/// The report a `POST /v1/reports` or `…/resolve` answer carries, or its error.
pub(crate) fn parse_report(status: u16, body: &[u8]) -> Result<Report, Error> {
    parse::<OneReport>(status, body).map(|one| one.report)
}

/// The page a `GET /v1/rooms/{room}/reports` answer carries, or its error.
pub(crate) fn parse_page(status: u16, body: &[u8]) -> Result<ReportPage, Error> {
    parse(status, body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn answers_parse() {
        let body = br#"{"report":{"report_id":"rp_1","room":"r_a","seq":2,"sender":"u_c","text":"x","reporter":"u_b","at":5,"extra":1}}"#;
        let report = parse_report(201, body).unwrap();
        assert_eq!((report.report_id.as_str(), report.seq, report.resolved), ("rp_1", 2, None));
        let page = parse_page(200, br#"{"reports":[],"next":null}"#).unwrap();
        assert!(page.reports.is_empty() && page.next.is_none());
        let err = parse_page(403, br#"{"error":{"code":"forbidden","message":"no"}}"#).unwrap_err();
        assert_eq!(err.code(), Some(palaver_protocol::ErrorCode::Forbidden));
        assert!(valid_id("rp_01abc") && !valid_id("../x") && !valid_id(""));
    }
}

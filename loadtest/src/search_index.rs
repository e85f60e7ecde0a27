//! How far search indexing trails the messages (Palaver indexes stored messages in the
//! background, so searchability may lag delivery): the gauges `palaver_search_index_backlog`
//! (operations not yet searchable) and `palaver_search_index_lag_seconds` (age of the
//! oldest of them) are sampled every second of the measured window, and after sending
//! stops the run waits (bounded by `--index-catch-up-secs`) until the backlog is 0, so the
//! indexing work of the window is counted in the server's CPU.
//!
//! A server without these gauges (an older build) is reported as "not exposed"; one with
//! `--disable-search` (`palaver_search_indexing 0`) as "off". The reference servers have
//! no search at all.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::process_stats::ProcSample;
use crate::stats::round3;

/// Operations stored but not yet searchable.
pub const BACKLOG_GAUGE: &str = "palaver_search_index_backlog";

/// Age of the oldest operation not yet searchable, in seconds.
pub const LAG_GAUGE: &str = "palaver_search_index_lag_seconds";

/// 1 when the server indexes messages for search, 0 with `--disable-search`.
pub const INDEXING_GAUGE: &str = "palaver_search_indexing";

/// How often the catch-up wait reads the backlog.
const CATCH_UP_POLL: Duration = Duration::from_millis(100);

/// The value of an unlabelled series in a parsed `/metrics` answer.
pub fn gauge(metrics: &[(String, f64)], name: &str) -> Option<f64> {
    metrics.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}

/// Whether the server indexes, as its `/metrics` says: `"on"` (with its backlog), `"off"`,
/// `"on, backlog not exposed"`, or `"not exposed"` (neither gauge).
pub fn indexing(metrics: &[(String, f64)]) -> &'static str {
    match (gauge(metrics, INDEXING_GAUGE), gauge(metrics, BACKLOG_GAUGE)) {
        (Some(0.0), _) => "off",
        (_, Some(_)) => "on",
        (Some(_), None) => "on, backlog not exposed",
        (None, None) => "not exposed",
    }
}

/// The largest backlog and lag seen in the samples of a window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Watch {
    pub max_backlog: Option<f64>,
    pub max_lag_secs: Option<f64>,
}

impl Watch {
    /// Takes one `/metrics` sample into account.
    pub fn observe(&mut self, metrics: &[(String, f64)]) {
        let max = |seen: Option<f64>, now: Option<f64>| match (seen, now) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.max_backlog = max(self.max_backlog, gauge(metrics, BACKLOG_GAUGE));
        self.max_lag_secs = max(self.max_lag_secs, gauge(metrics, LAG_GAUGE));
    }
}

/// When the index caught up after sending stopped.
#[derive(Debug, Clone, Copy)]
pub struct CatchUp {
    /// Seconds from the end of the measured window until the backlog read 0 (`None`: not
    /// within the bound, or not exposed).
    pub secs: Option<f64>,
    /// The backlog at the last read.
    pub backlog_left: Option<f64>,
    /// The server's CPU at that moment.
    pub server: Option<ProcSample>,
}

/// Reads the backlog every [`CATCH_UP_POLL`] until it is 0 or `within` has passed since
/// `window_end`; `read` scrapes `/metrics`, `sample` reads the server's CPU.
pub async fn wait_caught_up<R, F>(
    window_end: Instant,
    within: Duration,
    watch: &mut Watch,
    mut read: R,
    sample: impl Fn() -> Option<ProcSample>,
) -> CatchUp
where
    R: FnMut() -> F,
    F: std::future::Future<Output = Vec<(String, f64)>>,
{
    let deadline = window_end + within;
    loop {
        let metrics = read().await;
        watch.observe(&metrics);
        let backlog = gauge(&metrics, BACKLOG_GAUGE);
        match backlog {
            None => return CatchUp { secs: None, backlog_left: None, server: None },
            Some(b) if b <= 0.0 => {
                let server = sample();
                return CatchUp {
                    secs: Some(round3((Instant::now() - window_end).as_secs_f64())),
                    backlog_left: Some(0.0),
                    server,
                };
            }
            Some(_) if Instant::now() >= deadline => {
                return CatchUp { secs: None, backlog_left: backlog, server: None };
            }
            Some(_) => tokio::time::sleep(CATCH_UP_POLL).await,
        }
    }
}

/// The search-index part of a traffic result: whether indexing was on, its largest lag and
/// backlog during the window, the backlog at the window's end, when it caught up after
/// sending, and the server's CPU per delivery from the window's start until then
/// (`server_cpu_until_caught_up`, next to `server_cpu`, which stops at the window's end).
pub fn results_json(
    indexing: &str,
    watch: &Watch,
    at_window_end: &[(String, f64)],
    catch_up: &CatchUp,
    window_start: Option<ProcSample>,
    deliveries: u64,
    within: Duration,
) -> Value {
    let cpu = match (window_start, catch_up.server) {
        (Some(a), Some(b)) => {
            let user = b.user_us.saturating_sub(a.user_us);
            let total = b.total_us().saturating_sub(a.total_us());
            let per = deliveries.max(1) as f64;
            json!({
                "user_us": user,
                "total_us": total,
                "us_per_delivery_user": round3(user as f64 / per),
                "us_per_delivery_total": round3(total as f64 / per),
            })
        }
        _ => Value::Null,
    };
    json!({
        "indexing": indexing,
        "max_backlog": watch.max_backlog,
        "max_lag_secs": watch.max_lag_secs.map(round3),
        "backlog_at_window_end": gauge(at_window_end, BACKLOG_GAUGE),
        "lag_secs_at_window_end": gauge(at_window_end, LAG_GAUGE).map(round3),
        "caught_up": catch_up.secs.is_some(),
        "catch_up_secs": catch_up.secs,
        "catch_up_limit_secs": within.as_secs_f64(),
        "backlog_left": catch_up.backlog_left,
        "server_cpu_until_caught_up": cpu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(v: &[(&str, f64)]) -> Vec<(String, f64)> {
        v.iter().map(|(n, x)| (n.to_string(), *x)).collect()
    }

    #[test]
    fn says_whether_indexing_is_on_and_exposed() {
        assert_eq!(indexing(&m(&[(INDEXING_GAUGE, 1.0), (BACKLOG_GAUGE, 3.0)])), "on");
        assert_eq!(indexing(&m(&[(BACKLOG_GAUGE, 0.0)])), "on");
        assert_eq!(indexing(&m(&[(INDEXING_GAUGE, 0.0)])), "off");
        assert_eq!(indexing(&m(&[(INDEXING_GAUGE, 1.0)])), "on, backlog not exposed");
        assert_eq!(indexing(&m(&[("palaver_connections", 1.0)])), "not exposed");
    }

    #[test]
    fn the_watch_keeps_the_largest_backlog_and_lag() {
        let mut w = Watch::default();
        w.observe(&m(&[("palaver_connections", 1.0)]));
        assert!(w.max_backlog.is_none() && w.max_lag_secs.is_none());
        w.observe(&m(&[(BACKLOG_GAUGE, 40.0), (LAG_GAUGE, 0.2)]));
        w.observe(&m(&[(BACKLOG_GAUGE, 10.0), (LAG_GAUGE, 0.5)]));
        assert_eq!(w.max_backlog, Some(40.0));
        assert_eq!(w.max_lag_secs, Some(0.5));
    }

    #[test]
    fn waits_until_the_backlog_is_empty_or_gives_up() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let sample = || Some(ProcSample { user_us: 5, system_us: 5, rss_kib: 1 });
            // 3, 2, 1, 0.
            let mut left = 4.0;
            let mut watch = Watch::default();
            let done = wait_caught_up(
                Instant::now(),
                Duration::from_secs(30),
                &mut watch,
                || {
                    left -= 1.0;
                    let v = left;
                    async move { m(&[(BACKLOG_GAUGE, v), (LAG_GAUGE, v / 10.0)]) }
                },
                sample,
            )
            .await;
            assert!(done.secs.is_some_and(|s| s >= 0.0), "{done:?}");
            assert_eq!(done.backlog_left, Some(0.0));
            assert_eq!(watch.max_backlog, Some(3.0));
            let json = results_json(
                "on",
                &watch,
                &m(&[(BACKLOG_GAUGE, 3.0)]),
                &done,
                Some(ProcSample::default()),
                5,
                Duration::from_secs(30),
            );
            assert_eq!(json["caught_up"], true);
            assert_eq!(json["server_cpu_until_caught_up"]["us_per_delivery_total"], 2.0);

            // Never empties: gives up at the bound, with what was left.
            let stuck = wait_caught_up(
                Instant::now(),
                Duration::from_millis(250),
                &mut Watch::default(),
                || async { m(&[(BACKLOG_GAUGE, 7.0)]) },
                sample,
            )
            .await;
            assert_eq!((stuck.secs, stuck.backlog_left), (None, Some(7.0)));

            // No gauge: nothing to wait for.
            let absent = wait_caught_up(
                Instant::now(),
                Duration::from_secs(30),
                &mut Watch::default(),
                || async { m(&[("palaver_connections", 1.0)]) },
                sample,
            )
            .await;
            assert_eq!((absent.secs, absent.backlog_left), (None, None));
        });
    }
}

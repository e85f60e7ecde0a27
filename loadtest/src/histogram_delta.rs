//! Percentiles of a server histogram over a window: the cumulative buckets of a
//! Prometheus histogram family are read from two `/metrics` answers, subtracted, and the
//! percentile is interpolated within its bucket.
//!
//! The result is as precise as the buckets: the interpolation assumes the observations
//! of a bucket are spread evenly between its bounds (what Prometheus' `histogram_quantile`
//! assumes too), so a percentile is only known to lie in its bucket. A percentile that
//! falls in the `+Inf` bucket is reported as the highest finite bound.

use std::collections::BTreeMap;

/// The cumulative counts of one histogram family at one instant: `(le, observations at or
/// below le)`, ascending, ending with `+Inf`. Label sets other than `le` (e.g. a shard) are
/// summed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets(Vec<(f64, u64)>);

impl Buckets {
    /// The `FAMILY_bucket` series of a Prometheus text answer (`None` when it has none).
    pub fn parse(exposition: &str, family: &str) -> Option<Buckets> {
        let prefix = format!("{family}_bucket{{");
        let mut by_bound: BTreeMap<u64, (f64, u64)> = BTreeMap::new();
        for line in exposition.lines() {
            let Some(rest) = line.strip_prefix(&prefix) else { continue };
            let Some((labels, value)) = rest.rsplit_once('}') else { continue };
            let Some(le) = labels.split(',').find_map(|l| l.trim().strip_prefix("le=")) else { continue };
            let le = le.trim_matches('"');
            let bound = if le == "+Inf" { f64::INFINITY } else { le.parse::<f64>().ok()? };
            let count = value.trim().parse::<f64>().ok()? as u64;
            // Ordered by the bound's bits: every bound is positive, where the order of the
            // bits is the order of the numbers.
            let entry = by_bound.entry(bound.to_bits()).or_insert((bound, 0));
            entry.1 += count;
        }
        (!by_bound.is_empty()).then(|| Buckets(by_bound.into_values().collect()))
    }

    /// What was observed between `before` and `self` (buckets missing before count from 0).
    pub fn since(&self, before: Option<&Buckets>) -> Buckets {
        Buckets(
            self.0
                .iter()
                .map(|&(bound, after)| {
                    let earlier =
                        before.and_then(|b| b.0.iter().find(|(le, _)| *le == bound)).map_or(0, |(_, n)| *n);
                    (bound, after.saturating_sub(earlier))
                })
                .collect(),
        )
    }

    /// How many observations (the `+Inf` bucket).
    pub fn count(&self) -> u64 {
        self.0.last().map_or(0, |(_, n)| *n)
    }

    /// The `q` quantile (0..=1) in the histogram's unit, interpolated linearly within its
    /// bucket (from the bucket's lower bound, 0 for the first); `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut lower = (0.0, 0u64);
        for &(bound, cumulative) in &self.0 {
            if cumulative as f64 >= rank && cumulative > lower.1 {
                if bound.is_infinite() {
                    return Some(lower.0);
                }
                let within = (rank - lower.1 as f64) / (cumulative - lower.1) as f64;
                return Some(lower.0 + (bound - lower.0) * within.clamp(0.0, 1.0));
            }
            lower = (bound, cumulative);
        }
        Some(lower.0)
    }
}

/// p50, p99 and the count of a latency histogram family (seconds) over a window, in ms.
pub fn window_json(before: &str, after: &str, family: &str) -> Option<serde_json::Value> {
    let after = Buckets::parse(after, family)?;
    let delta = after.since(Buckets::parse(before, family).as_ref());
    let ms = |q: f64| delta.quantile(q).map(|s| crate::stats::round3(s * 1000.0));
    Some(serde_json::json!({
        "count": delta.count(),
        "p50": ms(0.50),
        "p99": ms(0.99),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(counts: &[(&str, u64)]) -> String {
        let mut text = "# HELP x_seconds test\n# TYPE x_seconds histogram\n".to_string();
        for (le, n) in counts {
            text.push_str(&format!("x_seconds_bucket{{le=\"{le}\"}} {n}\n"));
        }
        text.push_str("x_seconds_sum 1.5\nx_seconds_count 0\nother_bucket{le=\"1.0\"} 99\n");
        text
    }

    #[test]
    fn parses_cumulative_buckets_and_sums_label_sets() {
        let text = "h_bucket{shard=\"0\",le=\"0.001\"} 2\nh_bucket{shard=\"0\",le=\"+Inf\"} 3\n\
                    h_bucket{shard=\"1\",le=\"0.001\"} 5\nh_bucket{shard=\"1\",le=\"+Inf\"} 5\n\
                    h_sum{shard=\"0\"} 7\n";
        let b = Buckets::parse(text, "h").expect("buckets");
        assert_eq!(b, Buckets(vec![(0.001, 7), (f64::INFINITY, 8)]));
        assert_eq!(b.count(), 8);
        assert!(Buckets::parse(text, "absent").is_none());
    }

    #[test]
    fn the_window_is_the_difference_of_two_answers() {
        let before = Buckets::parse(&exposition(&[("0.001", 10), ("0.01", 10), ("+Inf", 10)]), "x_seconds");
        let after = Buckets::parse(&exposition(&[("0.001", 10), ("0.01", 110), ("+Inf", 110)]), "x_seconds")
            .expect("buckets");
        let delta = after.since(before.as_ref());
        assert_eq!(delta, Buckets(vec![(0.001, 0), (0.01, 100), (f64::INFINITY, 100)]));
        // The 100 observations all lie in (1 ms, 10 ms]: spread evenly, the median is in
        // the middle and the p99 near the top.
        let p50 = delta.quantile(0.5).expect("p50");
        let p99 = delta.quantile(0.99).expect("p99");
        assert!((p50 - 0.0055).abs() < 1e-12, "{p50}");
        assert!((p99 - 0.00991).abs() < 1e-12, "{p99}");
        // Without an earlier answer everything counts.
        assert_eq!(after.since(None).count(), 110);
    }

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        // 50 observations in [0, 0.1], 40 in (0.1, 0.5], 10 in (0.5, 1].
        let b = Buckets(vec![(0.1, 50), (0.5, 90), (1.0, 100), (f64::INFINITY, 100)]);
        assert_eq!(b.quantile(0.5), Some(0.1));
        assert!((b.quantile(0.25).expect("p25") - 0.05).abs() < 1e-12);
        assert!((b.quantile(0.7).expect("p70") - 0.3).abs() < 1e-12);
        assert!((b.quantile(0.95).expect("p95") - 0.75).abs() < 1e-12);
        assert_eq!(b.quantile(1.0), Some(1.0));
        // Empty buckets below a percentile do not pull it down.
        let gap = Buckets(vec![(0.1, 0), (0.5, 0), (1.0, 4), (f64::INFINITY, 4)]);
        assert!((gap.quantile(0.5).expect("p50") - 0.75).abs() < 1e-12);
    }

    #[test]
    fn a_quantile_beyond_the_last_bound_is_that_bound_and_none_without_observations() {
        let b = Buckets(vec![(0.1, 1), (1.0, 2), (f64::INFINITY, 10)]);
        assert_eq!(b.quantile(0.99), Some(1.0));
        assert_eq!(Buckets(vec![(0.1, 0), (f64::INFINITY, 0)]).quantile(0.5), None);
        assert_eq!(Buckets::default().quantile(0.5), None);
    }

    #[test]
    fn window_json_reports_milliseconds() {
        let before = exposition(&[("0.001", 0), ("0.01", 0), ("+Inf", 0)]);
        let after = exposition(&[("0.001", 4), ("0.01", 4), ("+Inf", 4)]);
        let json = window_json(&before, &after, "x_seconds").expect("family present");
        assert_eq!(json["count"], 4);
        assert_eq!(json["p50"], 0.5);
        assert_eq!(json["p99"], 0.99);
        assert!(window_json(&before, &after, "absent_seconds").is_none());
    }
}

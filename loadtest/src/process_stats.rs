//! What Linux says about a process (CPU time, resident memory) and about the machine,
//! read from `/proc`.

use std::sync::OnceLock;

use anyhow::{Context as _, anyhow};

/// CPU time and memory of one process at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// User CPU time, µs (all threads).
    pub user_us: u64,
    /// System CPU time, µs (all threads).
    pub system_us: u64,
    /// Resident set size, KiB (`VmRSS`).
    pub rss_kib: u64,
}

impl ProcSample {
    pub fn total_us(&self) -> u64 {
        self.user_us + self.system_us
    }
}

/// Clock ticks per second for `/proc/PID/stat` (`getconf CLK_TCK`, 100 on every usual Linux).
fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// Reads `/proc/PID/stat` (utime, stime) and `/proc/PID/status` (VmRSS). `None` for PID
/// means this process.
pub fn sample(pid: Option<u32>) -> anyhow::Result<ProcSample> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_string(),
    };
    let stat = std::fs::read_to_string(format!("{dir}/stat")).with_context(|| format!("read {dir}/stat"))?;
    // The command name (field 2) may hold spaces: fields are counted after its ')'.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).ok_or_else(|| anyhow!("bad {dir}/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at indexes 11 and 12.
    let tick = |i: usize| -> anyhow::Result<u64> {
        fields.get(i).and_then(|f| f.parse::<u64>().ok()).ok_or_else(|| anyhow!("bad {dir}/stat field {i}"))
    };
    let us_per_tick = 1_000_000 / clock_ticks();
    let user_us = tick(11)? * us_per_tick;
    let system_us = tick(12)? * us_per_tick;
    let status =
        std::fs::read_to_string(format!("{dir}/status")).with_context(|| format!("read {dir}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(ProcSample { user_us, system_us, rss_kib })
}

/// The sum of several samples (CPU times and resident memory added up): the server side
/// of a cluster run is every node plus the NATS server.
pub fn sum_samples(samples: impl IntoIterator<Item = ProcSample>) -> ProcSample {
    samples.into_iter().fold(ProcSample::default(), |acc, s| ProcSample {
        user_us: acc.user_us + s.user_us,
        system_us: acc.system_us + s.system_us,
        rss_kib: acc.rss_kib + s.rss_kib,
    })
}

/// Samples every process of `pids` and sums them; `None` when the list is empty or any of
/// them cannot be read (a sum missing a process would make CPU deltas meaningless).
pub fn sample_all(pids: &[u32]) -> Option<ProcSample> {
    if pids.is_empty() {
        return None;
    }
    let samples: Vec<ProcSample> = pids.iter().map(|&pid| sample(Some(pid)).ok()).collect::<Option<_>>()?;
    Some(sum_samples(samples))
}

/// The machine a run happened on.
pub fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let nproc = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_default();
    let mem_total_kib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    serde_json::json!({
        "nproc": nproc,
        "cpu_model": model,
        "kernel": format!("{} {}", read("/proc/sys/kernel/ostype"), read("/proc/sys/kernel/osrelease")),
        "hostname": read("/proc/sys/kernel/hostname"),
        "mem_total_kib": mem_total_kib,
        // Other work on the machine skews a run: the load average says whether there was any.
        "loadavg": read("/proc/loadavg"),
    })
}

/// Number of CPUs listed in `/proc/cpuinfo` (not limited by this process's affinity).
pub fn cpu_count() -> usize {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(1)
        .max(1)
}

/// Now as an ISO 8601 UTC timestamp, e.g. `2026-11-26T12:00:00Z`.
pub fn utc_now_iso() -> String {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_samples() {
        let a = ProcSample { user_us: 10, system_us: 5, rss_kib: 1000 };
        let b = ProcSample { user_us: 7, system_us: 3, rss_kib: 24 };
        let c = ProcSample { user_us: 1, system_us: 0, rss_kib: 0 };
        let s = sum_samples([a, b, c]);
        assert_eq!((s.user_us, s.system_us, s.rss_kib), (18, 8, 1024));
        assert_eq!(s.total_us(), 26);
        let empty = sum_samples([]);
        assert_eq!((empty.user_us, empty.system_us, empty.rss_kib), (0, 0, 0));
    }

    #[test]
    fn sample_all_needs_every_process() {
        assert!(sample_all(&[]).is_none());
        let me = std::process::id();
        let one = sample_all(&[me]).expect("this process");
        let two = sample_all(&[me, me]).expect("this process twice");
        assert!(two.rss_kib >= one.rss_kib);
        // Pid 0 has no /proc entry: the whole sum is unknown.
        assert!(sample_all(&[me, 0]).is_none());
    }
}

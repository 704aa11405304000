//! Latency summaries and server resource samples (RSS and CPU time from `/proc`).

use std::sync::OnceLock;
use std::time::Instant;

use serde_json::{Value, json};

/// p50/p90/p99/max of a set of latencies in microseconds, reported in milliseconds.
pub fn latency_summary(latencies_us: &mut [u32]) -> Value {
    if latencies_us.is_empty() {
        return json!({ "count": 0, "p50_ms": null, "p90_ms": null, "p99_ms": null, "max_ms": null });
    }
    latencies_us.sort_unstable();
    let at = |q: f64| {
        let index = ((latencies_us.len() as f64 - 1.0) * q).round() as usize;
        f64::from(latencies_us[index]) / 1000.0
    };
    json!({
        "count": latencies_us.len(),
        "p50_ms": at(0.50),
        "p90_ms": at(0.90),
        "p99_ms": at(0.99),
        "max_ms": at(1.0),
    })
}

/// The p99 in milliseconds of a summary made by [`latency_summary`] (infinite when empty).
pub fn p99_ms(summary: &Value) -> f64 {
    summary["p99_ms"].as_f64().unwrap_or(f64::INFINITY)
}

/// Resident set size of `pid` in KiB, `None` when the process is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Clock ticks per second of the `utime`/`stime` fields of `/proc/<pid>/stat`, as the kernel
/// reports it (`sysconf(_SC_CLK_TCK)`): usually 100, but a constant would silently scale
/// every CPU figure on a kernel built otherwise.
pub fn clock_ticks_per_sec() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        // SAFETY: sysconf only reads a system constant; it has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if ticks > 0 { ticks as f64 } else { 100.0 }
    })
}

/// User + system CPU time of `pid` in clock ticks ([`clock_ticks_per_sec`] per second).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields are counted after its closing parenthesis.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Whether `pid` still runs (a zombie waiting to be reaped counts as exited).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|end| stat.get(end + 2..end + 3))
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// CPU and memory of the server processes over an interval.
pub struct ProcWindow {
    pids: Vec<u32>,
    start: Instant,
    ticks: Vec<u64>,
}

impl ProcWindow {
    /// Starts measuring `pids` now.
    pub fn start(pids: &[u32]) -> Self {
        Self {
            pids: pids.to_vec(),
            start: Instant::now(),
            ticks: pids
                .iter()
                .map(|&pid| cpu_ticks(pid).unwrap_or(0))
                .collect(),
        }
    }

    /// CPU seconds (user + system) the servers used since the start, summed over them.
    pub fn cpu_secs(&self) -> f64 {
        let ticks: u64 = self
            .pids
            .iter()
            .zip(&self.ticks)
            .map(|(&pid, &before)| cpu_ticks(pid).unwrap_or(before).saturating_sub(before))
            .sum();
        ticks as f64 / clock_ticks_per_sec()
    }

    /// CPU used since the start (in cores and in seconds, summed over the servers) and the
    /// current RSS.
    pub fn finish(&self) -> Value {
        let wall = self.start.elapsed().as_secs_f64().max(1e-3);
        let cpu = self.cpu_secs();
        let rss: u64 = self.pids.iter().filter_map(|&pid| rss_kib(pid)).sum();
        json!({
            "server_cpu_cores": round2(cpu / wall),
            "server_cpu_secs": round2(cpu),
            "server_rss_mib": round2(rss as f64 / 1024.0),
        })
    }

    /// [`finish`](Self::finish) plus the servers' CPU time per delivered message, in µs: the
    /// cost of a delivery, which the load generator's own limit on this machine does not cap.
    pub fn finish_per_delivery(&self, delivered: u64) -> Value {
        let mut value = self.finish();
        let per = if delivered == 0 {
            Value::Null
        } else {
            json!(round2(self.cpu_secs() * 1e6 / delivered as f64))
        };
        value["cpu_us_per_delivery"] = per;
        value
    }
}

/// Rounds to two decimals for readable JSON.
pub fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

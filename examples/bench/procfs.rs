//! Per-process figures of the daemon from `/proc`: CPU time, wake-ups, memory, and the
//! machine's size and load.
//!
//! CPU time is the sum of the threads' `schedstat` run time (nanoseconds), cross-checked
//! with `utime + stime` of `/proc/PID/stat` (clock ticks, which also count threads that
//! already exited). Wake-ups are voluntary context switches summed over the threads: each
//! one is a thread going to sleep and later being woken.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

/// One look at a process.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    /// `utime + stime`, in clock ticks.
    pub cpu_ticks: u64,
    /// Sum of the live threads' run time, in nanoseconds.
    pub run_ns: u64,
    /// Run time per thread name (threads of one name summed), in nanoseconds.
    pub run_ns_by_thread: BTreeMap<String, u64>,
    /// Voluntary context switches per thread name (threads of one name summed).
    pub voluntary: BTreeMap<String, u64>,
    /// Involuntary context switches, all threads.
    pub involuntary: u64,
    /// Live threads.
    pub threads: usize,
    /// Resident set now, in KiB.
    pub rss_kib: u64,
    /// Peak resident set, in KiB.
    pub hwm_kib: u64,
}

/// What happened between two samples.
#[derive(Debug, Clone)]
pub struct Delta {
    pub wall: Duration,
    /// CPU seconds from the threads' run time.
    pub cpu_s: f64,
    /// CPU seconds from `utime + stime` (10 ms resolution).
    pub cpu_ticks_s: f64,
    /// Voluntary context switches, all threads.
    pub wakeups: u64,
    /// Voluntary context switches per thread name.
    pub wakeups_by_thread: BTreeMap<String, u64>,
    /// CPU seconds per thread name.
    pub cpu_s_by_thread: BTreeMap<String, f64>,
    pub involuntary: u64,
}

impl Delta {
    /// CPU seconds per thread kind, largest first, as `name 1.23 s`.
    pub fn cpu_by_thread(&self) -> String {
        let mut threads: Vec<(&String, &f64)> = self
            .cpu_s_by_thread
            .iter()
            .filter(|(_, s)| **s > 0.0)
            .collect();
        threads.sort_by(|a, b| b.1.total_cmp(a.1));
        threads
            .iter()
            .map(|(name, s)| format!("{name} {s:.2} s"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A count scaled to one minute of this delta's wall time.
    pub fn per_minute(&self, count: f64) -> f64 {
        count * 60.0 / self.wall.as_secs_f64()
    }
}

/// Reads the figures of process `pid` now.
pub fn sample(pid: u32) -> anyhow::Result<Sample> {
    let at = Instant::now();
    let base = format!("/proc/{pid}");
    let stat = fs::read_to_string(format!("{base}/stat")).context("reading /proc/PID/stat")?;
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Fields 14 and 15 of stat (utime, stime); the list starts at field 3.
    let cpu_ticks = tick(11) + tick(12);

    let status = fs::read_to_string(format!("{base}/status")).context("reading status")?;
    let mut sample = Sample {
        at,
        cpu_ticks,
        run_ns: 0,
        run_ns_by_thread: BTreeMap::new(),
        voluntary: BTreeMap::new(),
        involuntary: 0,
        threads: 0,
        rss_kib: status_value(&status, "VmRSS:"),
        hwm_kib: status_value(&status, "VmHWM:"),
    };
    for task in fs::read_dir(format!("{base}/task"))?.flatten() {
        add_thread(&mut sample, &task.path());
    }
    Ok(sample)
}

fn add_thread(sample: &mut Sample, task: &Path) {
    let Ok(status) = fs::read_to_string(task.join("status")) else {
        return; // the thread ended meanwhile
    };
    let name = fs::read_to_string(task.join("comm"))
        .map(|comm| thread_kind(comm.trim()))
        .unwrap_or_default();
    *sample.voluntary.entry(name.clone()).or_default() +=
        status_value(&status, "voluntary_ctxt_switches:");
    sample.involuntary += status_value(&status, "nonvoluntary_ctxt_switches:");
    let schedstat = fs::read_to_string(task.join("schedstat")).unwrap_or_default();
    let run_ns = schedstat
        .split_whitespace()
        .next()
        .and_then(|ns| ns.parse::<u64>().ok())
        .unwrap_or(0);
    sample.run_ns += run_ns;
    *sample.run_ns_by_thread.entry(name).or_default() += run_ns;
    sample.threads += 1;
}

/// Groups numbered threads (`sqlx-sqlite-worker-3`, `tokio-runtime-w`) under one name.
fn thread_kind(comm: &str) -> String {
    comm.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')
        .to_owned()
}

fn status_value(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The change from `before` to `after`.
pub fn delta(before: &Sample, after: &Sample) -> Delta {
    let tck = clock_ticks_per_second() as f64;
    let mut by_thread = BTreeMap::new();
    for (name, count) in &after.voluntary {
        let earlier = before.voluntary.get(name).copied().unwrap_or(0);
        by_thread.insert(name.clone(), count.saturating_sub(earlier));
    }
    let cpu_by_thread = after
        .run_ns_by_thread
        .iter()
        .map(|(name, ns)| {
            let earlier = before.run_ns_by_thread.get(name).copied().unwrap_or(0);
            (name.clone(), ns.saturating_sub(earlier) as f64 / 1e9)
        })
        .collect();
    Delta {
        wall: after.at - before.at,
        cpu_s_by_thread: cpu_by_thread,
        cpu_s: after.run_ns.saturating_sub(before.run_ns) as f64 / 1e9,
        cpu_ticks_s: after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 / tck,
        wakeups: by_thread.values().sum(),
        wakeups_by_thread: by_thread,
        involuntary: after.involuntary.saturating_sub(before.involuntary),
    }
}

/// `getconf CLK_TCK`, 100 when it cannot be asked.
pub fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100)
}

/// The machine: cores and memory.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total_gib = status_value(&meminfo, "MemTotal:") as f64 / 1024.0 / 1024.0;
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    format!("{cores} cores, {total_gib:.1} GiB memory, {cpu}")
}

/// The 1, 5 and 15 minute load averages.
pub fn load() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}

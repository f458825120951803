//! Latency histograms, error tallies, and what `/proc` says about CPU time
//! and memory.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies in microseconds, 3 significant digits, up to an hour.
#[derive(Debug, Clone)]
pub struct Latency {
    histogram: Histogram<u64>,
    /// Every value with the time its item was due (both in nanoseconds),
    /// kept only when asked for (`--timeline`): percentiles say how bad the
    /// tail is, the timeline says when it happens.
    timeline: Option<Vec<(u64, u64)>>,
}

impl Latency {
    pub fn new() -> Latency {
        Latency {
            histogram: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("static histogram bounds are valid"),
            timeline: None,
        }
    }

    /// A histogram that also keeps each value with its due time, with room
    /// for `capacity` of them: growing the list while measuring would pause
    /// the generator (which stamps every arrival) for the copies.
    pub fn with_timeline(capacity: usize) -> Latency {
        Latency {
            timeline: Some(Vec::with_capacity(capacity)),
            ..Latency::new()
        }
    }

    /// Records the latency of an item that was due at `due_ns`.
    pub fn record_due(&mut self, due_ns: u64, late_ns: u64) {
        self.record_ns(late_ns);
        if let Some(timeline) = &mut self.timeline {
            timeline.push((due_ns, late_ns));
        }
    }

    /// Writes the timeline to `out` and empties it: a header, then one
    /// line per item in due order, `due_ms latency_ms`, due times counted
    /// from `since_ns` (the start of the measured part). Without a
    /// timeline (`Latency::new`) it writes only the header. `merge` does
    /// not carry timelines over.
    pub fn write_timeline(&mut self, out: &mut impl Write, since_ns: u64) -> std::io::Result<()> {
        let mut timeline = self
            .timeline
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        timeline.sort_unstable_by_key(|&(due_ns, _)| due_ns);
        writeln!(out, "# due_ms latency_ms")?;
        for (due_ns, late_ns) in timeline {
            debug_assert!(due_ns >= since_ns, "only measured items are timed");
            let due_ms = due_ns.saturating_sub(since_ns) as f64 / 1e6;
            let late_ms = late_ns as f64 / 1e6;
            writeln!(out, "{due_ms:.3} {late_ms:.3}")?;
        }
        out.flush()
    }

    pub fn record_ns(&mut self, ns: u64) {
        // Values above the bound are clamped to it rather than lost: a
        // latency over an hour is still a (terrible) latency.
        self.histogram.saturating_record((ns / 1000).max(1));
    }

    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    pub fn summary(&self) -> Option<Summary> {
        if self.histogram.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Summary {
            count: self.histogram.len(),
            p50_ms: ms(self.histogram.value_at_quantile(0.50)),
            p90_ms: ms(self.histogram.value_at_quantile(0.90)),
            p99_ms: ms(self.histogram.value_at_quantile(0.99)),
            max_ms: ms(self.histogram.max()),
            mean_ms: self.histogram.mean() / 1000.0,
        })
    }
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

/// A histogram many tasks record into. The generator usually runs on one
/// thread, so the lock is uncontended and cheaper than merging thousands of
/// per-connection histograms (each one is ~150 KB).
#[derive(Debug, Clone, Default)]
pub struct SharedLatency(Arc<Mutex<Latency>>);

impl SharedLatency {
    /// A shared histogram that keeps a timeline of up to `timeline` items
    /// (room reserved up front), or none.
    pub fn new(timeline: Option<usize>) -> SharedLatency {
        let latency = match timeline {
            Some(capacity) => Latency::with_timeline(capacity),
            None => Latency::new(),
        };
        SharedLatency(Arc::new(Mutex::new(latency)))
    }

    pub fn lock(&self) -> MutexGuard<'_, Latency> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn summary(&self) -> Option<Summary> {
        self.lock().summary()
    }
}

/// Percentiles of one latency histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// Errors by kind ("missing", "error:unknown_agent", "closed:4008", ...).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Errors(pub BTreeMap<String, u64>);

impl Errors {
    pub fn add(&mut self, kind: impl Into<String>, count: u64) {
        if count > 0 {
            *self.0.entry(kind.into()).or_default() += count;
        }
    }

    pub fn merge(&mut self, other: &Errors) {
        for (kind, count) in &other.0 {
            self.add(kind.clone(), *count);
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

/// Errors many tasks add to.
#[derive(Debug, Clone, Default)]
pub struct SharedErrors(Arc<Mutex<Errors>>);

impl SharedErrors {
    pub fn add(&self, kind: impl Into<String>, count: u64) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(kind, count);
    }

    pub fn take(&self) -> Errors {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// CPU seconds (user + system, all threads, living and exited) a process
/// has used, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    parse_cpu_seconds(&stat)
}

fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) may contain spaces and parentheses; the
    // fields after its last ')' are plain numbers. utime and stime are
    // fields 14 and 15, i.e. the 12th and 13th after the name.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ, the unit of these fields, is 100 on every Linux ABI that
    // matters here (x86_64 and aarch64).
    Some((utime + stime) / 100.0)
}

/// Resident memory of a process in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_rss_kib(&status)
}

fn parse_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Bytes a process has caused to be written to storage so far
/// (`write_bytes` of `/proc/<pid>/io`; sockets do not count). It grows
/// when pages are dirtied, not when they reach the disk, so it stops
/// growing as soon as the process stops writing.
pub fn storage_written(pid: u32) -> Option<u64> {
    parse_write_bytes(&std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?)
}

fn parse_write_bytes(io: &str) -> Option<u64> {
    io.lines()
        .find_map(|line| line.strip_prefix("write_bytes:"))?
        .trim()
        .parse()
        .ok()
}

/// CPU seconds the whole machine spent busy (all cores, everything but
/// idle and I/O wait), from `/proc/stat`.
pub fn machine_busy_seconds() -> Option<f64> {
    parse_machine_busy(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn parse_machine_busy(stat: &str) -> Option<f64> {
    let fields: Vec<f64> = stat
        .lines()
        .find(|line| line.starts_with("cpu "))?
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is
    // already inside user and nice).
    let busy: f64 = fields.iter().take(8).sum::<f64>() - fields.get(3)? - fields.get(4)?;
    Some(busy / 100.0)
}

/// CPU use between two moments, in percent of one core.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuUse {
    pub generator: Option<f64>,
    pub hub: Option<f64>,
    /// Everything else on the machine (other processes, the kernel's own
    /// threads, interrupts). Well above a few percent means the figures
    /// were taken on a busy machine.
    pub other: Option<f64>,
}

/// CPU use of the generator, the hub (if its pid is known) and the rest of
/// the machine between two moments.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    hub_pid: Option<u32>,
    wall_start_ns: u64,
    own_start: Option<f64>,
    hub_start: Option<f64>,
    machine_start: Option<f64>,
}

impl CpuMeter {
    pub fn start(hub_pid: Option<u32>, now_ns: u64) -> CpuMeter {
        CpuMeter {
            hub_pid,
            wall_start_ns: now_ns,
            own_start: cpu_seconds(None),
            hub_start: hub_pid.and_then(|pid| cpu_seconds(Some(pid))),
            machine_start: machine_busy_seconds(),
        }
    }

    /// CPU used since `start`; unknown for windows too short for the
    /// kernel's 10 ms accounting to mean much.
    pub fn stop(&self, now_ns: u64) -> CpuUse {
        self.stop_after(now_ns, 0.5)
    }

    /// Like [`CpuMeter::stop`], for short windows where a rough figure is
    /// enough (is the hub busy or not).
    pub fn stop_within(&self, now_ns: u64) -> CpuUse {
        self.stop_after(now_ns, 0.1)
    }

    fn stop_after(&self, now_ns: u64, shortest: f64) -> CpuUse {
        let wall = now_ns.saturating_sub(self.wall_start_ns) as f64 / 1e9;
        let percent = |start: Option<f64>, end: Option<f64>| match (start, end) {
            (Some(start), Some(end)) if wall >= shortest => Some(100.0 * (end - start) / wall),
            _ => None,
        };
        let generator = percent(self.own_start, cpu_seconds(None));
        let hub = percent(
            self.hub_start,
            self.hub_pid.and_then(|pid| cpu_seconds(Some(pid))),
        );
        let machine = percent(self.machine_start, machine_busy_seconds());
        let other = match (machine, generator) {
            (Some(machine), Some(generator)) => {
                Some((machine - generator - hub.unwrap_or(0.0)).max(0.0))
            }
            _ => None,
        };
        CpuUse {
            generator,
            hub,
            other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The timeline comes out in due order whatever order the items came
    /// in, in milliseconds from the start of the measured part.
    #[test]
    fn timeline_is_written_in_due_order_in_milliseconds() {
        let mut latency = Latency::with_timeline(4);
        latency.record_due(3_000_000_000, 1_500_000);
        latency.record_due(1_000_000_000, 250_000);
        latency.record_due(2_000_500_000, 12_345_678);
        let mut out = Vec::new();
        latency.write_timeline(&mut out, 1_000_000_000).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "# due_ms latency_ms\n0.000 0.250\n1000.500 12.346\n2000.000 1.500\n"
        );
        assert_eq!(latency.count(), 3, "the histogram has them all too");
    }

    #[test]
    fn a_plain_histogram_keeps_no_timeline() {
        let mut latency = Latency::new();
        latency.record_due(1_000, 2_000);
        let mut out = Vec::new();
        latency.write_timeline(&mut out, 0).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "# due_ms latency_ms\n");
        assert_eq!(latency.count(), 1);
    }

    #[test]
    fn percentiles_come_out_in_milliseconds() {
        let mut latency = Latency::new();
        for us in 1..=1000u64 {
            latency.record_ns(us * 1000);
        }
        let summary = latency.summary().unwrap();
        assert_eq!(summary.count, 1000);
        assert!((summary.p50_ms - 0.5).abs() < 0.01, "{summary:?}");
        assert!((summary.p99_ms - 0.99).abs() < 0.01, "{summary:?}");
        assert!((summary.max_ms - 1.0).abs() < 0.01, "{summary:?}");
        assert!(Latency::new().summary().is_none());
    }

    #[test]
    fn proc_fields_parse() {
        let stat = "4242 (clawbot hub (x)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 9";
        assert_eq!(parse_cpu_seconds(stat), Some(3.0));
        let status = "Name:\tclawbot-hub\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\n";
        assert_eq!(parse_rss_kib(status), Some(12345));
        assert!(cpu_seconds(None).is_some());
        let proc_stat = "cpu  100 5 50 1000 20 3 2 0 0 0\ncpu0 50 0 25 500 10 1 1 0 0 0\n";
        assert_eq!(parse_machine_busy(proc_stat), Some(1.6));
        assert!(machine_busy_seconds().is_some());
        let io =
            "rchar: 10\nwchar: 20\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";
        assert_eq!(parse_write_bytes(io), Some(8192));
        assert!(storage_written(std::process::id()).is_some());
    }

    #[test]
    fn errors_add_up_by_kind() {
        let mut errors = Errors::default();
        errors.add("missing", 2);
        errors.add("missing", 0);
        let mut other = Errors::default();
        other.add("missing", 1);
        other.add("closed:4008", 1);
        errors.merge(&other);
        assert_eq!(errors.total(), 4);
        assert_eq!(errors.0.len(), 2);
    }
}

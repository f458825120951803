//! The clock and the open-loop schedule.
//!
//! Message (or request) `i` of a run is due at `start + i / rate`, decided
//! before the run begins. Senders send each item when it is due (or as soon
//! as they can after, if they fell behind), and latency is always taken from
//! the *due* time. So if the hub stalls for 100 ms, the items due during the
//! stall show up to 100 ms of latency, instead of the generator waiting
//! politely and reporting only the latency of the few it managed to send
//! (coordinated omission).

use std::time::Duration;

use clap::ValueEnum;
use tokio::time::Instant;

/// How senders wait until an item is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pacing {
    /// Sleep until shortly before, then yield in a loop until the moment:
    /// sends leave within microseconds of their due time, at the cost of a
    /// busy generator core (its CPU figure then means little).
    Spin,
    /// Only sleep. The runtime's timer has millisecond granularity, so
    /// sends leave up to about a millisecond late (see "send lag"), which
    /// counts as latency; the generator's CPU figure stays meaningful.
    Sleep,
}

/// The runtime's timer wheel rounds up to whole milliseconds and may wake
/// a little later still; spinning covers that last stretch.
const SPIN_WINDOW_NS: u64 = 1_500_000;

/// Nanoseconds since the start of the process's measurements; one clock
/// for every task, so times taken on different connections compare.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            origin: Instant::now(),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    pub fn instant(&self, ns: u64) -> Instant {
        self.origin + Duration::from_nanos(ns)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// When each item of a fixed-rate run is due.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub clock: Clock,
    pub pacing: Pacing,
    /// When item 0 is due, in clock nanoseconds.
    pub start_ns: u64,
    interval_ns: f64,
    /// Items before this index are warm-up: sent, but not measured.
    pub warmup_items: u64,
    /// All items, warm-up included.
    pub total_items: u64,
}

impl Schedule {
    /// A schedule starting `lead` from now (time for every task to be
    /// waiting when the first item is due).
    pub fn new(
        clock: Clock,
        pacing: Pacing,
        lead: Duration,
        rate: f64,
        warmup: Duration,
        duration: Duration,
    ) -> Schedule {
        assert!(rate > 0.0, "the rate must be positive");
        let warmup_items = (rate * warmup.as_secs_f64()).ceil() as u64;
        let measured_items = ((rate * duration.as_secs_f64()).ceil() as u64).max(1);
        Schedule {
            clock,
            pacing,
            start_ns: clock.now_ns() + lead.as_nanos() as u64,
            interval_ns: 1e9 / rate,
            warmup_items,
            total_items: warmup_items + measured_items,
        }
    }

    /// When item `i` is due.
    pub fn due_ns(&self, i: u64) -> u64 {
        self.start_ns + (i as f64 * self.interval_ns) as u64
    }

    pub fn due_instant(&self, i: u64) -> Instant {
        self.clock.instant(self.due_ns(i))
    }

    /// Returns when item `i` is due (at once if it is overdue).
    pub async fn wait_for(&self, i: u64) {
        let due = self.due_ns(i);
        loop {
            let now = self.clock.now_ns();
            if now >= due {
                return;
            }
            match self.pacing {
                Pacing::Sleep => tokio::time::sleep_until(self.clock.instant(due)).await,
                Pacing::Spin if due - now > SPIN_WINDOW_NS => {
                    tokio::time::sleep_until(self.clock.instant(due - SPIN_WINDOW_NS)).await
                }
                // Yielding (not a bare spin) lets receivers on this thread
                // run, and the runtime polls for I/O between yields.
                Pacing::Spin => tokio::task::yield_now().await,
            }
        }
    }

    pub fn is_measured(&self, i: u64) -> bool {
        i >= self.warmup_items
    }

    pub fn measured_items(&self) -> u64 {
        self.total_items - self.warmup_items
    }

    /// When the measured part begins (the first measured item is due).
    pub fn measure_start_ns(&self) -> u64 {
        self.due_ns(self.warmup_items)
    }

    /// When the measured part ends: one interval after the last item is
    /// due, so that `items / (end - start)` is the offered rate.
    pub fn measure_end_ns(&self) -> u64 {
        self.due_ns(self.total_items)
    }

    /// Time since `due_ns(i)`, zero if it is not due yet.
    pub fn late_by(&self, i: u64, now_ns: u64) -> u64 {
        now_ns.saturating_sub(self.due_ns(i))
    }

    /// The offered rate, items per second.
    pub fn rate(&self) -> f64 {
        1e9 / self.interval_ns
    }
}

/// `items` over the nanoseconds from `start_ns` to `end_ns`, per second.
pub fn per_second(items: u64, start_ns: u64, end_ns: u64) -> f64 {
    let span = end_ns.saturating_sub(start_ns);
    if span == 0 {
        0.0
    } else {
        items as f64 * 1e9 / span as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spinning_waits_until_the_due_time() {
        let clock = Clock::new();
        let schedule = Schedule::new(
            clock,
            Pacing::Spin,
            Duration::from_millis(3),
            1000.0,
            Duration::ZERO,
            Duration::from_millis(5),
        );
        for i in 0..5 {
            schedule.wait_for(i).await;
            let late = schedule.late_by(i, clock.now_ns());
            assert!(clock.now_ns() >= schedule.due_ns(i));
            // Generous: a loaded test machine may preempt us.
            assert!(late < 50_000_000, "{late} ns late");
        }
    }

    #[test]
    fn items_are_evenly_spaced_and_split_into_warmup_and_measured() {
        let schedule = Schedule::new(
            Clock::new(),
            Pacing::Sleep,
            Duration::ZERO,
            1000.0,
            Duration::from_millis(500),
            Duration::from_secs(2),
        );
        assert_eq!(schedule.warmup_items, 500);
        assert_eq!(schedule.total_items, 2500);
        assert_eq!(schedule.due_ns(10) - schedule.due_ns(9), 1_000_000);
        assert!(!schedule.is_measured(499));
        assert!(schedule.is_measured(500));
        assert_eq!(
            schedule.measure_end_ns() - schedule.measure_start_ns(),
            2_000_000_000
        );
        let rate = per_second(
            schedule.measured_items(),
            schedule.measure_start_ns(),
            schedule.measure_end_ns(),
        );
        assert!((rate - 1000.0).abs() < 1e-6);
    }
}

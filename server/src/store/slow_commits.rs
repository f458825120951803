//! Tells the operator when commits are slow, without flooding the log.
//!
//! A commit writes the batch to the log and waits for the disk's sync, and
//! every confirmation and delivery in the batch waits with it: when syncs
//! stall (a rate-limited cloud disk past its budget stalls for 15-20 ms at
//! a time, references/BENCHMARKS.md "The disk's sync budget"), messages are
//! late and nothing else in the hub shows why.
//!
//! A slow commit is reported at once when no report was made in the last
//! [`EVERY`]; later ones are counted, and the count goes out with the first
//! commit after that minute has passed, or when the writer stops. So the
//! first sign of trouble shows at once, and a disk that stays slow costs
//! one line a minute.

use std::time::{Duration, Instant};

/// A commit slower than this counts as slow: an SSD syncs in well under a
/// millisecond, a spinning disk in about ten.
pub const SLOW: Duration = Duration::from_millis(10);
/// At most one report in this long.
pub const EVERY: Duration = Duration::from_secs(60);

/// Commits seen since the last report.
pub struct SlowCommits {
    /// When counting began: the last report, or the start.
    since: Instant,
    /// Whether `since` is a report (not the start).
    reported: bool,
    commits: u64,
    slow: u64,
    worst: Duration,
}

/// What to tell the operator about the commits since the last report.
#[derive(Debug, PartialEq, Eq)]
pub struct Report {
    /// Commits in the period, slow or not.
    pub commits: u64,
    pub slow: u64,
    pub worst: Duration,
    /// How long the period was.
    pub over: Duration,
}

impl SlowCommits {
    pub fn new(now: Instant) -> Self {
        Self {
            since: now,
            reported: false,
            commits: 0,
            slow: 0,
            worst: Duration::ZERO,
        }
    }

    /// Counts a commit that took `took` and ended at `now`, and returns a
    /// report if one is due (see the module's documentation).
    pub fn commit_took(&mut self, took: Duration, now: Instant) -> Option<Report> {
        self.commits += 1;
        if took > SLOW {
            self.slow += 1;
            self.worst = self.worst.max(took);
        }
        let due = !self.reported || now.duration_since(self.since) >= EVERY;
        if self.slow > 0 && due {
            self.report(now)
        } else {
            None
        }
    }

    /// The slow commits not reported yet, if any: for when the writer
    /// stops.
    pub fn finish(mut self, now: Instant) -> Option<Report> {
        self.report(now)
    }

    fn report(&mut self, now: Instant) -> Option<Report> {
        if self.slow == 0 {
            return None;
        }
        let report = Report {
            commits: self.commits,
            slow: self.slow,
            worst: self.worst,
            over: now.duration_since(self.since),
        };
        *self = Self {
            reported: true,
            ..Self::new(now)
        };
        Some(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Duration = Duration::from_micros(300);
    const STALL: Duration = Duration::from_millis(80);

    fn at(start: Instant, seconds: u64) -> Instant {
        start + Duration::from_secs(seconds)
    }

    #[test]
    fn fast_commits_are_never_reported() {
        let start = Instant::now();
        let mut commits = SlowCommits::new(start);
        for second in 0..300 {
            assert_eq!(commits.commit_took(FAST, at(start, second)), None);
        }
        assert_eq!(commits.finish(at(start, 300)), None);
    }

    #[test]
    fn a_commit_just_at_the_threshold_is_not_slow() {
        let start = Instant::now();
        let mut commits = SlowCommits::new(start);
        assert_eq!(commits.commit_took(SLOW, start), None);
        assert_eq!(commits.finish(at(start, 1)), None);
    }

    #[test]
    fn the_first_slow_commit_is_reported_at_once_and_later_ones_a_minute_after() {
        let start = Instant::now();
        let mut commits = SlowCommits::new(start);
        assert_eq!(commits.commit_took(FAST, at(start, 10)), None);
        assert_eq!(
            commits.commit_took(STALL, at(start, 20)),
            Some(Report {
                commits: 2,
                slow: 1,
                worst: STALL,
                over: Duration::from_secs(20),
            }),
            "the first one: at once"
        );
        // Within the minute: counted, not reported; the worst is kept
        // whatever the order.
        assert_eq!(commits.commit_took(STALL * 2, at(start, 30)), None);
        assert_eq!(commits.commit_took(STALL, at(start, 40)), None);
        assert_eq!(commits.commit_took(FAST, at(start, 79)), None);
        assert_eq!(
            commits.commit_took(FAST, at(start, 110)),
            Some(Report {
                commits: 4,
                slow: 2,
                worst: STALL * 2,
                over: Duration::from_secs(90),
            }),
            "the next commit a minute after the report carries the count"
        );
        // A minute and more later, a slow commit is again reported at once.
        assert_eq!(
            commits.commit_took(STALL, at(start, 170)),
            Some(Report {
                commits: 1,
                slow: 1,
                worst: STALL,
                over: Duration::from_secs(60),
            })
        );
    }

    #[test]
    fn the_count_not_yet_reported_goes_out_when_the_writer_stops() {
        let start = Instant::now();
        let mut commits = SlowCommits::new(start);
        assert!(commits.commit_took(STALL, start).is_some());
        assert_eq!(commits.commit_took(STALL, at(start, 5)), None);
        assert_eq!(
            commits.finish(at(start, 7)),
            Some(Report {
                commits: 1,
                slow: 1,
                worst: STALL,
                over: Duration::from_secs(7),
            })
        );
    }
}

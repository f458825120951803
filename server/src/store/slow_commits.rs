//! Tells the operator when commits are slow, at most once a minute.
//!
//! A commit waits for the disk's sync, and everything stored in it waits
//! with it: when syncs stall (a rate-limited cloud disk past its budget
//! stalls for 15-20 ms at a time, references/BENCHMARKS.md "The disk's sync
//! budget"), every confirmation and delivery is late, and nothing else in
//! the hub shows why. One line a minute says how many commits were slow,
//! and how slow the worst was, without flooding the log when the disk
//! stays slow.

use std::time::{Duration, Instant};

/// A commit slower than this counts as slow: a healthy disk syncs in well
/// under a millisecond, a stalled one takes tens.
pub const SLOW: Duration = Duration::from_millis(50);
/// At most one report in this long.
pub const EVERY: Duration = Duration::from_secs(60);

/// Commits seen since the last report.
pub struct SlowCommits {
    since: Instant,
    commits: u64,
    slow: u64,
    worst: Duration,
}

/// What to tell the operator about the commits since the last report.
#[derive(Debug, PartialEq, Eq)]
pub struct Report {
    pub commits: u64,
    pub slow: u64,
    pub worst: Duration,
    pub over: Duration,
}

impl SlowCommits {
    pub fn new(now: Instant) -> Self {
        Self {
            since: now,
            commits: 0,
            slow: 0,
            worst: Duration::ZERO,
        }
    }

    /// Counts a commit that took `took` and ended at `now`; returns a
    /// report when a slow commit was seen and the last report (or the
    /// start) is at least [`EVERY`] ago. A quiet spell with slow commits
    /// in it is reported by the first commit after it.
    fn record(&mut self, took: Duration, now: Instant) -> Option<Report> {
        self.commits += 1;
        if took > SLOW {
            self.slow += 1;
            self.worst = self.worst.max(took);
        }
        if self.slow == 0 || now.duration_since(self.since) < EVERY {
            return None;
        }
        let report = Report {
            commits: self.commits,
            slow: self.slow,
            worst: self.worst,
            over: now.duration_since(self.since),
        };
        *self = Self::new(now);
        Some(report)
    }

    /// Starts counting afresh with no report, after a quiet minute: slow
    /// commits long ago say nothing about the disk now.
    fn forget_if_quiet(&mut self, now: Instant) {
        if self.slow == 0 && now.duration_since(self.since) >= EVERY {
            *self = Self::new(now);
        }
    }

    /// Counts a commit (see [`SlowCommits::record`]); a minute without a
    /// slow commit starts the count afresh first.
    pub fn commit_took(&mut self, took: Duration, now: Instant) -> Option<Report> {
        self.forget_if_quiet(now);
        self.record(took, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Duration = Duration::from_micros(300);
    const STALL: Duration = Duration::from_millis(80);

    #[test]
    fn fast_commits_are_never_reported() {
        let start = Instant::now();
        let mut commits = SlowCommits::new(start);
        for second in 0..300 {
            let now = start + Duration::from_secs(second);
            assert_eq!(commits.commit_took(FAST, now), None);
        }
    }

    #[test]
    fn slow_commits_are_reported_once_a_minute_with_the_worst() {
        let start = Instant::now();
        let mut commits = SlowCommits::new(start);
        assert_eq!(commits.commit_took(STALL, start), None, "not a minute yet");
        let later = start + Duration::from_secs(30);
        assert_eq!(commits.commit_took(STALL * 2, later), None);
        let minute = start + EVERY;
        assert_eq!(
            commits.commit_took(FAST, minute),
            Some(Report {
                commits: 3,
                slow: 2,
                worst: STALL * 2,
                over: EVERY,
            })
        );
        // Counting starts afresh after a report.
        let soon = minute + Duration::from_secs(1);
        assert_eq!(commits.commit_took(STALL, soon), None);
        let next = minute + EVERY;
        assert_eq!(
            commits.commit_took(FAST, next),
            Some(Report {
                commits: 2,
                slow: 1,
                worst: STALL,
                over: EVERY,
            })
        );
    }

    #[test]
    fn a_commit_just_at_the_threshold_is_not_slow() {
        let start = Instant::now();
        let mut commits = SlowCommits::new(start);
        assert_eq!(commits.commit_took(SLOW, start), None);
        assert_eq!(commits.commit_took(FAST, start + EVERY), None);
    }

    #[test]
    fn a_quiet_minute_starts_the_count_afresh() {
        let start = Instant::now();
        let mut commits = SlowCommits::new(start);
        // A minute of fast commits, then one slow one: it is reported only
        // a minute after the fresh count began, not at once.
        assert_eq!(commits.commit_took(FAST, start), None);
        let quiet = start + EVERY + Duration::from_secs(5);
        assert_eq!(commits.commit_took(STALL, quiet), None);
        assert_eq!(
            commits.commit_took(FAST, quiet + EVERY),
            Some(Report {
                commits: 2,
                slow: 1,
                worst: STALL,
                over: EVERY,
            })
        );
    }
}

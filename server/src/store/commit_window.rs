//! Spaces the writer's commits out while it is busy, so that each commit
//! carries more jobs and the disk sees fewer, larger syncs.
//!
//! Every commit ends in an `fsync`, and disks (cloud block devices above
//! all) allow only so many of them per second: the benchmark machine's
//! disk stalls every write for 15-20 ms many times a second once it is
//! asked for more than about 3,600 syncs/s (references/BENCHMARKS.md, "The
//! disk's sync budget"). Without a window the writer commits again as soon
//! as the last commit returns, and at a few thousand messages a second that
//! is a commit for every one or two of them.
//!
//! "Busy" means the last batch held two or more jobs, as PostgreSQL's
//! `commit_siblings` keeps `commit_delay` from slowing a lone transaction:
//! an agent alone on the hub, sending one message after another and
//! waiting for each confirmation, never waits for the window. (With other
//! traffic its batches hold other jobs too, and it waits like everyone.)
//! The price of that rule: evenly spaced jobs that each commit before the
//! next arrives are never spaced, however many there are per second.

use std::time::{Duration, Instant};

pub struct CommitWindow {
    window: Duration,
    /// When the last batch began, if it held more than one job.
    last_busy_batch: Option<Instant>,
}

impl CommitWindow {
    /// `window` is the least time from the start of a busy batch to the
    /// start of the next; zero turns spacing off.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            last_busy_batch: None,
        }
    }

    /// Called once a batch's first job has arrived and before the rest are
    /// taken: waits out what is left of the window, so that the jobs that
    /// arrive meanwhile join this batch.
    pub fn wait(&self) {
        if let Some(left) = self.left_at(Instant::now()) {
            std::thread::sleep(left);
        }
    }

    /// Records that a batch of `jobs` jobs began now.
    pub fn began(&mut self, jobs: usize) {
        self.began_at(Instant::now(), jobs);
    }

    fn began_at(&mut self, now: Instant, jobs: usize) {
        self.last_busy_batch = (jobs > 1).then_some(now);
    }

    /// How long a batch that could begin at `now` should wait.
    fn left_at(&self, now: Instant) -> Option<Duration> {
        let began = self.last_busy_batch?;
        // A window too long to add to an instant is as good as none: the
        // hub's settings refuse anything over 100 ms anyway.
        let left = began
            .checked_add(self.window)?
            .saturating_duration_since(now);
        (!left.is_zero()).then_some(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_millis(1);

    #[test]
    fn a_batch_after_a_busy_one_waits_for_the_rest_of_the_window() {
        let mut window = CommitWindow::new(WINDOW);
        let start = Instant::now();
        window.began_at(start, 2);
        assert_eq!(window.left_at(start), Some(WINDOW));
        assert_eq!(
            window.left_at(start + Duration::from_micros(300)),
            Some(Duration::from_micros(700))
        );
        assert_eq!(window.left_at(start + WINDOW), None);
        assert_eq!(window.left_at(start + 2 * WINDOW), None);
    }

    #[test]
    fn a_lone_job_never_waits() {
        let mut window = CommitWindow::new(WINDOW);
        let start = Instant::now();
        assert_eq!(window.left_at(start), None, "the first batch of all");
        window.began_at(start, 1);
        assert_eq!(window.left_at(start), None, "after a batch of one job");
        window.began_at(start, 3);
        window.began_at(start + Duration::from_micros(100), 1);
        assert_eq!(
            window.left_at(start + Duration::from_micros(200)),
            None,
            "a lone batch ends the busy spell"
        );
    }

    #[test]
    fn a_window_too_long_for_an_instant_never_waits() {
        let mut window = CommitWindow::new(Duration::MAX);
        let start = Instant::now();
        window.began_at(start, 2);
        assert_eq!(window.left_at(start), None);
    }

    #[test]
    fn a_zero_window_never_waits() {
        let mut window = CommitWindow::new(Duration::ZERO);
        let start = Instant::now();
        window.began_at(start, 100);
        assert_eq!(window.left_at(start), None);
    }
}

//! One receiver's check of numbered messages: each must come once and in
//! order, and the measured ones are timed from when they were due.

use crate::schedule::Schedule;
use crate::stats::{SharedErrors, SharedLatency};
use crate::ws::Ended;

pub struct InOrder {
    expected: u64,
    last: Option<u64>,
    got: u64,
    measured: u64,
    last_measured_ns: u64,
}

impl InOrder {
    /// A receiver that should get `expected` messages.
    pub fn new(expected: u64) -> Self {
        InOrder {
            expected,
            last: None,
            got: 0,
            measured: 0,
            last_measured_ns: 0,
        }
    }

    /// Takes message `i`, arrived at `now_ns`. Returns false, and counts an
    /// error, for a message that repeats or comes after a later one.
    pub fn take(
        &mut self,
        i: u64,
        now_ns: u64,
        schedule: &Schedule,
        delivery: &SharedLatency,
        errors: &SharedErrors,
    ) -> bool {
        if self.last.is_some_and(|last| i <= last) {
            errors.add("duplicate_or_reordered", 1);
            return false;
        }
        self.last = Some(i);
        self.got += 1;
        if schedule.is_measured(i) {
            delivery
                .lock()
                .record_due(schedule.due_ns(i), schedule.late_by(i, now_ns));
            self.measured += 1;
            self.last_measured_ns = now_ns;
        }
        true
    }

    /// Whether every expected message has come.
    pub fn done(&self) -> bool {
        self.got == self.expected
    }

    /// After the stream ended: counts what never came (and why the stream
    /// ended, if it failed); returns the measured messages and when the last
    /// of them came.
    pub fn finish(self, ended: &Ended, errors: &SharedErrors) -> (u64, u64) {
        if self.got < self.expected {
            errors.add("missing", self.expected - self.got);
            if let Some(kind) = ended.error_kind() {
                errors.add(kind, 1);
            }
        }
        (self.measured, self.last_measured_ns)
    }
}

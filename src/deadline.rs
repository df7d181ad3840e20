//! Deadlines on the monotonic clock: every external call and every wait in a hook is
//! bounded by one of these, so no peer (snapd, a hook tool, whatever holds microsample's
//! port) can hold the machine's hook lock for long.

use std::time::{Duration, Instant};

/// A point on the monotonic clock after which a call or a wait gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Deadline(Instant);

impl Deadline {
    /// `budget` from now.
    pub(crate) fn after(budget: Duration) -> Deadline {
        Deadline(Instant::now() + budget)
    }

    /// Time left, zero once passed.
    pub(crate) fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    pub(crate) fn passed(self) -> bool {
        self.remaining().is_zero()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_never_goes_negative_and_capping_takes_the_earlier() {
        let past = Deadline::after(Duration::ZERO);
        assert!(past.passed());
        assert_eq!(past.remaining(), Duration::ZERO);
        let later = Deadline::after(Duration::from_secs(60));
        assert!(!later.passed());
        assert!(later.remaining() <= Duration::from_secs(60));
        assert!(past < later);
    }
}

//! Time is an input: every expiry decision in Lanyard reads a [`Clock`], so tests can move time
//! instead of sleeping. This is the only crate allowed to read the wall clock (`clippy.toml`).
#![forbid(unsafe_code)]

use std::sync::Arc;

use parking_lot::Mutex;
use time::{Duration, OffsetDateTime};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

/// A shared, dynamically chosen clock.
pub type SharedClock = Arc<dyn Clock>;

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one sanctioned read of the wall clock
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to; starts at the wall clock's current time.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<OffsetDateTime>,
}

impl ManualClock {
    pub fn new() -> Self {
        Self {
            now: Mutex::new(SystemClock.now()),
        }
    }

    pub fn advance(&self, by: Duration) {
        *self.now.lock() += by;
    }

    pub fn set(&self, to: OffsetDateTime) {
        *self.now.lock() = to;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.now.lock()
    }
}

/// The wall clock set off by a fixed amount: a machine whose clock is wrong (fault tests of
/// clock skew between the IdP, the registry and the client).
#[derive(Debug, Clone, Copy)]
pub struct OffsetClock {
    offset: Duration,
}

impl OffsetClock {
    /// The wall clock plus `offset` (negative: behind).
    pub fn new(offset: Duration) -> Self {
        Self { offset }
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> OffsetDateTime {
        SystemClock.now() + self.offset
    }
}

/// Seconds since the Unix epoch, the unit of JWT time claims.
pub fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_clock_is_the_wall_clock_set_off_by_its_offset() {
        for secs in [300, -300] {
            let before = SystemClock.now();
            let skewed = OffsetClock::new(Duration::seconds(secs)).now();
            let after = SystemClock.now();
            assert!(
                skewed >= before + Duration::seconds(secs),
                "{secs}: {skewed} < {before}"
            );
            assert!(
                skewed <= after + Duration::seconds(secs),
                "{secs}: {skewed} > {after}"
            );
        }
    }
}

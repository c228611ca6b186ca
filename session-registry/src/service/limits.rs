//! The failed-lookup limit: more than [`FAILURES_PER_MINUTE`] credentials that matched nothing
//! from one client address in a minute, and that address is answered `429` until the minute is
//! over. Only lookups that found nothing count (a malformed token, no such session, a session JWT
//! that does not verify): a revoked or expired session's device presenting it again is no guess.

use std::collections::HashMap;
use std::net::IpAddr;

use parking_lot::Mutex;

use crate::error::ApiError;

/// Failed lookups allowed per client address per minute.
pub const FAILURES_PER_MINUTE: u32 = 30;
/// Addresses remembered before the stale ones are swept.
const MAX_TRACKED: usize = 100_000;

/// Failures per client address: (window start, count).
#[derive(Default)]
pub(super) struct FailureLimiter {
    failures: Mutex<HashMap<IpAddr, (i64, u32)>>,
}

impl FailureLimiter {
    /// `429` when `ip` is over the limit in the current window.
    pub(super) fn check(&self, ip: Option<IpAddr>, now: i64) -> Result<(), ApiError> {
        let Some(ip) = ip else { return Ok(()) };
        match self.failures.lock().get(&ip) {
            Some((start, n)) if now - start < 60 && *n >= FAILURES_PER_MINUTE => {
                Err(ApiError::TooManyRequests {
                    retry_after: u64::try_from(60 - (now - start)).unwrap_or(1),
                })
            }
            _ => Ok(()),
        }
    }

    /// Counts one failed lookup from `ip`.
    pub(super) fn note(&self, ip: Option<IpAddr>, now: i64) {
        let Some(ip) = ip else { return };
        let mut failures = self.failures.lock();
        let entry = failures.entry(ip).or_insert((now, 0));
        if now - entry.0 >= 60 {
            *entry = (now, 0);
        }
        entry.1 += 1;
        if failures.len() > MAX_TRACKED {
            failures.retain(|_, (start, _)| now - *start < 60);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_limited_for_the_rest_of_its_minute_and_others_are_not() {
        let limiter = FailureLimiter::default();
        let (a, b) = (
            Some("203.0.113.1".parse().unwrap()),
            Some("203.0.113.2".parse().unwrap()),
        );
        for _ in 0..FAILURES_PER_MINUTE {
            assert!(limiter.check(a, 100).is_ok());
            limiter.note(a, 100);
        }
        assert!(matches!(
            limiter.check(a, 130),
            Err(ApiError::TooManyRequests { retry_after: 30 })
        ));
        assert!(limiter.check(b, 130).is_ok());
        assert!(limiter.check(a, 160).is_ok(), "a new minute");
        assert!(limiter.check(None, 130).is_ok(), "no address, no limit");
    }
}

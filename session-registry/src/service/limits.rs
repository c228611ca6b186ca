//! The failed-lookup limit: more than [`FAILURES_PER_MINUTE`] credentials that matched nothing
//! from one client address in a minute, and that address is answered `429` until the minute is
//! over. The count is shared by every process on one database (`failed_lookups`): a failure
//! is counted there, and the process that saw it takes the shared count, so a client spreading
//! guesses over several processes behind a load balancer gets at most one more guess per process
//! than on one. Only lookups that found nothing count (a malformed token, no such session, a session JWT
//! that does not verify): a revoked or expired session's device presenting it again is no guess.

use std::collections::HashMap;
use std::net::IpAddr;

use parking_lot::RwLock;

use crate::error::ApiError;

/// Failed lookups allowed per client address per minute.
pub const FAILURES_PER_MINUTE: u32 = 30;
/// Addresses remembered at most; past it, a new address is not tracked until a sweep makes
/// room (the map never grows without bound, and no call scans it more than once a second).
const MAX_TRACKED: usize = 100_000;

/// The unit one client is counted in: its IPv4 address, or its IPv6 /64 (one host usually has
/// a whole /64 to pick addresses from).
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Counts per client (see [`client_key`]) in one-minute windows: (window start, count). At most
/// `max` clients are held; past it, a new one is not counted until a sweep of the stale windows
/// (at most once a second) makes room, so the map never grows without bound and no call scans
/// it on every request. What a full map means is the caller's decision.
pub(crate) struct ClientWindows {
    tracked: RwLock<Tracked>,
    max: usize,
}

#[derive(Default)]
struct Tracked {
    by_client: HashMap<IpAddr, (i64, u32)>,
    last_sweep: i64,
}

impl ClientWindows {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            tracked: RwLock::default(),
            max,
        }
    }

    /// `ip`'s client's window as (start, count), if it has one.
    fn window(&self, ip: IpAddr) -> Option<(i64, u32)> {
        self.tracked.read().by_client.get(&client_key(ip)).copied()
    }

    /// Counts one for `ip`'s client: its count in the current window, or `None` when the map is
    /// full of live windows and the client could not be counted.
    pub(crate) fn add(&self, ip: IpAddr, now: i64) -> Option<u32> {
        let key = client_key(ip);
        let mut tracked = self.tracked.write();
        if tracked.by_client.len() >= self.max && !tracked.by_client.contains_key(&key) {
            if now == tracked.last_sweep {
                return None;
            }
            tracked.last_sweep = now;
            tracked.by_client.retain(|_, (start, _)| now - *start < 60);
            if tracked.by_client.len() >= self.max {
                return None;
            }
        }
        let entry = tracked.by_client.entry(key).or_insert((now, 0));
        if now - entry.0 >= 60 {
            *entry = (now, 0);
        }
        entry.1 += 1;
        Some(entry.1)
    }

    /// Takes a window counted elsewhere (the shared count) for `ip`'s client when it is newer or
    /// higher than the one held.
    pub(crate) fn raise(&self, ip: IpAddr, start: i64, count: u32) {
        let key = client_key(ip);
        let mut tracked = self.tracked.write();
        if tracked.by_client.len() >= self.max && !tracked.by_client.contains_key(&key) {
            return;
        }
        let entry = tracked.by_client.entry(key).or_insert((start, 0));
        if start > entry.0 || (start == entry.0 && count > entry.1) {
            *entry = (start, count);
        }
    }
}

/// Failed lookups per client; a client it could not count (a full map) is not limited.
pub(super) struct FailureLimiter {
    failures: ClientWindows,
}

impl Default for FailureLimiter {
    fn default() -> Self {
        Self {
            failures: ClientWindows::new(MAX_TRACKED),
        }
    }
}

impl FailureLimiter {
    /// `429` when `ip` is over the limit in the current window.
    pub(super) fn check(&self, ip: Option<IpAddr>, now: i64) -> Result<(), ApiError> {
        let Some(ip) = ip else { return Ok(()) };
        match self.failures.window(ip) {
            Some((start, n)) if now - start < 60 && n >= FAILURES_PER_MINUTE => {
                Err(ApiError::TooManyRequests {
                    retry_after: u64::try_from(60 - (now - start)).unwrap_or(1),
                })
            }
            _ => Ok(()),
        }
    }

    /// Takes the shared count of `ip`'s client: `failures` in the window that began at `start`.
    pub(super) fn shared(&self, ip: IpAddr, start: i64, failures: u32) {
        self.failures.raise(ip, start, failures);
    }

    /// Counts one failed lookup from `ip` here alone (when the shared count is unavailable).
    pub(super) fn note(&self, ip: Option<IpAddr>, now: i64) {
        if let Some(ip) = ip {
            let _ = self.failures.add(ip, now);
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

    #[test]
    fn a_count_made_by_other_processes_limits_here_too() {
        let limiter = FailureLimiter::default();
        let a: IpAddr = "203.0.113.9".parse().unwrap();
        limiter.shared(a, 100, FAILURES_PER_MINUTE - 1);
        assert!(limiter.check(Some(a), 110).is_ok());
        limiter.shared(a, 100, FAILURES_PER_MINUTE);
        assert!(limiter.check(Some(a), 110).is_err());
        // An older window never replaces a newer one.
        limiter.shared(a, 40, 1);
        assert!(limiter.check(Some(a), 110).is_err());
        assert!(limiter.check(Some(a), 160).is_ok(), "the window is over");
    }

    #[test]
    fn one_ipv6_slash_64_is_one_client() {
        let limiter = FailureLimiter::default();
        for i in 0..FAILURES_PER_MINUTE {
            // A new address of the same /64 for every guess.
            let ip: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap();
            limiter.note(Some(ip), 100);
        }
        let next: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert!(limiter.check(Some(next), 110).is_err());
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limiter.check(Some(other), 110).is_ok(), "another /64");
    }
}

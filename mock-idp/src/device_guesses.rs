//! Bounds on guessing at the device page (RFC 8628 §5.1: the user code is short, so attempts
//! at it must be rate limited). A client address gets [`WRONG_CODES_PER_ADDRESS`] wrong user
//! codes in any 60 seconds; a device grant gets [`FAILED_SIGN_INS_PER_GRANT`] failed sign-ins
//! naming it (so its page is no password oracle either) in any 60 seconds. Past either bound
//! the page answers 429 before looking at the code or the password, and the refusal changes
//! nothing: the device grant stays as it was and can still be approved once the minute is over.
//!
//! Addresses are counted as the guest quota counts them: the TCP peer, IPv6 by /64.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;

use time::{Duration, OffsetDateTime};

use crate::guest_quota::bucket;

/// Wrong user codes one client address may send in a minute.
pub const WRONG_CODES_PER_ADDRESS: usize = 5;
/// Failed sign-ins naming one device grant in a minute.
pub const FAILED_SIGN_INS_PER_GRANT: usize = 5;

/// The window both bounds are counted over.
const WINDOW: Duration = Duration::minutes(1);

/// Why the device page refused to look at a submission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuessRefusal {
    #[error("too many wrong codes were entered from this address; try again in {} seconds", retry_after.whole_seconds().max(1))]
    AddressLimited { retry_after: Duration },
    #[error("too many failed sign-ins for this code; try again in {} seconds", retry_after.whole_seconds().max(1))]
    GrantLimited { retry_after: Duration },
}

impl GuessRefusal {
    /// Seconds after which trying again may succeed.
    pub fn retry_after_secs(&self) -> i64 {
        match self {
            GuessRefusal::AddressLimited { retry_after }
            | GuessRefusal::GrantLimited { retry_after } => retry_after.whole_seconds().max(1),
        }
    }
}

/// Failures by key in the last minute.
#[derive(Debug)]
struct Window<K> {
    recent: HashMap<K, VecDeque<OffsetDateTime>>,
}

impl<K> Default for Window<K> {
    fn default() -> Self {
        Self {
            recent: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash> Window<K> {
    /// `Err(retry_after)` when `key` has `max` failures in the window at `now`.
    fn check(&mut self, key: K, now: OffsetDateTime, max: usize) -> Result<(), Duration> {
        let times = self.recent.entry(key).or_default();
        while times.front().is_some_and(|t| *t + WINDOW <= now) {
            times.pop_front();
        }
        match times.front() {
            Some(oldest) if times.len() >= max => Err(*oldest + WINDOW - now),
            _ => Ok(()),
        }
    }

    fn record(&mut self, key: K, now: OffsetDateTime) {
        self.recent.entry(key).or_default().push_back(now);
    }

    fn sweep(&mut self, now: OffsetDateTime) {
        self.recent.retain(|_, times| {
            times.retain(|t| *t + WINDOW > now);
            !times.is_empty()
        });
    }
}

/// The failures counted on one tenant's device page.
#[derive(Debug, Default)]
pub struct DeviceGuesses {
    wrong_codes: Window<Option<IpAddr>>,
    /// By user code: the device grant a failed sign-in named.
    failed_sign_ins: Window<String>,
}

impl DeviceGuesses {
    /// Whether `addr` may submit a user code at `now`; counts nothing.
    pub fn check_address(
        &mut self,
        addr: Option<IpAddr>,
        now: OffsetDateTime,
    ) -> Result<(), GuessRefusal> {
        self.wrong_codes
            .check(bucket(addr), now, WRONG_CODES_PER_ADDRESS)
            .map_err(|retry_after| GuessRefusal::AddressLimited { retry_after })
    }

    /// Whether a sign-in naming the device grant of `user_code` may be tried at `now`.
    pub fn check_grant(
        &mut self,
        user_code: &str,
        now: OffsetDateTime,
    ) -> Result<(), GuessRefusal> {
        self.failed_sign_ins
            .check(user_code.to_owned(), now, FAILED_SIGN_INS_PER_GRANT)
            .map_err(|retry_after| GuessRefusal::GrantLimited { retry_after })
    }

    /// Counts a wrong (unknown, expired or used) user code from `addr`.
    pub fn wrong_code(&mut self, addr: Option<IpAddr>, now: OffsetDateTime) {
        self.wrong_codes.record(bucket(addr), now);
    }

    /// Counts a failed sign-in naming the device grant of `user_code`.
    pub fn failed_sign_in(&mut self, user_code: &str, now: OffsetDateTime) {
        self.failed_sign_ins.record(user_code.to_owned(), now);
    }

    /// Forgets what is out of the window, so the maps do not grow without bound.
    pub fn sweep(&mut self, now: OffsetDateTime) {
        self.wrong_codes.sweep(now);
        self.failed_sign_ins.sweep(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::days(20_000)
    }

    #[test]
    fn an_address_gets_five_wrong_codes_a_minute_and_others_are_not_affected() {
        let mut g = DeviceGuesses::default();
        let a = Some(IpAddr::from([192, 0, 2, 1]));
        let b = Some(IpAddr::from([192, 0, 2, 2]));
        for i in 0..5 {
            let at = t0() + Duration::seconds(i);
            assert_eq!(g.check_address(a, at), Ok(()));
            g.wrong_code(a, at);
        }
        let at = t0() + Duration::seconds(10);
        assert_eq!(
            g.check_address(a, at),
            Err(GuessRefusal::AddressLimited {
                retry_after: Duration::seconds(50)
            })
        );
        assert_eq!(g.check_address(b, at), Ok(()));
        assert_eq!(g.check_grant("BCDF-GHJK", at), Ok(()));
        assert_eq!(g.check_address(a, t0() + Duration::seconds(60)), Ok(()));
    }

    #[test]
    fn a_grant_gets_five_failed_sign_ins_a_minute_and_sweeping_forgets_old_ones() {
        let mut g = DeviceGuesses::default();
        for _ in 0..5 {
            assert!(g.check_grant("BCDF-GHJK", t0()).is_ok());
            g.failed_sign_in("BCDF-GHJK", t0());
        }
        assert!(g.check_grant("BCDF-GHJK", t0()).is_err());
        assert!(g.check_grant("LMNP-QRST", t0()).is_ok());
        g.sweep(t0() + Duration::minutes(2));
        assert!(g.failed_sign_ins.recent.is_empty() && g.wrong_codes.recent.is_empty());
    }
}

//! Bounds on guest creation (issue #12, finding 11). Anyone who can reach the IdP can press the
//! guest button or send `prompt=create`, and each press made a user that is never deleted; so a
//! tenant makes at most [`GuestLimits::per_address_per_minute`] guests for one client address in
//! any 60 seconds, and holds at most [`GuestLimits::max_users`] guests in all (the latter is
//! enforced by the directory, under its lock, in [`crate::directory::Directory::add_guest`]).
//!
//! The address is the TCP peer's: a forwarded-for header is the client's own word and would let
//! it pick a fresh address per request. An IPv6 client usually holds a whole /64, so IPv6
//! addresses count per /64.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};

use time::{Duration, OffsetDateTime};

pub use crate::config::GuestLimits;

/// The window the per-address rate is counted over.
const WINDOW: Duration = Duration::minutes(1);

/// Why no guest was created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestRefusal {
    #[error("too many guests were created from this address; try again in {} seconds", retry_after.whole_seconds())]
    TooFast { retry_after: Duration },
    #[error("this tenant holds its maximum of {max} guest accounts")]
    TenantFull { max: u64 },
}

impl GuestRefusal {
    /// Seconds after which trying again may succeed; `None` when waiting alone will not help.
    pub fn retry_after_secs(&self) -> Option<i64> {
        match self {
            GuestRefusal::TooFast { retry_after } => Some(retry_after.whole_seconds().max(1)),
            GuestRefusal::TenantFull { .. } => None,
        }
    }
}

/// Guests created per client address in the last minute.
#[derive(Debug, Default)]
pub struct GuestRate {
    recent: HashMap<Option<IpAddr>, VecDeque<OffsetDateTime>>,
}

/// The key an address is counted under: IPv4 (also when mapped into IPv6) as is, IPv6 by /64.
pub(crate) fn bucket(addr: Option<IpAddr>) -> Option<IpAddr> {
    addr.map(|a| match a.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    })
}

impl GuestRate {
    /// Whether `addr` may create one more guest at `now`; counts nothing.
    pub fn check(
        &mut self,
        addr: Option<IpAddr>,
        now: OffsetDateTime,
        per_minute: u32,
    ) -> Result<(), GuestRefusal> {
        let times = self.recent.entry(bucket(addr)).or_default();
        while times.front().is_some_and(|t| *t + WINDOW <= now) {
            times.pop_front();
        }
        if times.len() < per_minute as usize {
            return Ok(());
        }
        let oldest = times.front().copied().unwrap_or(now);
        Err(GuestRefusal::TooFast {
            retry_after: oldest + WINDOW - now,
        })
    }

    /// Counts a guest created for `addr` at `now`.
    pub fn record(&mut self, addr: Option<IpAddr>, now: OffsetDateTime) {
        self.recent.entry(bucket(addr)).or_default().push_back(now);
    }

    /// Forgets addresses with nothing in the window, so the map does not grow without bound.
    pub fn sweep(&mut self, now: OffsetDateTime) {
        self.recent.retain(|_, times| {
            times.retain(|t| *t + WINDOW > now);
            !times.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::days(20_000)
    }

    #[test]
    fn an_address_gets_its_rate_per_minute_and_again_once_the_minute_has_passed() {
        let mut rate = GuestRate::default();
        let a = Some(IpAddr::from([192, 0, 2, 1]));
        let b = Some(IpAddr::from([192, 0, 2, 2]));
        for i in 0..3 {
            assert_eq!(rate.check(a, t0() + Duration::seconds(i), 3), Ok(()));
            rate.record(a, t0() + Duration::seconds(i));
        }
        let at = t0() + Duration::seconds(10);
        assert_eq!(
            rate.check(a, at, 3),
            Err(GuestRefusal::TooFast {
                retry_after: Duration::seconds(50)
            })
        );
        assert_eq!(
            rate.check(b, at, 3),
            Ok(()),
            "another address is not affected"
        );
        assert_eq!(rate.check(a, t0() + Duration::seconds(60), 3), Ok(()));
        rate.sweep(t0() + Duration::minutes(5));
        assert!(rate.recent.is_empty());
    }

    #[test]
    fn ipv6_addresses_count_per_64_and_mapped_ipv4_as_ipv4() {
        let mut rate = GuestRate::default();
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        rate.record(Some(one), t0());
        assert!(rate.check(Some(same_64), t0(), 1).is_err());
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        rate.record(Some(v4), t0());
        assert!(rate.check(Some(mapped), t0(), 1).is_err());
    }
}

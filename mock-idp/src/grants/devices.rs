//! Device grants (RFC 8628): started by the device authorization endpoint, decided by a person
//! on the device page (by user code), polled by the device (by device code) until decided.

use std::collections::BTreeSet;

use time::{Duration, OffsetDateTime};

use super::{DeviceGrant, DeviceStatus, GrantStore, IdpSession};
use crate::directory::Client;
use crate::ids::ClientId;
use crate::issue::{Issue, IssueError, Mint, Unsigned};
use crate::random;
use crate::scope::Scope;

/// The codes of a started device grant.
pub struct StartedDevice {
    pub device_code: String,
    pub user_code: String,
}

/// Who approves a device on the device page.
pub enum Approver<'a> {
    /// A person who signed in on the page itself: the device gets an IdP session of its own.
    SignedIn { sub: &'a str },
    /// The browser's IdP session: the device joins it.
    Session(&'a IdpSession),
}

/// Why a device could not be approved or denied.
#[derive(Debug, thiserror::Error)]
pub enum DeviceDecisionRefusal {
    #[error("the user code is unknown, expired or already used")]
    NotWaiting,
    #[error("the browser's sign-in is older than the device's max_age")]
    SignInTooOld,
}

/// Why a device's poll got no tokens (RFC 8628 §3.5).
#[derive(Debug, thiserror::Error)]
pub enum DevicePollRefusal {
    #[error("device_code is unknown")]
    Unknown,
    #[error("device_code was issued to another client")]
    OtherClient,
    #[error("device_code has expired; start a new device authorization")]
    Expired,
    #[error("polling too fast; wait {} seconds between requests", interval.whole_seconds())]
    SlowDown { interval: Duration },
    #[error("the user has not yet approved this device")]
    Pending,
    #[error("the user denied this device")]
    Denied,
    /// The IdP session that approved the device has ended (signed out, or expired) since: a
    /// grant made now would outlive that sign-out.
    #[error(
        "the sign-in that approved this device has ended (signed out or expired); start a new \
         device authorization"
    )]
    SessionEnded,
    #[error(transparent)]
    Issue(#[from] IssueError),
}

impl GrantStore {
    /// Starts a device grant for `client_id`; `max_age` (seconds) bounds how old a browser's
    /// sign-in may be to approve it.
    pub fn start_device(
        &self,
        client_id: ClientId,
        scope: Scope,
        max_age: Option<i64>,
        expires_at: OffsetDateTime,
        interval: Duration,
    ) -> StartedDevice {
        let device_code = random::token();
        let user_code = random::user_code();
        let fp = random::fingerprint(&device_code);
        let mut grants = self.lock();
        grants.user_codes.insert(user_code.clone(), fp.clone());
        grants.devices.insert(
            fp,
            DeviceGrant {
                client_id,
                scope,
                expires_at,
                interval,
                max_age,
                last_poll: None,
                status: DeviceStatus::Pending,
            },
        );
        StartedDevice {
            device_code,
            user_code,
        }
    }

    /// Whether a live device grant with `user_code` waits for a decision.
    pub fn device_waiting(&self, user_code: &str, now: OffsetDateTime) -> bool {
        let grants = self.lock();
        grants
            .user_codes
            .get(user_code)
            .and_then(|fp| grants.devices.get(fp))
            .is_some_and(|d| d.is_waiting(now))
    }

    /// Whether the device waiting with `user_code` asks for a sign-in fresher than `session`'s,
    /// so the person must sign in again to approve it.
    pub fn device_needs_fresh_sign_in(
        &self,
        user_code: &str,
        session: &IdpSession,
        now: OffsetDateTime,
    ) -> bool {
        let grants = self.lock();
        grants
            .user_codes
            .get(user_code)
            .and_then(|fp| grants.devices.get(fp))
            .is_some_and(|d| d.is_waiting(now) && d.sign_in_too_old(session.auth_time, now))
    }

    /// Approves the device waiting with `user_code`.
    pub fn approve_device(
        &self,
        user_code: &str,
        approver: Approver<'_>,
        now: OffsetDateTime,
        session_ttl: Duration,
    ) -> Result<(), DeviceDecisionRefusal> {
        let mut grants = self.lock();
        let fp = grants
            .user_codes
            .get(user_code)
            .filter(|fp| grants.devices.get(*fp).is_some_and(|d| d.is_waiting(now)))
            .cloned()
            .ok_or(DeviceDecisionRefusal::NotWaiting)?;
        let Some(device) = grants.devices.get(&fp) else {
            return Err(DeviceDecisionRefusal::NotWaiting);
        };
        if let Approver::Session(browser) = &approver {
            // Checked here, under the lock that approves, as well as on the page: the device's
            // max_age holds whatever the form claimed.
            if device.sign_in_too_old(browser.auth_time, now) {
                return Err(DeviceDecisionRefusal::SignInTooOld);
            }
        }
        let client_id = device.client_id.clone();
        let status = match approver {
            Approver::SignedIn { sub } => {
                // The device's own session: no browser holds a cookie for it.
                let session = IdpSession {
                    sid: random::id(),
                    sub: sub.to_owned(),
                    auth_time: now,
                    expires_at: now + session_ttl,
                    clients: BTreeSet::from([client_id]),
                };
                let status = DeviceStatus::Approved {
                    sub: sub.to_owned(),
                    sid: session.sid.clone(),
                    auth_time: now,
                };
                grants
                    .sessions
                    .insert(random::fingerprint(&random::token()), session);
                status
            }
            Approver::Session(browser) => {
                if let Some(s) = grants.sessions.values_mut().find(|s| s.sid == browser.sid) {
                    s.clients.insert(client_id);
                }
                DeviceStatus::Approved {
                    sub: browser.sub.clone(),
                    sid: browser.sid.clone(),
                    auth_time: browser.auth_time,
                }
            }
        };
        if let Some(d) = grants.devices.get_mut(&fp) {
            d.status = status;
        }
        Ok(())
    }

    /// Denies the device waiting with `user_code`.
    pub fn deny_device(
        &self,
        user_code: &str,
        now: OffsetDateTime,
    ) -> Result<(), DeviceDecisionRefusal> {
        let mut grants = self.lock();
        let fp = grants
            .user_codes
            .get(user_code)
            .cloned()
            .ok_or(DeviceDecisionRefusal::NotWaiting)?;
        match grants.devices.get_mut(&fp) {
            Some(d) if d.is_waiting(now) => {
                d.status = DeviceStatus::Denied;
                Ok(())
            }
            _ => Err(DeviceDecisionRefusal::NotWaiting),
        }
    }

    /// A device's poll with the device code of fingerprint `fp`: slows it down if it polls
    /// faster than its interval; once approved, mints its response (and forgets the grant).
    pub fn poll_device(
        &self,
        mint: &impl Mint,
        fp: &str,
        client: &Client,
        with_refresh: bool,
        now: OffsetDateTime,
    ) -> Result<Unsigned, DevicePollRefusal> {
        let mut grants = self.lock();
        let Some(rec) = grants.devices.get_mut(fp) else {
            return Err(DevicePollRefusal::Unknown);
        };
        if rec.client_id != *client.id() {
            return Err(DevicePollRefusal::OtherClient);
        }
        if rec.expires_at <= now {
            grants.devices.remove(fp);
            return Err(DevicePollRefusal::Expired);
        }
        if let Some(last) = rec.last_poll {
            if now - last < rec.interval {
                rec.interval += Duration::seconds(5);
                rec.last_poll = Some(now);
                return Err(DevicePollRefusal::SlowDown {
                    interval: rec.interval,
                });
            }
        }
        rec.last_poll = Some(now);
        match rec.status.clone() {
            DeviceStatus::Pending => Err(DevicePollRefusal::Pending),
            DeviceStatus::Denied => {
                grants.devices.remove(fp);
                Err(DevicePollRefusal::Denied)
            }
            DeviceStatus::Approved {
                sub,
                sid,
                auth_time,
            } => {
                let scope = rec.scope.clone();
                grants.devices.remove(fp);
                if !grants.session_live(&sid, now) {
                    return Err(DevicePollRefusal::SessionEnded);
                }
                let issue = Issue {
                    client,
                    sub: &sub,
                    sid: Some(&sid),
                    scope: &scope,
                    nonce: None,
                    auth_time,
                    with_refresh,
                };
                let minted = mint.mint(&issue)?;
                Ok(grants.register(minted, &issue, None))
            }
        }
    }
}

impl DeviceGrant {
    fn is_waiting(&self, now: OffsetDateTime) -> bool {
        self.expires_at > now && self.status == DeviceStatus::Pending
    }

    /// Whether a sign-in at `auth_time` is too old for this device's `max_age` (OIDC Core
    /// §3.1.2.1, as at `/authorize`: `0` asks for a sign-in now, even one this very second).
    fn sign_in_too_old(&self, auth_time: OffsetDateTime, now: OffsetDateTime) -> bool {
        self.max_age
            .is_some_and(|max_age| max_age == 0 || now - auth_time > Duration::seconds(max_age))
    }
}

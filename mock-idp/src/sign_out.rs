//! Ending IdP sessions, wherever it is asked for (RP-initiated logout, the admin API): the
//! sessions are removed and the refresh families bound to them revoked (in one step, by the
//! grant store), each ending is audited, and every client that took part hears of it by
//! back-channel logout.

use std::sync::Arc;

use crate::backchannel;
use crate::grants::IdpSession;
use crate::tenant::Tenant;

/// Ends the IdP sessions `sids`; returns those that existed.
pub fn end_sessions(
    tenant: &Arc<Tenant>,
    http: &reqwest::Client,
    sids: &[String],
    reason: &str,
) -> Vec<IdpSession> {
    let ended = tenant.grants.end_sessions(sids);
    for s in &ended {
        tenant.record(
            "idp_session_ended",
            Some(&s.sub),
            None,
            format!("sid {}: {reason}", s.sid),
        );
    }
    backchannel::notify(tenant, http, &ended);
    ended
}

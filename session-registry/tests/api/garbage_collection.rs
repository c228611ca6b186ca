//! Garbage collection: a session past its expiry is deleted at the next collection; a revoked
//! one stays (for audit) until the audit window has passed since its revocation, then goes.

use serde_json::{json, Value};
use session_registry::startup::AUDIT_WINDOW_SECS;
use test_harness::TestIdp;

use crate::helpers::*;

fn listed(sessions: &[Value], id: &Value) -> bool {
    sessions.iter().any(|s| &s["session_id"] == id)
}

async fn expired_sessions_go_at_once_and_revoked_ones_after_the_audit_window(backend: Backend) {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, backend).await;
    let collect = || reg.registry.collect_garbage(AUDIT_WINDOW_SECS);
    // Both sessions last 60 minutes (the default); the phone's is revoked at once.
    let (_, laptop) = reg.device(&idp, "acme", "alice", "laptop").await;
    let (phone, p) = reg.device(&idp, "acme", "alice", "phone").await;
    let (expiring, revoked) = (
        &laptop["session"]["session_id"],
        &p["session"]["session_id"],
    );
    let (status, _) = reg
        .post("/v1/sessions/revoke", &phone, json!({"scope": "current"}))
        .await;
    assert_eq!(status, 200);

    assert_eq!(collect().await.unwrap(), 0, "nothing is due yet");
    let all = reg.admin_sessions("acme").await;
    assert!(listed(&all, expiring) && listed(&all, revoked), "{all:?}");

    reg.advance(3600 + 1);
    assert_eq!(collect().await.unwrap(), 1, "only the expired session goes");
    let all = reg.admin_sessions("acme").await;
    assert!(!listed(&all, expiring), "the expired session is deleted");
    assert!(listed(&all, revoked), "the revoked one is kept for audit");

    // Exactly the audit window after the revocation: still kept.
    reg.advance(AUDIT_WINDOW_SECS - 3600 - 1);
    assert_eq!(collect().await.unwrap(), 0);
    assert!(listed(&reg.admin_sessions("acme").await, revoked));

    reg.advance(1);
    assert_eq!(collect().await.unwrap(), 1);
    assert!(
        !listed(&reg.admin_sessions("acme").await, revoked),
        "past the audit window the revoked session is deleted"
    );
}
on_both_backends!(expired_sessions_go_at_once_and_revoked_ones_after_the_audit_window);

//! `POST /v1/sessions/upgrade`: a guest's session follows the guest's upgrade at the IdP.

use base64::Engine;
use serde_json::{json, Value};
use test_harness::{idp, TestIdp};

use crate::helpers::*;

/// The claims of a JWT, unverified (the registry's own tests check signatures elsewhere).
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// A guest of acme with a device session: (the guest's token response, the create response).
async fn guest_device(idp: &TestIdp, reg: &TestRegistry) -> (Value, Value) {
    let tokens = idp::guest_login(&idp.issuer("acme"), "lanyard-cli").await;
    let (status, body) = reg
        .create(tokens["id_token"].as_str().unwrap(), "guest-laptop")
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["session"]["is_guest"], true);
    (tokens, body)
}

/// Upgrades the guest at the IdP and refreshes: the new token response (not a guest any more).
async fn upgrade_at_idp(idp: &TestIdp, guest: &Value, username: &str) -> Value {
    let issuer = idp.issuer("acme");
    let (status, body) = idp::upgrade_guest(
        &issuer,
        guest["access_token"].as_str().unwrap(),
        json!({"username": username, "password": "correct horse", "email": format!("{username}@acme.example")}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    idp::refresh(
        &issuer,
        "lanyard-cli",
        guest["refresh_token"].as_str().unwrap(),
    )
    .await
}

async fn upgraded_events(reg: &TestRegistry, account_id: &str) -> Vec<String> {
    reg.registry
        .store
        .events_after("acme", account_id, 0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "upgraded")
        .map(|e| e.session_id)
        .collect()
}

async fn an_upgraded_guest_keeps_its_session_which_is_no_longer_a_guest(backend: Backend) {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, backend).await;
    let (guest, created) = guest_device(&idp, &reg).await;
    let session_id = created["session"]["session_id"].as_str().unwrap();
    let account_id = created["session"]["account_id"].as_str().unwrap();
    let session_token = created["session_token"].as_str().unwrap();
    let guest_jwt = created["session_jwt"].as_str().unwrap();
    assert_eq!(claims(guest_jwt)["is_guest"], true);

    let upgraded = upgrade_at_idp(&idp, &guest, "dana").await;
    let id_token = upgraded["id_token"].as_str().unwrap();
    assert_eq!(claims(id_token)["is_guest"], false);

    // The session JWT manages nothing (issue #12): only the session token upgrades.
    let (status, body) = reg
        .post(
            "/v1/sessions/upgrade",
            guest_jwt,
            json!({ "id_token": id_token }),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "session_token_required");
    let (status, body) = reg
        .post(
            "/v1/sessions/upgrade",
            session_token,
            json!({ "id_token": id_token }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let s = &body["session"];
    assert_eq!(s["session_id"], session_id, "the same session");
    assert_eq!(s["account_id"], account_id, "the same account");
    assert_eq!(s["subject"], created["session"]["subject"]);
    assert_eq!(s["is_guest"], false);
    assert_eq!(s["email"], "dana@acme.example");
    assert!(
        body.get("session_token").is_none(),
        "the token is never shown again"
    );
    let jwt = claims(body["session_jwt"].as_str().unwrap());
    assert_eq!(jwt["is_guest"], false);
    assert_eq!(jwt["sid"], session_id);
    assert_eq!(upgraded_events(&reg, account_id).await, vec![session_id]);

    // The session token still works, and everything the registry says agrees.
    let (status, listed) = reg.get("/v1/sessions", session_token).await;
    assert_eq!(status, 200, "{listed}");
    let sessions = listed["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["session_id"], session_id);
    assert_eq!(sessions[0]["is_guest"], false);
    let (status, auth, _) = reg
        .authenticate(json!({ "session_token": session_token }))
        .await;
    assert_eq!(status, 200, "{auth}");
    assert_eq!(auth["session"]["is_guest"], false);
    assert_eq!(
        claims(auth["session_jwt"].as_str().unwrap())["is_guest"],
        false
    );

    // Repeating it (a client whose answer was lost) answers the same and records nothing new.
    let (status, again) = reg
        .post(
            "/v1/sessions/upgrade",
            session_token,
            json!({ "id_token": id_token }),
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["session"]["session_id"], session_id);
    assert_eq!(again["session"]["is_guest"], false);
    assert_eq!(upgraded_events(&reg, account_id).await.len(), 1);

    // A new sign-in of the upgraded user lands in the same account.
    let fresh = idp::refresh(
        &idp.issuer("acme"),
        "lanyard-cli",
        upgraded["refresh_token"].as_str().unwrap(),
    )
    .await;
    let (status, second) = reg
        .create(fresh["id_token"].as_str().unwrap(), "desktop")
        .await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["session"]["account_id"], account_id);
    assert_eq!(second["session"]["is_guest"], false);
}
on_both_backends!(an_upgraded_guest_keeps_its_session_which_is_no_longer_a_guest);

async fn an_upgrade_with_another_subject_or_a_guest_token_is_refused_and_changes_nothing(
    backend: Backend,
) {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, backend).await;
    let (guest, created) = guest_device(&idp, &reg).await;
    let account_id = created["session"]["account_id"].as_str().unwrap();
    let token = created["session_token"].as_str().unwrap();

    // Another user's ID token, even a registered one of the same tenant.
    let bob = idp.login("acme", "bob", "lanyard-cli").await;
    // Another guest, upgraded: not a guest any more, but another subject.
    let other_guest = idp::guest_login(&idp.issuer("acme"), "lanyard-cli").await;
    let other = upgrade_at_idp(&idp, &other_guest, "erin").await;
    // A token of another tenant (another issuer).
    let globex = idp.login("globex", "carol", "lanyard-cli").await;
    let cases = [
        (bob["id_token"].as_str().unwrap(), "subject_mismatch"),
        (other["id_token"].as_str().unwrap(), "subject_mismatch"),
        (guest["id_token"].as_str().unwrap(), "still_a_guest"),
        (globex["id_token"].as_str().unwrap(), "issuer_mismatch"),
        ("not.a.jwt", "invalid_id_token"),
    ];
    for (id_token, code) in cases {
        let (status, body) = reg
            .post(
                "/v1/sessions/upgrade",
                token,
                json!({ "id_token": id_token }),
            )
            .await;
        assert_eq!(status, 400, "{code}: {body}");
        assert_eq!(body["error"], code, "{body}");
    }
    // A forged signature on an otherwise right token.
    let upgraded = upgrade_at_idp(&idp, &guest, "dana").await;
    let good = upgraded["id_token"].as_str().unwrap();
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[2] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 64]);
    let (status, body) = reg
        .post(
            "/v1/sessions/upgrade",
            token,
            json!({ "id_token": parts.join(".") }),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_id_token")),
        "{body}"
    );

    // Bearer problems are 401, as everywhere.
    let (status, body) = reg
        .post(
            "/v1/sessions/upgrade",
            "lyst_acme_garbage",
            json!({ "id_token": good }),
        )
        .await;
    assert_eq!(status, 401, "{body}");

    // Nothing changed: still a guest, no event.
    let (_, listed) = reg.get("/v1/sessions", token).await;
    assert_eq!(listed["sessions"][0]["is_guest"], true);
    assert!(upgraded_events(&reg, account_id).await.is_empty());

    // A revoked session cannot be upgraded.
    let (status, _) = reg
        .post("/v1/sessions/revoke", token, json!({"scope": "current"}))
        .await;
    assert_eq!(status, 200);
    let (status, body) = reg
        .post("/v1/sessions/upgrade", token, json!({ "id_token": good }))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("session_revoked")),
        "{body}"
    );
    assert!(upgraded_events(&reg, account_id).await.is_empty());
}
on_both_backends!(an_upgrade_with_another_subject_or_a_guest_token_is_refused_and_changes_nothing);

#[tokio::test]
async fn the_openapi_document_describes_the_upgrade() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    let (status, doc) = reg.get("/openapi.json", "unused").await;
    assert_eq!(status, 200);
    assert!(
        !doc["paths"]["/v1/sessions/upgrade"]["post"].is_null(),
        "{doc}"
    );
    assert!(!doc["components"]["schemas"]["UpgradeSessionRequest"].is_null());
}

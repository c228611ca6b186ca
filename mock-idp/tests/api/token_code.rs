use serde_json::Value;
use test_harness::TestIdp;

use crate::helpers::*;

#[tokio::test]
async fn the_code_exchange_returns_signed_tokens_with_every_documented_claim() {
    let idp = TestIdp::spawn().await;
    let (code, p, _) = login_code(&idp, "acme", "alice").await;
    let res = exchange(&idp, "acme", &code, &p.verifier).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    assert!(
        body["refresh_token"].as_str().unwrap().len() >= 43,
        "RT carries at least 256 bits"
    );
    assert!(code.len() >= 43);

    let id_token = body["id_token"].as_str().unwrap();
    assert_eq!(header(id_token)["alg"], "ES256");
    assert!(header(id_token)["kid"].is_string());
    let c = verify_with_jwks(&idp, "acme", id_token, Some(CLI)).await;
    for claim in [
        "iss",
        "sub",
        "aud",
        "azp",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "at_hash",
        "email",
        "name",
        "tenant",
        "is_guest",
        "sid",
    ] {
        assert!(!c[claim].is_null(), "ID token lacks {claim}: {c}");
    }
    assert_eq!(c["iss"], idp.issuer("acme"));
    assert_eq!(c["aud"], CLI);
    assert_eq!(c["azp"], CLI);
    assert_eq!(c["nonce"], "nonce-456");
    assert_eq!(c["tenant"], "acme");
    assert_eq!(c["is_guest"], false);
    assert_eq!(c["email"], "alice@acme.example");
    let at = body["access_token"].as_str().unwrap();
    assert_eq!(c["at_hash"], mock_idp::jwt::at_hash(at));

    // RFC 9068 access token.
    assert_eq!(header(at)["typ"], "at+jwt");
    let a = verify_with_jwks(&idp, "acme", at, Some(CLI)).await;
    for claim in [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "jti",
        "client_id",
        "scope",
    ] {
        assert!(!a[claim].is_null(), "access token lacks {claim}: {a}");
    }
    assert_eq!(a["sub"], c["sub"]);
    assert_eq!(a["client_id"], CLI);
}

#[tokio::test]
async fn a_replayed_code_fails_and_revokes_everything_the_first_redemption_issued() {
    let idp = TestIdp::spawn().await;
    let (code, p, _) = login_code(&idp, "acme", "alice").await;
    let first: Value = exchange(&idp, "acme", &code, &p.verifier)
        .await
        .json()
        .await
        .unwrap();
    let at = first["access_token"].as_str().unwrap();
    let rt = first["refresh_token"].as_str().unwrap();
    assert_eq!(introspect(&idp, "acme", at).await["active"], true);

    replay_revokes(&idp, &code, &p.verifier, &first).await;
    assert_oauth_error(refresh(&idp, "acme", rt).await, 400, "invalid_grant").await;
    let audit = idp.audit("acme").await;
    assert!(audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "authorization_code_replay"));
}

/// A redeemed code keeps no record of its own (the IdP's memory follows the live grants, not
/// the sign-ins made): its replay is recognised by the grant it made, still revokes that grant
/// after the code's expiry and a sweep, and a code made up in its image is merely unknown.
#[tokio::test]
async fn a_redeemed_code_keeps_no_record_and_its_late_replay_still_revokes_its_grant() {
    let idp = TestIdp::spawn_with_manual_clock().await;
    let codes = |audit: &Value| audit["records"]["codes"].as_u64().unwrap();
    let before = codes(&idp.audit("acme").await);
    let (code, p, _) = login_code(&idp, "acme", "alice").await;
    assert_eq!(codes(&idp.audit("acme").await), before + 1, "a fresh code");
    let first: Value = exchange(&idp, "acme", &code, &p.verifier)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        codes(&idp.audit("acme").await),
        before,
        "the redeemed code's record is gone"
    );
    // Past the code's expiry, and swept.
    idp.clock
        .as_ref()
        .unwrap()
        .advance(time::Duration::minutes(2));
    idp.state.sweep();
    let at = first["access_token"].as_str().unwrap();
    assert_eq!(introspect(&idp, "acme", at).await["active"], true);

    // A made-up code naming the same grant: unknown, and nothing is revoked.
    let (grant, _) = code.split_once('~').expect("a code names its grant");
    let forged = format!("{grant}~{}", "A".repeat(43));
    let desc = assert_oauth_error(
        exchange(&idp, "acme", &forged, &p.verifier).await,
        400,
        "invalid_grant",
    )
    .await;
    assert!(desc.contains("unknown"), "{desc}");
    assert_eq!(introspect(&idp, "acme", at).await["active"], true);

    replay_revokes(&idp, &code, &p.verifier, &first).await;
}

/// Redeems `code` again: refused as already used, and the access and refresh tokens of the
/// first redemption's response (`first`) are revoked.
async fn replay_revokes(idp: &TestIdp, code: &str, verifier: &str, first: &Value) {
    let desc = assert_oauth_error(
        exchange(idp, "acme", code, verifier).await,
        400,
        "invalid_grant",
    )
    .await;
    assert!(desc.contains("already used"), "{desc}");
    for token in ["access_token", "refresh_token"] {
        assert_eq!(
            introspect(idp, "acme", first[token].as_str().unwrap()).await,
            serde_json::json!({"active": false}),
            "{token}"
        );
    }
}

#[tokio::test]
async fn a_missing_wrong_or_malformed_verifier_fails_and_burns_the_code() {
    let idp = TestIdp::spawn().await;
    for bad in [
        None,
        Some("a".repeat(43)),
        Some("a".repeat(42)),
        Some("b".repeat(129)),
        Some(format!("{}$", "c".repeat(50))),
    ] {
        let (code, p, _) = login_code(&idp, "acme", "alice").await;
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.clone()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("client_id", CLI.to_owned()),
        ];
        if let Some(v) = &bad {
            form.push(("code_verifier", v.clone()));
        }
        let res = idp
            .http
            .post(format!("{}/token", idp.issuer("acme")))
            .form(&form)
            .send()
            .await
            .unwrap();
        let desc = assert_oauth_error(res, 400, "invalid_grant").await;
        assert!(desc.contains("code_verifier"), "{desc}");
        // The right verifier no longer helps: the code is burnt.
        let desc = assert_oauth_error(
            exchange(&idp, "acme", &code, &p.verifier).await,
            400,
            "invalid_grant",
        )
        .await;
        assert!(desc.contains("burnt"), "{desc}");
    }
}

#[tokio::test]
async fn a_code_is_bound_to_its_client_and_redirect_uri() {
    let idp = TestIdp::spawn().await;
    // Another client (authenticated) tries the code.
    let (code, p, _) = login_code(&idp, "acme", "alice").await;
    let res = idp
        .http
        .post(format!("{}/token", idp.issuer("acme")))
        .basic_auth(REGISTRY, Some(REGISTRY_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &p.verifier),
        ])
        .send()
        .await
        .unwrap();
    let desc = assert_oauth_error(res, 400, "invalid_grant").await;
    assert!(desc.contains("another client"), "{desc}");
    assert_oauth_error(
        exchange(&idp, "acme", &code, &p.verifier).await,
        400,
        "invalid_grant",
    )
    .await;

    // A different loopback port than the authorization request's.
    let (code, p, _) = login_code(&idp, "acme", "alice").await;
    let res = idp
        .http
        .post(format!("{}/token", idp.issuer("acme")))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:1/callback"),
            ("client_id", CLI),
            ("code_verifier", &p.verifier),
        ])
        .send()
        .await
        .unwrap();
    let desc = assert_oauth_error(res, 400, "invalid_grant").await;
    assert!(desc.contains("redirect_uri"), "{desc}");
}

#[tokio::test]
async fn a_code_redeemed_after_sixty_seconds_has_expired() {
    let idp = TestIdp::spawn_with_manual_clock().await;
    let (code, p, _) = login_code(&idp, "acme", "alice").await;
    idp.clock
        .as_ref()
        .unwrap()
        .advance(time::Duration::seconds(61));
    let desc = assert_oauth_error(
        exchange(&idp, "acme", &code, &p.verifier).await,
        400,
        "invalid_grant",
    )
    .await;
    assert!(desc.contains("expired"), "{desc}");

    let (code, p, _) = login_code(&idp, "acme", "alice").await;
    idp.clock
        .as_ref()
        .unwrap()
        .advance(time::Duration::seconds(59));
    assert_eq!(
        exchange(&idp, "acme", &code, &p.verifier).await.status(),
        200
    );
}

#[tokio::test]
async fn a_code_of_one_tenant_is_refused_by_another() {
    let idp = TestIdp::spawn().await;
    let (code, p, _) = login_code(&idp, "acme", "alice").await;
    assert_oauth_error(
        exchange(&idp, "globex", &code, &p.verifier).await,
        400,
        "invalid_grant",
    )
    .await;
    // It still works where it belongs: the failed attempt elsewhere touched nothing here.
    assert_eq!(
        exchange(&idp, "acme", &code, &p.verifier).await.status(),
        200
    );
}

#[tokio::test]
async fn clients_must_authenticate_as_registered() {
    let idp = TestIdp::spawn().await;
    let url = format!("{}/token", idp.issuer("acme"));
    let res = idp
        .http
        .post(&url)
        .basic_auth(REGISTRY, Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    assert_oauth_error(res, 401, "invalid_client").await;
    let res = idp
        .http
        .post(&url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", REGISTRY),
        ])
        .send()
        .await
        .unwrap();
    assert_oauth_error(res, 400, "invalid_client").await;
    let res = idp
        .http
        .post(&url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "nobody"),
        ])
        .send()
        .await
        .unwrap();
    assert_oauth_error(res, 400, "invalid_client").await;
    let res = idp
        .http
        .post(&url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLI),
            ("client_secret", "invented"),
        ])
        .send()
        .await
        .unwrap();
    assert_oauth_error(res, 400, "invalid_client").await;
}

#[tokio::test]
async fn client_credentials_is_for_confidential_clients_only() {
    let idp = TestIdp::spawn().await;
    let url = format!("{}/token", idp.issuer("acme"));
    let res = idp
        .http
        .post(&url)
        .basic_auth(REGISTRY, Some(REGISTRY_SECRET))
        .form(&[("grant_type", "client_credentials"), ("scope", "profile")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert!(body.get("refresh_token").is_none() && body.get("id_token").is_none());
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["sub"],
        REGISTRY
    );
    let res = idp
        .http
        .post(&url)
        .form(&[("grant_type", "client_credentials"), ("client_id", CLI)])
        .send()
        .await
        .unwrap();
    assert_oauth_error(res, 400, "unauthorized_client").await;
}

#[tokio::test]
async fn a_client_registered_for_rs256_gets_rs256_id_tokens_verifiable_with_the_jwks() {
    let idp = TestIdp::spawn().await;
    let res = idp
        .admin(
            reqwest::Method::POST,
            "tenants/acme/clients",
            Some(serde_json::json!({
                "client_id": "rsa-app",
                "redirect_uris": ["http://127.0.0.1/callback"],
                "grant_types": ["authorization_code", "refresh_token"],
                "id_token_alg": "RS256",
            })),
        )
        .await;
    assert_eq!(res.status(), 201);
    let client = browser();
    let p = pkce();
    let params = with(auth_params(&p), &[("client_id", Some("rsa-app"))]);
    let page = get_authorize(&client, &idp, "acme", &params).await;
    let id = auth_request_id(&page.text().await.unwrap());
    let res = post_login(&client, &idp, "acme", &id, "alice", PASSWORD).await;
    let code = location(&res).1["code"].clone();
    let res = idp
        .http
        .post(format!("{}/token", idp.issuer("acme")))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", "rsa-app"),
            ("code_verifier", &p.verifier),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    let id_token = body["id_token"].as_str().unwrap();
    assert_eq!(header(id_token)["alg"], "RS256");
    // The registry takes only `JWT` (or no `typ`) as an ID token.
    let typ = header(id_token).get("typ").cloned();
    assert!(typ.is_none() || typ == Some(Value::from("JWT")), "{typ:?}");
    assert_eq!(
        header(body["access_token"].as_str().unwrap())["typ"],
        "at+jwt"
    );
    let c = verify_with_jwks(&idp, "acme", id_token, Some("rsa-app")).await;
    assert_eq!(c["aud"], "rsa-app");
}

#[tokio::test]
async fn concurrent_redemptions_of_one_code_succeed_exactly_once() {
    let idp = TestIdp::spawn().await;
    let (code, p, _) = login_code(&idp, "acme", "alice").await;
    let attempts = (0..16).map(|_| exchange(&idp, "acme", &code, &p.verifier));
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        15,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn racing_replays_of_a_code_revoke_what_the_one_redemption_issued() {
    let idp = TestIdp::spawn().await;
    let (code, p, _) = login_code(&idp, "acme", "alice").await;
    let attempts = (0..16).map(|_| exchange(&idp, "acme", &code, &p.verifier));
    let mut issued = Vec::new();
    for res in futures_util::future::join_all(attempts).await {
        if res.status() == 200 {
            issued.push(res.json::<Value>().await.unwrap());
        }
    }
    assert_eq!(issued.len(), 1);
    for token in ["access_token", "refresh_token"] {
        let token = issued[0][token].as_str().unwrap();
        assert_eq!(
            introspect(&idp, "acme", token).await,
            serde_json::json!({"active": false}),
            "{token}"
        );
    }
}

/// A code whose IdP session ended (the person signed out) before the client redeemed it issues
/// nothing: the grant would be bound to a session whose end has already revoked everything else
/// and sent the back-channel logouts, so it would outlive the sign-out. The code is burnt.
#[tokio::test]
async fn a_code_redeemed_after_its_idp_session_ended_issues_nothing() {
    let idp = TestIdp::spawn().await;
    let before = idp.audit("acme").await["records"].clone();
    let (code, p, _) = login_code(&idp, "acme", "alice").await;
    let res = idp
        .admin(
            reqwest::Method::POST,
            "tenants/acme/users/alice/logout",
            None,
        )
        .await;
    assert_eq!(res.status(), 200);
    let desc = assert_oauth_error(
        exchange(&idp, "acme", &code, &p.verifier).await,
        400,
        "invalid_grant",
    )
    .await;
    assert!(desc.contains("has ended"), "{desc}");
    let after = idp.audit("acme").await["records"].clone();
    assert_eq!(after["families"], before["families"], "no grant: {after}");
    let desc = assert_oauth_error(
        exchange(&idp, "acme", &code, &p.verifier).await,
        400,
        "invalid_grant",
    )
    .await;
    assert!(desc.contains("burnt"), "{desc}");
}

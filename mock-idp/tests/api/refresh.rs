use serde_json::{json, Value};
use test_harness::TestIdp;

use crate::helpers::*;

fn rt(v: &Value) -> String {
    v["refresh_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_token_revokes_the_whole_family_only() {
    let idp = TestIdp::spawn().await;
    let t1 = login_tokens(&idp, "acme", "alice").await;
    let other_grant = login_tokens(&idp, "acme", "alice").await;
    let rt1 = rt(&t1);
    let t2: Value = refresh(&idp, "acme", &rt1).await.json().await.unwrap();
    let rt2 = rt(&t2);
    assert_ne!(rt1, rt2, "refresh rotates");
    let t3: Value = refresh(&idp, "acme", &rt2).await.json().await.unwrap();
    let rt3 = rt(&t3);
    let at3 = t3["access_token"].as_str().unwrap();
    assert_eq!(introspect(&idp, "acme", at3).await["active"], true);

    let desc = assert_oauth_error(refresh(&idp, "acme", &rt1).await, 400, "invalid_grant").await;
    assert!(desc.contains("already used"), "{desc}");
    assert_oauth_error(refresh(&idp, "acme", &rt3).await, 400, "invalid_grant").await;
    assert_eq!(
        introspect(&idp, "acme", at3).await,
        json!({"active": false}),
        "access tokens of the family die too"
    );
    let events = idp.audit("acme").await["events"].clone();
    assert!(events
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "refresh_token_reuse"));

    // Another grant of the same user is untouched.
    assert_eq!(refresh(&idp, "acme", &rt(&other_grant)).await.status(), 200);
}

#[tokio::test]
async fn the_refresh_id_token_keeps_the_subject_and_drops_the_nonce() {
    let idp = TestIdp::spawn().await;
    let t1 = login_tokens(&idp, "acme", "bob").await;
    let t2: Value = refresh(&idp, "acme", &rt(&t1)).await.json().await.unwrap();
    let c1 = claims(t1["id_token"].as_str().unwrap());
    let c2 = verify_with_jwks(&idp, "acme", t2["id_token"].as_str().unwrap(), Some(CLI)).await;
    assert_eq!(c1["sub"], c2["sub"]);
    assert_eq!(c1["auth_time"], c2["auth_time"]);
    assert!(c2.get("nonce").is_none());
}

async fn add_grace_client(idp: &TestIdp, grace: u64) {
    let res = idp
        .admin(
            reqwest::Method::POST,
            "tenants/acme/clients",
            Some(json!({
                "client_id": "racy-app",
                "redirect_uris": ["http://127.0.0.1/callback"],
                "grant_types": ["authorization_code", "refresh_token"],
                "refresh_reuse_grace": grace,
            })),
        )
        .await;
    assert_eq!(res.status(), 201);
}

async fn racy_login(idp: &TestIdp) -> Value {
    let client = browser();
    let p = pkce();
    let page = get_authorize(
        &client,
        idp,
        "acme",
        &with(auth_params(&p), &[("client_id", Some("racy-app"))]),
    )
    .await;
    let id = auth_request_id(&page.text().await.unwrap());
    let code =
        location(&post_login(&client, idp, "acme", &id, "alice", PASSWORD).await).1["code"].clone();
    idp.http
        .post(format!("{}/token", idp.issuer("acme")))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", "racy-app"),
            ("code_verifier", &p.verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn racy_refresh(idp: &TestIdp, token: &str) -> reqwest::Response {
    idp.http
        .post(format!("{}/token", idp.issuer("acme")))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", "racy-app"),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn within_the_grace_window_a_repeat_gets_the_same_child_tokens() {
    let idp = TestIdp::spawn_with_manual_clock().await;
    add_grace_client(&idp, 10).await;
    let t1 = racy_login(&idp).await;
    let a: Value = racy_refresh(&idp, &rt(&t1)).await.json().await.unwrap();
    idp.clock
        .as_ref()
        .unwrap()
        .advance(time::Duration::seconds(5));
    let b: Value = racy_refresh(&idp, &rt(&t1)).await.json().await.unwrap();
    assert_eq!(a, b, "two racing processes get the same child");
    assert_eq!(
        racy_refresh(&idp, &rt(&a)).await.status(),
        200,
        "the family is intact"
    );
}

#[tokio::test]
async fn the_grace_window_covers_only_the_immediate_parent_and_only_for_its_duration() {
    let idp = TestIdp::spawn_with_manual_clock().await;
    add_grace_client(&idp, 10).await;
    // Past the window: reuse.
    let t1 = racy_login(&idp).await;
    let a: Value = racy_refresh(&idp, &rt(&t1)).await.json().await.unwrap();
    idp.clock
        .as_ref()
        .unwrap()
        .advance(time::Duration::seconds(11));
    assert_oauth_error(racy_refresh(&idp, &rt(&t1)).await, 400, "invalid_grant").await;
    assert_oauth_error(racy_refresh(&idp, &rt(&a)).await, 400, "invalid_grant").await;
    // Within the window, but the child was already used: reuse.
    let t1 = racy_login(&idp).await;
    let a: Value = racy_refresh(&idp, &rt(&t1)).await.json().await.unwrap();
    let b: Value = racy_refresh(&idp, &rt(&a)).await.json().await.unwrap();
    assert_oauth_error(racy_refresh(&idp, &rt(&t1)).await, 400, "invalid_grant").await;
    assert_oauth_error(racy_refresh(&idp, &rt(&b)).await, 400, "invalid_grant").await;
}

#[tokio::test]
async fn grace_is_off_by_default() {
    let idp = TestIdp::spawn().await;
    let t1 = login_tokens(&idp, "acme", "alice").await;
    assert_eq!(refresh(&idp, "acme", &rt(&t1)).await.status(), 200);
    assert_oauth_error(refresh(&idp, "acme", &rt(&t1)).await, 400, "invalid_grant").await;
}

#[tokio::test]
async fn another_client_or_a_wider_scope_is_refused_and_the_token_stays_valid() {
    let idp = TestIdp::spawn().await;
    let t = login_tokens(&idp, "acme", "alice").await;
    let url = format!("{}/token", idp.issuer("acme"));
    let res = idp
        .http
        .post(&url)
        .basic_auth(REGISTRY, Some(REGISTRY_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &rt(&t))])
        .send()
        .await
        .unwrap();
    assert_oauth_error(res, 400, "invalid_grant").await;
    let res = idp
        .http
        .post(&url)
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt(&t)),
            ("client_id", CLI),
            ("scope", "openid profile email offline_access admin"),
        ])
        .send()
        .await
        .unwrap();
    assert_oauth_error(res, 400, "invalid_scope").await;
    // A narrower scope is fine, and proves the token survived both refusals.
    let res = idp
        .http
        .post(&url)
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt(&t)),
            ("client_id", CLI),
            ("scope", "openid"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["scope"], "openid");
}

#[tokio::test]
async fn a_refresh_token_of_one_tenant_is_unknown_to_another() {
    let idp = TestIdp::spawn().await;
    let t = login_tokens(&idp, "acme", "alice").await;
    assert_oauth_error(refresh(&idp, "globex", &rt(&t)).await, 400, "invalid_grant").await;
    assert_eq!(refresh(&idp, "acme", &rt(&t)).await.status(), 200);
}

#[tokio::test]
async fn racing_uses_of_one_refresh_token_rotate_once_and_then_trip_reuse_detection() {
    let idp = TestIdp::spawn().await;
    let t = login_tokens(&idp, "acme", "alice").await;
    let token = rt(&t);
    let attempts = (0..12).map(|_| refresh(&idp, "acme", &token));
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
}

#[tokio::test]
async fn many_families_refresh_concurrently_without_interference() {
    let idp = TestIdp::spawn().await;
    let mut tokens = Vec::new();
    for _ in 0..8 {
        tokens.push(rt(&login_tokens(&idp, "acme", "bob").await));
    }
    for _round in 0..3 {
        let results =
            futures_util::future::join_all(tokens.iter().map(|t| refresh(&idp, "acme", t))).await;
        let mut next = Vec::new();
        for r in results {
            assert_eq!(r.status(), 200);
            next.push(rt(&r.json::<Value>().await.unwrap()));
        }
        tokens = next;
    }
}

#[tokio::test]
async fn racing_repeats_inside_the_grace_window_all_get_the_same_child_tokens() {
    // The tokens are signed after the rotation is recorded; a repeat that arrives in between
    // must wait for the response rather than count as reuse.
    let idp = TestIdp::spawn().await;
    add_grace_client(&idp, 10).await;
    for _round in 0..3 {
        let t1 = racy_login(&idp).await;
        let parent = rt(&t1);
        let attempts = (0..12).map(|_| racy_refresh(&idp, &parent));
        let mut bodies = Vec::new();
        for res in futures_util::future::join_all(attempts).await {
            assert_eq!(res.status(), 200);
            bodies.push(res.json::<Value>().await.unwrap());
        }
        assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
        let child = racy_refresh(&idp, &rt(&bodies[0])).await;
        assert_eq!(child.status(), 200, "the family is intact");
    }
}

/// Takes the stored response out of `parent`'s rotation, as if its JWTs were still being signed.
fn unsettle(idp: &TestIdp, parent: &str) -> Value {
    let tenant = idp.state.tenant("acme").unwrap();
    tenant.grants.unsettle_rotation_for_tests(parent).unwrap()
}

#[tokio::test]
async fn a_repeat_that_finds_the_rotation_still_being_signed_waits_for_its_response() {
    let idp = TestIdp::spawn().await;
    add_grace_client(&idp, 10).await;
    let parent = rt(&racy_login(&idp).await);
    let a: Value = racy_refresh(&idp, &parent).await.json().await.unwrap();
    let stored = unsettle(&idp, &parent);
    assert_eq!(stored, a);

    let started = std::time::Instant::now();
    let settle = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let tenant = idp.state.tenant("acme").unwrap();
        tenant.grants.settle_rotation_for_tests(&parent, stored);
    };
    let (res, ()) = tokio::join!(racy_refresh(&idp, &parent), settle);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), a);
    assert_eq!(
        racy_refresh(&idp, &rt(&a)).await.status(),
        200,
        "the family is intact"
    );
}

#[tokio::test]
async fn a_rotation_that_never_settles_fails_the_repeat_without_revoking_the_family() {
    let idp = TestIdp::spawn().await;
    add_grace_client(&idp, 10).await;
    let parent = rt(&racy_login(&idp).await);
    let a: Value = racy_refresh(&idp, &parent).await.json().await.unwrap();
    unsettle(&idp, &parent);
    assert_oauth_error(racy_refresh(&idp, &parent).await, 500, "server_error").await;
    assert_eq!(
        racy_refresh(&idp, &rt(&a)).await.status(),
        200,
        "the family is intact"
    );
}

/// The IdP's records of a long-lived grant stay small however often it rotates: the family
/// keeps its last `USED_REFRESH_KEPT` used refresh tokens whole and nothing of older ones — and
/// a replay of any of them, however many rotations old (a thief may rotate many times before
/// the client comes back), still revokes the family.
#[tokio::test]
async fn a_grant_rotated_many_times_keeps_few_whole_records_and_detects_reuse_of_any_used_token() {
    use mock_idp::grants::USED_REFRESH_KEPT;
    let idp = TestIdp::spawn().await;
    let first = login_tokens(&idp, "acme", "alice").await;
    let records = |audit: &Value| audit["records"].clone();
    let before = records(&idp.audit("acme").await);
    const ROTATIONS: usize = 100;
    let mut tokens = vec![rt(&first)];
    for _ in 0..ROTATIONS {
        let next: Value = refresh(&idp, "acme", tokens.last().unwrap())
            .await
            .json()
            .await
            .unwrap();
        tokens.push(rt(&next));
    }
    let after = records(&idp.audit("acme").await);
    let count = |v: &Value, k: &str| v[k].as_u64().unwrap();
    assert_eq!(
        count(&after, "families"),
        count(&before, "families"),
        "{after}"
    );
    assert!(
        count(&after, "refresh_tokens")
            <= count(&before, "refresh_tokens") + USED_REFRESH_KEPT as u64,
        "{ROTATIONS} rotations left {after} (before: {before})"
    );
    assert!(
        after.get("retired_refresh_tokens").is_none(),
        "no record of any kind per used token past the window: {after}"
    );
    let total = |v: &Value| {
        v.as_object()
            .unwrap()
            .values()
            .map(|n| n.as_u64().unwrap())
            .sum::<u64>()
    };
    assert!(
        total(&after) <= total(&before) + USED_REFRESH_KEPT as u64 + ROTATIONS as u64,
        "every record the IdP holds: {after} (before: {before}); only the window and the \
         rotations' own access tokens (swept when they expire) are added"
    );

    // The very first token, a hundred rotations old: reuse, the family revoked.
    let desc = assert_oauth_error(
        refresh(&idp, "acme", &tokens[0]).await,
        400,
        "invalid_grant",
    )
    .await;
    assert!(desc.contains("already used"), "{desc}");
    assert_eq!(reuse_alarms(&idp).await, 1);
    assert_oauth_error(
        refresh(&idp, "acme", &tokens[ROTATIONS]).await,
        400,
        "invalid_grant",
    )
    .await;
}

/// A refresh token names its family, so anyone who has seen one knows the family's id: a token
/// made up around that id (any generation, any MAC) is unknown — it must not pass for a used
/// token of the family and revoke the grant of the client that holds the live one. Nor does
/// one family's token vouch for another family.
#[tokio::test]
async fn a_made_up_token_naming_a_real_family_neither_rotates_nor_revokes_it() {
    let idp = TestIdp::spawn().await;
    let grant = login_tokens(&idp, "acme", "alice").await;
    let other = login_tokens(&idp, "acme", "alice").await;
    let mut live = rt(&grant);
    for _ in 0..(mock_idp::grants::USED_REFRESH_KEPT + 3) {
        let next: Value = refresh(&idp, "acme", &live).await.json().await.unwrap();
        live = rt(&next);
    }
    let parts: Vec<&str> = live.split('~').collect();
    assert_eq!(parts.len(), 4, "FAMILY~GENERATION~NONCE~MAC: {live}");
    let (family, generation, nonce, mac) = (parts[0], parts[1], parts[2], parts[3]);
    let other_rt = rt(&other);
    let other_parts: Vec<&str> = other_rt.split('~').collect();
    for forged in [
        // Generations that left the window, with made-up or borrowed MACs.
        format!("{family}~0~{nonce}~{}", "A".repeat(43)),
        format!("{family}~1~{nonce}~{mac}"),
        format!("{family}~0~{}~{}", other_parts[2], other_parts[3]),
        // The live token spelled another way.
        format!("{family}~0{generation}~{nonce}~{mac}"),
        // A generation not issued yet, and no generation at all.
        format!("{family}~{}~{nonce}~{mac}", u64::MAX),
        format!("{family}~{nonce}~{mac}"),
    ] {
        let desc =
            assert_oauth_error(refresh(&idp, "acme", &forged).await, 400, "invalid_grant").await;
        assert!(desc.contains("unknown"), "{forged}: {desc}");
        // Nor does revocation (RFC 7009 answers 200 whatever the token) revoke the family.
        let res = idp
            .http
            .post(format!("{}/revoke", idp.issuer("acme")))
            .form(&[("token", forged.as_str()), ("client_id", CLI)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    assert_no_reuse_alarm(&idp).await;
    assert_eq!(
        refresh(&idp, "acme", &live).await.status(),
        200,
        "the family is intact"
    );
    assert_eq!(
        refresh(&idp, "acme", &other_rt).await.status(),
        200,
        "and so is the other"
    );
}

/// A client that signs out revokes its refresh token (RFC 7009): the IdP keeps none of the
/// family's refresh-token records after that (they stayed for the refresh lifetime, 30 days by
/// default), and every token of the family, the live one and the used ones, is still refused as
/// revoked — with no reuse alarm, since nothing was stolen.
#[tokio::test]
async fn a_grant_its_client_revoked_keeps_no_refresh_records_and_its_tokens_stay_revoked() {
    let idp = TestIdp::spawn().await;
    let records = |audit: Value| audit["records"]["refresh_tokens"].as_u64().unwrap();
    let before = records(idp.audit("acme").await);
    let first = login_tokens(&idp, "acme", "alice").await;
    let mut tokens = vec![rt(&first)];
    for _ in 0..3 {
        let next: Value = refresh(&idp, "acme", tokens.last().unwrap())
            .await
            .json()
            .await
            .unwrap();
        tokens.push(rt(&next));
    }
    assert_eq!(
        records(idp.audit("acme").await),
        before + 1 + mock_idp::grants::USED_REFRESH_KEPT as u64,
        "the live token and the window of used ones"
    );
    let res = idp
        .http
        .post(format!("{}/revoke", idp.issuer("acme")))
        .form(&[("token", tokens[3].as_str()), ("client_id", CLI)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        records(idp.audit("acme").await),
        before,
        "no record of the family's tokens"
    );
    for t in &tokens {
        let desc = assert_oauth_error(refresh(&idp, "acme", t).await, 400, "invalid_grant").await;
        assert!(desc.contains("revoked"), "{desc}");
    }
    assert_no_reuse_alarm(&idp).await;
}

/// How many `refresh_token_reuse` events the tenant's audit holds.
async fn reuse_alarms(idp: &TestIdp) -> usize {
    idp.audit("acme").await["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "refresh_token_reuse")
        .count()
}

/// The tenant's audit holds no `refresh_token_reuse` event.
async fn assert_no_reuse_alarm(idp: &TestIdp) {
    let audit = idp.audit("acme").await;
    assert!(
        !audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "refresh_token_reuse"),
        "no reuse alarm: {audit}"
    );
}

/// Access tokens keep no record each: a grant's access tokens, however many its refreshes
/// issued, are live while the grant is — each answered active by introspection — and none
/// adds a record. One revoked on its own (RFC 7009) is the one record kept (until it expires);
/// revoking the grant refuses every one of them.
#[tokio::test]
async fn access_tokens_are_checked_against_their_grant_and_add_no_record_each() {
    let idp = TestIdp::spawn().await;
    let records = |audit: &Value| audit["records"].clone();
    let count = |v: &Value, k: &str| v[k].as_u64().unwrap();
    let before = records(&idp.audit("acme").await);
    let first = login_tokens(&idp, "acme", "alice").await;
    let mut responses = vec![first];
    for _ in 0..20 {
        let next: Value = refresh(&idp, "acme", &rt(responses.last().unwrap()))
            .await
            .json()
            .await
            .unwrap();
        responses.push(next);
    }
    let at = |i: usize| responses[i]["access_token"].as_str().unwrap().to_owned();
    let after = records(&idp.audit("acme").await);
    assert_eq!(
        count(&after, "access_tokens"),
        count(&before, "access_tokens"),
        "{after}"
    );
    assert_eq!(
        count(&after, "families"),
        count(&before, "families") + 1,
        "{after}"
    );
    for i in 0..responses.len() {
        let view = introspect(&idp, "acme", &at(i)).await;
        assert_eq!(view["active"], true, "access token {i}: {view}");
        assert_eq!(view["sub"], claims(&at(0))["sub"], "{view}");
    }

    // One access token revoked on its own: refused; its siblings are not.
    let revoke = |token: String| {
        let http = idp.http.clone();
        let url = format!("{}/revoke", idp.issuer("acme"));
        async move {
            let res = http
                .post(url)
                .form(&[("token", token.as_str()), ("client_id", CLI)])
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
        }
    };
    revoke(at(3)).await;
    assert_eq!(introspect(&idp, "acme", &at(3)).await["active"], false);
    assert_eq!(introspect(&idp, "acme", &at(4)).await["active"], true);
    let res = idp
        .http
        .get(format!("{}/userinfo", idp.issuer("acme")))
        .bearer_auth(at(3))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "userinfo refuses the revoked token");
    assert_eq!(
        count(&records(&idp.audit("acme").await), "access_tokens"),
        count(&before, "access_tokens") + 1,
        "the revoked one is the one record"
    );

    // The grant revoked (its refresh token, RFC 7009): every access token of it is refused.
    revoke(rt(responses.last().unwrap())).await;
    for i in 0..responses.len() {
        assert_eq!(
            introspect(&idp, "acme", &at(i)).await["active"],
            false,
            "access token {i} of the revoked grant"
        );
    }
}

/// A revoked grant — by its client (RFC 7009), by a reuse alarm, or with its IdP session —
/// leaves a tombstone and nothing else: no live-grant record and no refresh-token record. Its
/// tokens, refresh and access, the live ones and the used ones, are answered "revoked" while
/// any of its access tokens could be live; once the last has expired the sweep drops the
/// tombstone and they are merely unknown. A grant left alone is untouched throughout.
#[tokio::test]
async fn a_revoked_grant_leaves_only_a_tombstone_until_its_access_tokens_expire() {
    let idp = TestIdp::spawn_with_manual_clock().await;
    let clock = idp.clock.clone().unwrap();
    let records = |audit: &Value| audit["records"].clone();
    let count = |v: &Value, k: &str| v[k].as_u64().unwrap();
    let before = records(&idp.audit("acme").await);
    // Four grants, each rotated twice: responses [sign-in, refresh, refresh].
    let mut grants: Vec<Vec<Value>> = Vec::new();
    for _ in 0..4 {
        let mut responses = vec![login_tokens(&idp, "acme", "alice").await];
        for _ in 0..2 {
            let res = refresh(&idp, "acme", &rt(responses.last().unwrap())).await;
            assert_eq!(res.status(), 200);
            responses.push(res.json().await.unwrap());
        }
        grants.push(responses);
    }
    let live = records(&idp.audit("acme").await);
    assert_eq!(count(&live, "families"), count(&before, "families") + 4);

    // Grant 0: its client signs out (RFC 7009).
    let res = idp
        .http
        .post(format!("{}/revoke", idp.issuer("acme")))
        .form(&[("token", rt(&grants[0][2]).as_str()), ("client_id", CLI)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Grant 1: a used refresh token comes back — the reuse alarm revokes it.
    let desc = assert_oauth_error(
        refresh(&idp, "acme", &rt(&grants[1][0])).await,
        400,
        "invalid_grant",
    )
    .await;
    assert!(desc.contains("already used"), "{desc}");
    // Grant 2: its IdP session is ended.
    let sid = claims(grants[2][0]["id_token"].as_str().unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = idp
        .admin(
            reqwest::Method::DELETE,
            &format!("tenants/acme/sessions/{sid}"),
            None,
        )
        .await;
    assert_eq!(res.status(), 204);

    let revoked = records(&idp.audit("acme").await);
    assert_eq!(
        (
            count(&revoked, "families"),
            count(&revoked, "refresh_tokens"),
        ),
        (
            count(&before, "families") + 1,
            count(&before, "refresh_tokens") + 1 + mock_idp::grants::USED_REFRESH_KEPT as u64,
        ),
        "only the grant left alone keeps records: {revoked} (before: {before})"
    );
    assert_eq!(
        count(&revoked, "revoked_grants"),
        count(&before, "revoked_grants") + 3,
        "a tombstone each: {revoked}"
    );
    let at = |response: &Value| response["access_token"].as_str().unwrap().to_owned();
    for (g, responses) in grants.iter().take(3).enumerate() {
        for (i, response) in responses.iter().enumerate() {
            let desc = assert_oauth_error(
                refresh(&idp, "acme", &rt(response)).await,
                400,
                "invalid_grant",
            )
            .await;
            assert!(desc.contains("revoked"), "grant {g}, token {i}: {desc}");
            assert_eq!(
                introspect(&idp, "acme", &at(response)).await["active"],
                false,
                "grant {g}, access token {i}"
            );
        }
    }
    assert_eq!(
        introspect(&idp, "acme", &at(&grants[3][2])).await["active"],
        true
    );
    assert_eq!(
        reuse_alarms(&idp).await,
        1,
        "only grant 1's replay raised the alarm: a revoked grant's tokens are revoked, not reused"
    );

    // Past the last access token's expiry (10 minutes) the sweep drops the tombstones of the
    // grants signed out; the stolen one's stays while its refresh tokens would have lived.
    clock.advance(time::Duration::minutes(11));
    idp.state.sweep();
    let swept = records(&idp.audit("acme").await);
    assert_eq!(
        count(&swept, "revoked_grants"),
        count(&before, "revoked_grants") + 1,
        "{swept}"
    );
    for g in [0, 2] {
        let desc = assert_oauth_error(
            refresh(&idp, "acme", &rt(&grants[g][2])).await,
            400,
            "invalid_grant",
        )
        .await;
        assert!(desc.contains("unknown"), "grant {g}: {desc}");
    }
    let desc = assert_oauth_error(
        refresh(&idp, "acme", &rt(&grants[1][2])).await,
        400,
        "invalid_grant",
    )
    .await;
    assert!(
        desc.contains("revoked"),
        "the holder of the stolen grant's live token hears why: {desc}"
    );
    assert_eq!(
        refresh(&idp, "acme", &rt(&grants[3][2])).await.status(),
        200,
        "the grant left alone still refreshes"
    );
}

/// A used refresh token is a replay whatever else its request says: asking for more scope than
/// the grant has, or presenting it after it expired, does not turn the replay into a mere
/// `invalid_scope` or "expired" that leaves the thief's rotated family live.
#[tokio::test]
async fn a_replayed_refresh_token_asking_for_more_scope_still_revokes_the_family() {
    let idp = TestIdp::spawn().await;
    let first = login_tokens(&idp, "acme", "alice").await;
    let res = refresh(&idp, "acme", &rt(&first)).await;
    assert_eq!(res.status(), 200);
    let second: Value = res.json().await.unwrap();
    let res = idp
        .http
        .post(format!("{}/token", idp.issuer("acme")))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt(&first).as_str()),
            ("client_id", CLI),
            ("scope", "openid profile email offline_access admin"),
        ])
        .send()
        .await
        .unwrap();
    let desc = assert_oauth_error(res, 400, "invalid_grant").await;
    assert!(desc.contains("already used"), "{desc}");
    let desc = assert_oauth_error(
        refresh(&idp, "acme", &rt(&second)).await,
        400,
        "invalid_grant",
    )
    .await;
    assert!(desc.contains("revoked"), "the family is revoked: {desc}");
}

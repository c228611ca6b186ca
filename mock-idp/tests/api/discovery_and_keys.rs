use reqwest::Method;
use serde_json::{json, Value};
use test_harness::TestIdp;

use crate::helpers::*;

async fn discovery(idp: &TestIdp, tenant: &str) -> Value {
    idp.http
        .get(format!(
            "{}/.well-known/openid-configuration",
            idp.issuer(tenant)
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn kids(idp: &TestIdp, tenant: &str) -> Vec<String> {
    let jwks: Value = idp
        .http
        .get(format!("{}/jwks", idp.issuer(tenant)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn each_tenant_is_its_own_issuer_advertising_every_endpoint() {
    let idp = TestIdp::spawn().await;
    for tenant in ["acme", "globex"] {
        let d = discovery(&idp, tenant).await;
        let iss = idp.issuer(tenant);
        assert_eq!(d["issuer"], iss);
        for (key, path) in [
            ("authorization_endpoint", "authorize"),
            ("token_endpoint", "token"),
            ("userinfo_endpoint", "userinfo"),
            ("jwks_uri", "jwks"),
            ("revocation_endpoint", "revoke"),
            ("introspection_endpoint", "introspect"),
            ("end_session_endpoint", "end_session"),
            ("device_authorization_endpoint", "device_authorization"),
        ] {
            assert_eq!(d[key], format!("{iss}/{path}"), "{key}");
        }
        assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(d["backchannel_logout_supported"], true);
        assert!(!d["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("password")));
    }
    let (a, g) = (kids(&idp, "acme").await, kids(&idp, "globex").await);
    assert!(a.iter().all(|k| !g.contains(k)), "tenants share no keys");
}

#[tokio::test]
async fn an_unknown_tenant_is_a_404_on_every_endpoint() {
    let idp = TestIdp::spawn().await;
    for path in [
        ".well-known/openid-configuration",
        "jwks",
        "authorize",
        "userinfo",
        "device",
    ] {
        let res = idp
            .http
            .get(format!("{}/nope/{path}", idp.base_url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{path}");
        let body: Value = res.json().await.unwrap();
        assert!(body["error_description"]
            .as_str()
            .unwrap()
            .contains("unknown tenant"));
    }
    for path in [
        "token",
        "revoke",
        "introspect",
        "device_authorization",
        "login",
        "guest",
    ] {
        let res = idp
            .http
            .post(format!("{}/Nope!/{path}", idp.base_url))
            .form(&[("a", "b")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn key_rotation_publishes_the_new_key_and_keeps_the_old_until_its_grace_ends() {
    let idp = TestIdp::spawn_with_manual_clock().await;
    let before = login_tokens(&idp, "acme", "alice").await;
    let old_kid = header(before["id_token"].as_str().unwrap())["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = idp
        .admin(Method::POST, "tenants/acme/keys/rotate", None)
        .await;
    assert_eq!(res.status(), 200);
    let new_kid = res.json::<Value>().await.unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(old_kid, new_kid);
    let published = kids(&idp, "acme").await;
    assert!(published.contains(&old_kid) && published.contains(&new_kid));

    let after = login_tokens(&idp, "acme", "alice").await;
    assert_eq!(
        header(after["id_token"].as_str().unwrap())["kid"],
        new_kid.as_str()
    );
    // Tokens signed before the rotation still verify and still work.
    verify_with_jwks(
        &idp,
        "acme",
        before["id_token"].as_str().unwrap(),
        Some(CLI),
    )
    .await;
    let res = idp
        .http
        .get(format!("{}/userinfo", idp.issuer("acme")))
        .bearer_auth(before["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    idp.clock
        .as_ref()
        .unwrap()
        .advance(time::Duration::seconds(3601));
    let published = kids(&idp, "acme").await;
    assert!(
        !published.contains(&old_kid),
        "the old key leaves after the grace period"
    );
    assert!(published.contains(&new_kid));
}

#[tokio::test]
async fn keys_from_a_key_directory_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("mock-idp-keydir-{}", mock_idp::random::id()));
    let mut config = mock_idp::IdpConfig::defaults();
    config.key_dir = Some(dir.clone());
    let first = TestIdp::spawn_with_config(config.clone()).await;
    let tokens = login_tokens(&first, "acme", "alice").await;
    let kids_before = kids(&first, "acme").await;
    first.stop().await;

    let second = TestIdp::spawn_with_config(config).await;
    assert_eq!(kids(&second, "acme").await, kids_before);
    // An ID token from the first run verifies against the second run's JWKS.
    let id_token = tokens["id_token"].as_str().unwrap();
    let jwks: jsonwebtoken::jwk::JwkSet = second
        .http
        .get(format!("{}/jwks", second.issuer("acme")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = header(id_token)["kid"].as_str().unwrap().to_owned();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwks.find(&kid).unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.validate_aud = false;
    jsonwebtoken::decode::<Value>(id_token, &key, &v).expect("old token verifies after restart");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn keys_given_in_the_config_are_used_with_their_thumbprint_kid() {
    let key = mock_idp::keys::SigningKey::generate(mock_idp::config::SigningAlg::ES256).unwrap();
    let pem = {
        use p256::pkcs8::EncodePrivateKey;
        let sk = p256::SecretKey::random(&mut rand::rngs::OsRng);
        sk.to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
            .unwrap()
            .to_string()
    };
    let expected = mock_idp::keys::SigningKey::from_pem(&pem).unwrap().kid;
    assert_ne!(expected, key.kid);
    let mut config = mock_idp::IdpConfig::defaults();
    config.tenants[0]
        .keys
        .push(mock_idp::config::KeyConfig { pem });
    let idp = TestIdp::spawn_with_config(config).await;
    assert_eq!(kids(&idp, "acme").await, vec![expected.clone()]);
    let t = login_tokens(&idp, "acme", "bob").await;
    assert_eq!(
        header(t["id_token"].as_str().unwrap())["kid"],
        expected.as_str()
    );
}

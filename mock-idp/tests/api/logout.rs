use std::sync::Arc;

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::{json, Value};
use test_harness::TestIdp;
use tokio::sync::Mutex;

use crate::helpers::*;

/// A real HTTP receiver for back-channel logout tokens.
struct Receiver {
    url: String,
    tokens: Arc<Mutex<Vec<String>>>,
}

async fn receiver() -> Receiver {
    let tokens: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = tokens.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = HttpServer::new(move || {
        let sink = sink.clone();
        App::new().route(
            "/backchannel",
            web::post().to(
                move |form: web::Form<std::collections::HashMap<String, String>>| {
                    let sink = sink.clone();
                    async move {
                        sink.lock()
                            .await
                            .push(form.get("logout_token").cloned().unwrap_or_default());
                        HttpResponse::Ok().finish()
                    }
                },
            ),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    Receiver {
        url: format!("http://{addr}/backchannel"),
        tokens,
    }
}

impl Receiver {
    async fn wait_for(&self, n: usize) -> Vec<String> {
        for _ in 0..200 {
            let got = self.tokens.lock().await.clone();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!(
            "expected {n} logout tokens, got {:?}",
            self.tokens.lock().await.len()
        );
    }
}

/// Registers `rp` with a back-channel URI and logs `user` in through it; returns the tokens.
async fn login_via_rp(idp: &TestIdp, receiver: &Receiver, user: &str) -> (Value, reqwest::Client) {
    let res = idp
        .admin(
            reqwest::Method::POST,
            "tenants/acme/clients",
            Some(json!({
                "client_id": "rp",
                "redirect_uris": ["http://127.0.0.1/callback"],
                "post_logout_redirect_uris": ["http://127.0.0.1/bye"],
                "grant_types": ["authorization_code", "refresh_token"],
                "backchannel_logout_uri": receiver.url,
            })),
        )
        .await;
    assert!(res.status() == 201 || res.status() == 409);
    let client = browser();
    let p = pkce();
    let page = get_authorize(
        &client,
        idp,
        "acme",
        &with(auth_params(&p), &[("client_id", Some("rp"))]),
    )
    .await;
    let id = auth_request_id(&page.text().await.unwrap());
    let code =
        location(&post_login(&client, idp, "acme", &id, user, PASSWORD).await).1["code"].clone();
    let tokens = idp
        .http
        .post(format!("{}/token", idp.issuer("acme")))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", "rp"),
            ("code_verifier", &p.verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (tokens, client)
}

async fn assert_valid_logout_token(idp: &TestIdp, token: &str, id_token: &str) {
    assert_eq!(header(token)["typ"], "logout+jwt");
    let c = verify_with_jwks(idp, "acme", token, Some("rp")).await;
    let idc = claims(id_token);
    assert_eq!(c["sub"], idc["sub"]);
    assert_eq!(c["sid"], idc["sid"]);
    assert!(c["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(c.get("nonce").is_none());
    assert!(c["jti"].is_string() && c["iat"].is_i64());
}

#[tokio::test]
async fn rp_initiated_logout_ends_the_session_revokes_tokens_and_notifies_the_back_channel() {
    let idp = TestIdp::spawn().await;
    let rx = receiver().await;
    let (tokens, client) = login_via_rp(&idp, &rx, "alice").await;
    let id_token = tokens["id_token"].as_str().unwrap();
    let res = client
        .get(format!("{}/end_session", idp.issuer("acme")))
        .query(&[
            ("id_token_hint", id_token),
            ("post_logout_redirect_uri", "http://127.0.0.1:4000/bye"),
            ("state", "s-9"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let (base, q) = location(&res);
    assert_eq!(base, "http://127.0.0.1:4000/bye");
    assert_eq!(q["state"], "s-9");
    assert!(res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));

    let got = rx.wait_for(1).await;
    assert_valid_logout_token(&idp, &got[0], id_token).await;
    // The session is gone and its tokens with it.
    let p = pkce();
    let again = get_authorize(
        &client,
        &idp,
        "acme",
        &with(
            auth_params(&p),
            &[("client_id", Some("rp")), ("prompt", Some("none"))],
        ),
    )
    .await;
    assert_eq!(location(&again).1["error"], "login_required");
    assert_eq!(
        introspect(&idp, "acme", tokens["refresh_token"].as_str().unwrap()).await,
        json!({"active": false})
    );
}

#[tokio::test]
async fn an_admin_sign_out_reaches_every_session_of_the_user_only() {
    let idp = TestIdp::spawn().await;
    let rx = receiver().await;
    let (alice1, _) = login_via_rp(&idp, &rx, "alice").await;
    let (alice2, _) = login_via_rp(&idp, &rx, "alice").await;
    let (bob, _) = login_via_rp(&idp, &rx, "bob").await;
    let res = idp
        .admin(
            reqwest::Method::POST,
            "tenants/acme/users/alice/logout",
            None,
        )
        .await;
    assert_eq!(res.json::<Value>().await.unwrap()["ended_sessions"], 2);
    let got = rx.wait_for(2).await;
    let sids: Vec<Value> = got.iter().map(|t| claims(t)["sid"].clone()).collect();
    assert!(sids.contains(&claims(alice1["id_token"].as_str().unwrap())["sid"]));
    assert!(sids.contains(&claims(alice2["id_token"].as_str().unwrap())["sid"]));
    assert_eq!(
        introspect(&idp, "acme", bob["refresh_token"].as_str().unwrap()).await["active"],
        true
    );
    let delivered = idp.audit("acme").await["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "backchannel_logout_delivered")
        .count();
    assert_eq!(delivered, 2);
}

#[tokio::test]
async fn revoking_one_idp_session_by_admin_notifies_and_removes_it_from_the_list() {
    let idp = TestIdp::spawn().await;
    let rx = receiver().await;
    let (tokens, _) = login_via_rp(&idp, &rx, "bob").await;
    let sid = claims(tokens["id_token"].as_str().unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let list: Value = idp
        .admin(reqwest::Method::GET, "tenants/acme/sessions", None)
        .await
        .json()
        .await
        .unwrap();
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["sid"] == sid.as_str() && s["username"] == "bob"));
    let res = idp
        .admin(
            reqwest::Method::DELETE,
            &format!("tenants/acme/sessions/{sid}"),
            None,
        )
        .await;
    assert_eq!(res.status(), 204);
    rx.wait_for(1).await;
    let list: Value = idp
        .admin(reqwest::Method::GET, "tenants/acme/sessions", None)
        .await
        .json()
        .await
        .unwrap();
    assert!(!list
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["sid"] == sid.as_str()));
    let res = idp
        .admin(
            reqwest::Method::DELETE,
            &format!("tenants/acme/sessions/{sid}"),
            None,
        )
        .await;
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn end_session_refuses_unregistered_post_logout_redirects_and_bad_hints() {
    let idp = TestIdp::spawn().await;
    let t = login_tokens(&idp, "acme", "alice").await;
    let id_token = t["id_token"].as_str().unwrap();
    let url = format!("{}/end_session", idp.issuer("acme"));
    let res = idp
        .http
        .get(&url)
        .query(&[
            ("id_token_hint", id_token),
            ("post_logout_redirect_uri", "https://evil.example/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
    let res = idp
        .http
        .get(&url)
        .query(&[("id_token_hint", "not-a-jwt")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // Nothing was ended by the refused requests.
    assert_eq!(
        introspect(&idp, "acme", t["refresh_token"].as_str().unwrap()).await["active"],
        true
    );
}

//! Flows the tests share: a browser-like client, the login form, code exchange.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use test_harness::TestIdp;

pub const CLI: &str = "lanyard-cli";
pub const REGISTRY: &str = "lanyard-registry";
pub const REGISTRY_SECRET: &str = "lanyard-registry-dev-secret";
pub const PASSWORD: &str = "lanyard-dev";
pub const REDIRECT: &str = "http://127.0.0.1:53682/callback";

/// A client that keeps cookies and does not follow redirects, like a browser we can inspect.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[derive(Debug, Clone)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

pub fn pkce() -> Pkce {
    let verifier = mock_idp::random::token();
    Pkce {
        challenge: mock_idp::pkce::s256(&verifier),
        verifier,
    }
}

/// The standard authorization request parameters for the CLI client.
pub fn auth_params(p: &Pkce) -> Vec<(String, String)> {
    [
        ("response_type", "code"),
        ("client_id", CLI),
        ("redirect_uri", REDIRECT),
        ("scope", "openid profile email offline_access"),
        ("state", "state-123"),
        ("nonce", "nonce-456"),
        ("code_challenge", p.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Replaces (or removes, with `None`) parameters.
pub fn with(
    mut params: Vec<(String, String)>,
    changes: &[(&str, Option<&str>)],
) -> Vec<(String, String)> {
    for (k, v) in changes {
        params.retain(|(pk, _)| pk != k);
        if let Some(v) = v {
            params.push(((*k).to_owned(), (*v).to_owned()));
        }
    }
    params
}

pub async fn get_authorize(
    client: &reqwest::Client,
    idp: &TestIdp,
    tenant: &str,
    params: &[(String, String)],
) -> reqwest::Response {
    client
        .get(format!("{}/authorize", idp.issuer(tenant)))
        .query(params)
        .send()
        .await
        .unwrap()
}

/// The hidden `auth_request` field of a rendered login page.
pub fn auth_request_id(html: &str) -> String {
    let marker = r#"name="auth_request" value=""#;
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no auth_request in page: {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}

/// Query parameters of a redirect's `Location`.
pub fn location(res: &reqwest::Response) -> (String, HashMap<String, String>) {
    let loc = res
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location; status {}", res.status()))
        .to_str()
        .unwrap();
    let url = url::Url::parse(loc).unwrap();
    let base = format!("{}://{}{}", url.scheme(), url.authority(), url.path());
    (base, url.query_pairs().into_owned().collect())
}

/// Posts the login form for `auth_request`.
pub async fn post_login(
    client: &reqwest::Client,
    idp: &TestIdp,
    tenant: &str,
    auth_request: &str,
    username: &str,
    password: &str,
) -> reqwest::Response {
    client
        .post(format!("{}/login", idp.issuer(tenant)))
        .form(&[
            ("auth_request", auth_request),
            ("username", username),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

/// Runs authorize + login and returns the code (the PKCE pair used, and the browser with its
/// IdP session cookie).
pub async fn login_code(
    idp: &TestIdp,
    tenant: &str,
    username: &str,
) -> (String, Pkce, reqwest::Client) {
    let client = browser();
    let p = pkce();
    let page = get_authorize(&client, idp, tenant, &auth_params(&p)).await;
    assert_eq!(page.status(), 200);
    let id = auth_request_id(&page.text().await.unwrap());
    let res = post_login(&client, idp, tenant, &id, username, PASSWORD).await;
    assert_eq!(res.status(), 303, "login redirects");
    let (base, q) = location(&res);
    assert_eq!(base, REDIRECT);
    assert_eq!(q["state"], "state-123");
    (q["code"].clone(), p, client)
}

pub async fn exchange(
    idp: &TestIdp,
    tenant: &str,
    code: &str,
    verifier: &str,
) -> reqwest::Response {
    idp.http
        .post(format!("{}/token", idp.issuer(tenant)))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", CLI),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
}

/// A full login for `username`: the token response.
pub async fn login_tokens(idp: &TestIdp, tenant: &str, username: &str) -> Value {
    let (code, p, _) = login_code(idp, tenant, username).await;
    let res = exchange(idp, tenant, &code, &p.verifier).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

pub async fn refresh(idp: &TestIdp, tenant: &str, rt: &str) -> reqwest::Response {
    idp.http
        .post(format!("{}/token", idp.issuer(tenant)))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", CLI),
        ])
        .send()
        .await
        .unwrap()
}

pub async fn introspect(idp: &TestIdp, tenant: &str, token: &str) -> Value {
    let res = idp
        .http
        .post(format!("{}/introspect", idp.issuer(tenant)))
        .basic_auth(REGISTRY, Some(REGISTRY_SECRET))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// The payload of a JWT, unverified (tests verify separately where it matters).
pub fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

pub fn header(jwt: &str) -> Value {
    let h = jwt.split('.').next().expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
}

/// Asserts an RFC 6749 §5.2 error response and returns its description.
pub async fn assert_oauth_error(res: reqwest::Response, status: u16, error: &str) -> String {
    assert_eq!(res.status(), status, "status");
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    let code = body["error"].as_str().unwrap();
    assert!(code.bytes().all(|b| b == 0x20
        || b == 0x21
        || (0x23..=0x5b).contains(&b)
        || (0x5d..=0x7e).contains(&b)));
    body["error_description"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The `<input ...>` tag with `id`.
pub fn input_tag<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html
        .find(&format!(r#"id="{id}""#))
        .unwrap_or_else(|| panic!("no #{id}"));
    let start = html[..at].rfind("<input").unwrap();
    let end = at + html[at..].find('>').unwrap();
    &html[start..=end]
}

/// Verifies a JWT against the tenant's JWKS and returns its claims.
pub async fn verify_with_jwks(
    idp: &TestIdp,
    tenant: &str,
    jwt: &str,
    audience: Option<&str>,
) -> Value {
    let jwks: jsonwebtoken::jwk::JwkSet = idp
        .http
        .get(format!("{}/jwks", idp.issuer(tenant)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let head = jsonwebtoken::decode_header(jwt).unwrap();
    let kid = head.kid.expect("kid in header");
    let jwk = jwks
        .find(&kid)
        .unwrap_or_else(|| panic!("kid {kid} not in JWKS"));
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(head.alg);
    v.set_issuer(&[idp.issuer(tenant)]);
    match audience {
        Some(a) => v.set_audience(&[a]),
        None => v.validate_aud = false,
    }
    jsonwebtoken::decode::<Value>(jwt, &key, &v).unwrap().claims
}

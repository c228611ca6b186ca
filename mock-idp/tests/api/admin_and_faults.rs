use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use test_harness::TestIdp;

use crate::helpers::*;

#[tokio::test]
async fn the_admin_api_refuses_missing_or_wrong_tokens() {
    let idp = TestIdp::spawn().await;
    let url = format!("{}/admin/tenants", idp.base_url);
    let res = idp.http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    assert_eq!(
        idp.http
            .get(&url)
            .bearer_auth("lanyard-dev-admi")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        idp.http
            .get(&url)
            .bearer_auth("lanyard-dev-admin")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn tenants_users_and_clients_can_be_added_at_runtime() {
    let idp = TestIdp::spawn().await;
    let res = idp
        .admin(
            Method::POST,
            "tenants",
            Some(json!({
                "slug": "initech",
                "users": [{"username": "peter", "password": PASSWORD}],
                "clients": [{"client_id": "lanyard-cli", "redirect_uris": ["http://127.0.0.1/callback"], "grant_types": ["authorization_code", "refresh_token"]}],
            })),
        )
        .await;
    assert_eq!(res.status(), 201);
    let disc: Value = idp
        .http
        .get(format!(
            "{}/.well-known/openid-configuration",
            idp.issuer("initech")
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(disc["issuer"], idp.issuer("initech"));
    let res = idp
        .admin(
            Method::POST,
            "tenants/initech/users",
            Some(json!({"username": "milton", "password": PASSWORD})),
        )
        .await;
    assert_eq!(res.status(), 201);
    let t = login_tokens(&idp, "initech", "milton").await;
    assert_eq!(claims(t["id_token"].as_str().unwrap())["tenant"], "initech");

    // Duplicates and bad input are refused without touching what exists.
    assert_eq!(
        idp.admin(Method::POST, "tenants", Some(json!({"slug": "initech"})))
            .await
            .status(),
        409
    );
    assert_eq!(
        idp.admin(
            Method::POST,
            "tenants/initech/users",
            Some(json!({"username": "milton", "password": "x"}))
        )
        .await
        .status(),
        409
    );
    assert_eq!(
        idp.admin(Method::POST, "tenants", Some(json!({"slug": "Bad Slug"})))
            .await
            .status(),
        400
    );
    assert_eq!(
        idp.admin(
            Method::POST,
            "tenants/nope/users",
            Some(json!({"username": "a", "password": "b"}))
        )
        .await
        .status(),
        404
    );
    let res = idp.admin(Method::POST, "tenants/initech/clients", Some(json!({"client_id": "c", "redirect_uris": ["not a uri"], "grant_types": ["authorization_code"]}))).await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("not an absolute"));
    let list: Value = idp
        .admin(Method::GET, "tenants", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_count_fault_fails_the_next_n_requests_then_clears_itself() {
    let idp = TestIdp::spawn().await;
    let t = login_tokens(&idp, "acme", "alice").await;
    idp.inject_fault(
        "acme",
        json!({"endpoint": "token", "status": 503, "count": 2}),
    )
    .await;
    for _ in 0..2 {
        let res = refresh(&idp, "acme", t["refresh_token"].as_str().unwrap()).await;
        assert_eq!(res.headers()["retry-after"], "1");
        assert_oauth_error(res, 503, "temporarily_unavailable").await;
    }
    // The refresh token was not consumed by the failed attempts.
    assert_eq!(
        refresh(&idp, "acme", t["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    let faults: Value = idp
        .admin(Method::GET, "tenants/acme/faults", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(faults, json!([]));
}

#[tokio::test]
async fn faults_target_one_tenant_and_one_endpoint_and_can_be_listed_and_removed() {
    let idp = TestIdp::spawn().await;
    let id = idp
        .inject_fault("acme", json!({"endpoint": "jwks", "status": 500}))
        .await;
    let jwks = |t: &str| idp.http.get(format!("{}/jwks", idp.issuer(t))).send();
    assert_eq!(jwks("acme").await.unwrap().status(), 500);
    assert_eq!(jwks("globex").await.unwrap().status(), 200);
    let disc = idp
        .http
        .get(format!(
            "{}/.well-known/openid-configuration",
            idp.issuer("acme")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(disc.status(), 200);
    let list: Value = idp
        .admin(Method::GET, "tenants/acme/faults", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["endpoint"], "jwks");
    assert_eq!(
        idp.admin(Method::DELETE, &format!("tenants/acme/faults/{id}"), None)
            .await
            .status(),
        204
    );
    assert_eq!(jwks("acme").await.unwrap().status(), 200);
    assert_eq!(
        idp.admin(Method::DELETE, &format!("tenants/acme/faults/{id}"), None)
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn an_error_rate_of_one_fails_everything_and_zero_nothing() {
    let idp = TestIdp::spawn().await;
    idp.inject_fault("acme", json!({"endpoint": "*", "status": 500, "rate": 1.0}))
        .await;
    for path in [".well-known/openid-configuration", "jwks", "userinfo"] {
        assert_eq!(
            idp.http
                .get(format!("{}/{path}", idp.issuer("acme")))
                .send()
                .await
                .unwrap()
                .status(),
            500,
            "{path}"
        );
    }
    idp.clear_faults("acme").await;
    idp.inject_fault("acme", json!({"endpoint": "*", "status": 500, "rate": 0.0}))
        .await;
    assert_eq!(
        idp.http
            .get(format!("{}/jwks", idp.issuer("acme")))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn a_down_endpoint_closes_the_connection_without_an_http_response() {
    let idp = TestIdp::spawn().await;
    idp.inject_fault(
        "acme",
        json!({"endpoint": "discovery", "down": true, "count": 1}),
    )
    .await;
    let url = format!("{}/.well-known/openid-configuration", idp.issuer("acme"));
    let outcome = match idp.http.get(&url).send().await {
        Err(e) => Err(e),
        Ok(res) => res.bytes().await.map(|_| ()),
    };
    assert!(
        outcome.is_err(),
        "a down endpoint must not produce a complete response"
    );
    assert_eq!(
        idp.http.get(&url).send().await.unwrap().status(),
        200,
        "count 1 means once"
    );
}

#[tokio::test]
async fn injected_latency_makes_an_impatient_client_time_out() {
    let idp = TestIdp::spawn().await;
    idp.inject_fault("acme", json!({"endpoint": "token", "latency_ms": 3000}))
        .await;
    let res = idp
        .http
        .post(format!("{}/token", idp.issuer("acme")))
        .timeout(Duration::from_millis(300))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await;
    assert!(res.unwrap_err().is_timeout());
    // The same call without the fault answers (here: an OAuth error, quickly).
    idp.clear_faults("acme").await;
    let res = idp
        .http
        .post(format!("{}/token", idp.issuer("acme")))
        .timeout(Duration::from_secs(10))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn a_clock_offset_shifts_the_time_claims_of_issued_tokens() {
    let idp = TestIdp::spawn().await;
    let before = claims(
        login_tokens(&idp, "acme", "alice").await["id_token"]
            .as_str()
            .unwrap(),
    );
    idp.inject_fault("acme", json!({"clock_offset_secs": -3600}))
        .await;
    let after = claims(
        login_tokens(&idp, "acme", "alice").await["id_token"]
            .as_str()
            .unwrap(),
    );
    let shift = before["iat"].as_i64().unwrap() - after["iat"].as_i64().unwrap();
    assert!((3590..=3610).contains(&shift), "iat moved by {shift}");
}

#[tokio::test]
async fn id_token_faults_produce_the_requested_defect_once() {
    let idp = TestIdp::spawn().await;
    let cases = [
        ("alg_none", "alg"),
        ("wrong_iss", "iss"),
        ("missing_nonce", "nonce"),
        ("drop_kid", "kid"),
        ("extra_aud", "aud"),
        ("expired", "exp"),
    ];
    for (tamper, _) in cases {
        idp.inject_fault("acme", json!({"id_token": tamper, "count": 1}))
            .await;
        let t = login_tokens(&idp, "acme", "alice").await;
        let tok = t["id_token"].as_str().unwrap();
        let (h, c) = (header(tok), claims(tok));
        match tamper {
            "alg_none" => assert_eq!(h["alg"], "none"),
            "wrong_iss" => assert_eq!(c["iss"], format!("{}/", idp.issuer("acme"))),
            "missing_nonce" => assert!(c.get("nonce").is_none()),
            "drop_kid" => assert!(h.get("kid").is_none()),
            "extra_aud" => assert_eq!(c["aud"].as_array().unwrap().len(), 2),
            "expired" => assert!(c["exp"].as_i64().unwrap() < c["iat"].as_i64().unwrap()),
            _ => unreachable!(),
        }
        // The next token is clean again.
        let clean = login_tokens(&idp, "acme", "alice").await;
        verify_with_jwks(&idp, "acme", clean["id_token"].as_str().unwrap(), Some(CLI)).await;
    }
}

#[tokio::test]
async fn bad_fault_specs_are_refused_with_the_reason() {
    let idp = TestIdp::spawn().await;
    for (spec, needle) in [
        (json!({"endpoint": "token"}), "needs an effect"),
        (json!({"status": 200}), "status"),
        (json!({"status": 500, "rate": 2}), "rate"),
        (
            json!({"endpoint": "nowhere", "down": true}),
            "unknown variant",
        ),
        (json!({"down": true, "surprise": 1}), "unknown field"),
        // Found by schemathesis (2026-12-04): 2^31 passed as a count the schema types as int32.
        (json!({"down": true, "count": 2_147_483_648_u64}), "count"),
        (json!({"down": true, "count": 1_000_001}), "count"),
    ] {
        let res = idp
            .admin(Method::POST, "tenants/acme/faults", Some(spec.clone()))
            .await;
        assert_eq!(res.status(), 400, "{spec}");
        let body: Value = res.json().await.unwrap();
        assert!(
            body["error_description"].as_str().unwrap().contains(needle),
            "{spec}: {body}"
        );
    }
}

#[tokio::test]
async fn the_audit_log_counts_token_grants_by_outcome() {
    let idp = TestIdp::spawn().await;
    let t = login_tokens(&idp, "acme", "alice").await;
    refresh(&idp, "acme", t["refresh_token"].as_str().unwrap()).await;
    refresh(&idp, "acme", t["refresh_token"].as_str().unwrap()).await;
    let counters = idp.audit("acme").await["counters"].clone();
    assert_eq!(counters["token.authorization_code.ok"], 1);
    assert_eq!(counters["token.refresh_token.ok"], 1);
    assert_eq!(counters["token.refresh_token.invalid_grant"], 1);
}

#[tokio::test]
async fn the_records_route_counts_what_the_audit_route_counts_without_its_events() {
    let idp = TestIdp::spawn().await;
    let t = login_tokens(&idp, "acme", "alice").await;
    refresh(&idp, "acme", t["refresh_token"].as_str().unwrap()).await;
    let audit = idp.audit("acme").await;
    let res = idp.admin(Method::GET, "tenants/acme/records", None).await;
    assert_eq!(res.status(), 200);
    let report: Value = res.json().await.unwrap();
    assert_eq!(report["records"], audit["records"]);
    assert_eq!(report["records"]["families"], 1, "{report}");
    assert_eq!(
        report["audit_events"].as_u64(),
        Some(audit["events"].as_array().unwrap().len() as u64)
    );
    assert!(report.get("events").is_none(), "{report}");
    // An admin route like the others: no token, no counts; an unknown tenant is not found.
    let anonymous = reqwest::Client::new()
        .get(format!("{}/admin/tenants/acme/records", idp.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let unknown = idp
        .admin(Method::GET, "tenants/nowhere/records", None)
        .await;
    assert_eq!(unknown.status(), 404);
}

/// The IdP built from `Settings` bound to `bind` with `admin_token` (`None`: no flag given);
/// its loopback URL.
async fn spawn_bound(
    bind: &str,
    admin_token: Option<&str>,
) -> (String, actix_web::dev::ServerHandle) {
    let settings = mock_idp::Settings {
        bind: bind.parse().unwrap(),
        config: None,
        admin_token: admin_token.map(secrecy::SecretString::from),
        public_url: None,
    };
    let app = mock_idp::Application::build_with(
        &settings,
        &mock_idp::IdpConfig::defaults(),
        std::sync::Arc::new(mock_idp::clock::SystemClock),
    )
    .unwrap();
    let (url, handle) = (format!("http://127.0.0.1:{}", app.port()), app.handle());
    tokio::spawn(app.run_until_stopped());
    (url, handle)
}

#[tokio::test]
async fn off_loopback_the_built_in_dev_admin_token_opens_nothing() {
    let (url, handle) = spawn_bound("0.0.0.0:0", None).await;
    let http = reqwest::Client::new();
    let res = http
        .get(format!("{url}/admin/tenants"))
        .bearer_auth(mock_idp::config::DEV_ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("--admin-token"),
        "{body}"
    );
    // Everything else is served as usual.
    let res = http
        .get(format!("{url}/acme/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    handle.stop(false).await;
}

#[tokio::test]
async fn off_loopback_an_admin_token_of_ones_own_opens_the_admin_api() {
    let (url, handle) = spawn_bound("0.0.0.0:0", Some("a-token-of-ones-own")).await;
    let http = reqwest::Client::new();
    let get = |token: &'static str| {
        http.get(format!("{url}/admin/tenants"))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(get("a-token-of-ones-own").await.unwrap().status(), 200);
    assert_eq!(
        get(mock_idp::config::DEV_ADMIN_TOKEN)
            .await
            .unwrap()
            .status(),
        401
    );
    handle.stop(false).await;
}

#[tokio::test]
async fn on_loopback_the_built_in_dev_admin_token_still_works() {
    let (url, handle) = spawn_bound("127.0.0.1:0", None).await;
    let res = reqwest::Client::new()
        .get(format!("{url}/admin/tenants"))
        .bearer_auth(mock_idp::config::DEV_ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    handle.stop(false).await;
}

#[tokio::test]
async fn off_loopback_the_dev_token_given_explicitly_is_the_operators_choice() {
    // docker-compose binds 0.0.0.0 inside the container, publishes on the host's loopback only,
    // and passes the dev token explicitly.
    let (url, handle) = spawn_bound("0.0.0.0:0", Some(mock_idp::config::DEV_ADMIN_TOKEN)).await;
    let res = reqwest::Client::new()
        .get(format!("{url}/admin/tenants"))
        .bearer_auth(mock_idp::config::DEV_ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    handle.stop(false).await;
}

/// Every admin route, and no other, is in `/admin/openapi.json`; each answers, for a request
/// this test makes, only a status its operation documents, with the body it documents.
#[tokio::test]
async fn the_admin_api_is_described_by_an_openapi_document_that_matches_its_routes() {
    let idp = TestIdp::spawn().await;
    // The document is public: it describes, it grants nothing.
    let res = idp
        .http
        .get(format!("{}/admin/openapi.json", idp.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut operations: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    operations.sort();
    let expected = [
        ("delete", "/admin/tenants/{tenant}/faults"),
        ("delete", "/admin/tenants/{tenant}/faults/{id}"),
        ("delete", "/admin/tenants/{tenant}/sessions/{sid}"),
        ("get", "/admin/tenants"),
        ("get", "/admin/tenants/{tenant}/audit"),
        ("get", "/admin/tenants/{tenant}/faults"),
        ("get", "/admin/tenants/{tenant}/records"),
        ("get", "/admin/tenants/{tenant}/sessions"),
        ("post", "/admin/tenants"),
        ("post", "/admin/tenants/{tenant}/clients"),
        ("post", "/admin/tenants/{tenant}/faults"),
        ("post", "/admin/tenants/{tenant}/keys/rotate"),
        ("post", "/admin/tenants/{tenant}/users"),
        ("post", "/admin/tenants/{tenant}/users/{username}/logout"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(operations, expected);
    assert_eq!(
        doc["components"]["securitySchemes"]["admin_token"]["scheme"],
        "bearer"
    );
    let tenant_schema = &doc["components"]["schemas"]["TenantConfig"];
    assert_eq!(tenant_schema["required"], json!(["slug"]));
    assert_eq!(tenant_schema["additionalProperties"], json!(false));
    // Secrets are write-only passwords in the schema too.
    assert_eq!(
        doc["components"]["schemas"]["UserConfig"]["properties"]["password"]["format"],
        "password"
    );

    // Each operation, called: its status is one it documents.
    let calls: [(Method, &str, Option<Value>); 14] = [
        (Method::GET, "tenants", None),
        (Method::POST, "tenants", Some(json!({}))),
        (
            Method::POST,
            "tenants/acme/users",
            Some(json!({"username": "x"})),
        ),
        (Method::POST, "tenants/acme/users/nobody/logout", None),
        (
            Method::POST,
            "tenants/acme/clients",
            Some(json!({"client_id": "c"})),
        ),
        (Method::GET, "tenants/acme/sessions", None),
        (Method::DELETE, "tenants/acme/sessions/none", None),
        (Method::POST, "tenants/acme/keys/rotate", None),
        (Method::GET, "tenants/acme/faults", None),
        (
            Method::POST,
            "tenants/acme/faults",
            Some(json!({"latency_ms": 1, "count": 1})),
        ),
        (Method::DELETE, "tenants/acme/faults", None),
        (Method::DELETE, "tenants/acme/faults/none", None),
        (Method::GET, "tenants/acme/audit", None),
        (Method::GET, "tenants/acme/records", None),
    ];
    for (method, path, body) in calls {
        let res = idp.admin(method.clone(), path, body).await;
        let status = res.status().as_u16().to_string();
        let template = expected
            .iter()
            .map(|(_, p)| p.as_str())
            .find(|p| {
                let t: Vec<&str> = p.trim_start_matches("/admin/").split('/').collect();
                let a: Vec<&str> = path.split('/').collect();
                t.len() == a.len()
                    && t.iter().zip(&a).all(|(t, a)| t.starts_with('{') || t == a)
                    && doc["paths"][*p]
                        .get(method.as_str().to_lowercase())
                        .is_some()
            })
            .unwrap_or_else(|| panic!("{method} {path} is not documented"));
        let responses = &doc["paths"][template][method.as_str().to_lowercase()]["responses"];
        assert!(
            responses.get(&status).is_some(),
            "{method} {path} answered {status}, which {template} does not document"
        );
        if responses[&status]["content"]
            .get("application/json")
            .is_some()
        {
            let body: Value = res.json().await.unwrap();
            let schema = &responses[&status]["content"]["application/json"]["schema"];
            if let Some(reference) = schema["$ref"].as_str() {
                let name = reference.rsplit('/').next().unwrap();
                for field in doc["components"]["schemas"][name]["required"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let field = field.as_str().unwrap();
                    assert!(
                        body.get(field).is_some(),
                        "{method} {path}: {status} body lacks {field}: {body}"
                    );
                }
            }
        }
    }
}

/// Found by schemathesis: a rotate request with an unknown field was ignored (and the key
/// rotated), and a method the admin API does not have on a path it has was a 404.
#[tokio::test]
async fn a_malformed_rotate_request_rotates_nothing_and_an_undeclared_method_is_a_405() {
    let idp = TestIdp::spawn().await;
    let jwks = |idp: &TestIdp| {
        let url = format!("{}/jwks", idp.issuer("acme"));
        let http = idp.http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let before = jwks(&idp).await;
    for body in [
        json!({"alg": null, "x-unknown": 42}),
        json!({"alg": "HS256"}),
        json!([1]),
    ] {
        let res = idp
            .admin(Method::POST, "tenants/acme/keys/rotate", Some(body.clone()))
            .await;
        assert_eq!(res.status(), 400, "{body}");
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["error"], "invalid_request", "{body}");
    }
    assert_eq!(jwks(&idp).await, before, "nothing rotated");
    // A lifetime beyond any timestamp (2^63 s) is refused, not kept to panic at the first token.
    let res = idp
        .admin(
            Method::POST,
            "tenants",
            Some(json!({"slug": "huge", "lifetimes": {"refresh_token": 9_223_372_036_854_775_808_u64}})),
        )
        .await;
    assert!(res.status().is_client_error(), "{}", res.status());
    let err: Value = res.json().await.unwrap();
    assert!(
        err["error_description"]
            .as_str()
            .unwrap()
            .contains("lifetimes.refresh_token must be at most"),
        "{err}"
    );
    let res = idp
        .admin(
            Method::POST,
            "tenants",
            Some(json!({"slug": "many", "guests": {"per_address_per_minute": 2_147_483_648_u64}})),
        )
        .await;
    assert!(res.status().is_client_error(), "{}", res.status());
    // A fault is answered as its schema says: the spec, its id and what is left of it.
    let fault: Value = idp
        .admin(
            Method::POST,
            "tenants/acme/faults",
            Some(json!({"latency_ms": 1, "count": 2})),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fault["remaining"], 2);
    assert_eq!(fault["latency_ms"], 1);
    assert!(fault["id"].is_string());
    // No body at all is still the default rotation.
    let res = idp
        .admin(Method::POST, "tenants/acme/keys/rotate", None)
        .await;
    assert_eq!(res.status(), 200);

    for (method, path, allow) in [
        (Method::TRACE, "tenants", "GET, POST"),
        (Method::PUT, "tenants/acme/faults", "GET, POST, DELETE"),
        (Method::GET, "tenants/acme/keys/rotate", "POST"),
    ] {
        let res = idp.admin(method.clone(), path, None).await;
        assert_eq!(res.status(), 405, "{method} {path}");
        assert_eq!(res.headers()["allow"], allow, "{method} {path}");
    }
}

/// The IdP admin API's OpenAPI document, as served.
async fn admin_openapi(idp: &TestIdp) -> Value {
    reqwest::get(format!("{}/admin/openapi.json", idp.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `res` is a 400 whose description names `field`.
async fn assert_refused_naming(res: reqwest::Response, field: &str, what: &str) {
    assert_eq!(res.status(), 400, "{what}");
    let body: Value = res.json().await.unwrap();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains(field),
        "{what}: the error names {field}: {body}"
    );
}

/// Found by schemathesis (`scripts/hostile`, 2026-12-04): a client registered with a
/// `refresh_reuse_grace` past what the schema documents (2^63 s, past even the int64 the schema
/// promised) was accepted. A grace of years turns refresh-token reuse detection off for that
/// client. The bound is documented in the schema and enforced, the error names the field, and
/// nothing is registered.
#[tokio::test]
async fn a_client_with_a_refresh_reuse_grace_past_its_bound_is_refused_by_name() {
    let idp = TestIdp::spawn().await;
    let doc = admin_openapi(&idp).await;
    let max = doc["components"]["schemas"]["ClientConfig"]["properties"]["refresh_reuse_grace"]
        ["maximum"]
        .as_u64()
        .expect("the schema documents the grace's maximum");
    let client = |id: &str, grace: Value| {
        json!({
            "client_id": id,
            "redirect_uris": ["http://127.0.0.1/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "refresh_reuse_grace": grace,
        })
    };
    for (id, grace) in [
        ("huge", json!(9_223_372_036_854_775_808_u64)),
        ("just-past", json!(max + 1)),
    ] {
        let res = idp
            .admin(
                Method::POST,
                "tenants/acme/clients",
                Some(client(id, grace.clone())),
            )
            .await;
        assert_refused_naming(res, "refresh_reuse_grace", &format!("grace {grace}")).await;
        // Nothing registered: the same id is free for a valid client.
        let res = idp
            .admin(
                Method::POST,
                "tenants/acme/clients",
                Some(client(id, json!(max))),
            )
            .await;
        assert_eq!(res.status(), 201, "{id} with the maximum grace");
    }
}

/// The same hole in the fault injection, found looking for the schemathesis finding's kind
/// elsewhere: a clock-offset fault took any i64. Its offset is added to the time written into
/// every token, so an offset past what a date can hold made every token request a 500 (and
/// several faults' offsets summed past i64). An offset is bounded (±10 years, documented in the
/// schema), and the offsets of several faults together are held to the same bound.
#[tokio::test]
async fn a_clock_offset_fault_past_its_bound_is_refused_and_offsets_together_stay_issuable() {
    let idp = TestIdp::spawn().await;
    let doc = admin_openapi(&idp).await;
    let field = &doc["components"]["schemas"]["FaultSpec"]["properties"]["clock_offset_secs"];
    let max = field["maximum"]
        .as_i64()
        .expect("the schema documents the offset's maximum");
    assert_eq!(field["minimum"].as_i64(), Some(-max), "{field}");
    for offset in [i64::MAX, max + 1, -max - 1] {
        let res = idp
            .admin(
                Method::POST,
                "tenants/acme/faults",
                Some(json!({"clock_offset_secs": offset})),
            )
            .await;
        assert_refused_naming(res, "clock_offset_secs", &format!("offset {offset}")).await;
    }
    // Three faults at the bound: their sum is held to it, and tokens are still issued.
    for _ in 0..3 {
        idp.inject_fault("acme", json!({"clock_offset_secs": max}))
            .await;
    }
    let (code, p, _) = login_code(&idp, "acme", "alice").await;
    let res = exchange(&idp, "acme", &code, &p.verifier).await;
    assert_eq!(res.status(), 200, "a token request under the offsets");
    let tokens: Value = res.json().await.unwrap();
    let claims = claims(tokens["id_token"].as_str().unwrap());
    let iat = claims["iat"].as_i64().unwrap();
    let now = lanyard_clock::unix(lanyard_clock::Clock::now(&lanyard_clock::SystemClock));
    assert!(
        (iat - now - max).abs() < 120,
        "the offsets together are held to the bound: iat {iat}, now {now}, bound {max}"
    );
}

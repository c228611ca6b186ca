use serde_json::{json, Value};
use test_harness::{ChildService, TestIdp};

use crate::helpers::*;

#[tokio::test]
async fn the_server_admin_creates_tenants_whose_key_then_administers_them() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let body =
        json!({"slug": "initech", "issuer": idp.issuer("initech"), "audiences": ["lanyard-cli"]});
    let (status, _) = reg.post("/v1/admin/tenants", "wrong", body.clone()).await;
    assert_eq!(status, 401);
    let (status, created) = reg
        .post(
            "/v1/admin/tenants",
            "lanyard-dev-registry-admin",
            body.clone(),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["api_key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("lyak_"));
    let (status, _) = reg
        .post("/v1/admin/tenants", "lanyard-dev-registry-admin", body)
        .await;
    assert_eq!(status, 400, "a slug is created once");
    let (status, list) = reg.get("/v1/admin/tenants/initech/sessions", &key).await;
    assert_eq!(status, 200);
    assert_eq!(list["sessions"], json!([]));
    let (status, _) = reg
        .post(
            "/v1/admin/tenants",
            "lanyard-dev-registry-admin",
            json!({"slug": "Bad Slug", "issuer": "x", "audiences": []}),
        )
        .await;
    assert_eq!(status, 400);
}

/// On both backends: each combination of filters has a statement of its own.
#[tokio::test]
async fn the_tenant_admin_lists_by_account_and_device_pages_and_revokes() {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        the_tenant_admin_lists_pages_and_revokes_on(backend).await;
    }
}

async fn the_tenant_admin_lists_pages_and_revokes_on(backend: Backend) {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, backend).await;
    let (laptop, l) = reg.device(&idp, "acme", "alice", "laptop").await;
    reg.device(&idp, "acme", "alice", "phone").await;
    reg.device(&idp, "acme", "bob", "desk").await;
    let account = l["session"]["account_id"].as_str().unwrap();
    let (_, by_account) = reg
        .get(
            &format!("/v1/admin/tenants/acme/sessions?account_id={account}"),
            API_KEY,
        )
        .await;
    assert_eq!(by_account["sessions"].as_array().unwrap().len(), 2);
    let (_, by_device) = reg
        .get("/v1/admin/tenants/acme/sessions?device_id=desk", API_KEY)
        .await;
    assert_eq!(by_device["sessions"].as_array().unwrap().len(), 1);
    let (_, on_phone) = reg
        .get(
            &format!("/v1/admin/tenants/acme/sessions?account_id={account}&device_id=phone"),
            API_KEY,
        )
        .await;
    let on_phone = on_phone["sessions"].as_array().unwrap();
    assert_eq!(on_phone.len(), 1);
    assert_eq!(on_phone[0]["device"]["id"], "phone", "{on_phone:?}");
    // A filter and the cursor together: alice's two sessions, one a page.
    let (_, first) = reg
        .get(
            &format!("/v1/admin/tenants/acme/sessions?account_id={account}&limit=1"),
            API_KEY,
        )
        .await;
    let after = first["next"].as_str().unwrap();
    let (_, second) = reg
        .get(
            &format!("/v1/admin/tenants/acme/sessions?account_id={account}&limit=1&after={after}"),
            API_KEY,
        )
        .await;
    let second = second["sessions"].as_array().unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0]["account_id"], account);
    assert_ne!(second[0]["session_id"], first["sessions"][0]["session_id"]);
    let (_, page1) = reg
        .get("/v1/admin/tenants/acme/sessions?limit=2", API_KEY)
        .await;
    assert_eq!(page1["sessions"].as_array().unwrap().len(), 2);
    let next = page1["next"].as_str().unwrap();
    let (_, page2) = reg
        .get(
            &format!("/v1/admin/tenants/acme/sessions?limit=2&after={next}"),
            API_KEY,
        )
        .await;
    assert_eq!(page2["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(page2["next"], Value::Null);
    let (status, body) = reg
        .post(
            &format!("/v1/admin/tenants/acme/accounts/{account}/revoke"),
            API_KEY,
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["revoked"].as_array().unwrap().len(), 2);
    assert_eq!(reg.get("/v1/sessions", &laptop).await.0, 401);
}

#[tokio::test]
async fn health_readiness_metrics_and_the_openapi_document_are_served() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let (token, _) = reg.device(&idp, "acme", "alice", "laptop").await;
    reg.authenticate(json!({"session_token": token})).await;
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            reg.http.get(reg.url(path)).send().await.unwrap().status(),
            200,
            "{path}"
        );
    }
    let metrics = reg.metrics().await;
    assert!(
        metrics.contains("lanyard_registry_http_requests_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"lanyard_registry_authenticate_total{outcome="ok",via="token"} 1"#),
        "{metrics}"
    );
    let doc: Value = reg
        .http
        .get(reg.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/v1/sessions",
        "/v1/sessions/authenticate",
        "/v1/sessions/revoke",
        "/v1/events",
        "/v1/backchannel-logout",
    ] {
        assert!(doc["paths"][path].is_object(), "openapi lacks {path}");
    }
}

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let db = reg.db.clone().unwrap();
    // Terminate every connection to the test database and forbid new ones.
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(
        test_harness::database::DEFAULT_SERVER_URL,
    )
    .await
    .unwrap();
    sqlx::query(&format!(
        r#"ALTER DATABASE "{}" WITH ALLOW_CONNECTIONS false"#,
        db.name
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&db.name)
        .execute(&mut admin)
        .await
        .unwrap();
    let res = reg.http.get(reg.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let (status, body, _) = reg.authenticate(json!({"session_token": session_registry::token::SessionToken::generate("acme").expose()})).await;
    assert_eq!(
        status, 503,
        "an outage is a retryable 503, not a sign-out: {body}"
    );
    assert_eq!(body["error"], "temporarily_unavailable");
    sqlx::query(&format!(
        r#"ALTER DATABASE "{}" WITH ALLOW_CONNECTIONS true"#,
        db.name
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    let mut ok = false;
    for _ in 0..50 {
        if reg
            .http
            .get(reg.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ok, "the registry recovers once the database is back");
}

#[tokio::test]
async fn the_binary_prints_its_readiness_line_and_defaults_to_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/r.db", dir.path().display());
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_session-registry"));
    let svc = ChildService::start(
        bin,
        &["--bind", "127.0.0.1:0", "--database-url", &url],
        "session-registry",
    )
    .await
    .unwrap();
    let res = reqwest::get(format!("{}/readyz", svc.base_url))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(dir.path().join("r.db").exists());
}

#[tokio::test]
async fn the_binary_has_no_built_in_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/r.db", dir.path().display());
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_session-registry"));
    let svc = ChildService::start(
        bin,
        &["--bind", "127.0.0.1:0", "--database-url", &url],
        "session-registry",
    )
    .await
    .unwrap();
    let res = reqwest::Client::new()
        .post(format!("{}/v1/admin/tenants", svc.base_url))
        .bearer_auth(session_registry::config::DEV_ADMIN_TOKEN)
        .json(&json!({"slug": "evil", "issuer": "http://127.0.0.1:1/evil", "audiences": ["x"]}))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "admin_api_disabled", "{body}");
}

#[tokio::test]
async fn issuers_added_through_the_admin_api_are_https_or_loopback_http() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    let admin = session_registry::config::DEV_ADMIN_TOKEN;
    for (slug, issuer, expected) in [
        ("plain-http", "http://idp.example.com/t", 400),
        ("private-http", "http://10.0.0.5/t", 400),
        ("no-scheme", "idp.example.com", 400),
        ("file", "file:///etc/passwd", 400),
        ("with-userinfo", "https://user:pw@idp.example.com/t", 400),
        ("with-query", "https://idp.example.com/t?x=1", 400),
        ("tls", "https://idp.example.com/t", 201),
        ("loopback", "http://127.0.0.1:8700/t", 201),
    ] {
        let (status, body) = reg
            .post(
                "/v1/admin/tenants",
                admin,
                json!({"slug": slug, "issuer": issuer, "audiences": ["lanyard-cli"]}),
            )
            .await;
        assert_eq!(status, expected, "{issuer}: {body}");
    }
    // A flag allows plain http elsewhere, for a private network the operator vouches for.
    let open =
        TestRegistry::spawn_with(&idp, Backend::Sqlite, |s| s.allow_http_issuers = true).await;
    let (status, body) = open
        .post(
            "/v1/admin/tenants",
            admin,
            json!({"slug": "lab", "issuer": "http://idp.lab.internal/t", "audiences": ["x"]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

/// An "issuer" on loopback that answers whatever the test says: the registry must not follow
/// it, wait on it forever, read it without bound, or repeat its words to the caller.
async fn hostile_issuer(answer: &'static [u8]) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let _ = conn.write_all(answer).await;
                if answer.ends_with(b"STREAM") {
                    // Keep sending until the other side hangs up.
                    let chunk = vec![b' '; 64 * 1024];
                    while conn.write_all(&chunk).await.is_ok() {}
                }
            });
        }
    });
    format!("http://{addr}/t")
}

fn registry_now(reg: &TestRegistry) -> i64 {
    use lanyard_clock::Clock;
    reg.clock.now().unix_timestamp()
}

#[tokio::test]
async fn an_issuers_answers_are_bounded_and_never_echoed() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    let admin = session_registry::config::DEV_ADMIN_TOKEN;
    let cases: [(&str, &'static [u8]); 3] = [
        (
            "redirect",
            b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest\r\nContent-Length: 0\r\n\r\n",
        ),
        (
            "error-text",
            b"HTTP/1.1 500 Oops\r\nContent-Type: text/plain\r\nContent-Length: 27\r\n\r\nREMOTE-TEXT-MUST-NOT-ECHO!!",
        ),
        (
            "endless",
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"issuer\": \"STREAM",
        ),
    ];
    for (slug, answer) in cases {
        let issuer = hostile_issuer(answer).await;
        let (status, body) = reg
            .post(
                "/v1/admin/tenants",
                admin,
                json!({"slug": slug, "issuer": issuer, "audiences": ["lanyard-cli"]}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let token = sign_as_idp(
            &idp,
            "acme",
            &json!({"iss": issuer, "aud": "lanyard-cli", "sub": "s",
                    "iat": registry_now(&reg),
                    "exp": registry_now(&reg) + 600}),
            None,
        );
        let (status, body) = reg.create(&token, "laptop").await;
        assert_eq!(status, 503, "{slug}: {body}");
        let text = body.to_string();
        for echoed in ["REMOTE-TEXT", "169.254", "Oops", &issuer] {
            assert!(!text.contains(echoed), "{slug}: {echoed} in {text}");
        }
    }
}

#[tokio::test]
async fn a_tenants_age_limits_are_checked_when_it_is_created() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    let admin = session_registry::config::DEV_ADMIN_TOKEN;
    for (slug, field, value) in [
        ("negative-step-up", "max_auth_age_secs", -1),
        ("zero-id-token-age", "max_id_token_age_secs", 0),
        ("a-year-of-step-up", "max_auth_age_secs", 365 * 86_400),
    ] {
        let mut body =
            json!({"slug": slug, "issuer": "https://idp.example.com/t", "audiences": ["x"]});
        body[field] = json!(value);
        let (status, answer) = reg.post("/v1/admin/tenants", admin, body).await;
        assert_eq!(status, 400, "{field} = {value}: {answer}");
    }
}

#[tokio::test]
async fn healthcheck_exits_0_when_the_registry_is_ready_and_1_when_not() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/r.db", dir.path().display());
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_session-registry"));
    let svc = ChildService::start(
        bin,
        &["--bind", "127.0.0.1:0", "--database-url", &url],
        "session-registry",
    )
    .await
    .unwrap();
    let check = |url: String| {
        std::process::Command::new(bin)
            .args(["healthcheck", "--url", &url])
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(check(format!("{}/readyz", svc.base_url)), Some(0));
    assert_eq!(check("http://127.0.0.1:1/readyz".into()), Some(1));
}

/// Found by schemathesis: a method the API does not have on a path it has was a 404; it is a
/// 405 naming the methods the path has.
#[tokio::test]
async fn an_undeclared_method_on_a_known_path_is_a_405_with_allow() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    for (method, path, allow) in [
        (reqwest::Method::TRACE, "/v1/events", "GET"),
        (reqwest::Method::PUT, "/v1/sessions", "POST, GET"),
        (reqwest::Method::GET, "/v1/sessions/revoke", "POST"),
        (reqwest::Method::DELETE, "/openapi.json", "GET"),
    ] {
        let res = reg
            .http
            .request(method.clone(), reg.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 405, "{method} {path}");
        assert_eq!(res.headers()["allow"], allow, "{method} {path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "method_not_allowed");
    }
    let res = reg.http.get(reg.url("/v1/nothing")).send().await.unwrap();
    assert_eq!(res.status(), 404);
}

/// The mock IdP's hole (an admin-API number past what a date holds, found by schemathesis), looked
/// for in the registry: a tenant created with a session timeout of i64::MAX seconds was accepted,
/// and every sign-in to it then computed its expiry as `now + timeout`, which overflows (a panic in
/// a debug build, an already-expired session in a release build). Timeouts are at most 10 years;
/// the refusal names the field and creates no tenant.
#[tokio::test]
async fn a_tenant_whose_timeouts_are_past_ten_years_is_refused_by_name() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    for (field, idle, absolute) in [
        ("absolute_timeout_secs", 3600, i64::MAX),
        ("absolute_timeout_secs", 3600, 315_360_001),
        ("idle_timeout_secs", i64::MAX, i64::MAX),
    ] {
        let body = json!({
            "slug": "initech",
            "issuer": idp.issuer("initech"),
            "audiences": ["lanyard-cli"],
            "idle_timeout_secs": idle,
            "absolute_timeout_secs": absolute,
        });
        let (status, answer) = reg
            .post("/v1/admin/tenants", "lanyard-dev-registry-admin", body)
            .await;
        assert_eq!(status, 400, "{field}: {answer}");
        assert!(
            answer.to_string().contains(field),
            "the refusal names {field}: {answer}"
        );
    }
    // Nothing was created: the slug is free, and ten years is accepted.
    let body = json!({
        "slug": "initech",
        "issuer": idp.issuer("initech"),
        "audiences": ["lanyard-cli"],
        "idle_timeout_secs": 315_360_000,
        "absolute_timeout_secs": 315_360_000,
    });
    let (status, answer) = reg
        .post("/v1/admin/tenants", "lanyard-dev-registry-admin", body)
        .await;
    assert_eq!(status, 201, "{answer}");
}

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

#[tokio::test]
async fn the_tenant_admin_lists_by_account_and_device_pages_and_revokes() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
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

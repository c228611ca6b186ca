//! Tenant isolation in code and in Postgres row-level security.

use serde_json::json;
use sqlx::{Connection, Executor, PgConnection, Row};
use test_harness::TestIdp;

use crate::helpers::*;

#[tokio::test]
async fn a_query_without_the_tenant_set_sees_nothing_and_with_it_sees_only_that_tenant() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    reg.device(&idp, "acme", "alice", "laptop").await;
    reg.device(&idp, "globex", "carol", "desk").await;
    let mut conn = PgConnection::connect(&reg.database_url).await.unwrap();
    let all: i64 = sqlx::query("SELECT count(*) AS n FROM sessions")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get("n");
    assert_eq!(all, 2, "the owner (superuser) sees both");
    conn.execute("SET ROLE lanyard_app").await.unwrap();
    let none: i64 = sqlx::query("SELECT count(*) AS n FROM sessions")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get("n");
    assert_eq!(
        none, 0,
        "without lanyard.tenant the application role sees nothing"
    );
    conn.execute("SELECT set_config('lanyard.tenant', 'acme', false)")
        .await
        .unwrap();
    let rows = sqlx::query("SELECT tenant FROM sessions")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<String, _>("tenant"), "acme");
    let err = sqlx::query("UPDATE sessions SET tenant = 'globex'")
        .execute(&mut conn)
        .await;
    assert!(err.is_err(), "a row cannot be moved to another tenant");
}

async fn a_token_of_one_tenant_is_useless_in_another(backend: Backend) {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, backend).await;
    let (acme, _) = reg.device(&idp, "acme", "alice", "laptop").await;
    let (globex, g) = reg.device(&idp, "globex", "alice", "laptop").await;
    let (_, list) = reg.get("/v1/sessions", &acme).await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1);
    assert_ne!(
        list["sessions"][0]["account_id"], g["session"]["account_id"],
        "globex's alice is another account"
    );
    // Swapping the tenant in the token breaks its checksum: refused before any lookup.
    let forged = acme.replacen("lyst_acme_", "lyst_globex_", 1);
    let (status, body) = reg.get("/v1/sessions", &forged).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("malformed_token"))
    );
    // Admin keys are per tenant.
    let (status, _) = reg.get("/v1/admin/tenants/globex/sessions", API_KEY).await;
    assert_eq!(status, 401);
    let (status, _) = reg
        .post(
            &format!(
                "/v1/admin/tenants/acme/sessions/{}/revoke",
                g["session"]["session_id"].as_str().unwrap()
            ),
            API_KEY,
            json!({}),
        )
        .await;
    assert_eq!(status, 404, "acme's admin cannot reach a globex session");
    assert_eq!(reg.get("/v1/sessions", &globex).await.0, 200);
}
on_both_backends!(a_token_of_one_tenant_is_useless_in_another);

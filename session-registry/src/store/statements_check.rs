//! Every statement the store runs (`sql::SHARED` and each backend's own), prepared against the
//! schema its migrations build: a column renamed in a migration, or a typo in a statement that
//! only a rare path runs, fails here rather than in production.

use sqlx::{Connection, Executor};

use super::{pg_hot, sql, PgStore, SqliteStore};

#[tokio::test]
async fn every_statement_prepares_against_the_postgres_schema() {
    let db = test_harness::TestDatabase::create().await;
    PgStore::connect(&db.url, true)
        .await
        .expect("the schema migrates");
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    // As the application role: a statement touching what it may not is a failure too.
    conn.execute("SET ROLE lanyard_app").await.unwrap();
    let mut failed = Vec::new();
    for (name, statement) in sql::SHARED
        .iter()
        .chain(sql::POSTGRES)
        .chain(pg_hot::STATEMENTS)
    {
        if let Err(e) = conn.prepare(statement).await {
            failed.push(format!("{name}: {e}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert!(
        sql::SHARED.len() >= 28,
        "the list names every shared statement"
    );
}

#[tokio::test]
async fn every_statement_prepares_against_the_sqlite_schema() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/registry.db", dir.path().display());
    SqliteStore::connect(&url)
        .await
        .expect("the schema migrates");
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let mut failed = Vec::new();
    for (name, statement) in sql::SHARED.iter().chain(sql::SQLITE) {
        if let Err(e) = conn.prepare(statement).await {
            failed.push(format!("{name}: {e}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

//! One fresh Postgres database per test, as zero2prod's `spawn_app` does.
//! `LANYARD_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) names the
//! server — its own variable, so exporting it for the tests never moves devstack or a registry
//! (which read `DATABASE_URL`) onto Postgres; the database is dropped when the value is dropped.

use rand::Rng;
use sqlx::{Connection, Executor, PgConnection};

pub const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The variable naming the tests' Postgres server.
pub const SERVER_URL_VARIABLE: &str = "LANYARD_TEST_DATABASE_URL";

pub struct TestDatabase {
    /// Connection URL of the fresh database.
    pub url: String,
    pub name: String,
    server_url: String,
}

fn server_url() -> String {
    std::env::var(SERVER_URL_VARIABLE).unwrap_or_else(|_| DEFAULT_SERVER_URL.to_owned())
}

/// `url` with its database path replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_path(&format!("/{db}"));
            u.to_string()
        }
        Err(_) => format!("{}/{db}", url.trim_end_matches('/')),
    }
}

impl TestDatabase {
    pub async fn create() -> Self {
        let server = server_url();
        let name = format!("lanyard_test_{:016x}", rand::thread_rng().gen::<u64>());
        let mut conn = PgConnection::connect(&server)
            .await
            .unwrap_or_else(|e| panic!("Postgres at {server} is needed for this test: {e}"));
        conn.execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .expect("create test database");
        Self {
            url: with_database(&server, &name),
            name,
            server_url: server,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server_url.clone(), self.name.clone());
        // Drop may run inside a runtime; do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Ok(mut conn) = PgConnection::connect(&server).await {
                        let _ = conn
                            .execute(
                                format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#)
                                    .as_str(),
                            )
                            .await;
                    }
                });
            }
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fresh_database_exists_and_is_dropped_afterwards() {
        let db = TestDatabase::create().await;
        let mut conn = PgConnection::connect(&db.url)
            .await
            .expect("connect to the fresh database");
        let one: (i32,) = sqlx::query_as("SELECT 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(one.0, 1);
        drop(conn);
        let name = db.name.clone();
        drop(db);
        let mut server = PgConnection::connect(&server_url()).await.unwrap();
        let found: Option<(String,)> =
            sqlx::query_as("SELECT datname::text FROM pg_database WHERE datname = $1")
                .bind(&name)
                .fetch_optional(&mut server)
                .await
                .unwrap();
        assert!(found.is_none(), "database {name} was not dropped");
    }

    #[tokio::test]
    async fn the_tests_server_is_named_by_its_own_variable_not_database_url() {
        // What a developer exports for devstack or a registry must not move the tests, and the
        // tests' variable is not DATABASE_URL (nextest runs each test in its own process).
        std::env::set_var(
            "DATABASE_URL",
            "postgres://nobody@127.0.0.1:1/not-the-tests",
        );
        let db = TestDatabase::create().await;
        assert!(db.url.contains(&db.name));
        assert!(!server_url().contains("not-the-tests"));
    }
}

//! Flags, each with a `DEVSTACK_*` environment twin (`DATABASE_URL` keeps its usual name), and
//! the one decision they imply: which database the registry uses.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

/// The documented IdP address (`http://127.0.0.1:8700`).
pub const DEFAULT_IDP_BIND: &str = mock_idp::config::DEFAULT_BIND;
/// The documented registry address (`http://127.0.0.1:8701`).
pub const DEFAULT_REGISTRY_BIND: &str = session_registry::config::DEFAULT_BIND;
/// Everything devstack writes goes under this folder (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = ".devstack";

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "devstack",
    version,
    about = "The local Lanyard stack: the mock IdP and the session registry, wired together",
    long_about = "The local Lanyard stack: the mock IdP (tenants acme and globex, dev users, \
                  password lanyard-dev) and the session registry trusting it, on fixed loopback \
                  ports. Each service prints its readiness line on stdout once it answers; the \
                  banner with URLs, users and tokens goes to stderr. Ctrl-C or SIGTERM stops both."
)]
pub struct Options {
    /// Address of the mock IdP; port 0 picks a free port.
    #[arg(long, env = "DEVSTACK_IDP_BIND", default_value = DEFAULT_IDP_BIND)]
    pub idp_bind: SocketAddr,
    /// Address of the session registry; port 0 picks a free port.
    #[arg(long, env = "DEVSTACK_REGISTRY_BIND", default_value = DEFAULT_REGISTRY_BIND)]
    pub registry_bind: SocketAddr,
    /// Folder for everything devstack writes: the registry's SQLite database and both services'
    /// signing keys (which survive restarts there). Created if missing.
    #[arg(long, env = "DEVSTACK_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// A `postgres://…` URL runs the registry on that database (migrated at start) instead of
    /// SQLite in the data folder.
    // A secret until validated: clap would echo a value it rejects, password and all.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretString>,
}

impl Options {
    /// The documented defaults, as `devstack` with no flags and no environment would run.
    pub fn defaults() -> Self {
        Self::on(
            parse_addr(DEFAULT_IDP_BIND),
            parse_addr(DEFAULT_REGISTRY_BIND),
            PathBuf::from(DEFAULT_DATA_DIR),
        )
    }

    /// Explicit addresses and data folder, SQLite (what tests use with port 0 and a temp dir).
    pub fn on(idp_bind: SocketAddr, registry_bind: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            idp_bind,
            registry_bind,
            data_dir,
            database_url: None,
        }
    }

    /// Which database the registry uses: Postgres when a URL is given, else SQLite in the data
    /// folder.
    pub fn database(&self) -> Result<Database, InvalidDatabaseUrl> {
        match &self.database_url {
            Some(url) => Ok(Database::Postgres(PostgresUrl::parse(url.expose_secret())?)),
            None => Ok(Database::Sqlite(self.data_dir.join("registry.db"))),
        }
    }
}

fn parse_addr(addr: &str) -> SocketAddr {
    addr.parse()
        .unwrap_or_else(|_| unreachable!("the default addresses are valid"))
}

/// The registry's database.
#[derive(Debug, Clone)]
pub enum Database {
    /// The embedded default: one SQLite file in the data folder.
    Sqlite(PathBuf),
    /// `DATABASE_URL` / `--database-url`.
    Postgres(PostgresUrl),
}

impl Database {
    /// The URL handed to the registry (with the password, if any).
    pub fn url(&self) -> Result<String, NonUtf8Path> {
        match self {
            Database::Sqlite(path) => path
                .to_str()
                .map(|p| format!("sqlite://{p}"))
                .ok_or_else(|| NonUtf8Path(path.clone())),
            Database::Postgres(url) => Ok(url.expose().to_owned()),
        }
    }

    /// Whether the registry must run its migrations at start (SQLite always does).
    pub fn migrate(&self) -> bool {
        matches!(self, Database::Postgres(_))
    }
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "SQLite at {}", path.display()),
            Database::Postgres(url) => write!(f, "Postgres at {url}"),
        }
    }
}

/// The SQLite path cannot be written into a `sqlite://` URL.
#[derive(Debug, thiserror::Error)]
#[error("the data folder path {} is not UTF-8; pass --data-dir with a UTF-8 path", .0.display())]
pub struct NonUtf8Path(pub PathBuf);

/// A `postgres://` or `postgresql://` URL. It may carry a password, so `Debug` and `Display`
/// show it without one.
#[derive(Clone)]
pub struct PostgresUrl(SecretString);

impl PostgresUrl {
    pub fn parse(url: &str) -> Result<Self, InvalidDatabaseUrl> {
        let parsed = url::Url::parse(url).map_err(|_| InvalidDatabaseUrl)?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") || !parsed.has_host() {
            return Err(InvalidDatabaseUrl);
        }
        Ok(Self(SecretString::from(url)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The URL with its password, if any, replaced by `***`.
    pub fn redacted(&self) -> String {
        match url::Url::parse(self.expose()) {
            Ok(mut url) if url.password().is_some() => {
                // Only fails for URLs that cannot have a password, which a postgres URL can.
                let _ = url.set_password(Some("***"));
                url.to_string()
            }
            Ok(url) => url.to_string(),
            Err(_) => "[REDACTED]".to_owned(),
        }
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PostgresUrl")
            .field(&self.redacted())
            .finish()
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Deliberately says nothing about the value: it may hold a password.
#[derive(Debug, thiserror::Error)]
#[error(
    "DATABASE_URL (--database-url) must be a postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE URL; \
     unset it to use SQLite in the data folder"
)]
pub struct InvalidDatabaseUrl;

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_defaults_are_the_documented_ports_and_folder() {
        let o = Options::try_parse_from(["devstack"]).unwrap();
        // The environment may set DEVSTACK_* in a developer shell; compare with defaults()
        // only where no twin is set.
        if std::env::var_os("DEVSTACK_IDP_BIND").is_none() {
            assert_eq!(o.idp_bind.to_string(), "127.0.0.1:8700");
        }
        if std::env::var_os("DEVSTACK_REGISTRY_BIND").is_none() {
            assert_eq!(o.registry_bind.to_string(), "127.0.0.1:8701");
        }
        let d = Options::defaults();
        assert_eq!(d.idp_bind.to_string(), "127.0.0.1:8700");
        assert_eq!(d.registry_bind.to_string(), "127.0.0.1:8701");
        assert_eq!(d.data_dir, PathBuf::from(".devstack"));
        let db = d.database().unwrap();
        assert_eq!(db.url().unwrap(), "sqlite://.devstack/registry.db");
        assert!(!db.migrate());
    }

    #[test]
    fn a_postgres_url_switches_the_registry_to_postgres_with_migrations() {
        let o = Options::try_parse_from([
            "devstack",
            "--database-url",
            "postgres://lanyard:hunter2@db.example:5432/lanyard",
        ])
        .unwrap();
        let db = o.database().unwrap();
        assert!(db.migrate());
        assert_eq!(
            db.url().unwrap(),
            "postgres://lanyard:hunter2@db.example:5432/lanyard"
        );
    }

    #[test]
    fn a_database_password_never_reaches_debug_or_display() {
        let raw = "postgresql://lanyard:hunter2@db.example/lanyard";
        let o = Options {
            database_url: Some(SecretString::from(raw)),
            ..Options::defaults()
        };
        let db = o.database().unwrap();
        assert!(!format!("{o:?}").contains("hunter2"));
        for shown in [format!("{db:?}"), format!("{db}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("lanyard:***@db.example"), "{shown}");
        }
    }

    #[test]
    fn a_database_url_that_is_not_postgres_is_refused_naming_the_key() {
        for bad in [
            "sqlite://x.db",
            "mysql://u:secretpw@h/d",
            "not a url",
            "postgres:nohost",
        ] {
            let err = Options::try_parse_from(["devstack", "--database-url", bad])
                .unwrap()
                .database()
                .unwrap_err()
                .to_string();
            assert!(err.contains("DATABASE_URL"), "{err}");
            assert!(!err.contains("secretpw"), "{err}");
        }
    }

    #[test]
    fn the_bind_flags_take_port_zero() {
        // The default database is SQLite unless DATABASE_URL says otherwise (CI may set it).
        std::env::remove_var("DATABASE_URL");
        let o = Options::try_parse_from([
            "devstack",
            "--idp-bind",
            "127.0.0.1:0",
            "--registry-bind",
            "127.0.0.1:0",
            "--data-dir",
            "/tmp/x",
        ])
        .unwrap();
        assert_eq!(o.idp_bind.port(), 0);
        assert_eq!(o.registry_bind.port(), 0);
        assert_eq!(
            o.database().unwrap().url().unwrap(),
            "sqlite:///tmp/x/registry.db"
        );
    }
}

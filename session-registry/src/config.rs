//! Configuration: flags and environment ([`Settings`]) and the TOML file of tenants
//! ([`RegistryConfig`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

pub const DEFAULT_BIND: &str = "127.0.0.1:8701";
/// The admin token devstack and the tests pass explicitly; the binary has no default.
pub const DEV_ADMIN_TOKEN: &str = "lanyard-dev-registry-admin";

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "session-registry",
    version,
    about = "The multi-tenant registry of device sessions"
)]
pub struct Settings {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "SESSION_REGISTRY_BIND", default_value = DEFAULT_BIND)]
    pub bind: SocketAddr,
    /// `postgres://…` or `sqlite://…`; without it, an embedded SQLite database in ./.lanyard-registry.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// TOML file with tenants (and optionally `key_dir`).
    #[arg(long, env = "SESSION_REGISTRY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Public base URL (the `iss` of session JWTs); defaults to `http://{bound address}`.
    #[arg(long, env = "SESSION_REGISTRY_PUBLIC_URL")]
    pub public_url: Option<url::Url>,
    /// Run migrations at start (always done for SQLite).
    #[arg(long, env = "SESSION_REGISTRY_MIGRATE")]
    pub migrate: bool,
    /// Server-wide admin token (creates tenants, rotates keys). There is no built-in one:
    /// without it the server-wide admin API is off.
    #[arg(long, env = "SESSION_REGISTRY_ADMIN_TOKEN")]
    pub admin_token: Option<SecretString>,
    /// Reverse proxies whose `X-Forwarded-For` names the client (comma-separated addresses or
    /// CIDR blocks). From any other peer the header is ignored.
    #[arg(long, env = "SESSION_REGISTRY_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_proxy)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Let the admin API add tenants whose issuer is plain `http` on a non-loopback host (only
    /// for a private network you vouch for; `https` or loopback `http` otherwise).
    #[arg(long, env = "SESSION_REGISTRY_ALLOW_HTTP_ISSUERS")]
    pub allow_http_issuers: bool,
    /// How events reach every registry process: `postgres` (LISTEN/NOTIFY, the default on one
    /// box) or `nats://HOST:PORT` (an outbox relayed to NATS JetStream: many processes). With
    /// SQLite there is one process and this is ignored.
    #[arg(long, env = "SESSION_REGISTRY_EVENTS", default_value = "postgres", value_parser = parse_events)]
    pub events: EventsSetting,
    /// The deployment's name on NATS: its stream is `LANYARD_<name>`, its subjects
    /// `lanyard.<name>.…` (several deployments can share a NATS server).
    #[arg(long, env = "SESSION_REGISTRY_DEPLOYMENT", default_value = "lanyard")]
    pub deployment: String,
    /// The key that seals the session-JWT signing keys in Postgres (32 bytes, base64): with it,
    /// every process on the database signs and verifies with the same keys, and a rotation
    /// through any reaches all. Without it, each process keeps keys of its own (`key_dir`).
    #[arg(
        long,
        env = "SESSION_REGISTRY_KEY_ENCRYPTION_KEY",
        hide_env_values = true
    )]
    pub key_encryption_key: Option<SecretString>,
    /// A read replica of the Postgres database (a hot standby): token lookups and session
    /// lists read from it while it has replayed every event this process has heard of the
    /// account; any other answer (a miss, a revoked or stale session, a lagging replica, the
    /// event feed down) is read again on the primary.
    #[arg(long, env = "SESSION_REGISTRY_READ_DATABASE_URL")]
    pub read_database_url: Option<String>,
    /// What sits between the registry and Postgres: `none` (a direct connection, the default)
    /// or `transaction` (a pooler such as PgBouncer in transaction mode: every statement then
    /// runs in a transaction of its own with no session state and no named prepared
    /// statements; needs `--events nats://…`, since LISTEN cannot pass a transaction pooler).
    #[arg(long, env = "SESSION_REGISTRY_DATABASE_POOLER", default_value = "none", value_parser = parse_pooler)]
    pub database_pooler: Pooler,
    /// Where `--migrate` runs the migrations, when not over `--database-url` (they hold a
    /// session-level lock, so behind a transaction pooler they need a direct connection).
    #[arg(long, env = "SESSION_REGISTRY_MIGRATIONS_DATABASE_URL")]
    pub migrations_database_url: Option<String>,
    /// Clock-skew allowance, in seconds, of the time claims (`iat`, `exp`) of the ID and logout
    /// tokens the registry verifies: how far the IdP's clock may be from this one. At most 300.
    #[arg(long, env = "SESSION_REGISTRY_CLOCK_LEEWAY", default_value_t = crate::oidc::DEFAULT_LEEWAY, value_parser = clap::value_parser!(i64).range(0..=crate::oidc::MAX_LEEWAY))]
    pub clock_leeway: i64,
    /// HTTP worker threads (each runs its own event loop).
    #[arg(long, env = "SESSION_REGISTRY_WORKERS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: u16,
}

impl Settings {
    pub fn for_tests(database_url: &str) -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: Some(database_url.to_owned()),
            config: None,
            public_url: None,
            migrate: true,
            admin_token: Some(SecretString::from(DEV_ADMIN_TOKEN)),
            trusted_proxies: Vec::new(),
            allow_http_issuers: false,
            events: EventsSetting::Postgres,
            deployment: "lanyard".into(),
            key_encryption_key: Some(SecretString::from(TEST_KEY_ENCRYPTION_KEY)),
            read_database_url: None,
            database_pooler: Pooler::None,
            migrations_database_url: None,
            clock_leeway: crate::oidc::DEFAULT_LEEWAY,
            workers: 2,
        }
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| "sqlite://.lanyard-registry/registry.db".to_owned())
    }

    pub fn load_config(&self) -> Result<RegistryConfig, ConfigError> {
        match &self.config {
            Some(p) => RegistryConfig::from_file(p),
            None => Ok(RegistryConfig::default()),
        }
    }
}

/// The key-encryption key of [`Settings::for_tests`] (32 bytes of 0x2a): tests only.
pub const TEST_KEY_ENCRYPTION_KEY: &str = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";

/// Where events go between registry processes (`--events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventsSetting {
    Postgres,
    Nats(String),
}

pub fn parse_events(s: &str) -> Result<EventsSetting, String> {
    match s.trim() {
        "postgres" => Ok(EventsSetting::Postgres),
        url if url.starts_with("nats://") && url.len() > "nats://".len() => {
            Ok(EventsSetting::Nats(url.to_owned()))
        }
        other => Err(format!(
            "'{other}' is neither `postgres` nor a `nats://HOST:PORT` URL"
        )),
    }
}

/// What sits between the registry and Postgres (`--database-pooler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooler {
    /// Direct connections: session settings and named prepared statements are kept.
    #[default]
    None,
    /// A transaction-mode pooler (PgBouncer `pool_mode = transaction`): a server connection is
    /// ours only for one transaction.
    Transaction,
}

pub fn parse_pooler(s: &str) -> Result<Pooler, String> {
    match s.trim() {
        "none" => Ok(Pooler::None),
        "transaction" => Ok(Pooler::Transaction),
        other => Err(format!("'{other}' is neither `none` nor `transaction`")),
    }
}

/// A trusted proxy: a CIDR block, or one address (a block of one).
pub fn parse_proxy(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("'{s}' is neither an IP address nor a CIDR block"))
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
}

/// The longest session timeout (idle or absolute) a tenant may have: 10 years, in seconds. Every
/// sign-in computes `now + timeout`; a bound keeps that far from overflowing.
pub const MAX_SESSION_TIMEOUT_SECS: i64 = 315_360_000;

/// The bounds of a tenant's times, the same for the admin API (`POST /v1/admin/tenants`) and the
/// config file. The two age limits are ten seconds to a day: a zero or negative age would make
/// step-up (and sign-in) impossible, a very long one meaningless. The timeouts are positive and at
/// most [`MAX_SESSION_TIMEOUT_SECS`]. The error names the field.
pub fn check_tenant_times(
    idle_timeout_secs: i64,
    absolute_timeout_secs: i64,
    max_id_token_age_secs: i64,
    max_auth_age_secs: i64,
) -> Result<(), String> {
    for (field, value) in [
        ("max_id_token_age_secs", max_id_token_age_secs),
        ("max_auth_age_secs", max_auth_age_secs),
    ] {
        if !(10..=86_400).contains(&value) {
            return Err(format!("{field} must be between 10 and 86400 seconds"));
        }
    }
    for (field, value) in [
        ("idle_timeout_secs", idle_timeout_secs),
        ("absolute_timeout_secs", absolute_timeout_secs),
    ] {
        if value > MAX_SESSION_TIMEOUT_SECS {
            return Err(format!(
                "{field} must be at most {MAX_SESSION_TIMEOUT_SECS} seconds (10 years)"
            ));
        }
        if value <= 0 {
            return Err(format!("{field} must be positive"));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Where the session-JWT signing keys persist (generated when absent).
    #[serde(default)]
    pub key_dir: Option<PathBuf>,
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
    /// The registry as a confidential OIDC client of tenants' IdPs, for the "Your devices" page.
    #[serde(default)]
    pub web_clients: Vec<WebClientConfig>,
}

/// The registry's own client registration at a tenant's IdP (e.g. `lanyard-registry`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebClientConfig {
    pub tenant: String,
    pub client_id: String,
    pub client_secret: SecretString,
}

impl RegistryConfig {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: Self = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        for t in &config.tenants {
            check_tenant_times(
                t.idle_timeout_secs,
                t.absolute_timeout_secs,
                t.max_id_token_age_secs,
                t.max_auth_age_secs,
            )
            .map_err(|message| ConfigError::Parse {
                path: path.to_owned(),
                message: format!("tenant {}: {message}", t.slug),
            })?;
        }
        Ok(config)
    }
}

/// A tenant: the IdP issuer it trusts, the audiences it accepts, its timeouts, its API key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub slug: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: i64,
    #[serde(default = "default_absolute")]
    pub absolute_timeout_secs: i64,
    /// How old (by `iat`) an ID token may be when it is traded for a session.
    #[serde(default = "default_max_age")]
    pub max_id_token_age_secs: i64,
    /// How recent the last IdP sign-in must be to end sessions other than the caller's own.
    #[serde(default = "default_max_age")]
    pub max_auth_age_secs: i64,
    /// The tenant admin API key (stored hashed).
    #[serde(default)]
    pub api_key: Option<SecretString>,
}

impl TenantConfig {
    /// What the registry stores for this tenant: its API key only as a hash.
    pub fn record(&self) -> crate::store::TenantRecord {
        use secrecy::ExposeSecret;
        crate::store::TenantRecord {
            slug: self.slug.clone(),
            issuer: self.issuer.clone(),
            audiences: self.audiences.clone(),
            idle_timeout_secs: self.idle_timeout_secs,
            absolute_timeout_secs: self.absolute_timeout_secs,
            max_id_token_age_secs: self.max_id_token_age_secs,
            max_auth_age_secs: self.max_auth_age_secs,
            api_key_hash: self
                .api_key
                .as_ref()
                .map(|k| crate::token::hash_hex(k.expose_secret())),
        }
    }
}

pub fn default_max_age() -> i64 {
    crate::store::DEFAULT_MAX_AGE_SECS
}

pub fn default_idle() -> i64 {
    7 * 24 * 3600
}

pub fn default_absolute() -> i64 {
    30 * 24 * 3600
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// A tenant's timeouts from the config file are bounded as through the admin API: a timeout
    /// past what `now + timeout` can hold would make every sign-in to the tenant overflow.
    #[test]
    fn a_config_tenant_whose_times_are_out_of_bounds_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.toml");
        for (field, value) in [
            ("absolute_timeout_secs", i64::MAX),
            ("idle_timeout_secs", 315_360_001),
            ("max_id_token_age_secs", i64::MAX),
            ("max_auth_age_secs", 0),
        ] {
            std::fs::write(
                &path,
                format!(
                    "[[tenants]]\nslug = \"acme\"\nissuer = \"https://idp.example/acme\"\n\
                     audiences = [\"lanyard-cli\"]\n{field} = {value}\n"
                ),
            )
            .unwrap();
            let err = RegistryConfig::from_file(&path).unwrap_err().to_string();
            assert!(err.contains(field), "{field} = {value}: {err}");
            assert!(err.contains("acme"), "the tenant is named: {err}");
        }
        std::fs::write(
            &path,
            "[[tenants]]\nslug = \"acme\"\nissuer = \"https://idp.example/acme\"\n\
             audiences = [\"lanyard-cli\"]\nidle_timeout_secs = 1\nabsolute_timeout_secs = 315360000\n",
        )
        .unwrap();
        assert!(RegistryConfig::from_file(&path).is_ok());
    }

    #[test]
    fn events_is_postgres_or_a_nats_url_and_anything_else_is_refused_by_name() {
        assert_eq!(parse_events("postgres"), Ok(EventsSetting::Postgres));
        assert_eq!(
            parse_events("nats://10.0.0.5:4222"),
            Ok(EventsSetting::Nats("nats://10.0.0.5:4222".into()))
        );
        for bad in ["kafka", "nats://", "http://nats:4222", ""] {
            let err = parse_events(bad).unwrap_err();
            assert!(err.contains("nats://HOST:PORT"), "{bad}: {err}");
        }
        let err = Settings::try_parse_from(["session-registry", "--events", "redis://x"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--events"), "{err}");
    }

    #[test]
    fn the_clock_leeway_defaults_to_60_seconds_and_takes_at_most_300() {
        let parse = |args: &[&str]| {
            Settings::try_parse_from(
                std::iter::once("session-registry").chain(args.iter().copied()),
            )
        };
        assert_eq!(parse(&[]).unwrap().clock_leeway, 60);
        assert_eq!(parse(&["--clock-leeway", "300"]).unwrap().clock_leeway, 300);
        for bad in ["301", "-1", "5m"] {
            let arg = format!("--clock-leeway={bad}");
            let err = parse(&[&arg]).unwrap_err().to_string();
            assert!(err.contains("--clock-leeway"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_key_encryption_key_never_shows_in_debug() {
        let s = Settings::for_tests("sqlite://x.db");
        assert!(!format!("{s:?}").contains(TEST_KEY_ENCRYPTION_KEY));
    }
}

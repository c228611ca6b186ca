//! Configuration: flags and environment ([`Settings`]) and the TOML file of tenants
//! ([`RegistryConfig`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

pub const DEFAULT_BIND: &str = "127.0.0.1:8701";
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
    /// Server-wide admin token (creates tenants).
    #[arg(long, env = "SESSION_REGISTRY_ADMIN_TOKEN", default_value = DEV_ADMIN_TOKEN, hide_default_value = true)]
    pub admin_token: SecretString,
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
            admin_token: SecretString::from(DEV_ADMIN_TOKEN),
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
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
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
    /// The tenant admin API key (stored hashed).
    #[serde(default)]
    pub api_key: Option<SecretString>,
}

pub fn default_idle() -> i64 {
    7 * 24 * 3600
}

pub fn default_absolute() -> i64 {
    30 * 24 * 3600
}

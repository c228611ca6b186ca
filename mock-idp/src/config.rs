//! Configuration: the command line / environment ([`Settings`]) and the TOML file that seeds
//! tenants, users and clients ([`IdpConfig`]). With no file, [`IdpConfig::defaults`] is used: the
//! tenants, users and clients that devstack and the test suites rely on (documented in README.md).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::ids::{ClientId, TenantId, Username};

/// The dev password of every default user.
pub const DEV_PASSWORD: &str = "lanyard-dev";
/// The default admin bearer token when none is configured (a mock: documented, not secret).
pub const DEV_ADMIN_TOKEN: &str = "lanyard-dev-admin";
/// The default secret of the confidential `lanyard-registry` client.
pub const DEV_REGISTRY_SECRET: &str = "lanyard-registry-dev-secret";
/// The default bind address (devstack's documented IdP port).
pub const DEFAULT_BIND: &str = "127.0.0.1:8700";
/// Where devstack's registry listens by default; the default `lanyard-registry` client posts
/// back-channel logout tokens there.
pub const DEFAULT_REGISTRY_URL: &str = "http://127.0.0.1:8701";

/// Process settings: flags, with `MOCK_IDP_*` environment variables as fallback.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "mock-idp",
    version,
    about = "A multi-tenant OpenID Connect provider for local end-to-end work"
)]
pub struct Settings {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "MOCK_IDP_BIND", default_value = DEFAULT_BIND)]
    pub bind: SocketAddr,
    /// TOML file seeding tenants, users and clients; without it the documented defaults are used.
    #[arg(long, env = "MOCK_IDP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Bearer token for the admin API. Without it, the built-in dev token (`lanyard-dev-admin`)
    /// opens the admin API while the IdP listens on a loopback address, and nothing does
    /// elsewhere.
    #[arg(long, env = "MOCK_IDP_ADMIN_TOKEN")]
    pub admin_token: Option<SecretString>,
    /// Public base URL (issuers are `{public_url}/{tenant}`); defaults to `http://{bound address}`.
    #[arg(long, env = "MOCK_IDP_PUBLIC_URL")]
    pub public_url: Option<url::Url>,
}

impl Settings {
    /// Settings for tests: a free loopback port, default tenants, the dev admin token.
    pub fn for_tests() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            config: None,
            admin_token: Some(SecretString::from(DEV_ADMIN_TOKEN)),
            public_url: None,
        }
    }

    /// Reads the config file named in the settings, or the defaults.
    pub fn load_config(&self) -> Result<IdpConfig, ConfigError> {
        match &self.config {
            Some(path) => IdpConfig::from_file(path),
            None => Ok(IdpConfig::defaults()),
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
    #[error("config is invalid: {0}")]
    Invalid(String),
}

/// The seed file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdpConfig {
    /// Directory of signing keys, one sub-directory per tenant. Keys found there are loaded;
    /// keys generated at start or by rotation are written there, so a restarted IdP keeps its
    /// `kid`s and tokens it issued before still verify.
    #[serde(default)]
    pub key_dir: Option<PathBuf>,
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
}

impl IdpConfig {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The documented defaults: tenants `acme` (alice, bob) and `globex` (carol, and another
    /// alice with a different subject), password `lanyard-dev`; public client `lanyard-cli` and
    /// confidential client `lanyard-registry` in both.
    pub fn defaults() -> Self {
        let tenant = |slug: &str, users: &[(&str, &str)]| TenantConfig {
            slug: TenantId::parse(slug).unwrap_or_else(|_| unreachable!("static slug")),
            display_name: None,
            lifetimes: Lifetimes::default(),
            guests: GuestLimits::default(),
            users: users
                .iter()
                .map(|(username, name)| UserConfig {
                    username: Username::parse(username)
                        .unwrap_or_else(|_| unreachable!("static name")),
                    password: SecretString::from(DEV_PASSWORD),
                    email: Some(format!("{username}@{slug}.example")),
                    name: Some((*name).to_owned()),
                    subject: None,
                })
                .collect(),
            clients: vec![
                ClientConfig::lanyard_cli(),
                ClientConfig::lanyard_registry(),
            ],
            keys: Vec::new(),
        };
        Self {
            key_dir: None,
            tenants: vec![
                tenant("acme", &[("alice", "Alice Acme"), ("bob", "Bob Acme")]),
                tenant(
                    "globex",
                    &[("carol", "Carol Globex"), ("alice", "Alice Globex")],
                ),
            ],
        }
    }
}

/// One tenant: its own issuer, keys, users and clients.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    #[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub slug: TenantId,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub lifetimes: Lifetimes,
    /// Bounds on guest creation (`prompt=create` and the guest button).
    #[serde(default)]
    pub guests: GuestLimits,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    /// Signing keys as PKCS#8 PEM (EC P-256 for ES256, RSA for RS256); newest last.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub pem: String,
}

/// The longest refresh-token reuse grace a client may have, in seconds (the schema's `maximum`
/// says the same). A grace exists for a client that gave up waiting on a slow IdP and repeats
/// its request (a timeout times a few tries); past a few minutes it would switch reuse detection
/// off for that client. Okta's "grace period for token rotation" allows 0–60 s.
pub const MAX_REFRESH_REUSE_GRACE: u64 = 300;

/// The longest lifetime a tenant may configure: 10 years, in seconds.
pub const MAX_LIFETIME: u64 = 10 * 365 * 24 * 3600;

/// Token and session lifetimes of a tenant, in seconds.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Lifetimes {
    #[schema(maximum = 315_360_000)]
    pub access_token: u64,
    #[schema(maximum = 315_360_000)]
    pub id_token: u64,
    #[schema(maximum = 315_360_000)]
    pub refresh_token: u64,
    /// Authorization codes live at most 60 s (SECURITY E-06).
    #[schema(minimum = 1, maximum = 60)]
    pub code: u64,
    #[schema(maximum = 315_360_000)]
    pub device_code: u64,
    #[schema(maximum = 315_360_000)]
    pub device_poll_interval: u64,
    #[schema(maximum = 315_360_000)]
    pub idp_session: u64,
    /// How long a rotated-out signing key stays in the JWKS.
    #[schema(maximum = 315_360_000)]
    pub key_grace: u64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            access_token: 600,
            id_token: 600,
            refresh_token: 30 * 24 * 3600,
            code: 60,
            device_code: 600,
            device_poll_interval: 5,
            idp_session: 8 * 3600,
            key_grace: 3600,
        }
    }
}

impl Lifetimes {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.code == 0 || self.code > 60 {
            return Err(ConfigError::Invalid(format!(
                "lifetimes.code must be 1..=60 seconds, got {}",
                self.code
            )));
        }
        for (name, v) in [
            ("access_token", self.access_token),
            ("id_token", self.id_token),
            ("refresh_token", self.refresh_token),
            ("device_code", self.device_code),
            ("idp_session", self.idp_session),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid(format!(
                    "lifetimes.{name} must be positive"
                )));
            }
        }
        // Past this, an expiry is beyond what a timestamp holds (schemathesis sent 2^63: the
        // first token issued would have panicked computing its `exp`).
        for (name, v) in [
            ("access_token", self.access_token),
            ("id_token", self.id_token),
            ("refresh_token", self.refresh_token),
            ("device_code", self.device_code),
            ("device_poll_interval", self.device_poll_interval),
            ("idp_session", self.idp_session),
            ("key_grace", self.key_grace),
        ] {
            if v > MAX_LIFETIME {
                return Err(ConfigError::Invalid(format!(
                    "lifetimes.{name} must be at most {MAX_LIFETIME} seconds (10 years), got {v}"
                )));
            }
        }
        Ok(())
    }
}

/// How many guests a tenant creates: anyone can press the guest button, so both the rate per
/// client address and the total are bounded. A refusal creates nothing: the guest button answers
/// a 429 page, `prompt=create` a redirect with `error=temporarily_unavailable`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GuestLimits {
    /// Guest users the tenant holds at most (an upgraded guest no longer counts).
    #[schema(maximum = 1_000_000_000)]
    pub max_users: u64,
    /// Guests one client IP address may create in any 60 seconds.
    #[schema(maximum = 1_000_000)]
    pub per_address_per_minute: u32,
}

impl GuestLimits {
    /// Bounds as the OpenAPI schema states them (a value past them is a typo, not a policy).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_users > 1_000_000_000 {
            return Err(ConfigError::Invalid(format!(
                "guests.max_users must be at most 1000000000, got {}",
                self.max_users
            )));
        }
        if self.per_address_per_minute > 1_000_000 {
            return Err(ConfigError::Invalid(format!(
                "guests.per_address_per_minute must be at most 1000000, got {}",
                self.per_address_per_minute
            )));
        }
        Ok(())
    }
}

impl Default for GuestLimits {
    fn default() -> Self {
        Self {
            max_users: 10_000,
            per_address_per_minute: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    #[schema(value_type = String, min_length = 1, max_length = 64)]
    pub username: Username,
    #[serde(serialize_with = "serialize_redacted")]
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// Fixed `sub`; by default a stable value derived from tenant and username.
    #[serde(default)]
    pub subject: Option<String>,
}

fn serialize_redacted<S: serde::Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("[REDACTED]")
}

fn serialize_redacted_opt<S: serde::Serializer>(
    v: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_some("[REDACTED]"),
        None => s.serialize_none(),
    }
}

/// Signing algorithm of ID tokens for a client.
pub use jose_keys::SigningAlg;

/// [`SigningAlg`] as the wire names it, for the admin API's OpenAPI schemas (jose-keys does not
/// depend on utoipa).
#[derive(utoipa::ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)]
pub enum SigningAlgName {
    ES256,
    RS256,
}

/// Grants a client may use.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
    DeviceCode,
}

impl GrantType {
    pub fn wire_name(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::DeviceCode => "urn:ietf:params:oauth:grant-type:device_code",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    #[schema(value_type = String, pattern = "^[!-~]{1,128}$")]
    pub client_id: ClientId,
    /// Present for confidential clients (client_secret_basic or client_secret_post).
    #[serde(default, serialize_with = "serialize_redacted_opt")]
    #[schema(value_type = Option<String>, format = Password)]
    pub secret: Option<SecretString>,
    /// Exact-match redirect URIs; a loopback IP URI matches on any port (RFC 8252 §7.3).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    #[serde(default)]
    #[schema(value_type = SigningAlgName)]
    pub id_token_alg: SigningAlg,
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
    /// Seconds during which a repeated refresh token gets the same child tokens back instead of
    /// tripping reuse detection. Off (0) by default; at most [`MAX_REFRESH_REUSE_GRACE`].
    #[serde(default)]
    #[schema(maximum = 300)]
    pub refresh_reuse_grace: u64,
    /// Scopes the client may request.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
}

fn default_scopes() -> Vec<String> {
    ["openid", "profile", "email", "offline_access"]
        .into_iter()
        .map(str::to_owned)
        .collect()
}

impl ClientConfig {
    pub fn lanyard_cli() -> Self {
        Self {
            client_id: ClientId::parse("lanyard-cli").unwrap_or_else(|_| unreachable!("static id")),
            secret: None,
            redirect_uris: vec!["http://127.0.0.1/callback".into()],
            post_logout_redirect_uris: vec!["http://127.0.0.1/logged-out".into()],
            grant_types: vec![
                GrantType::AuthorizationCode,
                GrantType::RefreshToken,
                GrantType::DeviceCode,
            ],
            id_token_alg: SigningAlg::ES256,
            backchannel_logout_uri: None,
            refresh_reuse_grace: 0,
            scopes: default_scopes(),
        }
    }

    pub fn lanyard_registry() -> Self {
        Self {
            client_id: ClientId::parse("lanyard-registry")
                .unwrap_or_else(|_| unreachable!("static id")),
            secret: Some(SecretString::from(DEV_REGISTRY_SECRET)),
            redirect_uris: vec!["http://127.0.0.1/auth/callback".into()],
            post_logout_redirect_uris: vec!["http://127.0.0.1/".into()],
            grant_types: vec![
                GrantType::AuthorizationCode,
                GrantType::RefreshToken,
                GrantType::ClientCredentials,
            ],
            id_token_alg: SigningAlg::ES256,
            backchannel_logout_uri: Some(format!("{DEFAULT_REGISTRY_URL}/v1/backchannel-logout")),
            refresh_reuse_grace: 0,
            scopes: default_scopes(),
        }
    }

    pub fn is_confidential(&self) -> bool {
        self.secret.is_some()
    }

    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_have_the_documented_tenants_users_and_clients() {
        let c = IdpConfig::defaults();
        let slugs: Vec<_> = c.tenants.iter().map(|t| t.slug.as_str()).collect();
        assert_eq!(slugs, ["acme", "globex"]);
        let users: Vec<_> = c.tenants[1]
            .users
            .iter()
            .map(|u| u.username.as_str())
            .collect();
        assert_eq!(users, ["carol", "alice"]);
        assert!(c.tenants.iter().all(|t| t.clients.len() == 2));
    }

    #[test]
    fn a_config_file_round_trips_and_rejects_unknown_keys() {
        let text = r#"
            [[tenants]]
            slug = "initech"
            [tenants.lifetimes]
            access_token = 60
            [[tenants.users]]
            username = "peter"
            password = "tps"
            [[tenants.clients]]
            client_id = "app"
            redirect_uris = ["http://127.0.0.1/cb"]
            grant_types = ["authorization_code", "refresh_token"]
            id_token_alg = "RS256"
            refresh_reuse_grace = 10
        "#;
        let c = IdpConfig::from_toml(text).expect("parses");
        assert_eq!(c.tenants[0].lifetimes.access_token, 60);
        assert_eq!(c.tenants[0].lifetimes.code, 60);
        assert_eq!(c.tenants[0].clients[0].id_token_alg, SigningAlg::RS256);
        let err = IdpConfig::from_toml("[[tenants]]\nslug = \"x\"\nbogus = 1\n").unwrap_err();
        assert!(err.contains("bogus"), "{err}");
        let err = IdpConfig::from_toml("[[tenants]]\nslug = \"Not A Slug\"\n").unwrap_err();
        assert!(err.contains("tenant slug"), "{err}");
    }

    #[test]
    fn secrets_never_reach_debug_or_serialised_output() {
        let c = IdpConfig::defaults();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains(DEV_PASSWORD));
        assert!(!dbg.contains(DEV_REGISTRY_SECRET));
        let ser = toml::to_string(&c).expect("serialises");
        assert!(!ser.contains(DEV_PASSWORD));
        assert!(!ser.contains(DEV_REGISTRY_SECRET));
    }
}

//! What every command starts from: the profile's folders and config, how to answer (`render`),
//! and the profile's account store, device identity and session manager; plus which account a
//! command acts on.

use std::sync::Arc;
use std::time::Duration;

use account_store::{AccountMeta, AccountStore, BackendChoice, ItemKind, StoreConfig};
use secrecy::SecretString;
use serde_json::{json, Value};
use session_core::{DeviceIdentity, ManagerOptions, SessionManager};

use crate::cli::Globals;
use crate::config::{Dirs, FileConfig, DEFAULT_CLIENT_ID};
use crate::exit::CliError;
use crate::render::{Output, Paint};
use crate::select::{self, label, Rule};

/// Everything a command needs.
pub struct Context {
    pub dirs: Dirs,
    pub config: FileConfig,
    pub profile: String,
    /// Where and how the command answers.
    pub output: Output,
    store_backend: Option<BackendChoice>,
    refresh_margin: Duration,
    pub no_browser: bool,
}

impl Context {
    pub fn from_env(cli: &Globals) -> Result<Self, CliError> {
        crate::config::check_profile(&cli.profile)?;
        let dirs = Dirs::resolve(cli.home.as_deref())?;
        let config = dirs.load()?;
        Ok(Self {
            dirs,
            config,
            profile: cli.profile.clone(),
            output: Output {
                json: cli.json,
                color: !cli.json && Paint::stdout().enabled(),
            },
            store_backend: cli.store_backend,
            refresh_margin: Duration::from_secs(cli.refresh_margin_secs),
            no_browser: cli.no_browser,
        })
    }

    pub(crate) fn store(&self) -> Result<AccountStore, CliError> {
        let backend = match (self.store_backend, &self.config.store_backend) {
            (Some(b), _) => b,
            (None, Some(b)) => BackendChoice::parse(b)
                .ok_or_else(|| CliError::usage(format!("unknown store backend '{b}'"), None))?,
            (None, None) => BackendChoice::Auto,
        };
        let mut cfg = StoreConfig::new(self.dirs.profile(&self.profile), self.profile.clone())
            .backend(backend);
        if let Ok(p) = std::env::var("LANYARD_VAULT_PASSPHRASE") {
            cfg = cfg.passphrase(SecretString::from(p));
        }
        Ok(AccountStore::open(cfg)?)
    }

    /// This profile's device identity, created on first use.
    pub(crate) fn device(&self) -> Result<DeviceIdentity, CliError> {
        let path = self.dirs.profile(&self.profile).join("device.json");
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                if let (Some(id), Some(name)) = (v["id"].as_str(), v["name"].as_str()) {
                    return Ok(DeviceIdentity {
                        id: id.into(),
                        name: name.into(),
                        platform: std::env::consts::OS.into(),
                    });
                }
            }
        }
        let id = format!("dev-{:016x}", rand::random::<u64>());
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "this machine".into());
        let name = if self.profile == "default" {
            host
        } else {
            format!("{host} ({})", self.profile)
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(CliError::other)?;
        }
        account_store::write_atomic(
            &path,
            json!({"id": id, "name": name}).to_string().as_bytes(),
        )?;
        Ok(DeviceIdentity {
            id,
            name,
            platform: std::env::consts::OS.into(),
        })
    }

    pub(crate) fn manager(&self) -> Result<SessionManager, CliError> {
        self.manager_with(None)
    }

    /// The manager, asking the registry for sessions of `session_duration` when it signs in.
    pub(crate) fn manager_with(
        &self,
        session_duration: Option<Duration>,
    ) -> Result<SessionManager, CliError> {
        let mut options = ManagerOptions::new(
            self.device()?,
            Arc::new(lanyard_clock::SystemClock),
            self.dirs.profile(&self.profile).join("locks"),
        );
        options.refresh_margin = self.refresh_margin;
        options.client_id = self
            .config
            .client_id
            .clone()
            .unwrap_or_else(|| DEFAULT_CLIENT_ID.into());
        if let Some(d) = session_duration {
            options.session_duration = d;
        }
        Ok(SessionManager::new(self.store()?, options))
    }
}

pub(crate) async fn chosen(
    m: &SessionManager,
    flag: Option<&str>,
) -> Result<(AccountMeta, Rule), CliError> {
    let accounts = m.accounts().await?;
    let active = m.active().await?;
    select::choose(&accounts, flag, active.as_ref())
}

/// That `a` has a registry session on this device (else: a usage error or signed out).
pub(crate) fn signed_in(m: &SessionManager, a: &AccountMeta) -> Result<(), CliError> {
    if a.registry_url.is_none() {
        return Err(CliError::usage("this account has no registry", None));
    }
    if m.store()
        .secrets()
        .get(&a.key, ItemKind::SessionToken)?
        .is_none()
    {
        return Err(CliError::signed_out(format!("{} is signed out", label(a))));
    }
    Ok(())
}

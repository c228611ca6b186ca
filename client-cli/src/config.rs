//! Where the CLI keeps things and what it defaults to: flags over `LANYARD_*` environment over
//! the config file over built-in defaults. `LANYARD_HOME` relocates everything (tests, several
//! independent installs).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::exit::CliError;

pub const DEFAULT_IDP: &str = "http://127.0.0.1:8700";
pub const DEFAULT_REGISTRY: &str = "http://127.0.0.1:8701";
pub const DEFAULT_CLIENT_ID: &str = "lanyard-cli";
pub const DEFAULT_TENANT: &str = "acme";

/// The config file (`config.toml` in the config directory).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `auto`, `secret-service`, `keyutils`, `native`, `vault`, `memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_backend: Option<String>,
}

pub const KEYS: [&str; 5] = ["idp", "registry", "tenant", "client_id", "store_backend"];

impl FileConfig {
    pub fn get(&self, key: &str) -> Option<&str> {
        match key {
            "idp" => self.idp.as_deref(),
            "registry" => self.registry.as_deref(),
            "tenant" => self.tenant.as_deref(),
            "client_id" => self.client_id.as_deref(),
            "store_backend" => self.store_backend.as_deref(),
            _ => None,
        }
    }

    pub fn set(&mut self, key: &str, value: String) -> Result<(), String> {
        let slot = match key {
            "idp" => &mut self.idp,
            "registry" => &mut self.registry,
            "tenant" => &mut self.tenant,
            "client_id" => &mut self.client_id,
            "store_backend" => {
                if account_store::BackendChoice::parse(&value).is_none() {
                    return Err(format!("'{value}' is not a store backend (auto, secret-service, keyutils, native, vault, memory)"));
                }
                &mut self.store_backend
            }
            other => {
                return Err(format!(
                    "unknown key '{other}'; keys are {}",
                    KEYS.join(", ")
                ))
            }
        };
        if matches!(key, "idp" | "registry") && url::Url::parse(&value).is_err() {
            return Err(format!("'{value}' is not a URL"));
        }
        *slot = Some(value);
        Ok(())
    }
}

/// A profile name is a folder name: letters, digits, '-', '_' (so never a path).
pub fn check_profile(profile: &str) -> Result<(), CliError> {
    let ok = !profile.is_empty()
        && profile.len() <= 64
        && profile
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(CliError::usage(
            format!("'{profile}' is not a profile name (letters, digits, '-', '_')"),
            None,
        ))
    }
}

/// The directories of one installation.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub config_file: PathBuf,
    pub data: PathBuf,
}

impl Dirs {
    pub fn resolve(home: Option<&Path>) -> anyhow::Result<Self> {
        if let Some(home) = home {
            return Ok(Self {
                config_file: home.join("config.toml"),
                data: home.join("data"),
            });
        }
        let dirs = directories::ProjectDirs::from("dev", "lanyard", "lanyard")
            .ok_or_else(|| anyhow::anyhow!("no home directory; set LANYARD_HOME"))?;
        Ok(Self {
            config_file: dirs.config_dir().join("config.toml"),
            data: dirs.data_dir().to_owned(),
        })
    }

    pub fn profile(&self, profile: &str) -> PathBuf {
        self.data.join("profiles").join(profile)
    }

    pub fn load(&self) -> anyhow::Result<FileConfig> {
        match std::fs::read_to_string(&self.config_file) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{} is invalid: {e}", self.config_file.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileConfig::default()),
            Err(e) => Err(anyhow::anyhow!(
                "cannot read {}: {e}",
                self.config_file.display()
            )),
        }
    }

    pub fn save(&self, cfg: &FileConfig) -> anyhow::Result<()> {
        if let Some(dir) = self.config_file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.config_file.with_extension("toml.tmp");
        std::fs::write(&tmp, toml::to_string_pretty(cfg)?)?;
        std::fs::rename(&tmp, &self.config_file)?;
        Ok(())
    }
}

/// A directory's `.lanyard.toml` pin (e.g. `account = "alice@acme"`), searched upwards.
#[derive(Debug, Deserialize)]
pub struct Pin {
    pub account: String,
}

pub fn find_pin(start: &Path) -> Option<(PathBuf, Pin)> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        let candidate = d.join(".lanyard.toml");
        if let Ok(text) = std::fs::read_to_string(&candidate) {
            if let Ok(pin) = toml::from_str::<Pin>(&text) {
                return Some((candidate, pin));
            }
        }
        dir = d.parent();
    }
    None
}

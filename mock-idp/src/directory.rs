//! A tenant's users and clients. Passwords are hashed with Argon2id when loaded; clients keep
//! their registration as configured.

use std::collections::HashMap;

use argon2::password_hash::{self, PasswordHash, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{ClientConfig, UserConfig};
use crate::ids::{ClientId, TenantId, Username};
use crate::random::constant_time_eq;

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("username '{0}' is taken in this tenant")]
    UsernameTaken(String),
    #[error("client '{0}' already exists in this tenant")]
    ClientExists(String),
    #[error("client '{client}': {reason}")]
    InvalidClient { client: String, reason: String },
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("no such user")]
    NoSuchUser,
    #[error("user is not a guest")]
    NotAGuest,
    #[error("this tenant holds its maximum of {max} guest accounts")]
    GuestLimitReached { max: u64 },
}

/// A user. Guests have no username or password until upgraded; `sub` never changes.
#[derive(Clone, Serialize)]
pub struct User {
    pub sub: String,
    pub username: Option<Username>,
    #[serde(skip)]
    password_hash: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub is_guest: bool,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("sub", &self.sub)
            .field("username", &self.username)
            .field("is_guest", &self.is_guest)
            .finish_non_exhaustive()
    }
}

pub fn hash_password(password: &SecretString) -> Result<String, DirectoryError> {
    let salt = SaltString::generate(&mut OsRng);
    let argon2 = Argon2::default();
    let mut salt_bytes = [0u8; 64];
    let raw_salt = salt
        .as_salt()
        .decode_b64(&mut salt_bytes)
        .map_err(|e| DirectoryError::Hash(e.to_string()))?;
    let output = password_hash::Output::init_with(argon2::Params::DEFAULT_OUTPUT_LEN, |out| {
        argon2_into(&argon2, password.expose_secret().as_bytes(), raw_salt, out)
            .map_err(|_| password_hash::Error::Crypto)
    })
    .map_err(|e| DirectoryError::Hash(e.to_string()))?;
    let params = password_hash::ParamsString::try_from(argon2.params())
        .map_err(|e| DirectoryError::Hash(e.to_string()))?;
    Ok(PasswordHash {
        algorithm: argon2::Algorithm::default().ident(),
        version: Some(argon2::Version::default().into()),
        params,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    }
    .to_string())
}

/// Argon2 into `out` with this thread's reusable memory. Why not `Argon2::hash_password`: it
/// allocates its 19 MiB afresh on every call, and glibc, once small allocations were carved from
/// the freed block, takes new memory for the next one — about 9 MiB of resident memory kept per
/// user added or sign-in verified (mock-idp went from 67 MiB to 437 MiB for 50 users added). The
/// password threads (`password_work`) are few and fixed, so each keeps one block for good.
fn argon2_into(
    argon2: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    thread_local! {
        static BLOCKS: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BLOCKS.with(|blocks| {
        let mut blocks = blocks.borrow_mut();
        blocks.resize(argon2.params().block_count(), argon2::Block::default());
        argon2.hash_password_into_with_memory(password, salt, out, &mut blocks[..])
    })
}

/// A `sub` that is stable for (tenant, username) across restarts, so tokens and accounts made
/// against one run still name the same subject in the next.
fn derived_subject(tenant: &TenantId, username: &Username) -> String {
    let digest = Sha256::digest(format!("lanyard-mock-idp:{tenant}:{username}").as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..18])
}

/// The user `user` (looked up by the name a person typed) if `password` is theirs. Runs Argon2
/// even for an unknown user, so timing does not reveal which usernames exist.
pub fn verify_sign_in(user: Option<User>, password: &SecretString) -> Option<User> {
    match user {
        Some(u) if u.verify_password(password.expose_secret()) => Some(u),
        Some(_) => None,
        None => {
            let _ = hash_password(password);
            None
        }
    }
}

impl User {
    pub fn from_config(tenant: &TenantId, cfg: &UserConfig) -> Result<Self, DirectoryError> {
        Ok(Self {
            sub: cfg
                .subject
                .clone()
                .unwrap_or_else(|| derived_subject(tenant, &cfg.username)),
            username: Some(cfg.username.clone()),
            password_hash: Some(hash_password(&cfg.password)?),
            email: cfg.email.clone(),
            name: cfg.name.clone(),
            is_guest: false,
        })
    }

    pub fn guest() -> Self {
        Self {
            sub: format!("guest-{}", crate::random::id()),
            username: None,
            password_hash: None,
            email: None,
            name: Some("Guest".into()),
            is_guest: true,
        }
    }

    /// Argon2 verification; always runs a hash so unknown users cost the same as wrong passwords.
    pub fn verify_password(&self, password: &str) -> bool {
        let Some(Ok(hash)) = self.password_hash.as_deref().map(PasswordHash::new) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
            return false;
        };
        let (Ok(params), Ok(algorithm)) = (
            argon2::Params::try_from(&hash),
            argon2::Algorithm::try_from(hash.algorithm),
        ) else {
            return false;
        };
        let version = hash
            .version
            .map_or(Ok(argon2::Version::default()), argon2::Version::try_from);
        let Ok(version) = version else {
            return false;
        };
        let mut salt_bytes = [0u8; 64];
        let Ok(raw_salt) = salt.decode_b64(&mut salt_bytes) else {
            return false;
        };
        let argon2 = Argon2::new(algorithm, version, params);
        password_hash::Output::init_with(expected.len(), |out| {
            argon2_into(&argon2, password.as_bytes(), raw_salt, out)
                .map_err(|_| password_hash::Error::Crypto)
        })
        // `Output`'s equality is constant-time.
        .is_ok_and(|computed| computed == expected)
    }
}

/// A registered client.
#[derive(Debug, Clone)]
pub struct Client {
    pub config: ClientConfig,
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Self, DirectoryError> {
        let bad = |reason: String| DirectoryError::InvalidClient {
            client: config.client_id.to_string(),
            reason,
        };
        for uri in config
            .redirect_uris
            .iter()
            .chain(&config.post_logout_redirect_uris)
        {
            if !crate::redirect_uri::is_registrable(uri) {
                return Err(bad(format!(
                    "'{uri}' is not an absolute http(s) URI without fragment"
                )));
            }
        }
        if let Some(uri) = &config.backchannel_logout_uri {
            if !crate::redirect_uri::is_registrable(uri) {
                return Err(bad(format!(
                    "backchannel_logout_uri '{uri}' is not an absolute http(s) URI"
                )));
            }
        }
        if config.grant_types.is_empty() {
            return Err(bad("grant_types is empty".into()));
        }
        if config.refresh_reuse_grace > crate::config::MAX_REFRESH_REUSE_GRACE {
            return Err(bad(format!(
                "refresh_reuse_grace must be at most {} seconds, got {}",
                crate::config::MAX_REFRESH_REUSE_GRACE,
                config.refresh_reuse_grace
            )));
        }
        if !config.is_confidential() && config.allows(crate::config::GrantType::ClientCredentials) {
            return Err(bad(
                "client_credentials needs a confidential client (a secret)".into(),
            ));
        }
        Ok(Self { config })
    }

    pub fn id(&self) -> &ClientId {
        &self.config.client_id
    }

    /// Constant-time comparison against the registered secret; public clients never match.
    pub fn secret_matches(&self, presented: &str) -> bool {
        match &self.config.secret {
            Some(secret) => {
                constant_time_eq(secret.expose_secret().as_bytes(), presented.as_bytes())
            }
            None => false,
        }
    }
}

#[derive(Debug, Default)]
pub struct Directory {
    users: HashMap<String, User>,
    by_username: HashMap<Username, String>,
    clients: HashMap<ClientId, Client>,
    /// How many of `users` are guests.
    guests: u64,
}

impl Directory {
    pub fn add_user(&mut self, user: User) -> Result<(), DirectoryError> {
        if let Some(name) = &user.username {
            if self.by_username.contains_key(name) {
                return Err(DirectoryError::UsernameTaken(name.to_string()));
            }
            self.by_username.insert(name.clone(), user.sub.clone());
        }
        if user.is_guest {
            self.guests += 1;
        }
        if let Some(replaced) = self.users.insert(user.sub.clone(), user) {
            if replaced.is_guest {
                self.guests = self.guests.saturating_sub(1);
            }
        }
        Ok(())
    }

    /// Adds a guest unless the directory already holds `max` guests.
    pub fn add_guest(&mut self, user: User, max: u64) -> Result<(), DirectoryError> {
        if self.guests >= max {
            return Err(DirectoryError::GuestLimitReached { max });
        }
        self.add_user(user)
    }

    /// How many guests (not yet upgraded) the directory holds.
    pub fn guest_count(&self) -> u64 {
        self.guests
    }

    pub fn add_client(&mut self, client: Client) -> Result<(), DirectoryError> {
        if self.clients.contains_key(client.id()) {
            return Err(DirectoryError::ClientExists(client.id().to_string()));
        }
        self.clients.insert(client.id().clone(), client);
        Ok(())
    }

    pub fn user(&self, sub: &str) -> Option<&User> {
        self.users.get(sub)
    }

    pub fn user_by_name(&self, name: &str) -> Option<&User> {
        self.by_username
            .get(name)
            .and_then(|sub| self.users.get(sub))
    }

    pub fn client(&self, id: &str) -> Option<&Client> {
        self.clients.get(id)
    }

    pub fn clients(&self) -> impl Iterator<Item = &Client> {
        self.clients.values()
    }

    /// Users shown on the login page's chooser: registered users, sorted by username.
    pub fn registered_users(&self) -> Vec<&User> {
        let mut users: Vec<&User> = self.users.values().filter(|u| !u.is_guest).collect();
        users.sort_by(|a, b| a.username.cmp(&b.username));
        users
    }

    /// Turns a guest into a registered user, keeping its `sub`.
    pub fn upgrade_guest(
        &mut self,
        sub: &str,
        username: Username,
        password_hash: String,
        email: Option<String>,
        name: Option<String>,
    ) -> Result<User, DirectoryError> {
        if self.by_username.contains_key(&username) {
            return Err(DirectoryError::UsernameTaken(username.to_string()));
        }
        let user = self.users.get_mut(sub).ok_or(DirectoryError::NoSuchUser)?;
        if !user.is_guest {
            return Err(DirectoryError::NotAGuest);
        }
        user.is_guest = false;
        self.guests = self.guests.saturating_sub(1);
        user.username = Some(username.clone());
        user.password_hash = Some(password_hash);
        user.email = email;
        user.name = name.or_else(|| Some(username.to_string()));
        self.by_username.insert(username, sub.to_owned());
        Ok(user.clone())
    }
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    use super::*;

    fn user_with(hash: String) -> User {
        User {
            sub: "s".into(),
            username: None,
            password_hash: Some(hash),
            email: None,
            name: None,
            is_guest: false,
        }
    }

    #[test]
    fn our_argon2_and_the_crates_agree_both_ways() {
        let password = SecretString::from("correct horse");
        // Ours, checked by the crate's verifier.
        let ours = hash_password(&password).unwrap();
        assert!(ours.starts_with("$argon2id$v=19$"), "{ours}");
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        assert!(Argon2::default()
            .verify_password(b"wrong horse", &parsed)
            .is_err());
        // The crate's, checked by ours (and a stored hash of earlier runs stays valid).
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(user_with(theirs.clone()).verify_password("correct horse"));
        assert!(!user_with(theirs).verify_password("correct horsf"));
        assert!(user_with(ours.clone()).verify_password("correct horse"));
        assert!(!user_with(ours).verify_password(""));
        assert!(!user_with("not a hash".into()).verify_password("correct horse"));
    }
}

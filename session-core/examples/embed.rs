//! Embedding the `SessionManager` in an app.
//!
//! Run the local stack first (`cargo run -p devstack`), then:
//!
//! ```text
//! cargo run -p session-core --example embed -- login      # signs in (prints the URL to open)
//! cargo run -p session-core --example embed                # prints a valid access token, then
//!                                                           # follows the session until revoked
//! ```
//!
//! Secrets go to the OS keyring when it answers, else to a vault that needs
//! `LANYARD_VAULT_PASSPHRASE`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;
use std::time::Duration;

use account_store::{AccountStore, StoreConfig};
use secrecy::{ExposeSecret, SecretString};
use session_core::{
    DeviceIdentity, LoginMethod, LoginRequest, ManagerOptions, SessionManager, SessionState,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join("lanyard-embed-example");
    let mut store = StoreConfig::new(&dir, "example");
    if let Ok(p) = std::env::var("LANYARD_VAULT_PASSPHRASE") {
        store = store.passphrase(SecretString::from(p));
    }
    let device = DeviceIdentity {
        id: "embed-example".into(),
        name: "embed example".into(),
        platform: std::env::consts::OS.into(),
    };
    let manager = SessionManager::new(
        AccountStore::open(store)?,
        ManagerOptions::new(
            device,
            Arc::new(lanyard_clock::SystemClock),
            dir.join("locks"),
        ),
    );

    if std::env::args().nth(1).as_deref() == Some("login") {
        let request = LoginRequest {
            issuer: "http://127.0.0.1:8700/acme".into(),
            client_id: "lanyard-cli".into(),
            registry_url: Some("http://127.0.0.1:8701".into()),
            tenant: Some("acme".into()),
        };
        let prompt = |url: &url::Url| eprintln!("Open {url} and sign in (alice / lanyard-dev)");
        let account = manager
            .login(
                request,
                LoginMethod::Browser(&prompt, Duration::from_secs(300)),
            )
            .await?;
        println!("signed in as {}", account.display_name);
        return Ok(());
    }

    // Rehydrate: authenticate stored sessions and start the heartbeat and event stream.
    manager.start().await?;
    let account = manager
        .active()
        .await?
        .ok_or("no account: run with `login` first")?;
    let token = manager.access_token(None).await?;
    let prefix = token.expose_secret().get(..16).unwrap_or_default();
    println!("access token for {}: {prefix}…", account.display_name);

    // Follow the session: a revoke from any device ends it here within a second.
    let mut state = manager.state(&account.key);
    loop {
        println!("session: {:?}", *state.borrow());
        if matches!(*state.borrow(), SessionState::Unavailable { .. }) {
            break;
        }
        state.changed().await?;
    }
    Ok(())
}

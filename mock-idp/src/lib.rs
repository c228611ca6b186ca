//! A multi-tenant OpenID Connect provider for local end-to-end work.
//!
//! Each tenant is an issuer at `{base}/{tenant}` with its own keys, users and clients. The
//! provider speaks authorization code + PKCE (S256 only), refresh-token rotation with reuse
//! detection, client credentials, the device grant, revocation, introspection, RP-initiated and
//! back-channel logout, and lets tests inject faults through an admin API.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! let settings = mock_idp::Settings::for_tests();
//! let app = mock_idp::Application::build(&settings)?;
//! println!("issuer: {}/acme", app.base_url());
//! app.run_until_stopped().await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod audit;
pub mod authorization_request;
mod backchannel;
pub mod browser_session;
pub mod client_auth;
/// The injectable clock (shared with the registry).
pub use lanyard_clock as clock;
pub mod config;
pub mod device_approval;
pub mod device_guesses;
pub mod directory;
pub mod error;
pub mod faults;
pub mod grants;
pub mod guest_quota;
pub mod ids;
pub mod issue;
pub mod jwt;
/// Signing keys (shared with the registry).
pub use jose_keys as keys;
mod pages;
pub mod params;
pub mod password_work;
pub mod pkce;
pub mod random;
pub mod redirect_uri;
mod routes;
pub mod scope;
pub mod sign_out;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod tenant;
pub mod token_exchange;
pub mod token_request;

pub use config::{IdpConfig, Settings};
pub use startup::Application;

/// The readiness line printed on stdout once the server accepts connections.
pub fn readiness_line(addr: std::net::SocketAddr) -> String {
    format!("mock-idp listening on http://{addr}")
}

//! The local Lanyard stack in one command: the mock IdP with its default tenants and users, and
//! the session registry trusting it, on fixed loopback ports (8700, 8701), with everything they
//! write kept in one data folder (`./.devstack`).
//!
//! ```no_run
//! # async fn run() -> Result<(), devstack::DevstackError> {
//! let options = devstack::Options::on(
//!     "127.0.0.1:0".parse().unwrap(),
//!     "127.0.0.1:0".parse().unwrap(),
//!     "/tmp/devstack".into(),
//! );
//! let mut signals = devstack::ShutdownSignals::install().expect("signal handlers");
//! let stack = devstack::Devstack::start(&options).await?;
//! println!("log in at {}", stack.issuer("acme"));
//! stack
//!     .run_until(async move {
//!         signals.recv().await;
//!         Ok(())
//!     })
//!     .await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod banner;
pub mod options;
pub mod shutdown;
pub mod stack;
pub mod telemetry;

pub use options::{Database, Options};
pub use shutdown::ShutdownSignals;
pub use stack::{Devstack, DevstackError};

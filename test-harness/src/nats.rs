//! NATS JetStream for the tests. [`nats_url`] is the shared server (`LANYARD_TEST_NATS_URL`,
//! default `nats://127.0.0.1:4222`; `scripts/test` starts one when none answers); a test keeps
//! to itself on it by using a deployment name of its own ([`unique_deployment`]).
//! [`PrivateNats`] is a server of one test's own, for tests that stop and restart the broker:
//! `nats-server -js` on a free port with its store in a temporary directory, brought back by
//! [`PrivateNats::start`] on the same port and store, killed and deleted on drop.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use rand::Rng;
use tokio::process::{Child, Command};

/// The shared NATS server the tests use.
pub fn nats_url() -> String {
    std::env::var("LANYARD_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A deployment name no other test uses (its own stream and subjects on the shared server).
pub fn unique_deployment() -> String {
    format!("test{:016x}", rand::thread_rng().gen::<u64>())
}

pub struct PrivateNats {
    /// `nats://127.0.0.1:{port}`.
    pub url: String,
    pub port: u16,
    store: PathBuf,
    child: Option<Child>,
}

impl PrivateNats {
    /// Starts a JetStream server on a free port.
    pub async fn spawn() -> anyhow::Result<Self> {
        let store = std::env::temp_dir().join(format!(
            "lanyard-nats-{:016x}",
            rand::thread_rng().gen::<u64>()
        ));
        std::fs::create_dir(&store).with_context(|| format!("create {}", store.display()))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut nats = Self {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            store,
            child: None,
        };
        nats.start().await?;
        Ok(nats)
    }

    /// Starts the server (again) on its port and store; returns once it accepts connections.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("run nats-server (Debian package nats-server)")?;
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "nats-server did not listen on port {} within 10 s",
            self.port
        )
    }

    /// Kills the server (as a crash would) and waits until it is gone.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await.context("kill nats-server")?;
        }
        Ok(())
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

//! Running the built `devstack` binary as a child with port 0 everywhere, and talking to it.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use test_harness::ChildServices;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_devstack"))
}

/// Every file the tree under `dir` holds, relative to it, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `devstack --idp-bind 127.0.0.1:0 --registry-bind 127.0.0.1:0 --data-dir DATA`, run from an
/// empty folder that is also its `HOME` and `TMPDIR`, so that any write outside the data folder
/// shows up there. `DATABASE_URL` and the `DEVSTACK_*` twins are cleared (CI sets
/// `DATABASE_URL` for the Postgres tests).
pub fn command(outside: &Path, data_dir: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args([
        "--idp-bind",
        "127.0.0.1:0",
        "--registry-bind",
        "127.0.0.1:0",
    ])
    .arg("--data-dir")
    .arg(data_dir)
    .current_dir(outside)
    .env("HOME", outside)
    .env("TMPDIR", outside)
    .env("RUST_LOG", "info")
    .env_remove("DATABASE_URL")
    .env_remove("DEVSTACK_IDP_BIND")
    .env_remove("DEVSTACK_REGISTRY_BIND")
    .env_remove("DEVSTACK_DATA_DIR")
    .kill_on_drop(true);
    cmd
}

/// A devstack child, its two services' URLs, and everything it wrote to stderr so far.
pub struct Stack {
    pub services: ChildServices,
    pub idp: String,
    pub registry: String,
    pub data_dir: PathBuf,
    pub outside: PathBuf,
    stderr: Arc<Mutex<String>>,
    _dirs: tempfile::TempDir,
}

impl Stack {
    /// On SQLite in a fresh data folder.
    pub async fn start() -> Self {
        Self::start_with_env(&[]).await
    }

    pub async fn start_with_env(env: &[(&str, &str)]) -> Self {
        let dirs = tempfile::tempdir().unwrap();
        let outside = dirs.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        // Not created beforehand: devstack creates its data folder.
        let data_dir = dirs.path().join("data");
        let mut cmd = command(&outside, &data_dir);
        cmd.envs(env.iter().copied()).stderr(Stdio::piped());
        let services = ChildServices::start(cmd, &["mock-idp", "session-registry"])
            .await
            .expect("both readiness lines");
        Self::from_services(services, data_dir, outside, dirs)
    }

    fn from_services(
        mut services: ChildServices,
        data_dir: PathBuf,
        outside: PathBuf,
        dirs: tempfile::TempDir,
    ) -> Self {
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut pipe) = services.child.stderr.take() {
            let sink = stderr.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        Self {
            idp: services.base_url("mock-idp").unwrap(),
            registry: services.base_url("session-registry").unwrap(),
            services,
            data_dir,
            outside,
            stderr,
            _dirs: dirs,
        }
    }

    pub fn issuer(&self, tenant: &str) -> String {
        format!("{}/{tenant}", self.idp)
    }

    /// What the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// `POST /v1/sessions` at this stack's registry.
    pub async fn create_session(&self, id_token: &str, device: &str) -> (u16, Value) {
        let res = reqwest::Client::new()
            .post(format!("{}/v1/sessions", self.registry))
            .json(&json!({
                "id_token": id_token,
                "device": {"id": device, "name": format!("{device}'s laptop"), "platform": "linux"},
            }))
            .send()
            .await
            .expect("the registry answers");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Logs `user` in at `tenant` through `lanyard-cli` and opens a device session; returns the
    /// session token.
    pub async fn device_session(&self, tenant: &str, user: &str, device: &str) -> String {
        let tokens = test_harness::idp::login(&self.issuer(tenant), user, "lanyard-cli").await;
        let id_token = tokens["id_token"].as_str().expect("an ID token");
        let (status, body) = self.create_session(id_token, device).await;
        assert_eq!(status, 201, "{body}");
        body["session_token"]
            .as_str()
            .expect("a session token")
            .to_owned()
    }

    pub fn terminate(&self) {
        signal(&self.services.child, nix::sys::signal::Signal::SIGTERM);
    }

    /// Waits for the child to exit, failing the test past `within`.
    pub async fn exit_within(&mut self, within: Duration) -> ExitStatus {
        tokio::time::timeout(within, self.services.child.wait())
            .await
            .unwrap_or_else(|_| panic!("devstack still running {within:?} after the signal"))
            .expect("wait for devstack")
    }
}

pub fn signal(child: &tokio::process::Child, sig: nix::sys::signal::Signal) {
    let pid = child.id().expect("the child is running");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).expect("signal sent");
}

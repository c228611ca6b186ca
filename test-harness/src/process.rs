//! Service binaries as child processes. Each service prints one readiness line on stdout,
//! `NAME listening on http://ADDR`; [`ChildService`] waits for one such line, [`ChildServices`]
//! for one line per named service (devstack prints two). The child is killed when the value is
//! dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// How long a child may take to print its readiness lines.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A binary of the workspace, for a test of another package: a test cannot name another
/// package's binaries with `env!("CARGO_BIN_EXE_…")`, but they sit in the same target directory
/// as the test executable (`target/<profile>/deps/TEST-HASH` → `target/<profile>/NAME`).
/// `cargo nextest run --workspace` builds them; a test run alone needs
/// `cargo build --workspace --bins` first, which the error says.
pub fn workspace_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow::anyhow!("{} is not in target/<profile>/deps", exe.display()))?;
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: build the workspace's binaries first with `cargo build --workspace --bins` \
         (`cargo nextest run --workspace` builds them too)",
        path.display()
    );
    Ok(path)
}

pub struct ChildService {
    pub addr: SocketAddr,
    pub base_url: String,
    pub child: Child,
}

impl ChildService {
    /// Starts `program args…` and waits (up to 60 s) for `"{name} listening on http://ADDR"`.
    /// Its stderr is the test's own, so a service that fails to start or misbehaves shows its
    /// log beside the failure (cargo-nextest prints a test's output only when it fails).
    pub async fn start(program: &Path, args: &[&str], name: &str) -> anyhow::Result<Self> {
        let mut command = Command::new(program);
        command.args(args).stderr(Stdio::inherit());
        let mut services = ChildServices::start(command, &[name]).await?;
        let (_, addr) = services.services.remove(0);
        Ok(Self {
            base_url: format!("http://{addr}"),
            addr,
            child: services.child,
        })
    }
}

/// A child that runs several services and prints one readiness line for each.
pub struct ChildServices {
    /// `(name, address)` in the order the names were given to [`ChildServices::start`].
    pub services: Vec<(String, SocketAddr)>,
    pub child: Child,
}

impl ChildServices {
    /// Spawns `command` (its environment, working directory and stderr are the caller's to set;
    /// stdout is piped here) and waits (up to 60 s) for one readiness line per name, in any
    /// order. Other stdout lines are ignored; stdout keeps being drained afterwards so the child
    /// never blocks on a full pipe.
    pub async fn start(mut command: Command, names: &[&str]) -> anyhow::Result<Self> {
        let mut child = command.stdout(Stdio::piped()).kill_on_drop(true).spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let services = read_readiness_lines(stdout, names).await?;
        Ok(Self { services, child })
    }

    /// The address `name` announced.
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.services
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, addr)| *addr)
    }

    /// `http://ADDR` of `name`.
    pub fn base_url(&self, name: &str) -> Option<String> {
        self.addr(name).map(|addr| format!("http://{addr}"))
    }
}

async fn read_readiness_lines(
    stdout: ChildStdout,
    names: &[&str],
) -> anyhow::Result<Vec<(String, SocketAddr)>> {
    let mut found: Vec<Option<SocketAddr>> = vec![None; names.len()];
    let prefixes: Vec<String> = names
        .iter()
        .map(|name| format!("{name} listening on http://"))
        .collect();
    let mut lines = BufReader::new(stdout).lines();
    tokio::time::timeout(READY_TIMEOUT, async {
        while found.iter().any(Option::is_none) {
            let Some(line) = lines.next_line().await? else {
                let missing: Vec<&str> = names
                    .iter()
                    .zip(&found)
                    .filter(|(_, addr)| addr.is_none())
                    .map(|(name, _)| *name)
                    .collect();
                anyhow::bail!(
                    "the child exited before printing the readiness line of {}",
                    missing.join(", ")
                );
            };
            for (prefix, slot) in prefixes.iter().zip(found.iter_mut()) {
                if let Some(addr) = line.strip_prefix(prefix.as_str()) {
                    *slot = Some(addr.trim().parse::<SocketAddr>()?);
                }
            }
        }
        Ok::<_, anyhow::Error>(())
    })
    .await
    .map_err(|_| {
        anyhow::anyhow!(
            "no readiness line from {} within {READY_TIMEOUT:?}",
            names.join(", ")
        )
    })??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(names
        .iter()
        .zip(found)
        .filter_map(|(name, addr)| addr.map(|addr| ((*name).to_owned(), addr)))
        .collect())
}

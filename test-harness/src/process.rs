//! A service binary as a child process. Its stdout must carry one readiness line,
//! `NAME listening on http://ADDR`; the child is killed when the value is dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct ChildService {
    pub addr: SocketAddr,
    pub base_url: String,
    pub child: Child,
}

impl ChildService {
    /// Starts `program args…` and waits (up to 60 s) for `"{name} listening on http://ADDR"`.
    pub async fn start(program: &Path, args: &[&str], name: &str) -> anyhow::Result<Self> {
        let mut child = Command::new(program)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let prefix = format!("{name} listening on http://");
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = line.strip_prefix(&prefix) {
                    return Ok::<_, anyhow::Error>(addr.trim().parse::<SocketAddr>()?);
                }
            }
            anyhow::bail!("{name} exited before printing its readiness line")
        })
        .await??;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            base_url: format!("http://{addr}"),
            addr,
            child,
        })
    }
}

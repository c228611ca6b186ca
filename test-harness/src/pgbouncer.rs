//! A PgBouncer of one test's own (Debian's `pgbouncer`), in transaction mode in front of a
//! Postgres server: a client's server connection is its own for one transaction only, and a
//! few server connections serve every client, so anything a client leaves on a connection
//! (session settings, named prepared statements) shows up on another client's transactions.
//!
//! PgBouncer refuses to run as root: as root it runs as the `postgres` OS user (`-u`), its
//! files in a directory that user can read. Dropping the value stops it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::Rng;

use crate::private_postgres::{free_port, running_as_root, which};

pub struct PgBouncer {
    pub port: u16,
    child: Child,
    root: PathBuf,
}

impl PgBouncer {
    /// Starts PgBouncer in transaction mode on a free port in front of the Postgres server at
    /// `server_url` (trust authentication), with `server_connections` server connections per
    /// database and user.
    pub async fn start(server_url: &str, server_connections: u32) -> anyhow::Result<Self> {
        let server = url::Url::parse(server_url).context("the server URL")?;
        let host = server.host_str().unwrap_or("127.0.0.1").to_owned();
        let server_port = server.port().unwrap_or(5432);
        let exe = which("pgbouncer").context(
            "pgbouncer is not installed: apt-get install pgbouncer (scripts/test does this)",
        )?;
        let root = std::env::temp_dir().join(format!(
            "lanyard-pgbouncer-{:016x}",
            rand::thread_rng().gen::<u64>()
        ));
        std::fs::create_dir(&root).with_context(|| format!("create {}", root.display()))?;
        let port = free_port()?;
        let users = root.join("users.txt");
        std::fs::write(&users, "\"postgres\" \"\"\n")?;
        let ini = root.join("pgbouncer.ini");
        let mut f = std::fs::File::create(&ini)?;
        write!(
            f,
            "[databases]\n\
             * = host={host} port={server_port}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {users}\n\
             pool_mode = transaction\n\
             default_pool_size = {server_connections}\n\
             max_client_conn = 500\n\
             ignore_startup_parameters = extra_float_digits\n\
             server_reset_query =\n\
             logfile =\n\
             pidfile =\n",
            users = users.display(),
        )?;
        drop(f);
        let mut cmd = Command::new(exe);
        if running_as_root() {
            for path in [&root, &users, &ini] {
                let status = Command::new("chown").arg("postgres:").arg(path).status()?;
                if !status.success() {
                    bail!("chown postgres: {} failed", path.display());
                }
            }
            cmd.args(["-u", "postgres"]);
        }
        let child = cmd
            .arg(&ini)
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start pgbouncer")?;
        let mut bouncer = Self { port, child, root };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(bouncer);
            }
            if let Some(status) = bouncer.child.try_wait()? {
                bail!("pgbouncer exited at start ({status})");
            }
            if Instant::now() > deadline {
                bail!("pgbouncer did not listen on 127.0.0.1:{port} within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The URL of database `name` through this PgBouncer.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

//! A Postgres server of one test's own, for tests that stop and restart the database: the shared
//! server at 127.0.0.1:5432 (see [`crate::database`]) must stay up for every other test.
//!
//! `initdb` makes a fresh cluster in a temporary directory (trust authentication, superuser
//! `postgres`), and `pg_ctl` runs it on a free 127.0.0.1 port. [`PrivatePostgres::stop`] is a fast
//! shutdown (sessions are terminated, as in a real restart); [`PrivatePostgres::start`] brings the
//! same data directory back on the same port. Dropping the value stops the server and deletes the
//! directory.
//!
//! [`PrivatePostgres::spawn_replica`] makes a streaming replica (a hot standby) of such a server
//! with `pg_basebackup`, for tests of reading from a replica; [`PrivatePostgres::pause_replay`]
//! holds it back, as replication lag would.
//!
//! Postgres refuses to run as root. When the tests run as root, every Postgres program runs as the
//! `postgres` OS user (`runuser`, else `su`) in a directory that user owns.

use std::ffi::OsString;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rand::Rng;

/// The OS user Postgres runs as when the tests run as root.
const PG_OS_USER: &str = "postgres";

pub struct PrivatePostgres {
    /// `postgres://postgres@127.0.0.1:{port}/postgres`.
    pub url: String,
    pub port: u16,
    bindir: PathBuf,
    /// Holds `data/`, the server log and the Unix socket; owned by whoever runs Postgres.
    root: PathBuf,
    as_pg_user: bool,
    running: bool,
}

impl PrivatePostgres {
    /// Creates a cluster and starts it on a free port.
    pub async fn spawn() -> anyhow::Result<Self> {
        let pg = Self::empty()?;
        let data = pg.data_dir();
        pg.run(
            "initdb",
            &[
                "-D".into(),
                data.into(),
                "-U".into(),
                "postgres".into(),
                "--auth=trust".into(),
                "-E".into(),
                "UTF8".into(),
                "--locale=C".into(),
                "--no-sync".into(),
            ],
        )
        .await?;
        let mut pg = pg;
        pg.start().await?;
        Ok(pg)
    }

    /// A streaming replica of this server (which must be running): a base backup taken with
    /// `pg_basebackup -R` (initdb's trust rules let 127.0.0.1 replicate), started as a hot
    /// standby on a free port of its own.
    pub async fn spawn_replica(&self) -> anyhow::Result<Self> {
        let mut replica = Self::empty()?;
        let data = replica.data_dir();
        replica
            .run(
                "pg_basebackup",
                &[
                    "-h".into(),
                    "127.0.0.1".into(),
                    "-p".into(),
                    self.port.to_string().into(),
                    "-U".into(),
                    "postgres".into(),
                    "-D".into(),
                    data.into(),
                    "-R".into(),
                    "-X".into(),
                    "stream".into(),
                    "-c".into(),
                    "fast".into(),
                ],
            )
            .await?;
        replica.start().await?;
        Ok(replica)
    }

    /// Stops applying the primary's changes (a standby only): from now on it lags.
    pub async fn pause_replay(&self) -> anyhow::Result<()> {
        self.sql("SELECT pg_wal_replay_pause()").await
    }

    /// Applies the primary's changes again (a standby only).
    pub async fn resume_replay(&self) -> anyhow::Result<()> {
        self.sql("SELECT pg_wal_replay_resume()").await
    }

    async fn sql(&self, statement: &str) -> anyhow::Result<()> {
        use sqlx::{Connection, Executor};
        let mut conn = sqlx::PgConnection::connect(&self.url).await?;
        conn.execute(statement).await?;
        Ok(())
    }

    /// A directory and a port for a server not yet made.
    fn empty() -> anyhow::Result<Self> {
        let bindir = find_bindir()?;
        let as_pg_user = running_as_root();
        let root = std::env::temp_dir().join(format!(
            "lanyard-pg-{:016x}",
            rand::thread_rng().gen::<u64>()
        ));
        std::fs::create_dir(&root).with_context(|| format!("create {}", root.display()))?;
        if as_pg_user {
            let status = std::process::Command::new("chown")
                .arg(format!("{PG_OS_USER}:"))
                .arg(&root)
                .status()
                .context("run chown")?;
            if !status.success() {
                bail!("chown {PG_OS_USER}: {} failed", root.display());
            }
        }
        let port = free_port()?;
        Ok(Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            port,
            bindir,
            root,
            as_pg_user,
            running: false,
        })
    }

    /// Starts the server (again) on its data directory and port; returns once it accepts
    /// connections.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off \
             -c full_page_writes=off",
            self.port,
            self.root.display()
        );
        let (data, log) = (self.data_dir(), self.root.join("postgres.log"));
        self.run(
            "pg_ctl",
            &[
                "-D".into(),
                data.into(),
                "-l".into(),
                log.into(),
                "-o".into(),
                options.into(),
                "-w".into(),
                "-t".into(),
                "60".into(),
                "start".into(),
            ],
        )
        .await?;
        self.running = true;
        Ok(())
    }

    /// A fast shutdown: open sessions are terminated, and the server is gone when this returns.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.run("pg_ctl", &self.stop_args("fast")).await?;
        self.running = false;
        Ok(())
    }

    /// A crash: `pg_ctl -m immediate` ends every server process at once, with no checkpoint and
    /// nothing flushed that was not already durable; the next start runs crash recovery from the
    /// WAL (PostgreSQL's documented way to stop as a crash would).
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.run("pg_ctl", &self.stop_args("immediate")).await?;
        self.running = false;
        Ok(())
    }

    /// The server log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("postgres.log")).unwrap_or_default()
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    fn stop_args(&self, mode: &str) -> Vec<OsString> {
        vec![
            "-D".into(),
            self.data_dir().into(),
            "-m".into(),
            mode.into(),
            "-w".into(),
            "-t".into(),
            "60".into(),
            "stop".into(),
        ]
    }

    /// `program args…` from the Postgres bin directory, as the `postgres` user when needed.
    fn command(&self, program: &str, args: &[OsString]) -> std::process::Command {
        let exe = self.bindir.join(program);
        let mut cmd = if self.as_pg_user {
            match which("runuser") {
                Some(runuser) => {
                    let mut c = std::process::Command::new(runuser);
                    c.args(["-u", PG_OS_USER, "--"]).arg(&exe).args(args);
                    c
                }
                None => {
                    let line = std::iter::once(exe.into_os_string())
                        .chain(args.iter().cloned())
                        .map(|a| shell_quote(&a.to_string_lossy()))
                        .collect::<Vec<_>>()
                        .join(" ");
                    let mut c = std::process::Command::new("su");
                    c.args([PG_OS_USER, "-s", "/bin/sh", "-c", &line]);
                    c
                }
            }
        } else {
            let mut c = std::process::Command::new(exe);
            c.args(args);
            c
        };
        // The `postgres` user may not be able to enter the test's working directory.
        cmd.current_dir(&self.root);
        cmd.stdin(std::process::Stdio::null());
        cmd
    }

    async fn run(&self, program: &str, args: &[OsString]) -> anyhow::Result<()> {
        let cmd = self.command(program, args);
        let out = tokio::process::Command::from(cmd)
            .output()
            .await
            .with_context(|| format!("run {program}"))?;
        if !out.status.success() {
            bail!(
                "{program} failed ({}):\n{}\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
        }
        Ok(())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            // Immediate: nothing of this cluster is worth a checkpoint.
            let _ = self
                .command("pg_ctl", &self.stop_args("immediate"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`.
fn find_bindir() -> anyhow::Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
    {
        if out.status.success() {
            candidates.push(PathBuf::from(
                String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            ));
        }
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .collect();
        // Newest first: "9.6" sorts after "15" as text, so compare the major version as a number.
        versions.sort_by_key(|p| {
            std::cmp::Reverse(
                p.parent()
                    .and_then(Path::file_name)
                    .and_then(|v| v.to_str())
                    .and_then(|v| v.split('.').next())
                    .and_then(|v| v.parse::<u32>().ok())
                    .unwrap_or(0),
            )
        });
        candidates.extend(versions);
    }
    candidates.push(PathBuf::from("/usr/local/bin"));
    candidates
        .into_iter()
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
        .context("no Postgres server binaries (initdb, pg_ctl): install postgresql")
}

/// Whether this process runs as root (Postgres and PgBouncer then run as the `postgres` user).
pub(crate) fn running_as_root() -> bool {
    // /proc/self belongs to the effective user of this process.
    match std::fs::metadata("/proc/self") {
        Ok(m) => m.uid() == 0,
        Err(_) => std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0"),
    }
}

/// `program` on PATH, or in /usr/sbin or /sbin (not on every PATH).
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A port nothing listens on now. Another process could take it before Postgres binds it; on a
/// test machine that is rare, and `pg_ctl start` then fails loudly rather than mixing servers up.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::{Connection, Executor, PgConnection};

    #[tokio::test]
    async fn a_private_server_stops_and_starts_again_with_its_data() {
        let mut pg = PrivatePostgres::spawn().await.unwrap();
        let mut conn = PgConnection::connect(&pg.url).await.unwrap();
        conn.execute("CREATE TABLE kept (v INT); INSERT INTO kept VALUES (42)")
            .await
            .unwrap();
        pg.stop().await.unwrap();
        assert!(
            sqlx::query("SELECT 1").execute(&mut conn).await.is_err(),
            "the old connection is gone after a stop"
        );
        assert!(PgConnection::connect(&pg.url).await.is_err());
        pg.start().await.unwrap();
        let mut conn = PgConnection::connect(&pg.url).await.unwrap();
        let (v,): (i32,) = sqlx::query_as("SELECT v FROM kept")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(v, 42);
        let root = pg.root.clone();
        drop(conn);
        drop(pg);
        assert!(!root.exists(), "the cluster directory is deleted on drop");
    }
}

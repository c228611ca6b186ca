//! Real headless Chromium, driven over WebDriver with `fantoccini`.
//!
//! [`Browser::start`] runs a private `chromedriver` on a free loopback port and opens one
//! Chromium session through it, so every test gets its own browser (own cookies, own profile)
//! and tests may run in parallel. [`CallbackServer`] is a tiny HTTP server to redirect the
//! browser to: a redirect to a port nobody listens on ends in a Chromium error page.
//!
//! Needs Debian's `chromium` and `chromium-driver` packages (or `CHROMEDRIVER` / `CHROME_BIN`
//! pointing at a matching pair).

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::ops::Deref;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Where chromedriver is, unless `CHROMEDRIVER` says otherwise.
pub const DEFAULT_CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Where Chromium is, unless `CHROME_BIN` says otherwise.
pub const DEFAULT_CHROME: &str = "/usr/bin/chromium";

/// Flags for Chromium in a container: headless, often as root (no sandbox), no GPU, and a small
/// `/dev/shm`.
pub const CHROME_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=1024,900",
];

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

fn executable(env: &str, default: &str, what: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.is_file(),
        "{what} not found at {} (set {env} to override). Browser tests need Chromium and its \
         driver: `apt-get install -y chromium chromium-driver` on Debian/Ubuntu.",
        path.display()
    );
    path
}

/// The chromedriver binary: `$CHROMEDRIVER` or `/usr/bin/chromedriver`. Panics if absent.
pub fn chromedriver_path() -> PathBuf {
    executable("CHROMEDRIVER", DEFAULT_CHROMEDRIVER, "chromedriver")
}

/// The Chromium binary: `$CHROME_BIN` or `/usr/bin/chromium`. Panics if absent.
pub fn chrome_path() -> PathBuf {
    executable("CHROME_BIN", DEFAULT_CHROME, "Chromium")
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A chromedriver child, in its own process group so that Chromium (which chromedriver starts
/// in that group) dies with it: killing chromedriver alone leaves Chromium running.
struct Driver {
    child: Child,
    port: u16,
    stopped: bool,
}

impl Driver {
    /// Starts chromedriver on a free port and waits until it accepts connections. Retries with
    /// another port if the chosen one was taken in the meantime.
    async fn start(program: &Path, tmp: &Path) -> Self {
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new(program)
                .arg(format!("--port={port}"))
                .env("TMPDIR", tmp)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
            let mut driver = Driver {
                child,
                port,
                stopped: false,
            };
            match driver.wait_until_listening().await {
                Ok(()) => return driver,
                Err(e) => last_error = e,
            }
        }
        panic!("chromedriver did not start: {last_error}")
    }

    async fn wait_until_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("chromedriver exited early ({status})"));
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "chromedriver not listening on port {} after {STARTUP_TIMEOUT:?}",
                    self.port
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the whole group: chromedriver and every Chromium process it started
    /// (`process_group(0)` made the group id chromedriver's pid; `kill(1)` because unsafe code,
    /// and with it libc, is off limits). Idempotent: after the first call the pid may belong to
    /// someone else.
    fn shutdown(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A headless Chromium session with its own chromedriver and a throwaway directory (profile and
/// every temporary file chromedriver and Chromium make, via `TMPDIR`). Derefs to the
/// fantoccini [`Client`]. Dropping it kills chromedriver and Chromium; [`Browser::close`] ends
/// the session politely first.
pub struct Browser {
    pub client: Client,
    driver: Driver,
    tmp: PathBuf,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session. Panics, naming the packages to
    /// install, if either binary is missing.
    pub async fn start() -> Self {
        let chromedriver = chromedriver_path();
        let chrome = chrome_path();
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let tmp = std::env::temp_dir().join(format!(
            "lanyard-chromium-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&tmp)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", tmp.display()));
        let driver = Driver::start(&chromedriver, &tmp).await;
        let mut args: Vec<String> = CHROME_ARGS.iter().map(|a| (*a).to_owned()).collect();
        args.push(format!("--user-data-dir={}", tmp.join("profile").display()));
        let mut caps = Capabilities::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": chrome, "args": args }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&driver.url())
            .await
            .unwrap_or_else(|e| panic!("cannot open a Chromium session via chromedriver: {e}"));
        Self {
            client,
            driver,
            tmp,
        }
    }

    /// The chromedriver URL this session runs on.
    pub fn webdriver_url(&self) -> String {
        self.driver.url()
    }

    /// Polls the current URL until `accept` returns true, for up to `timeout`; returns the URL.
    pub async fn wait_for_url(
        &self,
        timeout: Duration,
        accept: impl Fn(&url::Url) -> bool,
    ) -> anyhow::Result<url::Url> {
        let deadline = Instant::now() + timeout;
        loop {
            let url = self.client.current_url().await?;
            if accept(&url) {
                return Ok(url);
            }
            if Instant::now() > deadline {
                anyhow::bail!("still at {url} after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ends the WebDriver session (Chromium quits), then stops chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Deref for Browser {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium must be gone before its directory is removed.
        self.driver.shutdown();
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

/// A loopback HTTP server that answers `200 ok` to anything and records each request line
/// (`GET /callback?code=… HTTP/1.1`): somewhere real for an OAuth redirect to land.
pub struct CallbackServer {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl CallbackServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(Self::serve(stream, seen.clone()));
            }
        });
        Self {
            addr,
            requests,
            task,
        }
    }

    async fn serve(mut stream: TcpStream, seen: Arc<Mutex<Vec<String>>>) {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&head);
        if let Some(line) = text.lines().next().filter(|l| !l.is_empty()) {
            seen.lock()
                .expect("callback log lock")
                .push(line.to_owned());
        }
        let _ = stream
            .write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\
                  Connection: close\r\n\r\nok",
            )
            .await;
        let _ = stream.shutdown().await;
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The request lines received so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("callback log lock").clone()
    }
}

impl Drop for CallbackServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

//! Revoke-to-SSE delivery latency, for `bench/registry.sh`: how long after a client asks the
//! registry to revoke a session do the account's other devices, listening on `GET /v1/events`,
//! see the `revoked` event.
//!
//! ```text
//! cargo run --release -p session-registry --example revoke_latency -- \
//!     --issuer http://127.0.0.1:8700/acme --registry http://127.0.0.1:8701 --user bob \
//!     --subscribers 100 --revokes 20
//! ```
//! Signs `--user` in at the mock IdP, opens through the API one session per subscriber, one per
//! revoke (the victims) and one more to revoke with (`--concurrency` sign-ins at a time); with
//! `--subscriber-tokens FILE` (one session token per line, sessions of the same account made
//! beforehand, e.g. seeded), the subscribers use those instead of signing in one by one;
//! connects every subscriber to `/v1/events` — spread round-robin over the registry processes
//! of `--subscribe-to URL,URL,…` (default: `--registry`), at most `--connect-concurrency`
//! (default 256) connecting at a time, as a fleet's reconnects spread out — and waits until all
//! are connected;
//! with `--pids PID,PID,…` (those processes), reads their resident memory before the streams
//! open and once they are all connected and idle; then, one victim at a time, takes the time,
//! posts `POST /v1/sessions/revoke {"session_id": victim}` and waits until every subscriber has
//! seen that victim's `revoked` event (revokes go through `--registry`). A sample is one (subscriber, revoke) pair: from just before
//! the revoke request was sent to the moment the subscriber had parsed the event. Prints one JSON
//! object on stdout.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench tool: a panic is a report

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{Barrier, Notify, Semaphore};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

struct Session {
    id: String,
    token: String,
}

/// One subscriber: `GET /v1/events` over a plain TCP connection, written and read by hand.
/// Why not reqwest: with 10,000 streams on the same 2 cores as the registries, the client's cost
/// per event (hyper's chunked decoding, a UTF-8 copy, a JSON parse) is time the registries do not
/// get; this reader scans the raw bytes for the `revoked` frame and its `session_id`, so what is
/// measured is the registries' delivery, not the client's parsing. Records when it read each
/// victim's `revoked` frame in `arrivals` (no message, no allocation, no wake-up of the measuring
/// task per event: 10,000 of those per revoke were the client's cost on the same 2 cores).
async fn subscribe(
    url: &str,
    token: &str,
    n: usize,
    arrivals: Arc<Arrivals>,
    connected: Arc<Barrier>,
    connecting: Arc<Semaphore>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let permit = connecting
        .acquire_owned()
        .await
        .expect("the semaphore is never closed");
    let parsed = reqwest::Url::parse(url).expect("a subscriber URL");
    let host = parsed.host_str().expect("a host");
    let port = parsed.port_or_known_default().expect("a port");
    let mut conn = tokio::net::TcpStream::connect((host, port))
        .await
        .expect("connect to /v1/events");
    conn.set_nodelay(true).expect("TCP_NODELAY");
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n",
        parsed.path()
    );
    conn.write_all(request.as_bytes())
        .await
        .expect("GET /v1/events");
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    // The head: the registry subscribes before it answers, so from here on nothing is missed.
    let head_end = loop {
        let read = conn.read(&mut chunk).await.expect("read /v1/events");
        assert!(
            read > 0,
            "GET /v1/events: connection closed before the answer"
        );
        buf.extend_from_slice(&chunk[..read]);
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break end + 4;
        }
    };
    assert!(
        buf.starts_with(b"HTTP/1.1 200"),
        "GET /v1/events: {}",
        String::from_utf8_lossy(&buf[..head_end])
    );
    buf.drain(..head_end);
    drop(permit);
    connected.wait().await;
    const EVENT: &[u8] = b"event: revoked\n";
    const SID: &[u8] = b"\"session_id\":\"";
    loop {
        // Whole SSE frames (each ends with a blank line); chunk-size lines of the chunked
        // encoding between them do not matter to the scan.
        while let Some(end) = find(&buf, b"\n\n") {
            let frame = &buf[..end];
            if find(frame, EVENT).is_some() {
                let at = Instant::now();
                if let Some(start) = find(frame, SID).map(|i| i + SID.len()) {
                    let len = frame[start..].iter().position(|&b| b == b'"').unwrap_or(0);
                    arrivals.record(&frame[start..start + len], n, at);
                }
            }
            buf.drain(..end + 2);
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => buf.extend_from_slice(&chunk[..read]),
        }
    }
}

/// When each subscriber read each victim's `revoked` frame: nanoseconds after `base` (0: not
/// yet), one row of subscribers per victim; how many have per victim; a wake-up for the
/// measuring task once all have.
struct Arrivals {
    base: Instant,
    victims: Vec<String>,
    subscribers: usize,
    at: Vec<AtomicU64>,
    seen: Vec<AtomicUsize>,
    all_seen: Notify,
}

impl Arrivals {
    fn new(victims: Vec<String>, subscribers: usize) -> Self {
        Self {
            base: Instant::now(),
            at: (0..victims.len() * subscribers)
                .map(|_| AtomicU64::new(0))
                .collect(),
            seen: (0..victims.len()).map(|_| AtomicUsize::new(0)).collect(),
            victims,
            subscribers,
            all_seen: Notify::new(),
        }
    }

    /// Subscriber `n` read the `revoked` frame of session `sid` at `at` (a repeat or another
    /// session's frame is ignored).
    fn record(&self, sid: &[u8], n: usize, at: Instant) {
        let Some(v) = self.victims.iter().position(|id| id.as_bytes() == sid) else {
            return;
        };
        let nanos = u64::try_from(at.duration_since(self.base).as_nanos()).unwrap_or(u64::MAX);
        if self.at[v * self.subscribers + n]
            .compare_exchange(0, nanos.max(1), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            && self.seen[v].fetch_add(1, Ordering::AcqRel) + 1 == self.subscribers
        {
            self.all_seen.notify_one();
        }
    }

    /// Per registry process (subscriber `n` streams from process `n % processes`): how many
    /// subscribers read victim `v`'s frame so far, and the first and last of them (ms after `t0`).
    fn by_process(&self, v: usize, t0: Instant, processes: usize) -> Vec<(usize, f64, f64)> {
        let t0 = t0.duration_since(self.base).as_nanos() as f64;
        let mut out = vec![(0usize, f64::INFINITY, f64::NEG_INFINITY); processes.max(1)];
        let row = &self.at[v * self.subscribers..(v + 1) * self.subscribers];
        for (n, a) in row.iter().enumerate() {
            let ns = a.load(Ordering::Acquire);
            if ns == 0 {
                continue;
            }
            let ms = (ns as f64 - t0) / 1e6;
            let p = &mut out[n % processes.max(1)];
            p.0 += 1;
            p.1 = p.1.min(ms);
            p.2 = p.2.max(ms);
        }
        out
    }

    /// The delays (ms after `t0`) of victim `v`'s frames read so far.
    fn delays(&self, v: usize, t0: Instant) -> Vec<f64> {
        let t0 = t0.duration_since(self.base).as_nanos() as f64;
        self.at[v * self.subscribers..(v + 1) * self.subscribers]
            .iter()
            .map(|a| a.load(Ordering::Acquire))
            .filter(|&ns| ns != 0)
            .map(|ns| (ns as f64 - t0) / 1e6)
            .collect()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A session of `user` on `device`, from a sign-in of its own (an ID token opens one session).
async fn create(
    http: &reqwest::Client,
    registry: &str,
    issuer: &str,
    user: &str,
    device: &str,
) -> Session {
    let tokens = test_harness::idp::login(issuer, user, "lanyard-cli").await;
    let id_token = tokens["id_token"].as_str().expect("an ID token").to_owned();
    let res = http
        .post(format!("{registry}/v1/sessions"))
        .json(&json!({
            "id_token": id_token,
            "device": {"id": device, "name": device, "platform": "linux"},
        }))
        .send()
        .await
        .expect("POST /v1/sessions");
    let status = res.status();
    let body: Value = res.json().await.expect("JSON answer");
    assert!(status.is_success(), "POST /v1/sessions: {status} {body}");
    Session {
        id: body["session"]["session_id"]
            .as_str()
            .expect("session_id")
            .into(),
        token: body["session_token"]
            .as_str()
            .expect("session_token")
            .into(),
    }
}

/// Resident memory of the processes, in KiB (`VmRSS` of `/proc/PID/status`).
fn rss_kib(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .expect("the process's status")
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .expect("VmRSS")
        })
        .sum()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let issuer = arg(&args, "--issuer").expect("--issuer ISSUER");
    let registry = arg(&args, "--registry").expect("--registry URL");
    let user = arg(&args, "--user").unwrap_or_else(|| "bob".into());
    let subscribers: usize = arg(&args, "--subscribers")
        .map(|c| c.parse().expect("--subscribers N"))
        .unwrap_or(100);
    let revokes: usize = arg(&args, "--revokes")
        .map(|c| c.parse().expect("--revokes N"))
        .unwrap_or(20);
    let pause = Duration::from_millis(
        arg(&args, "--pause-ms")
            .map(|c| c.parse().expect("--pause-ms MS"))
            .unwrap_or(100),
    );

    let concurrency: usize = arg(&args, "--concurrency")
        .map(|c| c.parse().expect("--concurrency N"))
        .unwrap_or(8);
    let connect_concurrency: usize = arg(&args, "--connect-concurrency")
        .map(|c| c.parse().expect("--connect-concurrency N"))
        .unwrap_or(256);
    let subscribe_to: Vec<String> = arg(&args, "--subscribe-to")
        .map(|list| list.split(',').map(str::to_owned).collect())
        .unwrap_or_else(|| vec![registry.clone()]);
    let pids: Vec<u32> = arg(&args, "--pids")
        .map(|list| {
            list.split(',')
                .map(|p| p.parse().expect("--pids PID,…"))
                .collect()
        })
        .unwrap_or_default();

    let http = reqwest::Client::new();
    let open = |prefix: &'static str, n: usize| {
        let (http, registry, issuer, user) = (&http, &registry, &issuer, &user);
        stream::iter(0..n)
            .map(move |i| async move {
                create(http, registry, issuer, user, &format!("{prefix}-{i}")).await
            })
            .buffered(concurrency)
            .collect::<Vec<_>>()
    };
    let subs = match arg(&args, "--subscriber-tokens") {
        Some(file) => std::fs::read_to_string(&file)
            .expect("--subscriber-tokens FILE")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(subscribers)
            .map(|token| Session {
                id: String::new(),
                token: token.trim().to_owned(),
            })
            .collect(),
        None => open("sub", subscribers).await,
    };
    assert_eq!(subs.len(), subscribers, "a session per subscriber");
    let victims = open("victim", revokes).await;
    let actor = create(&http, &registry, &issuer, &user, "actor").await;
    let rss_before = rss_kib(&pids);

    // Every subscriber records when it read each victim's frame.
    let arrivals = Arc::new(Arrivals::new(
        victims.iter().map(|v| v.id.clone()).collect(),
        subscribers,
    ));
    let connected = Arc::new(Barrier::new(subscribers + 1));
    let connecting = Arc::new(Semaphore::new(connect_concurrency));
    for (n, s) in subs.iter().enumerate() {
        let (url, token, arrivals, connected, connecting) = (
            format!("{}/v1/events", subscribe_to[n % subscribe_to.len()]),
            s.token.clone(),
            arrivals.clone(),
            connected.clone(),
            connecting.clone(),
        );
        tokio::spawn(
            async move { subscribe(&url, &token, n, arrivals, connected, connecting).await },
        );
    }
    connected.wait().await;
    // Let the last connections' first bytes settle; then every stream is idle.
    tokio::time::sleep(Duration::from_millis(if pids.is_empty() {
        200
    } else {
        2000
    }))
    .await;
    let rss_connected = rss_kib(&pids);

    let mut samples = Vec::with_capacity(subscribers * revokes);
    let mut calls = Vec::with_capacity(revokes);
    let mut missed = 0usize;
    let mut late = Vec::new();
    for (v, victim) in victims.iter().enumerate() {
        let t0 = Instant::now();
        let res = http
            .post(format!("{registry}/v1/sessions/revoke"))
            .bearer_auth(&actor.token)
            .json(&json!({"session_id": victim.id}))
            .send()
            .await
            .expect("POST /v1/sessions/revoke");
        assert!(
            res.status().is_success(),
            "POST /v1/sessions/revoke: {}",
            res.status()
        );
        calls.push(t0.elapsed().as_secs_f64() * 1000.0);
        // Woken once, when the last subscriber has it (or after 10 s: the rest missed it).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while arrivals.seen[v].load(Ordering::Acquire) < subscribers {
            let woken = arrivals.all_seen.notified();
            if arrivals.seen[v].load(Ordering::Acquire) >= subscribers
                || tokio::time::timeout_at(deadline, woken).await.is_err()
            {
                break;
            }
        }
        let delays = arrivals.delays(v, t0);
        missed += subscribers - delays.len();
        if delays.len() < subscribers || delays.iter().any(|&ms| ms > 1000.0) {
            // Where a late or missed revoke went: per process, how many had it, first and last.
            eprintln!(
                "revoke {v}: call {:.1} ms, {} of {subscribers} within 10 s; per process (had it, first ms, last ms): {:?}",
                calls[v],
                delays.len(),
                arrivals.by_process(v, t0, subscribe_to.len())
            );
            late.push((v, t0));
        }
        samples.extend(delays);
        tokio::time::sleep(pause).await;
    }
    if !late.is_empty() {
        // Whether what was missed came at all: a last look 10 s on.
        tokio::time::sleep(Duration::from_secs(10)).await;
        for (v, t0) in late {
            eprintln!(
                "revoke {v}, 10 s after the run: per process (had it, first ms, last ms): {:?}",
                arrivals.by_process(v, t0, subscribe_to.len())
            );
        }
    }

    samples.sort_by(f64::total_cmp);
    calls.sort_by(f64::total_cmp);
    let mean = samples.iter().sum::<f64>() / samples.len().max(1) as f64;
    println!(
        "{}",
        json!({
            "subscribers": subscribers,
            "revokes": revokes,
            "samples": samples.len(),
            "missed": missed,
            "p50_ms": percentile(&samples, 50.0),
            "p90_ms": percentile(&samples, 90.0),
            "p99_ms": percentile(&samples, 99.0),
            "max_ms": samples.last().copied().unwrap_or(f64::NAN),
            "mean_ms": mean,
            "revoke_call_p50_ms": percentile(&calls, 50.0),
            "revoke_call_max_ms": calls.last().copied().unwrap_or(f64::NAN),
            "processes": subscribe_to.len(),
            "rss_before_kib": rss_before,
            "rss_connected_kib": rss_connected,
            "kib_per_idle_subscriber": if pids.is_empty() {
                f64::NAN
            } else {
                (rss_connected as f64 - rss_before as f64) / subscribers.max(1) as f64
            },
        })
    );
}

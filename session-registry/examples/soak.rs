//! Soak: mixed traffic at a fixed rate against a running registry (on Postgres) and mock IdP, for
//! `bench/soak.sh` (issue #16 item 2).
//!
//! ```text
//! cargo run --release -p session-registry --example soak -- \
//!     --issuer http://127.0.0.1:8700/acme --registry http://127.0.0.1:8701 \
//!     --api-key acme-admin-key --duration-secs 600 --rate 200 --subscribers 1000 \
//!     --pids REGISTRY_PID,IDP_PID
//! ```
//!
//! Adds `--accounts` users (default 50) to the IdP's tenant, opens `--subscribers` sessions
//! spread over them and keeps an SSE stream
//! on each; then, for `--duration-secs`, starts `--rate` operations a second (a fixed schedule,
//! not as fast as answers come), each picked at random: 55 % heartbeats (token authenticate of a
//! live session), 15 % session lists, 10 % sign-ins (a code flow at the IdP in the user's browser,
//! single sign-on once it holds the user's IdP session, then
//! `POST /v1/sessions`), 10 % refreshes at the IdP (each rotating a grant the soak holds), 10 %
//! revokes (one of the soak's live, non-subscriber sessions, by id, through another session of
//! the same account). Every answer's status is counted; a 5xx, or an answer other than the
//! operation's expected one, is a failure.
//!
//! At the end, the audit: every session the soak created is in the tenant's admin listing, live
//! if the soak did not revoke it and revoked with reason `revoked_by_user` if it did; every revoke reached
//! every subscriber of its account (over the SSE streams); the subscribers' streams are still
//! open. Resident memory of `--pids` (the registry, the IdP) at the start of the measured time
//! and at its end, and the IdP's token records then and now (admin API). Every 10 s, the IdP's
//! tombstones (revoked grants) beside the most it may hold then: the soak's revokes at the IdP
//! answered in the last 631 s (a tombstone lives 600 s, the sweep runs every 30 s), so a run
//! longer than that shows whether they are dropped. Prints one JSON object; exits 1 if any check
//! failed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench tool: a panic is a report

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::Rng;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[derive(Clone)]
struct Session {
    id: String,
    token: String,
    user: String,
}

#[derive(Default)]
struct Tally {
    by_status: Mutex<BTreeMap<String, u64>>,
    failures: Mutex<Vec<String>>,
    server_errors: AtomicU64,
}

impl Tally {
    fn note(&self, op: &str, status: u16, expected: u16) {
        *self
            .by_status
            .lock()
            .entry(format!("{op} {status}"))
            .or_default() += 1;
        if status >= 500 {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
        }
        if status != expected {
            let mut f = self.failures.lock();
            if f.len() < 50 {
                f.push(format!("{op}: {status}, expected {expected}"));
            }
        }
    }
}

/// [`World::post_revoke`]'s status for "sign in again first" (`insufficient_user_authentication`).
const STEP_UP: u16 = 1401;

/// The soak's state: live sessions (by user), subscribers, grants, what it revoked.
struct World {
    registry: String,
    issuer: String,
    http: reqwest::Client,
    live: Mutex<Vec<Session>>,
    created: Mutex<Vec<String>>,
    /// Sessions the soak revoked: id → user.
    revoked: Mutex<HashMap<String, String>>,
    /// The IdP grants the soak's devices hold: (session id, current refresh token).
    grants: Mutex<Vec<(String, String)>>,
    /// Sessions whose revoke was answered 200 (`revoked` also holds those still in flight).
    ended: Mutex<HashSet<String>>,
    /// Each user's browser: it keeps the user's IdP session, so a sign-in after the first is
    /// single sign-on, as for a person signing in a CLI day to day.
    browsers: Mutex<HashMap<String, reqwest::Client>>,
    /// The IdP's tombstones, from the outside: when each revoke at the IdP was answered 200.
    idp_revokes: IdpRevokes,
    tally: Tally,
}

/// How long the IdP keeps a revoked grant's tombstone at most after the revoke: its access
/// tokens' lifetime (600 s at the default tenants), plus the sweep's period (30 s), plus a second
/// for the sweep's own timing.
const TOMBSTONE_AT_MOST: Duration = Duration::from_secs(600 + 30 + 1);

/// The revokes at the IdP: enough to bound its tombstones at any moment.
#[derive(Default)]
struct IdpRevokes {
    /// When each revoke answered 200 arrived.
    answered: Mutex<Vec<Instant>>,
    /// Revokes sent and not yet answered (each may have made a tombstone already).
    in_flight: AtomicU64,
}

impl IdpRevokes {
    /// The most tombstones the IdP may hold at a moment no earlier than `since`: a tombstone made
    /// by a revoke answered before `since - TOMBSTONE_AT_MOST` is gone by then, so only the
    /// revokes answered after it, and those still in flight, can have one.
    fn tombstones_at_most(&self, since: Instant) -> usize {
        // In flight first: a revoke that ends between the two reads is then counted in one
        // of them at least (it is recorded as answered before it leaves the in-flight count).
        let in_flight = self.in_flight.load(Ordering::SeqCst) as usize;
        let cutoff = since.checked_sub(TOMBSTONE_AT_MOST);
        let recent = self
            .answered
            .lock()
            .iter()
            .filter(|&&at| cutoff.is_none_or(|c| at >= c))
            .count();
        recent + in_flight
    }
}

impl World {
    /// `user`'s browser (a client shares its cookie store between clones).
    fn browser_of(&self, user: &str) -> reqwest::Client {
        self.browsers
            .lock()
            .entry(user.to_owned())
            .or_insert_with(test_harness::idp::browser)
            .clone()
    }

    async fn sign_in(&self, user: &str, device: &str) -> Option<Session> {
        let browser = self.browser_of(user);
        let tokens =
            test_harness::idp::sign_in_with_session(&browser, &self.issuer, user, "lanyard-cli")
                .await;
        let refresh_token = tokens["refresh_token"].as_str().map(str::to_owned);
        let session = self.open_session(&tokens, user, device).await;
        match (&session, refresh_token) {
            (Some(s), Some(rt)) => self.grants.lock().push((s.id.clone(), rt)),
            // No session to go with the grant: the device signs out at the IdP.
            (None, Some(rt)) => self.sign_out_at_idp(&rt).await,
            (_, None) => {}
        }
        session
    }

    /// `POST /v1/sessions` with the ID token of a sign-in's token response.
    async fn open_session(&self, tokens: &Value, user: &str, device: &str) -> Option<Session> {
        let id_token = tokens["id_token"].as_str()?.to_owned();
        let res = self
            .http
            .post(format!("{}/v1/sessions", self.registry))
            .json(&json!({
                "id_token": id_token,
                "device": {"id": device, "name": device, "platform": "linux"},
            }))
            .send()
            .await
            .ok()?;
        let status = res.status().as_u16();
        self.tally.note("create", status, 201);
        let body: Value = res.json().await.ok()?;
        let s = Session {
            id: body["session"]["session_id"].as_str()?.to_owned(),
            token: body["session_token"].as_str()?.to_owned(),
            user: user.to_owned(),
        };
        self.created.lock().push(s.id.clone());
        Some(s)
    }

    fn pick_live(&self) -> Option<Session> {
        let live = self.live.lock();
        (!live.is_empty()).then(|| live[rand::thread_rng().gen_range(0..live.len())].clone())
    }

    async fn heartbeat(&self) {
        let Some(s) = self.pick_live() else { return };
        let status = self
            .http
            .post(format!("{}/v1/sessions/authenticate", self.registry))
            .json(&json!({"session_token": s.token}))
            .send()
            .await
            .map_or(0, |r| r.status().as_u16());
        // A session revoked between the pick and the answer is refused, rightly.
        let expected = if self.is_revoked(&s.id) { status } else { 200 };
        self.tally.note("heartbeat", status, expected);
    }

    async fn list(&self) {
        let Some(s) = self.pick_live() else { return };
        let status = self
            .http
            .get(format!("{}/v1/sessions", self.registry))
            .bearer_auth(&s.token)
            .send()
            .await
            .map_or(0, |r| r.status().as_u16());
        let expected = if self.is_revoked(&s.id) { status } else { 200 };
        self.tally.note("list", status, expected);
    }

    async fn refresh(&self) {
        let (sid, rt) = {
            let mut g = self.grants.lock();
            if g.is_empty() {
                return;
            }
            let i = rand::thread_rng().gen_range(0..g.len());
            g.swap_remove(i)
        };
        let res = self
            .http
            .post(format!("{}/token", self.issuer))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", rt.as_str()),
                ("client_id", "lanyard-cli"),
            ])
            .send()
            .await;
        let Ok(res) = res else {
            self.tally.note("refresh", 0, 200);
            return;
        };
        let status = res.status().as_u16();
        self.tally.note("refresh", status, 200);
        if let Ok(body) = res.json::<Value>().await {
            if let Some(next) = body["refresh_token"].as_str() {
                // Checked and kept under the grants lock: a revoke confirmed before this looks
                // finds `ended` set, one confirmed after finds the grant in the list.
                let kept = {
                    let mut grants = self.grants.lock();
                    let ended = self.ended.lock().contains(&sid);
                    if !ended {
                        grants.push((sid, next.to_owned()));
                    }
                    !ended
                };
                if !kept {
                    // Its session was revoked while this refresh was out: the device signs out
                    // at the IdP with the token it just got.
                    self.sign_out_at_idp(next).await;
                }
            }
        }
    }

    /// A device whose session was revoked signs out at the IdP too (RFC 7009, as `lanyard
    /// logout` does): its grant ends, so the IdP's live grants follow the live sessions.
    async fn sign_out_at_idp(&self, refresh_token: &str) {
        self.idp_revokes.in_flight.fetch_add(1, Ordering::SeqCst);
        let status = self
            .http
            .post(format!("{}/revoke", self.issuer))
            .form(&[
                ("token", refresh_token),
                ("token_type_hint", "refresh_token"),
                ("client_id", "lanyard-cli"),
            ])
            .send()
            .await
            .map_or(0, |r| r.status().as_u16());
        if status == 200 {
            self.idp_revokes.answered.lock().push(Instant::now());
        }
        self.idp_revokes.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.tally.note("idp-revoke", status, 200);
    }

    /// Revokes one live session by id, through another live session of the same user.
    async fn revoke(&self) {
        let (victim, actor) = {
            let mut live = self.live.lock();
            if live.len() < 2 {
                return;
            }
            let i = rand::thread_rng().gen_range(0..live.len());
            let victim = live[i].clone();
            let Some(actor) = live
                .iter()
                .find(|s| s.user == victim.user && s.id != victim.id)
                .cloned()
            else {
                return;
            };
            live.swap_remove(i);
            (victim, actor)
        };
        self.revoked
            .lock()
            .insert(victim.id.clone(), victim.user.clone());
        let mut status = self.post_revoke(&actor, &victim.id).await;
        if status == STEP_UP {
            // RFC 9470: the actor's sign-in is older than the tenant's max_auth_age — the
            // user's browser session is (single sign-on keeps its auth_time). The person signs
            // in afresh, as `lanyard` asks them to, and tries once more.
            self.tally.note("revoke", 401, 401);
            status = if self.step_up(&actor).await {
                self.post_revoke(&actor, &victim.id).await
            } else {
                0
            };
        }
        // Its actor revoked by another revoke meanwhile is refused, rightly.
        let expected = if self.is_revoked(&actor.id) {
            status
        } else {
            200
        };
        self.tally.note("revoke", status, expected);
        if status != 200 {
            // Not revoked after all: the victim is live again (the audit expects it listed
            // live, and its subscribers no `revoked` event).
            self.revoked.lock().remove(&victim.id);
            self.live.lock().push(victim);
            return;
        }
        // The revoked device signs out at the IdP (if a refresh holds its grant just now, that
        // refresh does, when it sees the session ended).
        self.ended.lock().insert(victim.id.clone());
        let grant = {
            let mut g = self.grants.lock();
            g.iter()
                .position(|(sid, _)| sid == &victim.id)
                .map(|i| g.swap_remove(i).1)
        };
        if let Some(rt) = grant {
            self.sign_out_at_idp(&rt).await;
        }
    }

    /// `POST /v1/sessions/revoke` of session `victim` through `actor`: the status, or
    /// [`STEP_UP`] when the registry asks for a recent sign-in first.
    async fn post_revoke(&self, actor: &Session, victim: &str) -> u16 {
        let Ok(res) = self
            .http
            .post(format!("{}/v1/sessions/revoke", self.registry))
            .bearer_auth(&actor.token)
            .json(&json!({"session_id": victim}))
            .send()
            .await
        else {
            return 0;
        };
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        if status == 401 && body["error"] == "insufficient_user_authentication" {
            STEP_UP
        } else {
            status
        }
    }

    /// The step-up: `actor`'s user signs in again in their browser (`prompt=login`: the form and
    /// the password again, a fresh `auth_time`, the same IdP session), and its ID token
    /// re-authenticates `actor`'s session. The step-up's own grant is signed out at the IdP at
    /// once (the device keeps its session, not a second grant). Each step-up used to sign in in
    /// a new browser, which left an IdP session behind per step-up (50 at the soak's start, 789
    /// at its end).
    async fn step_up(&self, actor: &Session) -> bool {
        let browser = self.browser_of(&actor.user);
        let tokens =
            test_harness::idp::sign_in_again(&browser, &self.issuer, &actor.user, "lanyard-cli")
                .await;
        if let Some(rt) = tokens["refresh_token"].as_str() {
            self.sign_out_at_idp(rt).await;
        }
        let status = self
            .http
            .post(format!("{}/v1/sessions/reauthenticate", self.registry))
            .bearer_auth(&actor.token)
            .json(&json!({"id_token": tokens["id_token"]}))
            .send()
            .await
            .map_or(0, |r| r.status().as_u16());
        // The actor revoked meanwhile is refused, rightly.
        let expected = if self.is_revoked(&actor.id) {
            status
        } else {
            200
        };
        self.tally.note("step-up", status, expected);
        status == 200
    }

    fn is_revoked(&self, id: &str) -> bool {
        self.revoked.lock().contains_key(id)
    }
}

/// One subscriber's stream, read from a plain TCP connection (see `revoke_latency`): the ids of
/// the `revoked` events it saw, and whether it is still open.
async fn subscribe(
    registry: String,
    token: String,
    seen: Arc<Mutex<HashSet<String>>>,
    open: Arc<AtomicU64>,
) {
    let url = reqwest::Url::parse(&registry).expect("the registry URL");
    let (host, port) = (
        url.host_str().expect("a host").to_owned(),
        url.port_or_known_default().expect("a port"),
    );
    let mut conn = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .expect("connect to /v1/events");
    let request = format!(
        "GET /v1/events HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    );
    conn.write_all(request.as_bytes())
        .await
        .expect("GET /v1/events");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut head = true;
    open.fetch_add(1, Ordering::Relaxed);
    loop {
        let n = match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if head {
            let Some(end) = find(&buf, b"\r\n\r\n") else {
                continue;
            };
            assert!(buf.starts_with(b"HTTP/1.1 200"), "GET /v1/events refused");
            buf.drain(..end + 4);
            head = false;
        }
        while let Some(end) = find(&buf, b"\n\n") {
            let frame = &buf[..end];
            if find(frame, b"event: revoked\n").is_some() {
                const SID: &[u8] = b"\"session_id\":\"";
                if let Some(start) = find(frame, SID).map(|i| i + SID.len()) {
                    let len = frame[start..].iter().position(|&b| b == b'"').unwrap_or(0);
                    seen.lock()
                        .insert(String::from_utf8_lossy(&frame[start..start + len]).into_owned());
                }
            }
            buf.drain(..end + 2);
        }
    }
    open.fetch_sub(1, Ordering::Relaxed);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The IdP's record counts (admin API), or `null` if it did not answer: a sample without them
/// is reported as such rather than ending the sampler.
async fn idp_records(http: &reqwest::Client, issuer: &str) -> Value {
    let (base, tenant) = issuer.rsplit_once('/').expect("ISSUER/TENANT");
    let answer = http
        // The counts alone: the audit route copies and serialises up to 10,000 events per call,
        // allocations of the IdP's that a sample every 10 s would measure as its growth.
        .get(format!("{base}/admin/tenants/{tenant}/records"))
        .bearer_auth(mock_idp::config::DEV_ADMIN_TOKEN)
        .send()
        .await;
    match answer {
        Ok(res) => res
            .json::<Value>()
            .await
            .map(|v| v["records"].clone())
            .unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let issuer = arg(&args, "--issuer").expect("--issuer ISSUER");
    let registry = arg(&args, "--registry").expect("--registry URL");
    let api_key = arg(&args, "--api-key").expect("--api-key KEY");
    let tenant = arg(&args, "--tenant").unwrap_or_else(|| "acme".into());
    let num = |name: &str, default: u64| -> u64 {
        arg(&args, name).map_or(default, |v| v.parse().expect(name))
    };
    let duration = Duration::from_secs(num("--duration-secs", 600));
    let rate = num("--rate", 200).max(1);
    let subscribers = usize::try_from(num("--subscribers", 1000)).expect("--subscribers");
    let accounts = num("--accounts", 50);
    let pids: Vec<u32> = arg(&args, "--pids")
        .map(|l| l.split(',').map(|p| p.parse().expect("--pids")).collect())
        .unwrap_or_default();

    // The accounts: users of the soak's own at the IdP, with the dev password.
    let http = reqwest::Client::new();
    let (idp_base, idp_tenant) = issuer.rsplit_once('/').expect("ISSUER/TENANT");
    let mut users = Vec::new();
    for i in 0..accounts {
        let username = format!("soak{i}");
        let res = http
            .post(format!("{idp_base}/admin/tenants/{idp_tenant}/users"))
            .bearer_auth(mock_idp::config::DEV_ADMIN_TOKEN)
            .json(&json!({"username": username, "password": mock_idp::config::DEV_PASSWORD}))
            .send()
            .await
            .expect("the IdP's admin API");
        assert!(
            res.status().is_success() || res.status().as_u16() == 409,
            "adding user {username}: {}",
            res.status()
        );
        users.push(username);
    }

    let world = Arc::new(World {
        registry: registry.clone(),
        issuer: issuer.clone(),
        // Idle connections dropped before the registry's keep-alive (5 s) closes them: a
        // request sent on a connection the server is closing that moment fails with no status.
        http: reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(2))
            .build()
            .expect("an HTTP client"),
        live: Mutex::new(Vec::new()),
        created: Mutex::new(Vec::new()),
        revoked: Mutex::new(HashMap::new()),
        ended: Mutex::new(HashSet::new()),
        browsers: Mutex::new(HashMap::new()),
        grants: Mutex::new(Vec::new()),
        idp_revokes: IdpRevokes::default(),
        tally: Tally::default(),
    });

    // The subscribers: sessions of their own, never revoked by the soak, one stream each.
    let mut subs: Vec<(Session, Arc<Mutex<HashSet<String>>>)> = Vec::new();
    let open = Arc::new(AtomicU64::new(0));
    for i in 0..subscribers {
        let user = &users[i % users.len()];
        let s = world
            .sign_in(user, &format!("subscriber-{i}"))
            .await
            .expect("a subscriber's session");
        let seen = Arc::new(Mutex::new(HashSet::new()));
        tokio::spawn(subscribe(
            registry.clone(),
            s.token.clone(),
            seen.clone(),
            open.clone(),
        ));
        subs.push((s, seen));
    }
    // Two revocable sessions per user to start with (a revoke needs another session to act).
    for user in &users {
        for d in 0..2 {
            if let Some(s) = world.sign_in(user, &format!("{user}-seed-{d}")).await {
                world.live.lock().push(s);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while open.load(Ordering::Relaxed) < subscribers as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_start: Vec<u64> = pids.iter().map(|&p| rss_kib(p)).collect();
    let records_start = idp_records(&world.http, &issuer).await;
    // Resident memory every 10 s of the measured time, with the live data it holds then.
    let samples: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let (samples, pids, world) = (samples.clone(), pids.clone(), world.clone());
        let start = Instant::now();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(10));
            loop {
                every.tick().await;
                let asked = Instant::now();
                let records = idp_records(&world.http, &world.issuer).await;
                samples.lock().push(json!({
                    "at_secs": start.elapsed().as_secs(),
                    "rss_kib": pids.iter().map(|&p| rss_kib(p)).collect::<Vec<_>>(),
                    "live_sessions": world.live.lock().len() + subscribers,
                    "idp_grants": world.grants.lock().len(),
                    "idp_tombstones": records["revoked_grants"],
                    "idp_tombstones_at_most": world.idp_revokes.tombstones_at_most(asked),
                }));
            }
        })
    };

    // The measured time: a fixed schedule of `rate` operations a second.
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    // A fixed schedule: ticks the soak itself was too busy to take are taken at once after,
    // so `rate` × the duration operations start (Delay let a busy client start fewer).
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(256));
    let mut ops: u64 = 0;
    let mut waited_for_answers: u64 = 0;
    let mut devices = 0u64;
    while started.elapsed() < duration {
        tick.tick().await;
        ops += 1;
        let roll = rand::thread_rng().gen_range(0..100);
        let w = world.clone();
        if in_flight.available_permits() == 0 {
            // 256 operations unanswered: the schedule waits for one (it falls behind the rate).
            waited_for_answers += 1;
        }
        let permit = in_flight.clone().acquire_owned().await.expect("open");
        let user = users[rand::thread_rng().gen_range(0..users.len())].clone();
        devices += 1;
        let device = format!("soak-{devices}");
        tokio::spawn(async move {
            match roll {
                0..=54 => w.heartbeat().await,
                55..=69 => w.list().await,
                70..=79 => {
                    if let Some(s) = w.sign_in(&user, &device).await {
                        w.live.lock().push(s);
                    }
                }
                80..=89 => w.refresh().await,
                _ => w.revoke().await,
            }
            drop(permit);
        });
    }
    // Every operation answered.
    let _ = in_flight.acquire_many(256).await;
    let measured = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    sampler.abort();
    let rss_end: Vec<u64> = pids.iter().map(|&p| rss_kib(p)).collect();
    let records_end_asked = Instant::now();
    let records_end = idp_records(&world.http, &issuer).await;
    let tombstones_end_at_most = world.idp_revokes.tombstones_at_most(records_end_asked);
    // Flat: from the sample at a fifth of the run (caches and pools warm by then) to the end,
    // each process grows by less than 10 % (and 4 MiB: an allocator's arena more or less).
    let samples = samples.lock().clone();
    let warm_at = measured.as_secs() / 5;
    let rss_warm: Vec<u64> = samples
        .iter()
        .find(|s| s["at_secs"].as_u64().unwrap_or(0) >= warm_at)
        .and_then(|s| serde_json::from_value(s["rss_kib"].clone()).ok())
        .unwrap_or_else(|| rss_start.clone());
    let memory_flat = rss_warm
        .iter()
        .zip(&rss_end)
        .all(|(&w, &e)| e <= w + (w / 10).max(4096));

    // The audit.
    let mut problems: Vec<String> = world.tally.failures.lock().clone();
    let mut listed: HashMap<String, Value> = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{registry}/v1/admin/tenants/{tenant}/sessions?limit=1000");
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let page: Value = world
            .http
            .get(url)
            .bearer_auth(&api_key)
            .send()
            .await
            .expect("the admin listing")
            .json()
            .await
            .expect("JSON");
        for s in page["sessions"].as_array().into_iter().flatten() {
            listed.insert(
                s["session_id"].as_str().unwrap_or_default().to_owned(),
                s.clone(),
            );
        }
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
    }
    let revoked: HashMap<String, String> = world.revoked.lock().clone();
    let created = world.created.lock().clone();
    for id in &created {
        match (listed.get(id), revoked.contains_key(id)) {
            (None, _) => problems.push(format!("session {id} created and gone from the listing")),
            (Some(s), true) if s["revoked_reason"] != "revoked_by_user" => {
                problems.push(format!("session {id} revoked by the soak, listed as {s}"))
            }
            (Some(s), false) if !s["revoked_at"].is_null() => {
                problems.push(format!("session {id} never revoked, listed as {s}"))
            }
            _ => {}
        }
    }
    let mut missed = 0u64;
    let mut delivered = 0u64;
    for (victim, user) in &revoked {
        for (s, seen) in &subs {
            if &s.user == user {
                if seen.lock().contains(victim) {
                    delivered += 1;
                } else {
                    missed += 1;
                }
            }
        }
    }
    if missed > 0 {
        problems.push(format!("{missed} revoke deliveries missed by subscribers"));
    }
    let still_open = open.load(Ordering::Relaxed);
    if still_open != subscribers as u64 {
        problems.push(format!("{still_open} of {subscribers} streams still open"));
    }
    let server_errors = world.tally.server_errors.load(Ordering::Relaxed);
    let ok = problems.is_empty() && server_errors == 0;
    println!(
        "{}",
        json!({
            "ok": ok,
            "duration_secs": measured.as_secs_f64(),
            "rate": rate,
            "operations": ops,
            "operations_per_sec": ops as f64 / measured.as_secs_f64(),
            "schedule_waited_for_answers": waited_for_answers,
            "answers": world.tally.by_status.lock().clone(),
            "server_errors": server_errors,
            "subscribers": subscribers,
            "sessions_created": created.len(),
            "sessions_revoked": revoked.len(),
            "revoke_deliveries": delivered,
            "revoke_deliveries_missed": missed,
            "rss_start_kib": rss_start,
            "rss_end_kib": rss_end,
            "rss_warm_kib": rss_warm,
            "rss_warm_at_secs": warm_at,
            "memory_flat": memory_flat,
            "samples": samples,
            "live_sessions_end": world.live.lock().len() + subscribers,
            "idp_grants_end": world.grants.lock().len(),
            "idp_records_start": records_start,
            "idp_records_end": records_end,
            "idp_revokes": world.idp_revokes.answered.lock().len(),
            "idp_tombstones_end_at_most": tombstones_end_at_most,
            "problems": problems,
        })
    );
    if !ok {
        std::process::exit(1);
    }
}

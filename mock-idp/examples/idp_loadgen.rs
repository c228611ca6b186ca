//! Load generator for OpenID providers: refresh-grant and authorization-code-grant throughput and
//! latency over N keep-alive connections. It speaks only standard OAuth 2.0 / OIDC on the wire
//! (discovery, authorization endpoint, token endpoint), so the same binary measures mock-idp and
//! any other provider; `bench/idp.sh` runs it against mock-idp and panva's oidc-provider.
//!
//! ```text
//! cargo run --release -p mock-idp --example idp_loadgen -- \
//!     --issuer http://127.0.0.1:8700/acme --scenario refresh --connections 16 \
//!     --duration-secs 20 --warmup-secs 5 --label mock-idp
//! ```
//!
//! Scenarios (each of the N workers owns one HTTP client, so one connection, and a cookie jar):
//! - `refresh`: each worker signs in once (authorization code + PKCE) for its own refresh token,
//!   then loops on the refresh grant, always presenting the refresh token it received last
//!   (rotation makes each one single-use). One sample = one token request.
//! - `code`: each worker signs in once to get an IdP session, then loops on a whole
//!   authorization: GET the authorization endpoint with a fresh PKCE pair, follow redirects until
//!   the client's redirect URI carries the code, exchange it at the token endpoint. One sample =
//!   one whole iteration.
//!
//! Sign-in: a 200 page with a hidden `auth_request` field (mock-idp's login form) is answered by
//! posting the form with `--username`/`--password`; any provider whose interaction completes by
//! redirects alone (bench/oidc-provider/server.mjs) just has its redirects followed.
//!
//! Any non-200 token response, unexpected status, transport error or malformed body counts as an
//! error (never as a sample). A refresh worker that hits an error signs in again for a new refresh
//! token, since its chain may be broken. Output: one JSON line on stdout.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::{Parser, ValueEnum};
use reqwest::header::LOCATION;
use reqwest::StatusCode;
use serde_json::{json, Value};
use url::Url;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Refresh,
    Code,
}

#[derive(Debug, Clone, Parser)]
#[command(about = "Measure refresh / authorization_code grant throughput of an OpenID provider")]
struct Args {
    /// Issuer URL; endpoints come from its discovery document.
    #[arg(long)]
    issuer: Url,
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Concurrent workers, each with its own keep-alive connection.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 20)]
    duration_secs: u64,
    /// Seconds of load before measuring; their samples are discarded.
    #[arg(long, default_value_t = 5)]
    warmup_secs: u64,
    /// Name of the server in the output.
    #[arg(long, default_value = "server")]
    label: String,
    /// Runtime threads of the load generator (1 leaves the other cores to the server).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[arg(long, default_value = "lanyard-cli")]
    client_id: String,
    /// Any loopback port: both providers match loopback redirect URIs on any port (RFC 8252 §7.3).
    #[arg(long, default_value = "http://127.0.0.1:53682/callback")]
    redirect_uri: Url,
    #[arg(long, default_value = "openid profile email offline_access")]
    scope: String,
    #[arg(long, default_value = "alice")]
    username: String,
    #[arg(long, default_value = "lanyard-dev")]
    password: String,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
}

/// What the workers share: configuration and discovered endpoints.
struct Target {
    args: Args,
    authorization_endpoint: Url,
    token_endpoint: Url,
}

/// A worker's tally. Latencies in microseconds.
#[derive(Default)]
struct Tally {
    samples: Vec<u32>,
    errors: u64,
    http_requests: u64,
    error_messages: Vec<String>,
}

const MAX_MESSAGES_PER_WORKER: usize = 3;

impl Tally {
    fn error(&mut self, e: &anyhow::Error) {
        self.errors += 1;
        if self.error_messages.len() < MAX_MESSAGES_PER_WORKER {
            self.error_messages.push(format!("{e:#}"));
        }
    }
}

struct Worker {
    target: Arc<Target>,
    http: reqwest::Client,
    /// HTTP requests sent (redirect hops included).
    requests: u64,
}

struct Pkce {
    verifier: String,
    challenge: String,
}

fn pkce() -> Pkce {
    let verifier = mock_idp::random::token();
    Pkce {
        challenge: mock_idp::pkce::s256(&verifier),
        verifier,
    }
}

/// The value of the `name="{name}"` input's `value` attribute, and the `action` of the form that
/// contains it.
fn hidden_field<'h>(html: &'h str, name: &str) -> Option<(&'h str, &'h str)> {
    let marker = format!(r#"name="{name}" value=""#);
    let at = html.find(&marker)?;
    let start = at + marker.len();
    let value = &html[start..start + html[start..].find('"')?];
    let form = html[..at].rfind("<form")?;
    let action_at = html[form..at].find(r#"action=""#)? + form + r#"action=""#.len();
    let action = &html[action_at..action_at + html[action_at..].find('"')?];
    Some((value, action))
}

impl Worker {
    fn new(target: Arc<Target>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(target.args.timeout_secs))
            .build()?;
        Ok(Self {
            target,
            http,
            requests: 0,
        })
    }

    /// Runs an authorization request to the end: the code and the PKCE verifier that goes with it.
    async fn authorize(&mut self) -> anyhow::Result<(String, String)> {
        let target = self.target.clone();
        let args = &target.args;
        let p = pkce();
        let state = mock_idp::random::id();
        let mut url = self.target.authorization_endpoint.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &args.client_id)
            .append_pair("redirect_uri", args.redirect_uri.as_str())
            .append_pair("scope", &args.scope)
            .append_pair("state", &state)
            .append_pair("nonce", &mock_idp::random::id())
            .append_pair("code_challenge", &p.challenge)
            .append_pair("code_challenge_method", "S256");
        let mut res = self.get(url.clone()).await?;
        for _ in 0..10 {
            let status = res.status();
            if status.is_redirection() {
                let loc = res
                    .headers()
                    .get(LOCATION)
                    .ok_or_else(|| anyhow!("{status} without Location"))?
                    .to_str()?;
                let next = url.join(loc).context("Location is not a URL")?;
                if next.path() == args.redirect_uri.path()
                    && next.host() == args.redirect_uri.host()
                {
                    let q: HashMap<_, _> = next.query_pairs().collect();
                    if let Some(err) = q.get("error") {
                        bail!(
                            "authorization error {err}: {}",
                            q.get("error_description").cloned().unwrap_or_default()
                        );
                    }
                    if q.get("state").map(|s| s.as_ref()) != Some(state.as_str()) {
                        bail!("state mismatch in {next}");
                    }
                    let code = q
                        .get("code")
                        .ok_or_else(|| anyhow!("redirect without code: {next}"))?;
                    return Ok((code.to_string(), p.verifier));
                }
                url = next;
                res = self.get(url.clone()).await?;
            } else if status == StatusCode::OK {
                let body = res.text().await?;
                let (id, action) = hidden_field(&body, "auth_request")
                    .ok_or_else(|| anyhow!("200 page at {url} is not a login form"))?;
                let action = url.join(action)?;
                self.requests += 1;
                res = self
                    .http
                    .post(action.clone())
                    .form(&[
                        ("auth_request", id),
                        ("username", args.username.as_str()),
                        ("password", args.password.as_str()),
                    ])
                    .send()
                    .await?;
                url = action;
            } else {
                let body = res.text().await.unwrap_or_default();
                bail!("{status} from {url}: {}", truncate(&body));
            }
        }
        bail!("too many redirects")
    }

    async fn get(&mut self, url: Url) -> reqwest::Result<reqwest::Response> {
        self.requests += 1;
        self.http.get(url).send().await
    }

    /// A token request; anything but 200 with a JSON object carrying `access_token` is an error.
    async fn token(&mut self, form: &[(&str, &str)]) -> anyhow::Result<Value> {
        self.requests += 1;
        let res = self
            .http
            .post(self.target.token_endpoint.clone())
            .form(form)
            .send()
            .await?;
        let status = res.status();
        let body = res.bytes().await?;
        if status != StatusCode::OK {
            bail!(
                "token endpoint answered {status}: {}",
                truncate(&String::from_utf8_lossy(&body))
            );
        }
        let json: Value = serde_json::from_slice(&body).context("token response is not JSON")?;
        if json.get("access_token").and_then(Value::as_str).is_none() {
            bail!(
                "token response without access_token: {}",
                truncate(&json.to_string())
            );
        }
        Ok(json)
    }

    async fn exchange(&mut self, code: &str, verifier: &str) -> anyhow::Result<Value> {
        let target = self.target.clone();
        let args = &target.args;
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", args.redirect_uri.as_str()),
            ("client_id", args.client_id.as_str()),
            ("code_verifier", verifier),
        ])
        .await
    }

    /// One full authorization + code exchange; the token response.
    async fn code_flow(&mut self) -> anyhow::Result<Value> {
        let (code, verifier) = self.authorize().await?;
        self.exchange(&code, &verifier).await
    }

    async fn fresh_refresh_token(&mut self) -> anyhow::Result<String> {
        let tokens = self.code_flow().await?;
        refresh_token_of(&tokens)
    }

    async fn refresh(&mut self, rt: &str) -> anyhow::Result<String> {
        let client_id = self.target.args.client_id.clone();
        let tokens = self
            .token(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", rt),
                ("client_id", client_id.as_str()),
            ])
            .await?;
        refresh_token_of(&tokens)
    }
}

fn refresh_token_of(tokens: &Value) -> anyhow::Result<String> {
    tokens
        .get("refresh_token")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("token response without refresh_token"))
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Set-up: one sign-in, for a refresh token (refresh) or an IdP session (code). Not measured;
/// a failure here aborts the run.
async fn set_up(target: Arc<Target>) -> anyhow::Result<(Worker, Option<String>)> {
    let mut w = Worker::new(target)?;
    let rt = match w.target.args.scenario {
        Scenario::Refresh => Some(w.fresh_refresh_token().await.context("set-up sign-in")?),
        Scenario::Code => {
            w.code_flow().await.context("set-up sign-in")?;
            None
        }
    };
    Ok((w, rt))
}

/// Load until `end`; only iterations started at or after `measure_from` count.
async fn load(mut w: Worker, mut rt: Option<String>, measure_from: Instant, end: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut requests_at_measure = None;
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        let measured = t0 >= measure_from;
        if measured && requests_at_measure.is_none() {
            requests_at_measure = Some(w.requests);
        }
        let outcome = match &rt {
            Some(current) => w.refresh(current).await.map(|next| rt = Some(next)),
            None => w.code_flow().await.map(drop),
        };
        match outcome {
            Ok(()) if measured => tally.samples.push(micros(t0.elapsed())),
            Ok(()) => {}
            Err(e) => {
                if measured {
                    tally.error(&e);
                }
                if rt.is_some() {
                    // The chain may be broken (reuse detection revokes it): start a new one.
                    match w.fresh_refresh_token().await {
                        Ok(new) => rt = Some(new),
                        Err(e) => {
                            if measured {
                                tally.error(&e.context("re-sign-in after an error"));
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
        }
    }
    tally.http_requests = w.requests - requests_at_measure.unwrap_or(w.requests);
    tally
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

async fn discover(args: &Args) -> anyhow::Result<(Url, Url)> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        args.issuer.as_str().trim_end_matches('/')
    );
    let doc: Value = reqwest::get(&url)
        .await?
        .error_for_status()?
        .json()
        .await
        .with_context(|| format!("discovery document at {url}"))?;
    let endpoint = |name: &str| -> anyhow::Result<Url> {
        let s = doc
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("discovery has no {name}"))?;
        Ok(Url::parse(s)?)
    };
    Ok((
        endpoint("authorization_endpoint")?,
        endpoint("token_endpoint")?,
    ))
}

async fn run(args: Args) -> anyhow::Result<Value> {
    let (authorization_endpoint, token_endpoint) = discover(&args).await?;
    let target = Arc::new(Target {
        args,
        authorization_endpoint,
        token_endpoint,
    });
    let n = target.args.connections.max(1);
    let mut setups = Vec::with_capacity(n);
    for _ in 0..n {
        setups.push(tokio::spawn(set_up(target.clone())));
    }
    let mut workers = Vec::with_capacity(n);
    for s in setups {
        workers.push(s.await??);
    }
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(target.args.warmup_secs);
    let end = measure_from + Duration::from_secs(target.args.duration_secs);
    let handles: Vec<_> = workers
        .into_iter()
        .map(|(w, rt)| tokio::spawn(load(w, rt, measure_from, end)))
        .collect();
    let mut samples = Vec::new();
    let (mut errors, mut http_requests) = (0u64, 0u64);
    let mut messages = Vec::new();
    for h in handles {
        let t = h.await?;
        samples.extend(t.samples);
        errors += t.errors;
        http_requests += t.http_requests;
        messages.extend(t.error_messages);
    }
    // In-flight iterations started before `end` count, so measure until the last one finished.
    let measured = measure_from.elapsed().as_secs_f64().max(1e-9);
    if errors > 0 {
        eprintln!("idp_loadgen: {errors} errors; the first ones:");
    }
    for m in messages.iter().take(10) {
        eprintln!("idp_loadgen: error: {m}");
    }
    samples.sort_unstable();
    let requests = samples.len() as u64;
    let args = &target.args;
    Ok(json!({
        "server": args.label,
        "issuer": args.issuer.as_str().trim_end_matches('/'),
        "scenario": match args.scenario { Scenario::Refresh => "refresh", Scenario::Code => "code" },
        "connections": n,
        "loadgen_threads": args.threads,
        "duration_secs": round2(measured),
        "requests": requests,
        "errors": errors,
        "http_requests": http_requests,
        "rps": round2(requests as f64 / measured),
        "p50_ms": round2(percentile(&samples, 50.0)),
        "p90_ms": round2(percentile(&samples, 90.0)),
        "p99_ms": round2(percentile(&samples, 99.0)),
        "max_ms": round2(samples.last().map_or(0.0, |m| f64::from(*m) / 1000.0)),
    }))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    let result = rt.block_on(run(args))?;
    println!("{result}");
    Ok(())
}

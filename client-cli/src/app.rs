//! The commands.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use account_store::{AccountMeta, AccountStore, BackendChoice, ItemKind, StoreConfig};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use session_core::{
    DeviceIdentity, LoginMethod, LoginRequest, LogoutScope, ManagerOptions, RevokeTarget,
    SessionError, SessionManager,
};

use crate::cli::{Cli, Command, ConfigAction, TokenKind};
use crate::color::Paint;
use crate::config::{
    Dirs, FileConfig, DEFAULT_CLIENT_ID, DEFAULT_IDP, DEFAULT_REGISTRY, DEFAULT_TENANT, KEYS,
};
use crate::exit::CliError;
use crate::select::{self, label, Rule};

/// Everything a command needs.
pub struct Context {
    pub dirs: Dirs,
    pub config: FileConfig,
    pub profile: String,
    pub json: bool,
    pub color: bool,
    store_backend: Option<BackendChoice>,
    refresh_margin: Duration,
    pub no_browser: bool,
}

impl Context {
    pub fn from_env(cli: &Cli) -> Result<Self, CliError> {
        let dirs = Dirs::resolve(cli.home.as_deref())?;
        let config = dirs.load()?;
        let profile_ok = !cli.profile.is_empty()
            && cli.profile.len() <= 64
            && cli
                .profile
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !profile_ok {
            return Err(CliError::usage(
                format!(
                    "'{}' is not a profile name (letters, digits, '-', '_')",
                    cli.profile
                ),
                None,
            ));
        }
        Ok(Self {
            dirs,
            config,
            profile: cli.profile.clone(),
            json: cli.json,
            color: !cli.json && crate::color::Paint::stdout().enabled(),
            store_backend: cli.store_backend,
            refresh_margin: Duration::from_secs(cli.refresh_margin_secs),
            no_browser: cli.no_browser,
        })
    }

    fn store(&self) -> Result<AccountStore, CliError> {
        let backend = match (self.store_backend, &self.config.store_backend) {
            (Some(b), _) => b,
            (None, Some(b)) => BackendChoice::parse(b)
                .ok_or_else(|| CliError::usage(format!("unknown store backend '{b}'"), None))?,
            (None, None) => BackendChoice::Auto,
        };
        let mut cfg = StoreConfig::new(self.dirs.profile(&self.profile), self.profile.clone())
            .backend(backend);
        if let Ok(p) = std::env::var("LANYARD_VAULT_PASSPHRASE") {
            cfg = cfg.passphrase(SecretString::from(p));
        }
        Ok(AccountStore::open(cfg)?)
    }

    /// This profile's device identity, created on first use.
    fn device(&self) -> Result<DeviceIdentity, CliError> {
        let path = self.dirs.profile(&self.profile).join("device.json");
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                if let (Some(id), Some(name)) = (v["id"].as_str(), v["name"].as_str()) {
                    return Ok(DeviceIdentity {
                        id: id.into(),
                        name: name.into(),
                        platform: std::env::consts::OS.into(),
                    });
                }
            }
        }
        let id = format!("dev-{:016x}", rand::random::<u64>());
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "this machine".into());
        let name = if self.profile == "default" {
            host
        } else {
            format!("{host} ({})", self.profile)
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(CliError::other)?;
        }
        std::fs::write(&path, json!({"id": id, "name": name}).to_string())
            .map_err(CliError::other)?;
        Ok(DeviceIdentity {
            id,
            name,
            platform: std::env::consts::OS.into(),
        })
    }

    pub(crate) fn manager(&self) -> Result<SessionManager, CliError> {
        self.manager_with(None)
    }

    /// The manager, asking the registry for sessions of `session_duration` when it signs in.
    pub(crate) fn manager_with(
        &self,
        session_duration: Option<Duration>,
    ) -> Result<SessionManager, CliError> {
        let mut options = ManagerOptions::new(
            self.device()?,
            Arc::new(lanyard_clock::SystemClock),
            self.dirs.profile(&self.profile).join("locks"),
        );
        options.refresh_margin = self.refresh_margin;
        options.client_id = self
            .config
            .client_id
            .clone()
            .unwrap_or_else(|| DEFAULT_CLIENT_ID.into());
        if let Some(d) = session_duration {
            options.session_duration = d;
        }
        Ok(SessionManager::new(self.store()?, options))
    }

    pub(crate) fn out(&self, human: impl FnOnce() -> String, json: Value) -> Result<(), CliError> {
        let mut stdout = std::io::stdout().lock();
        let text = if self.json {
            serde_json::to_string_pretty(&json).map_err(CliError::other)?
        } else {
            human()
        };
        writeln!(stdout, "{text}").map_err(CliError::other)
    }
}

pub(crate) fn when(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".into())
}

pub(crate) fn account_json(a: &AccountMeta, active: bool) -> Value {
    json!({
        "account": label(a),
        "key": a.key.as_str(),
        "issuer": a.id.issuer.as_str(),
        "subject": a.id.subject.as_str(),
        "email": a.email,
        "tenant": a.tenant,
        "guest": a.is_guest,
        "active": active,
        "registry": a.registry_url,
        "last_used_at": a.last_used_at.unix_timestamp(),
    })
}

pub(crate) async fn chosen(
    m: &SessionManager,
    flag: Option<&str>,
) -> Result<(AccountMeta, Rule), CliError> {
    let accounts = m.accounts().await?;
    let active = m.active().await?;
    select::choose(&accounts, flag, active.as_ref())
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    let ctx = Context::from_env(&cli)?;
    match cli.command {
        Command::Login {
            tenant,
            idp,
            registry,
            timeout,
            guest: true,
            session_duration,
            ..
        } => crate::guest::login(&ctx, tenant, idp, registry, timeout, session_duration).await,
        Command::Login {
            tenant,
            idp,
            registry,
            device_code,
            timeout,
            session_duration,
            ..
        } => {
            login(
                &ctx,
                tenant,
                idp,
                registry,
                device_code,
                timeout,
                session_duration,
            )
            .await
        }
        Command::Upgrade {
            account,
            username,
            email,
            name,
        } => crate::guest::upgrade(&ctx, account.as_deref(), username, email, name).await,
        Command::Accounts => accounts(&ctx).await,
        Command::Switch { account } => switch(&ctx, account.as_deref()).await,
        Command::Status { account } => status(&ctx, account.as_deref()).await,
        Command::Token {
            account,
            kind,
            check_interval_secs,
        } => {
            token(
                &ctx,
                account.as_deref(),
                kind,
                Duration::from_secs(check_interval_secs),
            )
            .await
        }
        Command::Devices { account } => devices(&ctx, account.as_deref()).await,
        Command::Revoke {
            session_id,
            others,
            all,
            account,
        } => revoke(&ctx, account.as_deref(), session_id, others, all).await,
        Command::Logout {
            account,
            all_accounts,
            everywhere,
        } => logout(&ctx, account.as_deref(), all_accounts, everywhere).await,
        Command::Watch { account } => crate::watch::run(&ctx, account.as_deref()).await,
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "lanyard", &mut std::io::stdout());
            Ok(())
        }
        Command::Config { action } => config(&ctx, action),
    }
}

fn config(ctx: &Context, action: ConfigAction) -> Result<(), CliError> {
    match action {
        ConfigAction::Get { key: Some(key) } => {
            if !KEYS.contains(&key.as_str()) {
                return Err(CliError::usage(
                    format!("unknown key '{key}'"),
                    Some("keys: idp, registry, tenant, client_id, store_backend"),
                ));
            }
            let value = ctx.config.get(&key).map(str::to_owned);
            ctx.out(|| value.clone().unwrap_or_default(), json!({ key: value }))
        }
        ConfigAction::Get { key: None } => {
            let all: serde_json::Map<String, Value> = KEYS
                .iter()
                .map(|k| ((*k).to_owned(), json!(ctx.config.get(k))))
                .collect();
            ctx.out(
                || {
                    KEYS.iter()
                        .map(|k| format!("{k} = {}", ctx.config.get(k).unwrap_or("(default)")))
                        .collect::<Vec<_>>()
                        .join("\n")
                },
                Value::Object(all),
            )
        }
        ConfigAction::Set { key, value } => {
            let mut cfg = ctx.config.clone();
            cfg.set(&key, value).map_err(|e| CliError::usage(e, None))?;
            ctx.dirs.save(&cfg)?;
            Ok(())
        }
    }
}

struct Spinner(Option<indicatif::ProgressBar>);

impl Spinner {
    fn start(message: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(100));
        Self(Some(bar))
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// Opens the system browser unless there is no display.
fn open_browser(url: &url::Url) -> bool {
    let has_display = cfg!(target_os = "macos")
        || cfg!(windows)
        || std::env::var_os("DISPLAY").is_some()
        || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if !has_display || std::env::var_os("SSH_CONNECTION").is_some() {
        return false;
    }
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    std::process::Command::new(opener)
        .arg(url.as_str())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_ok()
}

async fn login(
    ctx: &Context,
    tenant: Option<String>,
    idp: Option<String>,
    registry: Option<String>,
    device_code: bool,
    timeout: u64,
    session_duration: Duration,
) -> Result<(), CliError> {
    let request = login_request(ctx, tenant, idp, registry);
    let m = ctx.manager_with(Some(session_duration))?;
    let timeout = Duration::from_secs(timeout);
    let use_device = device_code || (!ctx.no_browser && !open_browser_possible());
    let meta = if use_device {
        let prompt = |code: &str, uri: &str, complete: Option<&str>| {
            eprintln!("To sign in, open {uri} on any device and enter the code {code}");
            if let Some(c) = complete {
                eprintln!("(or open {c})");
            }
        };
        let _spin = Spinner::start("Waiting for you to approve this device…");
        m.login(request, LoginMethod::DeviceCode(&prompt, timeout))
            .await?
    } else {
        let _spin = Spinner::start("Waiting for the sign-in to complete in your browser…");
        m.login(request, LoginMethod::Browser(browser_prompt(ctx), timeout))
            .await?
    };
    tell_session_cap(&m, &meta, session_duration);
    crate::vault_notice::once_per_profile(ctx, &m.store().backend_info());
    ctx.out(
        || {
            format!(
                "Signed in as {} ({})",
                label(&meta),
                meta.email.clone().unwrap_or_default()
            )
        },
        account_json(&meta, true),
    )
}

/// After a sign-in: when the tenant's absolute limit cut the session shorter than asked, say so
/// (on stderr: stdout stays the documented output).
pub(crate) fn tell_session_cap(m: &SessionManager, meta: &AccountMeta, asked: Duration) {
    let note = m.session_note(&meta.key);
    let (Some(ends), Some(checked)) = (note.expires_at, note.last_checked_at) else {
        return;
    };
    let asked_secs = i64::try_from(asked.as_secs()).unwrap_or(i64::MAX);
    // A minute of slack: the registry's clock and ours.
    if ends - checked < asked_secs - 60 {
        eprintln!(
            "note: the session ends {} — the tenant's limit, shorter than the {} asked for; sign in again then",
            when(ends),
            human_duration(asked_secs)
        );
    }
}

fn human_duration(secs: i64) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{} days", s / 86_400),
        s if s % 3600 == 0 => format!("{} hours", s / 3600),
        s => format!("{} minutes", s / 60),
    }
}

/// How a step-up sign-in (RFC 9470) happens: the browser where one can open, else the device
/// flow; the person is told why they are asked again.
pub(crate) fn step_up_method(ctx: &Context, timeout: Duration) -> LoginMethod<'static> {
    if !ctx.no_browser && !open_browser_possible() {
        LoginMethod::DeviceCode(&step_up_device_prompt, timeout)
    } else if ctx.no_browser {
        LoginMethod::Browser(
            &BrowserPrompt {
                open: false,
                step_up: true,
            },
            timeout,
        )
    } else {
        LoginMethod::Browser(
            &BrowserPrompt {
                open: true,
                step_up: true,
            },
            timeout,
        )
    }
}

fn step_up_device_prompt(code: &str, uri: &str, complete: Option<&str>) {
    eprintln!("This needs a recent sign-in. Confirm it is you: open {uri} on any device and enter the code {code}");
    if let Some(c) = complete {
        eprintln!("(or open {c})");
    }
}

/// What `login` (and `login --guest`) sign in to: flags over config over defaults.
pub(crate) fn login_request(
    ctx: &Context,
    tenant: Option<String>,
    idp: Option<String>,
    registry: Option<String>,
) -> LoginRequest {
    let tenant = tenant
        .or(ctx.config.tenant.clone())
        .unwrap_or_else(|| DEFAULT_TENANT.into());
    let idp = idp
        .or(ctx.config.idp.clone())
        .unwrap_or_else(|| DEFAULT_IDP.into());
    let registry = registry
        .or(ctx.config.registry.clone())
        .unwrap_or_else(|| DEFAULT_REGISTRY.into());
    LoginRequest {
        issuer: format!("{}/{tenant}", idp.trim_end_matches('/')),
        client_id: ctx
            .config
            .client_id
            .clone()
            .unwrap_or_else(|| DEFAULT_CLIENT_ID.into()),
        registry_url: Some(registry),
        tenant: Some(tenant),
    }
}

/// Hands the authorization URL to the person: printed, and opened in a browser where possible
/// (not with `--no-browser` / `LANYARD_NO_BROWSER`).
pub(crate) struct BrowserPrompt {
    open: bool,
    /// A step-up: the person is told why they are asked again.
    step_up: bool,
}

impl session_core::oidc::AuthPrompt for BrowserPrompt {
    fn open(&self, url: &url::Url) {
        if self.step_up {
            eprintln!("This needs a recent sign-in; sign in again to confirm it is you.");
        }
        eprintln!("Open this URL to sign in: {url}");
        if !(self.open && open_browser(url)) {
            eprintln!("(no browser was opened: open the URL yourself)");
        }
    }
}

/// The sign-in prompt of `ctx`.
pub(crate) fn browser_prompt(ctx: &Context) -> &'static BrowserPrompt {
    if ctx.no_browser {
        &BrowserPrompt {
            open: false,
            step_up: false,
        }
    } else {
        &BrowserPrompt {
            open: true,
            step_up: false,
        }
    }
}

fn open_browser_possible() -> bool {
    cfg!(target_os = "macos")
        || cfg!(windows)
        || ((std::env::var_os("DISPLAY").is_some()
            || std::env::var_os("WAYLAND_DISPLAY").is_some())
            && std::env::var_os("SSH_CONNECTION").is_none())
}

async fn accounts(ctx: &Context) -> Result<(), CliError> {
    let m = ctx.manager()?;
    let all = m.accounts().await?;
    let active = m.active().await?.map(|a| a.key);
    let mut rows = Vec::new();
    for a in &all {
        let has_session = m
            .store()
            .secrets()
            .get(&a.key, ItemKind::SessionToken)?
            .is_some();
        rows.push((a, active.as_ref() == Some(&a.key), has_session));
    }
    let json = Value::Array(
        rows.iter()
            .map(|(a, act, s)| {
                let mut v = account_json(a, *act);
                v["session"] = json!(if *s { "stored" } else { "signed_out" });
                v
            })
            .collect(),
    );
    ctx.out(
        || {
            if rows.is_empty() {
                return "No accounts. Sign in with `lanyard login --tenant acme`.".into();
            }
            let mut out = format!(
                "{:<3} {:<2} {:<24} {:<28} {:<6} {:<11} {}",
                "#", "", "ACCOUNT", "EMAIL", "GUEST", "SESSION", "LAST USED"
            );
            let paint = Paint::new(ctx.color);
            for (i, (a, act, s)) in rows.iter().enumerate() {
                out.push_str(&format!(
                    "\n{:<3} {} {} {:<28} {:<6} {} {}",
                    i + 1,
                    paint.padded(if *act { "*" } else { "" }, 2, Paint::good),
                    paint.padded(
                        &label(a),
                        24,
                        if *act { Paint::strong } else { Paint::unstyled }
                    ),
                    a.email.clone().unwrap_or_default(),
                    if a.is_guest { "yes" } else { "no" },
                    if *s {
                        paint.padded("stored", 11, Paint::good)
                    } else {
                        paint.padded("signed out", 11, Paint::bad)
                    },
                    when(a.last_used_at.unix_timestamp())
                ));
            }
            out
        },
        json,
    )
}

async fn switch(ctx: &Context, query: Option<&str>) -> Result<(), CliError> {
    let m = ctx.manager()?;
    let (all, active) = m.store().index().snapshot()?;
    let target = match query {
        Some(q) => select::find(&all, q)?.clone(),
        None => crate::picker::pick(&all, active.as_ref())?.clone(),
    };
    m.switch(&target.key).await?;
    ctx.out(
        || format!("Now using {}", label(&target)),
        account_json(&target, true),
    )
}

async fn status(ctx: &Context, flag: Option<&str>) -> Result<(), CliError> {
    let m = ctx.manager()?;
    let (a, rule) = chosen(&m, flag).await?;
    let backend = m.store().backend_info();
    crate::vault_notice::once_per_profile(ctx, &backend);
    let has_session = m
        .store()
        .secrets()
        .get(&a.key, ItemKind::SessionToken)?
        .is_some();
    // A revoke the registry reports wipes this device's tokens at once (in the manager).
    let shown = if a.registry_url.is_none() {
        SessionShown::NoRegistry
    } else if !has_session {
        SessionShown::SignedOut(None)
    } else {
        match m.verify_session(&a.key).await {
            Ok(check) => SessionShown::Valid {
                until: check.expires_at,
            },
            Err(SessionError::ReauthenticationRequired { reason, .. }) => {
                SessionShown::SignedOut(Some(reason))
            }
            Err(e) if e.is_transient() => SessionShown::Unreachable(e),
            Err(e) => return Err(e.into()),
        }
    };
    let session = shown.text();
    let valid_until = match &shown {
        SessionShown::Valid { until } => Some(*until),
        _ => None,
    };
    let why = match &rule {
        Rule::Flag => "--account / LANYARD_ACCOUNT".to_owned(),
        Rule::PinFile(p) => format!("pinned by {p}"),
        Rule::Active => "the profile's active account".to_owned(),
    };
    let json = json!({
        "account": account_json(&a, rule == Rule::Active),
        "chosen_by": rule,
        "session": session,
        "session_valid_until": valid_until,
        "access_token_expires_at": a.access_token_expires_at,
        "can_refresh": !a.no_refresh_token,
        "store": {"backend": backend.name, "location": backend.location},
    });
    let paint = Paint::new(ctx.color);
    let session_text = match &shown {
        SessionShown::Valid { .. } => paint.good(&session),
        SessionShown::SignedOut(_) => paint.bad(&session),
        SessionShown::NoRegistry | SessionShown::Unreachable(_) => paint.warn(&session),
    };
    ctx.out(
        || {
            format!(
                "Account:  {} ({})\nChosen:   {why}\nSession:  {session_text}{}\nToken:    access token expires {}{}\nStore:    {} — {}",
                paint.strong(&label(&a)),
                a.email.clone().unwrap_or_default(),
                valid_until.map(|t| format!(", valid until {}", when(t))).unwrap_or_default(),
                a.access_token_expires_at.map(when).unwrap_or_else(|| "-".into()),
                if a.no_refresh_token {
                    paint.warn(" (no refresh token: the session cannot refresh; sign in again when it expires)")
                } else {
                    String::new()
                },
                backend.name,
                backend.location
            )
        },
        json,
    )?;
    match shown {
        SessionShown::SignedOut(_) => {
            Err(CliError::signed_out(format!("{} is signed out", label(&a))))
        }
        // The state shown is unknown: say so in the exit code too (README: 4).
        SessionShown::Unreachable(e) => Err(e.into()),
        SessionShown::Valid { .. } | SessionShown::NoRegistry => Ok(()),
    }
}

/// What `status` learnt of the session, and how it says it.
enum SessionShown {
    NoRegistry,
    /// Signed out here (with the registry's reason when it just said so).
    SignedOut(Option<String>),
    Valid {
        until: i64,
    },
    Unreachable(SessionError),
}

impl SessionShown {
    fn text(&self) -> String {
        match self {
            SessionShown::NoRegistry => "no registry session".into(),
            SessionShown::SignedOut(None) => "signed out".into(),
            SessionShown::SignedOut(Some(reason)) => format!("signed out ({reason})"),
            SessionShown::Valid { .. } => "valid".into(),
            SessionShown::Unreachable(e) => format!("unknown: registry unreachable ({e})"),
        }
    }
}

/// How long `lanyard token` waits for the registry's answer to its session check.
const TOKEN_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

async fn token(
    ctx: &Context,
    flag: Option<&str>,
    kind: TokenKind,
    check_interval: Duration,
) -> Result<(), CliError> {
    let m = ctx.manager()?;
    let (a, _) = chosen(&m, flag).await?;
    // A device that runs no `watch` still hears of a revoke within a minute of its next use;
    // a recent check (or an unreachable registry, asked once per interval) costs nothing.
    if m.store()
        .secrets()
        .get(&a.key, ItemKind::SessionToken)?
        .is_some()
    {
        m.check_session_if_stale(&a.key, check_interval, TOKEN_CHECK_TIMEOUT)
            .await?;
    }
    let value = match kind {
        TokenKind::Access => m.access_token(Some(&a.key)).await?,
        TokenKind::Id => m
            .store()
            .secrets()
            .get(&a.key, ItemKind::IdToken)?
            .ok_or_else(|| CliError::signed_out(format!("{} has no ID token", label(&a))))?,
        TokenKind::SessionJwt => {
            signed_in(&m, &a)?;
            m.verify_session(&a.key).await?;
            m.store()
                .secrets()
                .get(&a.key, ItemKind::SessionJwt)?
                .ok_or_else(|| CliError::signed_out(format!("{} is signed out", label(&a))))?
        }
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", value.expose_secret()).map_err(CliError::other)
}

/// That `a` has a registry session on this device (else: a usage error or signed out).
pub(crate) fn signed_in(m: &SessionManager, a: &AccountMeta) -> Result<(), CliError> {
    if a.registry_url.is_none() {
        return Err(CliError::usage("this account has no registry", None));
    }
    if m.store()
        .secrets()
        .get(&a.key, ItemKind::SessionToken)?
        .is_none()
    {
        return Err(CliError::signed_out(format!("{} is signed out", label(a))));
    }
    Ok(())
}

async fn devices(ctx: &Context, flag: Option<&str>) -> Result<(), CliError> {
    let m = ctx.manager()?;
    let (a, _) = chosen(&m, flag).await?;
    signed_in(&m, &a)?;
    let sessions = m.list_sessions(&a.key).await?;
    ctx.out(
        || {
            let mut out = format!(
                "{:<2} {:<34} {:<28} {:<8} {}",
                "", "SESSION", "DEVICE", "PLATFORM", "LAST SEEN"
            );
            for s in &sessions {
                out.push_str(&format!(
                    "\n{:<2} {:<34} {:<28} {:<8} {}",
                    if s.current { "*" } else { "" },
                    s.session_id,
                    s.device.name,
                    s.device.platform,
                    when(s.device.last_seen)
                ));
            }
            out
        },
        serde_json::to_value(&sessions).map_err(CliError::other)?,
    )
}

/// How long a step-up sign-in may take.
const STEP_UP_TIMEOUT: Duration = Duration::from_secs(300);

async fn revoke(
    ctx: &Context,
    flag: Option<&str>,
    session_id: Option<String>,
    others: bool,
    all: bool,
) -> Result<(), CliError> {
    let target = match (session_id, others, all) {
        (Some(id), false, false) => RevokeTarget::Session(id),
        (None, true, false) => RevokeTarget::Others,
        (None, false, true) => RevokeTarget::All,
        _ => {
            return Err(CliError::usage(
                "give a SESSION_ID, --others or --all",
                Some("see `lanyard devices`"),
            ))
        }
    };
    let m = ctx.manager()?;
    let (a, _) = chosen(&m, flag).await?;
    signed_in(&m, &a)?;
    let revoked = m
        .revoke_sessions(&a.key, target, Some(step_up_method(ctx, STEP_UP_TIMEOUT)))
        .await?;
    ctx.out(
        || format!("Revoked {} session(s)", revoked.len()),
        json!({"revoked": revoked}),
    )
}

async fn logout(
    ctx: &Context,
    flag: Option<&str>,
    all_accounts: bool,
    everywhere: bool,
) -> Result<(), CliError> {
    let m = ctx.manager()?;
    let scope = if all_accounts {
        LogoutScope::Device
    } else {
        let (a, _) = chosen(&m, flag).await?;
        if everywhere {
            LogoutScope::Everywhere(a.key)
        } else {
            LogoutScope::Account(a.key)
        }
    };
    let report = if matches!(scope, LogoutScope::Everywhere(_)) {
        m.logout_with_step_up(scope, Some(step_up_method(ctx, STEP_UP_TIMEOUT)))
            .await?
    } else {
        m.logout(scope).await?
    };
    for what in &report.not_revoked {
        eprintln!("warning: could not revoke {what}; it was removed from this device anyway");
    }
    ctx.out(
        || format!("Signed out of {} account(s)", report.removed.len()),
        json!({"removed": report.removed.iter().map(|k| k.as_str()).collect::<Vec<_>>(), "not_revoked": report.not_revoked}),
    )
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::other(e)
    }
}

//! The registry client: trade an ID token for a device session, authenticate it, list and
//! revoke sessions, and follow the account's event stream (SSE, resuming with Last-Event-ID).
//! Requests and answers are `registry-api`'s types, the ones the registry serves: a renamed
//! field fails to compile here instead of reading as absent.

use futures_util::StreamExt;
use registry_api::{
    AuthenticateRequest, AuthenticateResponse, CreateSessionRequest, Credential, DeviceRequest,
    ErrorBody, EventData, ReauthenticateRequest, RevokeRequest, RevokeResponse, SessionList,
    SessionResponse, SessionView, UpgradeSessionRequest,
};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

use crate::error::SessionError;

/// This device, as the registry records it.
#[derive(Debug, Clone)]
pub struct DeviceIdentity {
    pub id: String,
    pub name: String,
    pub platform: String,
}

impl From<&DeviceIdentity> for DeviceRequest {
    fn from(d: &DeviceIdentity) -> Self {
        DeviceRequest {
            id: d.id.clone(),
            name: d.name.clone(),
            platform: d.platform.clone(),
        }
    }
}

/// A session just opened: the only answer that carries the session token, which is required.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub session: SessionView,
    pub session_token: Credential,
    pub session_jwt: Credential,
}

/// What the stream said happened, with the SSE id to resume from.
pub type RegistryEvent = EventData;

#[derive(Clone)]
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
}

/// The registry's `error` codes that say the bearer credential itself is gone or bad: the
/// session is over (or was never this registry's), so the account is signed out here. Any
/// other 401 — an ID token refused by `POST /v1/sessions`, a code this client does not know —
/// says nothing of the session and must not wipe it.
const SESSION_GONE: &[&str] = &[
    "session_revoked",
    "session_expired",
    "session_idle_timeout",
    "session_not_found",
    "malformed_token",
    "missing_token",
    "invalid_session_jwt",
    "session_token_required",
    "unknown_tenant",
];

/// A refusal, by status and the registry's error body (absent when the body is not one).
fn classify(status: reqwest::StatusCode, body: Option<ErrorBody>, account: &str) -> SessionError {
    let ErrorBody {
        error,
        reason,
        error_description: description,
        max_age,
    } = body.unwrap_or_else(|| ErrorBody {
        error: "unknown".to_owned(),
        reason: None,
        error_description: String::new(),
        max_age: None,
    });
    match status.as_u16() {
        // RFC 9470: not a dead session but a demand for a recent sign-in; never a sign-out.
        401 if error == "insufficient_user_authentication" => {
            SessionError::StepUpRequired { max_age }
        }
        401 if SESSION_GONE.contains(&error.as_str()) => SessionError::ReauthenticationRequired {
            account: account.to_owned(),
            reason: format!("the registry says {error}"),
        },
        429 | 500..=599 => SessionError::Transient {
            detail: format!("the registry answered {status} ({error})"),
        },
        code => SessionError::RegistryRefused {
            status: code,
            error,
            reason,
            description,
        },
    }
}

impl RegistryClient {
    /// A client whose requests time out after [`crate::oidc::DEFAULT_HTTP_TIMEOUT`].
    pub fn new(base: &str) -> Self {
        Self::with_timeout(base, crate::oidc::DEFAULT_HTTP_TIMEOUT)
    }

    /// A client whose requests (but the event stream) time out after `timeout`.
    pub fn with_timeout(base: &str, timeout: std::time::Duration) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .unwrap_or_default(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        account: &str,
    ) -> Result<T, SessionError> {
        let res = req
            .send()
            .await
            .map_err(|e| SessionError::transient_with_causes(&e))?;
        let status = res.status();
        let bytes = res.bytes().await.map_err(SessionError::transient)?;
        if !status.is_success() {
            return Err(classify(
                status,
                serde_json::from_slice(&bytes).ok(),
                account,
            ));
        }
        // A success that is not JSON (a captive portal's page, a truncated answer) must not
        // become an empty session that is then stored: it is a failure worth retrying. JSON of
        // another shape is the registry's error (a field missing, say), named.
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| SessionError::Transient {
                detail: format!(
                    "the registry answered {status} with a body that is not JSON ({e})"
                ),
            })?;
        serde_json::from_value(json).map_err(|e| {
            SessionError::Registry(format!("the registry's answer is not as expected: {e}"))
        })
    }

    /// `POST /v1/sessions`: trades a fresh ID token (the registry takes each one once) for a
    /// session of `duration_minutes` (the registry's default when `None`), capped by the
    /// tenant's absolute limit.
    pub async fn create_session(
        &self,
        id_token: &SecretString,
        device: &DeviceIdentity,
        duration_minutes: Option<i64>,
        account: &str,
    ) -> Result<NewSession, SessionError> {
        let request = CreateSessionRequest {
            id_token: id_token.into(),
            device: device.into(),
            session_duration_minutes: duration_minutes,
            tenant: None,
        };
        let answer: SessionResponse = self
            .send(
                self.http.post(self.url("/v1/sessions")).json(&request),
                account,
            )
            .await?;
        let session_token = answer.session_token.ok_or_else(|| {
            SessionError::Registry("the registry's answer lacks session_token".into())
        })?;
        Ok(NewSession {
            session: answer.session,
            session_token,
            session_jwt: answer.session_jwt,
        })
    }

    /// `POST /v1/sessions/reauthenticate` (RFC 9470 step-up): a fresh ID token of the session's
    /// person records a new sign-in time on the session. Only the session token is accepted.
    pub async fn reauthenticate(
        &self,
        token: &SecretString,
        id_token: &SecretString,
        account: &str,
    ) -> Result<SessionResponse, SessionError> {
        self.send(
            self.http
                .post(self.url("/v1/sessions/reauthenticate"))
                .bearer_auth(token.expose_secret())
                .json(&ReauthenticateRequest {
                    id_token: id_token.into(),
                }),
            account,
        )
        .await
    }

    /// Checks (or, with a duration, extends) a session by its session token; the answer has a
    /// fresh session JWT and when the session ends.
    pub async fn authenticate(
        &self,
        token: &SecretString,
        duration_minutes: Option<i64>,
        account: &str,
    ) -> Result<AuthenticateResponse, SessionError> {
        let request = AuthenticateRequest {
            session_token: Some(token.into()),
            session_jwt: None,
            session_duration_minutes: duration_minutes,
        };
        self.send(
            self.http
                .post(self.url("/v1/sessions/authenticate"))
                .json(&request),
            account,
        )
        .await
    }

    /// `POST /v1/sessions/upgrade`: the session of a guest follows its upgrade, proven by a fresh
    /// ID token of the same subject that is no longer a guest's.
    pub async fn upgrade(
        &self,
        token: &SecretString,
        id_token: &SecretString,
        account: &str,
    ) -> Result<SessionResponse, SessionError> {
        self.send(
            self.http
                .post(self.url("/v1/sessions/upgrade"))
                .bearer_auth(token.expose_secret())
                .json(&UpgradeSessionRequest {
                    id_token: id_token.into(),
                }),
            account,
        )
        .await
    }

    /// `GET /v1/sessions`: every live session of the account, the caller's marked `current`.
    pub async fn list(
        &self,
        token: &SecretString,
        account: &str,
    ) -> Result<Vec<SessionView>, SessionError> {
        let list: SessionList = self
            .send(
                self.http
                    .get(self.url("/v1/sessions"))
                    .bearer_auth(token.expose_secret()),
                account,
            )
            .await?;
        Ok(list.sessions)
    }

    /// `POST /v1/sessions/revoke`: one session by id or a scope; returns the ended sessions.
    pub async fn revoke(
        &self,
        token: &SecretString,
        request: &RevokeRequest,
        account: &str,
    ) -> Result<Vec<String>, SessionError> {
        let answer: RevokeResponse = self
            .send(
                self.http
                    .post(self.url("/v1/sessions/revoke"))
                    .bearer_auth(token.expose_secret())
                    .json(request),
                account,
            )
            .await?;
        Ok(answer.revoked)
    }

    /// Opens the event stream; `on_event` sees each event until it returns `false` or the stream
    /// ends. Returns the last event id seen.
    pub async fn follow_events(
        &self,
        token: &SecretString,
        last_event_id: Option<&str>,
        account: &str,
        mut on_event: impl FnMut(RegistryEvent) -> bool,
    ) -> Result<Option<String>, SessionError> {
        let mut req = self
            .http
            .get(self.url("/v1/events"))
            .bearer_auth(token.expose_secret())
            .timeout(std::time::Duration::from_secs(24 * 3600));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let res = req.send().await.map_err(SessionError::transient)?;
        if !res.status().is_success() {
            let status = res.status();
            let body = res.json::<ErrorBody>().await.ok();
            return Err(classify(status, body, account));
        }
        let mut last = last_event_id.map(str::to_owned);
        let mut stream = res.bytes_stream();
        let mut buf = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(SessionError::transient)?;
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                // `id:` and `event:` repeat what `data:` says; a keep-alive comment has no data.
                let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) else {
                    continue;
                };
                let event: EventData = match serde_json::from_str(data) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(account, error = %e, "an event of the registry's stream does not read as an event; skipped");
                        continue;
                    }
                };
                last = Some(event.id.to_string());
                if !on_event(event) {
                    return Ok(last);
                }
            }
        }
        Ok(last)
    }
}

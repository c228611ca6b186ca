//! The registry client: trade an ID token for a device session, authenticate it, list and
//! revoke sessions, and follow the account's event stream (SSE, resuming with Last-Event-ID).

use futures_util::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use crate::error::SessionError;

/// This device, as the registry records it.
#[derive(Debug, Clone)]
pub struct DeviceIdentity {
    pub id: String,
    pub name: String,
    pub platform: String,
}

#[derive(Debug, Clone)]
pub struct RegistrySession {
    pub session_id: String,
    pub session_token: SecretString,
    pub session_jwt: SecretString,
    pub expires_at: i64,
    /// The tenant's absolute limit of this session: no extension goes past it.
    pub absolute_expires_at: Option<i64>,
}

/// A session the registry accepted: a fresh session JWT and when the session ends.
#[derive(Debug, Clone)]
pub struct CheckedSession {
    pub session_jwt: SecretString,
    pub expires_at: i64,
    pub absolute_expires_at: Option<i64>,
    /// When the person last signed in at the IdP, if the registry says.
    pub auth_time: Option<i64>,
}

/// A session after its guest account was upgraded: the same session, a new session JWT.
#[derive(Debug, Clone)]
pub struct UpgradedSession {
    pub session_id: String,
    pub session_jwt: SecretString,
    pub expires_at: i64,
    pub is_guest: bool,
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryEvent {
    pub id: String,
    pub kind: String,
    pub data: Value,
}

#[derive(Clone)]
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
}

fn classify(status: reqwest::StatusCode, body: &Value, account: &str) -> SessionError {
    let detail = body["error"].as_str().unwrap_or("unknown").to_owned();
    match status.as_u16() {
        // RFC 9470: not a dead session but a demand for a recent sign-in; never a sign-out.
        401 if detail == "insufficient_user_authentication" => SessionError::StepUpRequired {
            max_age: body["max_age"].as_i64(),
        },
        401 => SessionError::ReauthenticationRequired {
            account: account.to_owned(),
            reason: format!("the registry says {detail}"),
        },
        429 | 500..=599 => SessionError::Transient {
            detail: format!("the registry answered {status} ({detail})"),
        },
        _ => SessionError::Registry(format!(
            "{status}: {detail}: {}",
            body["error_description"].as_str().unwrap_or_default()
        )),
    }
}

/// A field a success answer must carry; its absence is a registry error naming the field.
fn required_str<'a>(body: &'a Value, pointer: &str) -> Result<&'a str, SessionError> {
    body.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| missing(pointer))
}

fn required_i64(body: &Value, pointer: &str) -> Result<i64, SessionError> {
    body.pointer(pointer)
        .and_then(Value::as_i64)
        .ok_or_else(|| missing(pointer))
}

fn missing(pointer: &str) -> SessionError {
    SessionError::Registry(format!(
        "the registry's answer lacks {}",
        pointer.trim_start_matches('/').replace('/', ".")
    ))
}

/// The session of an authenticate or reauthenticate answer.
fn checked(res: &Value) -> Result<CheckedSession, SessionError> {
    Ok(CheckedSession {
        session_jwt: SecretString::from(required_str(res, "/session_jwt")?.to_owned()),
        expires_at: required_i64(res, "/session/expires_at")?,
        absolute_expires_at: res["session"]["absolute_expires_at"].as_i64(),
        auth_time: res["session"]["auth_time"].as_i64(),
    })
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

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        account: &str,
    ) -> Result<Value, SessionError> {
        let res = req
            .send()
            .await
            .map_err(|e| SessionError::transient_with_causes(&e))?;
        let status = res.status();
        let bytes = res.bytes().await.map_err(SessionError::transient)?;
        if !status.is_success() {
            return Err(classify(
                status,
                &serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                account,
            ));
        }
        // A success that is not JSON (a captive portal's page, a truncated answer) must not
        // become an empty session that is then stored: it is a failure worth retrying.
        serde_json::from_slice(&bytes).map_err(|e| SessionError::Transient {
            detail: format!("the registry answered {status} with a body that is not JSON ({e})"),
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
    ) -> Result<RegistrySession, SessionError> {
        let mut request = json!({
            "id_token": id_token.expose_secret(),
            "device": {"id": device.id, "name": device.name, "platform": device.platform},
        });
        if let Some(d) = duration_minutes {
            request["session_duration_minutes"] = Value::from(d);
        }
        let body = self
            .send(
                self.http
                    .post(format!("{}/v1/sessions", self.base))
                    .json(&request),
                account,
            )
            .await?;
        Ok(RegistrySession {
            session_id: required_str(&body, "/session/session_id")?.to_owned(),
            session_token: SecretString::from(required_str(&body, "/session_token")?.to_owned()),
            session_jwt: SecretString::from(required_str(&body, "/session_jwt")?.to_owned()),
            expires_at: required_i64(&body, "/session/expires_at")?,
            absolute_expires_at: body["session"]["absolute_expires_at"].as_i64(),
        })
    }

    /// `POST /v1/sessions/reauthenticate` (RFC 9470 step-up): a fresh ID token of the session's
    /// person records a new sign-in time on the session. Only the session token is accepted.
    pub async fn reauthenticate(
        &self,
        token: &SecretString,
        id_token: &SecretString,
        account: &str,
    ) -> Result<CheckedSession, SessionError> {
        let res = self
            .send(
                self.http
                    .post(format!("{}/v1/sessions/reauthenticate", self.base))
                    .bearer_auth(token.expose_secret())
                    .json(&json!({"id_token": id_token.expose_secret()})),
                account,
            )
            .await?;
        checked(&res)
    }

    /// Checks (or, with a duration, extends) a session; returns the fresh session JWT and expiry.
    pub async fn authenticate(
        &self,
        token: &SecretString,
        duration_minutes: Option<i64>,
        account: &str,
    ) -> Result<CheckedSession, SessionError> {
        let mut body = json!({"session_token": token.expose_secret()});
        if let Some(d) = duration_minutes {
            body["session_duration_minutes"] = Value::from(d);
        }
        let res = self
            .send(
                self.http
                    .post(format!("{}/v1/sessions/authenticate", self.base))
                    .json(&body),
                account,
            )
            .await?;
        checked(&res)
    }

    /// `POST /v1/sessions/upgrade`: the session of a guest follows its upgrade, proven by a fresh
    /// ID token of the same subject that is no longer a guest's.
    pub async fn upgrade(
        &self,
        token: &SecretString,
        id_token: &SecretString,
        account: &str,
    ) -> Result<UpgradedSession, SessionError> {
        let res = self
            .send(
                self.http
                    .post(format!("{}/v1/sessions/upgrade", self.base))
                    .bearer_auth(token.expose_secret())
                    .json(&json!({"id_token": id_token.expose_secret()})),
                account,
            )
            .await?;
        Ok(UpgradedSession {
            session_id: required_str(&res, "/session/session_id")?.to_owned(),
            session_jwt: SecretString::from(required_str(&res, "/session_jwt")?.to_owned()),
            expires_at: required_i64(&res, "/session/expires_at")?,
            is_guest: res["session"]["is_guest"].as_bool().unwrap_or(true),
        })
    }

    pub async fn list(
        &self,
        token: &SecretString,
        account: &str,
    ) -> Result<Vec<Value>, SessionError> {
        let res = self
            .send(
                self.http
                    .get(format!("{}/v1/sessions", self.base))
                    .bearer_auth(token.expose_secret()),
                account,
            )
            .await?;
        Ok(res["sessions"].as_array().cloned().unwrap_or_default())
    }

    /// `scope` is `current`, `others` or `all`; or give a `session_id`.
    pub async fn revoke(
        &self,
        token: &SecretString,
        scope: Option<&str>,
        session_id: Option<&str>,
        account: &str,
    ) -> Result<Vec<String>, SessionError> {
        let body = match (scope, session_id) {
            (Some(s), _) => json!({"scope": s}),
            (None, Some(id)) => json!({"session_id": id}),
            (None, None) => json!({"scope": "current"}),
        };
        let res = self
            .send(
                self.http
                    .post(format!("{}/v1/sessions/revoke", self.base))
                    .bearer_auth(token.expose_secret())
                    .json(&body),
                account,
            )
            .await?;
        Ok(res["revoked"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
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
            .get(format!("{}/v1/events", self.base))
            .bearer_auth(token.expose_secret())
            .timeout(std::time::Duration::from_secs(24 * 3600));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let res = req.send().await.map_err(SessionError::transient)?;
        if !res.status().is_success() {
            let status = res.status();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            return Err(classify(status, &body, account));
        }
        let mut last = last_event_id.map(str::to_owned);
        let mut stream = res.bytes_stream();
        let mut buf = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(SessionError::transient)?;
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let mut event = RegistryEvent {
                    id: String::new(),
                    kind: String::new(),
                    data: Value::Null,
                };
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        event.id = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event.kind = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        event.data = serde_json::from_str(v).unwrap_or(Value::Null);
                    }
                }
                if event.kind.is_empty() {
                    continue; // keep-alive comment
                }
                last = Some(event.id.clone());
                if !on_event(event) {
                    return Ok(last);
                }
            }
        }
        Ok(last)
    }
}

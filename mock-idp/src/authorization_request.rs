//! Parsing an authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2.1) into a typed
//! [`AuthorizationRequest`] — the front-channel twin of `token_request.rs`, and like it the
//! function the fuzz target and the property tests drive — and checking it against the tenant's
//! client registry ([`AuthorizationRequest::validate`]).
//!
//! Where an error goes matters: until `client_id` and `redirect_uri` are known good, an error is
//! shown on a page and never redirected (RFC 6749 §4.1.2.1); after that, it is redirected with
//! `state`. So parsing fails only on a malformed query: the three parameters that route errors
//! (`client_id`, `redirect_uri`, `state`) are kept as sent, and the rest is either typed
//! ([`Details`]) or the first [`Problem`] with it, answered once the route is known good. Checks
//! run in that order: the client and its redirect URI (a page), the request's own problems (a
//! redirect), then what this client may ask for (a redirect). A request with two faults hears of
//! the first in that order.

use time::{Duration, OffsetDateTime};

use crate::config::GrantType;
use crate::directory::Directory;
use crate::grants::AuthRequest;
use crate::ids::TenantId;
use crate::params::{Params, ParamsError};
use crate::pkce::CodeChallenge;
use crate::redirect_uri;
use crate::scope::Scope;

/// How long the login page may sit open.
pub const PENDING_TTL: Duration = Duration::minutes(10);

/// The longest `state` and `nonce` taken.
const MAX_STATE: usize = 2048;
const MAX_NONCE: usize = 512;

/// An authorization request as sent: the parameters that route errors, and the rest parsed.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub state: Option<String>,
    /// Everything else, typed; or the first problem with it.
    pub details: Result<Details, Problem>,
}

/// The typed parameters of a well-formed request (before the client's own rules are applied).
#[derive(Debug, Clone)]
pub struct Details {
    pub scope: Scope,
    pub code_challenge: Option<CodeChallenge>,
    pub nonce: Option<String>,
    pub login_hint: Option<String>,
    pub prompt: Prompt,
    /// `max_age` in seconds (OIDC Core §3.1.2.1).
    pub max_age: Option<i64>,
}

/// The `prompt` values this provider acts on (OIDC Core §3.1.2.1, and `create` from "Initiating
/// User Registration"); others are ignored. `none` comes alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
    pub create: bool,
}

/// The error codes of an authorization error response (RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationError {
    InvalidRequest,
    UnauthorizedClient,
    UnsupportedResponseType,
    InvalidScope,
    RequestNotSupported,
    LoginRequired,
    TemporarilyUnavailable,
}

impl AuthorizationError {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizationError::InvalidRequest => "invalid_request",
            AuthorizationError::UnauthorizedClient => "unauthorized_client",
            AuthorizationError::UnsupportedResponseType => "unsupported_response_type",
            AuthorizationError::InvalidScope => "invalid_scope",
            AuthorizationError::RequestNotSupported => "request_not_supported",
            AuthorizationError::LoginRequired => "login_required",
            AuthorizationError::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

/// What is wrong with a request, to be redirected back once the route is known good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub error: AuthorizationError,
    pub description: String,
}

impl Problem {
    fn new(error: AuthorizationError, description: impl Into<String>) -> Self {
        Self {
            error,
            description: description.into(),
        }
    }
}

/// Why an authorization request was refused, and where that goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No trustworthy redirect: show an error page.
    Page(String),
    /// Redirect back to the client with an OAuth error.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        problem: Problem,
    },
}

/// A request that passed every check: what to keep while the person signs in, and how to sign in.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    pub request: AuthRequest,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
}

impl ValidRequest {
    /// A refusal of this request, redirected back to its client.
    pub fn refuse(self, error: AuthorizationError, description: impl Into<String>) -> Refusal {
        Refusal::Redirect {
            redirect_uri: self.request.redirect_uri,
            state: self.request.state,
            problem: Problem::new(error, description),
        }
    }
}

impl AuthorizationRequest {
    /// Parses the query string of an authorization request.
    pub fn parse(query: &[u8]) -> Result<Self, ParamsError> {
        let p = Params::parse(query)?;
        let owned = |name: &str| p.get(name).map(str::to_owned);
        Ok(Self {
            client_id: owned("client_id"),
            redirect_uri: owned("redirect_uri"),
            state: owned("state"),
            details: details(&p),
        })
    }

    /// Checks the request against the client registry `dir` of `tenant`; `now` dates the
    /// pending request.
    pub fn validate(
        self,
        dir: &Directory,
        tenant: &TenantId,
        now: OffsetDateTime,
    ) -> Result<ValidRequest, Refusal> {
        let client_id = self
            .client_id
            .ok_or_else(|| Refusal::Page("client_id is missing".into()))?;
        let client = dir.client(&client_id).ok_or_else(|| {
            Refusal::Page(format!(
                "unknown client_id '{}' for tenant {tenant}",
                client_id.escape_default()
            ))
        })?;
        let registered = &client.config.redirect_uris;
        let (redirect, given) = match self.redirect_uri {
            Some(r) => {
                if !registered.iter().any(|reg| redirect_uri::matches(reg, &r)) {
                    return Err(Refusal::Page(format!(
                        "redirect_uri '{}' is not registered for client {client_id}",
                        r.escape_default()
                    )));
                }
                (r, true)
            }
            None => match registered.as_slice() {
                [only] => (only.clone(), false),
                _ => {
                    return Err(Refusal::Page(
                        "redirect_uri is required: this client registered several or none".into(),
                    ))
                }
            },
        };
        let state = self.state;
        let refuse = |error, description: String| Refusal::Redirect {
            redirect_uri: redirect.clone(),
            state: state.clone(),
            problem: Problem::new(error, description),
        };
        let details = match self.details {
            Ok(d) => d,
            Err(problem) => return Err(refuse(problem.error, problem.description)),
        };
        if !client.config.allows(GrantType::AuthorizationCode) {
            return Err(refuse(
                AuthorizationError::UnauthorizedClient,
                "this client may not use the authorization code grant".into(),
            ));
        }
        let outside = details.scope.outside(&client.config.scopes);
        if !outside.is_empty() {
            return Err(refuse(
                AuthorizationError::InvalidScope,
                format!("scope not allowed for this client: {}", outside.join(" ")),
            ));
        }
        if details.code_challenge.is_none() && !client.config.is_confidential() {
            return Err(refuse(
                AuthorizationError::InvalidRequest,
                "code_challenge is required (PKCE with S256)".into(),
            ));
        }
        Ok(ValidRequest {
            request: AuthRequest {
                client_id: client.id().clone(),
                redirect_uri: redirect.clone(),
                redirect_uri_given: given,
                scope: details.scope,
                state,
                nonce: details.nonce,
                code_challenge: details.code_challenge,
                login_hint: details.login_hint,
                expires_at: now + PENDING_TTL,
            },
            prompt: details.prompt,
            max_age: details.max_age,
        })
    }
}

/// Everything but the routing parameters, or the first problem with it.
fn details(p: &Params) -> Result<Details, Problem> {
    use AuthorizationError::*;
    match p.get("response_type") {
        Some("code") => {}
        Some(other) => {
            return Err(Problem::new(
                UnsupportedResponseType,
                format!(
                    "response_type '{}' is not supported; use 'code'",
                    other.escape_default()
                ),
            ))
        }
        None => return Err(Problem::new(InvalidRequest, "response_type is required")),
    }
    if p.get("request").is_some() || p.get("request_uri").is_some() {
        return Err(Problem::new(
            RequestNotSupported,
            "request objects are not supported",
        ));
    }
    let scope = Scope::parse(p.get("scope").unwrap_or("openid"))
        .map_err(|e| Problem::new(InvalidScope, e))?;
    let code_challenge = match (p.get("code_challenge"), p.get("code_challenge_method")) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(Problem::new(
                InvalidRequest,
                "code_challenge is required (PKCE with S256)",
            ))
        }
        (Some(c), m) => Some(
            CodeChallenge::parse(c, m).map_err(|e| Problem::new(InvalidRequest, e.to_string()))?,
        ),
    };
    let nonce = p.get("nonce").map(str::to_owned);
    if nonce.as_ref().is_some_and(|n| n.len() > MAX_NONCE)
        || p.get("state").is_some_and(|s| s.len() > MAX_STATE)
    {
        return Err(Problem::new(InvalidRequest, "state or nonce is too long"));
    }
    let max_age = p
        .get("max_age")
        .map(|v| {
            parse_max_age(v).ok_or_else(|| {
                Problem::new(
                    InvalidRequest,
                    "max_age must be a non-negative whole number of seconds",
                )
            })
        })
        .transpose()?;
    let prompt = parse_prompt(p.get("prompt").unwrap_or_default())?;
    Ok(Details {
        scope,
        code_challenge,
        nonce,
        login_hint: p.get("login_hint").map(str::to_owned),
        prompt,
        max_age,
    })
}

/// `prompt`: a space-delimited set; unknown values are ignored, `none` must come alone.
fn parse_prompt(value: &str) -> Result<Prompt, Problem> {
    let values: std::collections::BTreeSet<&str> =
        value.split(' ').filter(|s| !s.is_empty()).collect();
    let prompt = Prompt {
        none: values.contains("none"),
        login: values.contains("login"),
        consent: values.contains("consent"),
        create: values.contains("create"),
    };
    if prompt.none && values.len() > 1 {
        return Err(Problem::new(
            AuthorizationError::InvalidRequest,
            "prompt=none cannot be combined with other prompts",
        ));
    }
    Ok(prompt)
}

/// `max_age` as OIDC Core §3.1.2.1 defines it: a non-negative integer of seconds, digits only
/// (no sign, fraction or exponent). `None` when it is not one.
pub(crate) fn parse_max_age(value: &str) -> Option<i64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // More seconds than fit is no bound at all.
    Some(value.parse::<i64>().unwrap_or(i64::MAX / 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn query(pairs: &[(&str, &str)]) -> Vec<u8> {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
            .into_bytes()
    }

    #[test]
    fn a_well_formed_request_is_typed() {
        let r = AuthorizationRequest::parse(&query(&[
            ("response_type", "code"),
            ("client_id", "app"),
            ("redirect_uri", "http://127.0.0.1/cb"),
            ("scope", "openid email"),
            ("state", "s"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("prompt", "login consent"),
            ("max_age", "300"),
        ]))
        .unwrap();
        assert_eq!(r.client_id.as_deref(), Some("app"));
        assert_eq!(r.state.as_deref(), Some("s"));
        let d = r.details.unwrap();
        assert!(d.scope.contains("email"));
        assert_eq!(d.code_challenge.unwrap().as_str(), CHALLENGE);
        assert_eq!(
            d.prompt,
            Prompt {
                login: true,
                consent: true,
                ..Prompt::default()
            }
        );
        assert_eq!(d.max_age, Some(300));
    }

    #[test]
    fn problems_are_kept_for_the_redirect_and_routing_parameters_survive_them() {
        let problem = |pairs: &[(&str, &str)]| {
            let r = AuthorizationRequest::parse(&query(pairs)).unwrap();
            assert_eq!(r.client_id.as_deref(), Some("app"), "{pairs:?}");
            r.details.unwrap_err()
        };
        let base = [("client_id", "app"), ("response_type", "code")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            v
        };
        assert_eq!(
            problem(&[("client_id", "app")]).error,
            AuthorizationError::InvalidRequest
        );
        assert_eq!(
            problem(&[("client_id", "app"), ("response_type", "token")]).error,
            AuthorizationError::UnsupportedResponseType
        );
        assert_eq!(
            problem(&with(&[("request_uri", "urn:x")])).error,
            AuthorizationError::RequestNotSupported
        );
        assert_eq!(
            problem(&with(&[("scope", "a\"b")])).error,
            AuthorizationError::InvalidScope
        );
        assert!(problem(&with(&[("code_challenge", CHALLENGE)]))
            .description
            .contains("S256"));
        assert!(problem(&with(&[("max_age", "-1")]))
            .description
            .contains("max_age"));
        assert!(problem(&with(&[("prompt", "none login")]))
            .description
            .contains("prompt=none"));
        let long_state = "s".repeat(MAX_STATE + 1);
        let r = AuthorizationRequest::parse(&query(&[
            ("client_id", "app"),
            ("response_type", "code"),
            ("state", &long_state),
        ]))
        .unwrap();
        assert!(r.details.is_err());
        assert!(AuthorizationRequest::parse(b"client_id=a&client_id=b").is_err());
    }

    #[test]
    fn max_age_is_digits_only() {
        assert_eq!(parse_max_age("0"), Some(0));
        assert_eq!(parse_max_age("99999999999999999999999"), Some(i64::MAX / 2));
        for bad in ["", "-1", "+1", "1.5", "1e3", " 1"] {
            assert_eq!(parse_max_age(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_queries(query in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = AuthorizationRequest::parse(&query);
        }

        #[test]
        fn never_panics_on_query_like_input_and_keeps_the_routing_parameters(
            pairs in proptest::collection::vec(
                (prop_oneof![
                    Just("response_type".to_owned()), Just("scope".to_owned()),
                    Just("code_challenge".to_owned()), Just("code_challenge_method".to_owned()),
                    Just("prompt".to_owned()), Just("max_age".to_owned()), Just("nonce".to_owned()),
                    Just("request".to_owned()), "[a-z_]{1,14}",
                ], "[ -~]{0,60}"),
                0..8,
            ),
            client_id in "[a-z-]{1,20}",
            state in proptest::option::of("[ -~]{1,40}"),
        ) {
            let mut all = vec![("client_id".to_owned(), client_id.clone())];
            all.extend(state.clone().map(|s| ("state".to_owned(), s)));
            all.extend(pairs.into_iter().filter(|(k, _)| k != "client_id" && k != "state"));
            let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&all).finish();
            if let Ok(r) = AuthorizationRequest::parse(body.as_bytes()) {
                prop_assert_eq!(r.client_id, Some(client_id));
                prop_assert_eq!(r.state, state.filter(|s| !s.is_empty()));
            }
        }
    }
}

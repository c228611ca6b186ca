//! The errors of session-core, told apart the way a caller must act on them: sign in again,
//! retry later, or fix the configuration.

use account_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("discovery of {issuer} failed: {detail}")]
    Discovery { issuer: String, detail: String },
    #[error("the provider does not advertise PKCE with S256; refusing to sign in")]
    PkceUnsupported,
    #[error("the sign-in callback carried a wrong or missing state")]
    StateMismatch,
    #[error("the identity provider refused the sign-in: {error}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    AuthorizationDenied {
        error: String,
        description: Option<String>,
    },
    /// RFC 9207: the authorization response names another issuer than the one asked (or none,
    /// though the provider promises one): a mix-up; the code was not redeemed.
    #[error("the sign-in response comes from {} instead of {expected}; refusing it (possible mix-up attack)", .found.as_deref().unwrap_or("no named issuer"))]
    IssuerMismatch {
        expected: String,
        found: Option<String>,
    },
    /// The token endpoint issued a token of another type than `Bearer`: nothing is stored.
    #[error("the identity provider issued a '{found}' token; only bearer tokens are supported")]
    UnexpectedTokenType { found: String },
    /// RFC 9470: the registry wants a recent sign-in for this (ending other sessions); sign in
    /// again (`max_age=0`) and re-authenticate the session.
    #[error("this needs a recent sign-in (within {} s); sign in again to confirm it is you", .max_age.map(|a| a.to_string()).unwrap_or_else(|| "a few minutes".into()))]
    StepUpRequired { max_age: Option<i64> },
    /// The registry asked for a recent sign-in again right after accepting a fresh one: the
    /// command is not retried a second time (no loop of sign-ins). Clocks that disagree (this
    /// machine's, the provider's, the registry's) are the usual cause.
    #[error("the registry still asks for a recent sign-in (within {} s) right after a fresh one; giving up rather than asking again", .max_age.map(|a| a.to_string()).unwrap_or_else(|| "a few minutes".into()))]
    StepUpNotAccepted { max_age: Option<i64> },
    /// The step-up sign-in was another person than the account's.
    #[error("the new sign-in is {found}, not {expected}; sign in as the same account to confirm")]
    StepUpAccountMismatch { expected: String, found: String },
    #[error("the sign-in was not completed within {0} seconds")]
    LoginTimeout(u64),
    #[error("the ID token is invalid: {0}")]
    IdTokenInvalid(String),
    /// UserInfo described another subject than the ID token (OIDC Core §5.3.2): the sign-in is
    /// refused, as its answer cannot be trusted for this account.
    #[error("the UserInfo answer of {issuer} names another subject than the ID token")]
    UserInfoSubjectMismatch { issuer: String },
    /// The refresh token or session is no longer accepted: the account is signed out.
    #[error("{account} must sign in again: {reason}")]
    ReauthenticationRequired { account: String, reason: String },
    /// The registry said the session asked about is gone, but a newer sign-in of this profile
    /// had replaced it meanwhile (and ended it): the account is signed in, under the new
    /// session; asking again uses it.
    #[error("{account} was signed in again meanwhile: the session this asked about was replaced; nothing was lost, try again")]
    SessionReplaced { account: String },
    /// A network error, a timeout or a 5xx: nothing was lost, try again later.
    #[error("the server is unreachable or failing ({detail}); nothing was lost, try again")]
    Transient { detail: String },
    #[error("the client is misconfigured at the provider: {0}")]
    Configuration(String),
    #[error("the registry refused the request: {0}")]
    Registry(String),
    /// The registry refused the request without saying the session is gone — an ID token it
    /// does not take (a refused step-up), a bad request: nothing is wiped, the session stays.
    #[error("the registry refused the request ({status}): {error}{}{}", .reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default(), if .description.is_empty() { String::new() } else { format!(": {}", .description) })]
    RegistryRefused {
        status: u16,
        /// The registry's `error` code, e.g. `invalid_id_token`.
        error: String,
        /// The registry's `reason`, where the code alone does not say what is wrong.
        reason: Option<String>,
        description: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no account {0}")]
    UnknownAccount(String),
    #[error("no active account: sign in with `lanyard login`")]
    NoActiveAccount,
}

impl SessionError {
    pub fn transient(e: impl std::fmt::Display) -> Self {
        SessionError::Transient {
            detail: e.to_string(),
        }
    }

    /// [`SessionError::transient`] with every cause of `e`: an HTTP client says "operation timed
    /// out" or "connection refused" only in an error's sources.
    pub fn transient_with_causes(e: &(dyn std::error::Error + 'static)) -> Self {
        let mut detail = e.to_string();
        let mut source = e.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !detail.contains(&text) {
                detail = format!("{detail}: {text}");
            }
            source = cause.source();
        }
        SessionError::Transient { detail }
    }

    /// Whether waiting and retrying may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SessionError::Transient { .. } | SessionError::SessionReplaced { .. }
        )
    }
}

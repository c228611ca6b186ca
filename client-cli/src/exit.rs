//! Exit codes (documented in README.md): 0 ok, 1 other error, 2 usage, 3 signed out / login
//! needed, 4 network or server unavailable.

use session_core::SessionError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{message}")]
    Usage {
        message: String,
        hint: Option<String>,
    },
    #[error("{message}")]
    SignedOut {
        message: String,
        hint: Option<String>,
    },
    #[error("{message}")]
    Unavailable {
        message: String,
        hint: Option<String>,
    },
    #[error("{message}")]
    Other {
        message: String,
        hint: Option<String>,
    },
    /// `lanyard exec`: the command ran and exited with this code, passed on as is (nothing more
    /// is said: the command spoke for itself).
    #[error("the command exited with code {code}")]
    Exited { code: u8 },
}

impl CliError {
    pub fn code(&self) -> u8 {
        match self {
            CliError::Other { .. } => 1,
            CliError::Usage { .. } => 2,
            CliError::SignedOut { .. } => 3,
            CliError::Unavailable { .. } => 4,
            CliError::Exited { code } => *code,
        }
    }

    pub fn hint(&self) -> Option<&str> {
        match self {
            CliError::Usage { hint, .. }
            | CliError::SignedOut { hint, .. }
            | CliError::Unavailable { hint, .. }
            | CliError::Other { hint, .. } => hint.as_deref(),
            CliError::Exited { .. } => None,
        }
    }

    pub fn usage(message: impl Into<String>, hint: Option<&str>) -> Self {
        CliError::Usage {
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }

    pub fn signed_out(message: impl Into<String>) -> Self {
        CliError::SignedOut {
            message: message.into(),
            hint: Some("run `lanyard login`".into()),
        }
    }

    pub fn other(message: impl std::fmt::Display) -> Self {
        CliError::Other {
            message: message.to_string(),
            hint: None,
        }
    }
}

impl From<SessionError> for CliError {
    fn from(e: SessionError) -> Self {
        match &e {
            SessionError::ReauthenticationRequired { .. } | SessionError::NoActiveAccount => {
                CliError::signed_out(e.to_string())
            }
            SessionError::Transient { .. } | SessionError::Discovery { .. } => {
                CliError::Unavailable {
                    message: e.to_string(),
                    hint: Some(
                        "check your network and that the server is running, then try again".into(),
                    ),
                }
            }
            SessionError::SessionReplaced { .. } => CliError::Unavailable {
                message: e.to_string(),
                hint: Some("run the command again".into()),
            },
            // A recent sign-in was demanded and not given: a login is what is needed.
            SessionError::StepUpRequired { .. } => CliError::SignedOut {
                message: e.to_string(),
                hint: Some("run the command again on a machine where you can sign in".into()),
            },
            SessionError::StepUpNotAccepted { .. } => CliError::Other {
                message: e.to_string(),
                hint: Some(
                    "check that this machine's clock is right, then try again; if it is, the registry's or the identity provider's clock is off".into(),
                ),
            },
            SessionError::StepUpAccountMismatch { .. } => CliError::Other {
                message: e.to_string(),
                hint: Some("sign in as the account the command acts on".into()),
            },
            // Refused without the session being gone (a step-up ID token the registry does not
            // take): nothing was wiped, so the fix is to try again, not to sign in.
            SessionError::RegistryRefused { error, .. } if error == "invalid_id_token" => {
                CliError::Other {
                    message: e.to_string(),
                    hint: Some(
                        "the registry did not accept the fresh sign-in; nothing was changed on this device, try the command again".into(),
                    ),
                }
            }
            SessionError::UnknownAccount(_) => {
                CliError::usage(e.to_string(), Some("see `lanyard accounts`"))
            }
            SessionError::Store(inner) => CliError::Other {
                message: inner.to_string(),
                hint: None,
            },
            _ => CliError::other(e),
        }
    }
}

impl From<account_store::StoreError> for CliError {
    fn from(e: account_store::StoreError) -> Self {
        CliError::Other {
            message: e.to_string(),
            hint: None,
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::other(format!("{e:#}"))
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::other(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_step_up_id_token_is_an_error_with_its_reason_not_a_sign_out() {
        let e = CliError::from(SessionError::RegistryRefused {
            status: 400,
            error: "invalid_id_token".into(),
            reason: Some("auth_time_too_old".into()),
            description: "the ID token is not accepted".into(),
        });
        assert_eq!(e.code(), 1);
        assert!(e.to_string().contains("auth_time_too_old"), "{e}");
        assert!(e.hint().is_some_and(|h| h.contains("nothing was changed")));
    }
}

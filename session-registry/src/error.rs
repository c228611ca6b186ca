//! The one place errors become HTTP. Protected-resource failures are RFC 6750 §3.1: 401 with
//! `WWW-Authenticate: Bearer error="invalid_token"` and a precise `error_description`; request
//! errors are 400 JSON; a database outage is 503 so clients retry instead of signing out.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: the credential is not (or no longer) good. `reason` is a stable machine code.
    #[error("{reason}: {description}")]
    InvalidToken {
        reason: &'static str,
        description: String,
    },
    #[error("{code}: {description}")]
    BadRequest {
        code: &'static str,
        description: String,
    },
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("too many failed attempts from this address; retry in {retry_after} s")]
    TooManyRequests { retry_after: u64 },
    #[error("the database is unavailable; retry shortly")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn invalid_token(reason: &'static str, description: impl Into<String>) -> Self {
        ApiError::InvalidToken {
            reason,
            description: description.into(),
        }
    }

    pub fn bad_request(code: &'static str, description: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            description: description.into(),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Unavailable(m) => ApiError::Unavailable(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    error_description: String,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidToken { .. } => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((header::CACHE_CONTROL, "no-store"));
        let (error, description) = match self {
            ApiError::InvalidToken {
                reason,
                description,
            } => {
                let safe: String = description
                    .chars()
                    .filter(|c| c.is_ascii() && *c != '"' && *c != '\\')
                    .collect();
                res.insert_header((
                    header::WWW_AUTHENTICATE,
                    format!(
                        r#"Bearer error="invalid_token", error_description="{reason}: {safe}""#
                    ),
                ));
                (*reason, description.clone())
            }
            ApiError::BadRequest { code, description } => (*code, description.clone()),
            ApiError::Forbidden(d) => ("forbidden", d.clone()),
            ApiError::NotFound(d) => ("not_found", d.clone()),
            ApiError::TooManyRequests { retry_after } => {
                res.insert_header((header::RETRY_AFTER, retry_after.to_string()));
                ("rate_limited", self.to_string())
            }
            ApiError::Unavailable(detail) => {
                tracing::warn!(%detail, "database unavailable");
                res.insert_header((header::RETRY_AFTER, "1"));
                (
                    "temporarily_unavailable",
                    "the database is unavailable; retry shortly".to_owned(),
                )
            }
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                ("server_error", "internal error".to_owned())
            }
        };
        res.json(Body {
            error,
            error_description: description,
        })
    }
}

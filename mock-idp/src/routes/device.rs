//! The device authorization grant (RFC 8628): the device authorization endpoint and the
//! user-code page where a signed-in person approves or denies the device (the decision and its
//! bounds are [`device_approval`]'s).

use actix_web::http::{header, StatusCode};
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use secrecy::SecretString;
use serde_json::json;

use super::{authorization_header, gate, html, no_store_json, peer_ip, require_form};
use crate::browser_session::{BrowserSession, CsrfPurpose};
use crate::client_auth::{authenticate, ClientAuth};
use crate::config::GrantType;
use crate::device_approval::{self, DeviceAction, DeviceRefusal, Person};
use crate::error::{ErrorCode, OAuthError};
use crate::faults::Endpoint;
use crate::pages;
use crate::params::Params;
use crate::scope::Scope;
use crate::state::IdpState;
use crate::tenant::Tenant;

pub async fn device_authorization(
    state: web::Data<IdpState>,
    path: web::Path<String>,
    req: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, OAuthError> {
    let tenant = state.tenant(&path)?;
    if let Some(res) = gate(&tenant, Endpoint::DeviceAuthorization).await {
        return Ok(res);
    }
    require_form(&req)?;
    let params = Params::parse(&body).map_err(|e| OAuthError::invalid_request(e.to_string()))?;
    let client = authenticate(
        &tenant,
        &ClientAuth::parse(&params, authorization_header(&req))?,
    )?;
    if !client.config.allows(GrantType::DeviceCode) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the device authorization grant",
        ));
    }
    let scope = Scope::parse(params.get("scope").unwrap_or("openid"))
        .map_err(|e| OAuthError::new(ErrorCode::InvalidScope, e))?;
    let outside = scope.outside(&client.config.scopes);
    if !outside.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            format!("scope not allowed for this client: {}", outside.join(" ")),
        ));
    }
    // OIDC Core §3.1.2.1 `max_age`, taken at the device authorization request as at
    // `/authorize`: the device page then asks an older browser sign-in for the password.
    let max_age = params
        .get("max_age")
        .map(|v| {
            crate::authorization_request::parse_max_age(v).ok_or_else(|| {
                OAuthError::invalid_request(
                    "max_age must be a non-negative whole number of seconds",
                )
            })
        })
        .transpose()?;
    let ttl = tenant.lifetimes.device_code;
    let interval = tenant.lifetimes.device_poll_interval;
    let started = tenant.grants.start_device(
        client.id().clone(),
        scope,
        max_age,
        tenant.now() + Tenant::secs(ttl),
        Tenant::secs(interval),
    );
    let (device_code, user_code) = (started.device_code, started.user_code);
    let verification_uri = format!("{}/device", tenant.issuer);
    Ok(no_store_json(
        StatusCode::OK,
        &json!({
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": verification_uri,
            "verification_uri_complete": format!("{verification_uri}?user_code={user_code}"),
            "expires_in": ttl,
            "interval": interval,
        }),
    ))
}

/// Accepts `bcdf ghjk`, `BCDFGHJK` or `BCDF-GHJK`.
fn normalise_user_code(input: &str) -> String {
    let compact: String = input
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if compact.len() == 8 {
        format!("{}-{}", &compact[..4], &compact[4..])
    } else {
        compact
    }
}

pub async fn device_page(
    state: web::Data<IdpState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, OAuthError> {
    let tenant = state.tenant(&path)?;
    if let Some(res) = gate(&tenant, Endpoint::Device).await {
        return Ok(res);
    }
    let params = Params::parse(req.query_string().as_bytes()).unwrap_or_default();
    let code = params.get("user_code").map(normalise_user_code);
    let browser = BrowserSession::of(&tenant, &req);
    // A device asking for a fresher sign-in than the browser's gets the sign-in fields.
    let too_old = match (&browser, &code) {
        (Some(b), Some(code)) => {
            tenant
                .grants
                .device_needs_fresh_sign_in(code, &b.session, tenant.now())
        }
        _ => false,
    };
    let why = too_old.then(|| DeviceRefusal::SignInTooOld.to_string());
    Ok(device_page_html(
        &tenant,
        browser.as_ref().filter(|_| !too_old),
        code.as_deref(),
        why.as_deref(),
        StatusCode::OK,
    ))
}

/// The device page, for the browser's signed-in account if it has one.
fn device_page_html(
    tenant: &Tenant,
    browser: Option<&BrowserSession>,
    user_code: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    let signed_in = browser.map(|b| {
        let account = tenant
            .directory
            .read()
            .user(&b.session.sub)
            .map(|u| match &u.username {
                Some(name) => name.to_string(),
                None => "a guest account".to_owned(),
            })
            .unwrap_or_else(|| "this account".to_owned());
        (account, b.csrf_token(CsrfPurpose::Device))
    });
    html(
        status,
        pages::device(&pages::DevicePage {
            tenant: &tenant.display_name,
            issuer: &tenant.issuer,
            user_code,
            error,
            signed_in: signed_in.as_ref().map(|(account, csrf)| pages::SignedIn {
                account,
                csrf_token: csrf,
            }),
        }),
    )
}

pub async fn device_submit(
    state: web::Data<IdpState>,
    path: web::Path<String>,
    req: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, OAuthError> {
    let tenant = state.tenant(&path)?;
    if let Some(res) = gate(&tenant, Endpoint::Device).await {
        return Ok(res);
    }
    let browser = BrowserSession::of(&tenant, &req);
    let params = match Params::parse(&body) {
        Ok(p) => p,
        Err(e) => {
            return Ok(device_page_html(
                &tenant,
                browser.as_ref(),
                None,
                Some(&e.to_string()),
                StatusCode::BAD_REQUEST,
            ))
        }
    };
    let user_code = normalise_user_code(params.get("user_code").unwrap_or_default());
    let action = match params.get("action") {
        Some("deny") => DeviceAction::Deny,
        _ => DeviceAction::Approve,
    };
    // Credentials typed on the page win over the browser's session: a person may approve as
    // another account than the one signed in.
    let person = match (params.get("username"), &browser) {
        (Some(username), _) => Person::Credentials {
            username: username.to_owned(),
            password: SecretString::from(params.get("password").unwrap_or_default().to_owned()),
        },
        (None, Some(browser)) => Person::Browser {
            browser,
            csrf_token: params.get("csrf_token"),
        },
        (None, None) => Person::Nobody,
    };
    let decided = device_approval::decide(&tenant, peer_ip(&req), &user_code, action, person).await;
    let refusal = match decided {
        Ok(_) => {
            let (title, message) = match action {
                DeviceAction::Approve => (
                    "Device connected",
                    "Your device is now signed in. You can close this window.",
                ),
                DeviceAction::Deny => (
                    "Device denied",
                    "The device was not connected. You can close this window.",
                ),
            };
            return Ok(html(StatusCode::OK, pages::notice(title, message)));
        }
        Err(refusal) => refusal,
    };
    let status = match &refusal {
        DeviceRefusal::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
        DeviceRefusal::UnknownCode | DeviceRefusal::NotWaiting => StatusCode::BAD_REQUEST,
        DeviceRefusal::NotSignedIn | DeviceRefusal::WrongPassword | DeviceRefusal::SignInTooOld => {
            StatusCode::UNAUTHORIZED
        }
        DeviceRefusal::CsrfMismatch => StatusCode::FORBIDDEN,
        DeviceRefusal::PasswordCheckFailed => {
            return Err(OAuthError::server_error(refusal.to_string()))
        }
    };
    // A sign-in that failed shows the sign-in fields again, whatever the browser holds.
    let shown = browser.as_ref().filter(|_| {
        !matches!(
            refusal,
            DeviceRefusal::WrongPassword | DeviceRefusal::SignInTooOld
        )
    });
    let mut res = device_page_html(
        &tenant,
        shown,
        Some(&user_code),
        Some(&refusal.to_string()),
        status,
    );
    if let DeviceRefusal::Limited(limit) = &refusal {
        if let Ok(v) = header::HeaderValue::from_str(&limit.retry_after_secs().to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::normalise_user_code;

    #[test]
    fn user_codes_are_normalised() {
        assert_eq!(normalise_user_code("bcdf ghjk"), "BCDF-GHJK");
        assert_eq!(normalise_user_code("BCDF-GHJK"), "BCDF-GHJK");
    }
}

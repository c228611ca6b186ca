//! The device authorization grant (RFC 8628): the device authorization endpoint and the
//! user-code page where a person approves or denies the device.

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::{authorization_header, gate, html, no_store_json, require_form};
use crate::client_auth::{authenticate, ClientAuth};
use crate::config::GrantType;
use crate::error::{ErrorCode, OAuthError};
use crate::faults::Endpoint;
use crate::grants::Approver;
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
    let ttl = tenant.lifetimes.device_code;
    let interval = tenant.lifetimes.device_poll_interval;
    let started = tenant.grants.start_device(
        client.id().clone(),
        scope,
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
    Ok(html(
        StatusCode::OK,
        pages::device(&tenant.issuer, &tenant.display_name, code.as_deref(), None),
    ))
}

pub async fn device_submit(
    state: web::Data<IdpState>,
    path: web::Path<String>,
    body: Bytes,
) -> Result<HttpResponse, OAuthError> {
    let tenant = state.tenant(&path)?;
    if let Some(res) = gate(&tenant, Endpoint::Device).await {
        return Ok(res);
    }
    let page = |code: Option<&str>, error: &str, status: StatusCode| {
        html(
            status,
            pages::device(&tenant.issuer, &tenant.display_name, code, Some(error)),
        )
    };
    let params = match Params::parse(&body) {
        Ok(p) => p,
        Err(e) => return Ok(page(None, &e.to_string(), StatusCode::BAD_REQUEST)),
    };
    let user_code = normalise_user_code(params.get("user_code").unwrap_or_default());
    if !tenant.grants.device_waiting(&user_code, tenant.now()) {
        return Ok(page(
            Some(&user_code),
            "That code is unknown, expired or already used. Check the code on your device.",
            StatusCode::BAD_REQUEST,
        ));
    };
    if params.get("action") == Some("deny") {
        if tenant.grants.deny_device(&user_code, tenant.now()).is_err() {
            return Ok(page(
                Some(&user_code),
                "That code has just expired.",
                StatusCode::BAD_REQUEST,
            ));
        }
        return Ok(html(
            StatusCode::OK,
            pages::notice(
                "Device denied",
                "The device was not connected. You can close this window.",
            ),
        ));
    }
    let username = params.get("username").unwrap_or_default().to_owned();
    let password = SecretString::from(params.get("password").unwrap_or_default().to_owned());
    let user = tenant.directory.read().user_by_name(&username).cloned();
    let user = web::block(move || user.filter(|u| u.verify_password(password.expose_secret())))
        .await
        .map_err(|e| OAuthError::server_error(e.to_string()))?;
    let Some(user) = user else {
        tenant.record(
            "login_failed",
            None,
            None,
            format!("device page, username '{}'", username.escape_default()),
        );
        return Ok(page(
            Some(&user_code),
            "Wrong username or password.",
            StatusCode::UNAUTHORIZED,
        ));
    };
    let approved = tenant.grants.approve_device(
        &user_code,
        Approver::SignedIn { sub: &user.sub },
        tenant.now(),
        Tenant::secs(tenant.lifetimes.idp_session),
    );
    if approved.is_err() {
        return Ok(page(
            Some(&user_code),
            "That code has just expired.",
            StatusCode::BAD_REQUEST,
        ));
    }
    tenant.record(
        "device_approved",
        Some(&user.sub),
        None,
        format!("user code {user_code}"),
    );
    Ok(html(
        StatusCode::OK,
        pages::notice(
            "Device connected",
            "Your device is now signed in. You can close this window.",
        ),
    ))
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

//! HTTP routes.

mod admin;
mod backchannel;
pub mod devices_page;
mod devices_view;
mod events;
mod sessions;
mod upgrade;
mod wellknown;

use actix_web::http::header;
use actix_web::{web, HttpRequest};

use crate::error::ApiError;
use crate::refusal::Refusal;
use crate::service::RequestCtx;

pub fn configure(cfg: &mut web::ServiceConfig) {
    use actix_web::http::Method;
    use lanyard_service::methods::resource;
    let get = |path: &str, route: actix_web::Route| resource(path, vec![(Method::GET, route)]);
    let post = |path: &str, route: actix_web::Route| resource(path, vec![(Method::POST, route)]);
    cfg.service(get("/healthz", web::get().to(wellknown::healthz)))
        .service(get("/readyz", web::get().to(wellknown::readyz)))
        .service(get("/metrics", web::get().to(wellknown::metrics)))
        .service(get("/openapi.json", web::get().to(wellknown::openapi)))
        .service(get(
            "/.well-known/jwks.json",
            web::get().to(wellknown::jwks),
        ))
        .service(resource(
            "/v1/sessions",
            vec![
                (Method::POST, web::post().to(sessions::create)),
                (Method::GET, web::get().to(sessions::list)),
            ],
        ))
        .service(post(
            "/v1/sessions/authenticate",
            web::post().to(sessions::authenticate),
        ))
        .service(post(
            "/v1/sessions/revoke",
            web::post().to(sessions::revoke),
        ))
        .service(post(
            "/v1/sessions/reauthenticate",
            web::post().to(sessions::reauthenticate),
        ))
        .service(post(
            "/v1/sessions/upgrade",
            web::post().to(upgrade::upgrade),
        ))
        .service(get("/v1/events", web::get().to(events::stream)))
        .service(post(
            "/v1/backchannel-logout",
            web::post().to(backchannel::logout),
        ))
        .service(admin::scope())
        .configure(devices_page::configure);
}

pub fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::from(Refusal::MissingToken))
}

/// Where a request came from: the peer's address, or, when the peer is one of the registry's
/// trusted proxies, the client its `X-Forwarded-For` names (the right-most address that is not
/// itself a trusted proxy: entries to its left are whatever the client chose to send).
pub fn ctx(req: &HttpRequest) -> RequestCtx {
    let trusted: &[ipnet::IpNet] = req
        .app_data::<web::Data<crate::service::Registry>>()
        .map(|r| r.trusted_proxies.as_slice())
        .unwrap_or_default();
    RequestCtx {
        ip: req
            .peer_addr()
            .map(|a| client_address(a.ip(), forwarded_for(req), trusted)),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

/// Every address in the request's `X-Forwarded-For` headers, left to right; `None` for an
/// entry that is not an address (which ends the trusted chain).
fn forwarded_for(req: &HttpRequest) -> Vec<Option<std::net::IpAddr>> {
    req.headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|a| a.trim().parse().ok())
        .collect()
}

/// The client's address: walking `X-Forwarded-For` from the right while the hop that added the
/// entry is a trusted proxy.
pub fn client_address(
    peer: std::net::IpAddr,
    forwarded: Vec<Option<std::net::IpAddr>>,
    trusted: &[ipnet::IpNet],
) -> std::net::IpAddr {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    let mut client = peer;
    for hop in forwarded.into_iter().rev() {
        if !is_trusted(&client) {
            break;
        }
        match hop {
            Some(ip) => client = ip,
            None => break,
        }
    }
    client
}

/// Wraps the server-wide admin token for the admin routes.
pub fn admin_token(
    token: Option<secrecy::SecretString>,
    allow_http_issuers: bool,
) -> admin::AdminToken {
    admin::AdminToken {
        token,
        allow_http_issuers,
    }
}

#[cfg(test)]
mod tests {
    use super::client_address;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_names_the_client_only_through_trusted_proxies() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        let chain = |v: &[&str]| v.iter().map(|a| a.parse().ok()).collect::<Vec<_>>();
        // Untrusted peer: its header is ignored.
        assert_eq!(
            client_address(ip("203.0.113.1"), chain(&["198.51.100.1"]), &trusted),
            ip("203.0.113.1")
        );
        // Trusted peer: the entry it added.
        assert_eq!(
            client_address(ip("10.0.0.2"), chain(&["198.51.100.1"]), &trusted),
            ip("198.51.100.1")
        );
        // A spoofed left-most entry stays unread: the client's own address is right of it.
        assert_eq!(
            client_address(
                ip("10.0.0.2"),
                chain(&["1.2.3.4", "198.51.100.1", "10.0.0.9"]),
                &trusted
            ),
            ip("198.51.100.1")
        );
        // Garbage ends the chain at the last trusted hop.
        assert_eq!(
            client_address(ip("10.0.0.2"), chain(&["junk"]), &trusted),
            ip("10.0.0.2")
        );
        assert_eq!(
            client_address(ip("10.0.0.2"), chain(&["198.51.100.1"]), &[]),
            ip("10.0.0.2")
        );
    }
}

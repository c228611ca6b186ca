//! The admin API's OpenAPI document, served at `/admin/openapi.json` (schemathesis runs against
//! it: scripts/hostile).

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::views;
use crate::audit::AuditEvent;
use crate::config::{
    ClientConfig, GrantType, GuestLimits, KeyConfig, Lifetimes, SigningAlgName, TenantConfig,
    UserConfig,
};
use crate::faults::{Endpoint, FaultSpec};
use crate::grants::RecordCounts;
use crate::jwt::IdTokenTamper;

struct AdminBearer;

impl Modify for AdminBearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mock-idp admin API",
        description = "Tenants, users and clients at runtime, IdP sessions, key rotation, fault \
                       injection and the audit log of Lanyard's multi-tenant OpenID provider"
    ),
    modifiers(&AdminBearer),
    security(("admin_token" = [])),
    paths(
        super::list_tenants,
        super::add_tenant,
        super::add_user,
        super::sign_user_out,
        super::add_client,
        super::list_sessions,
        super::revoke_session,
        super::rotate_keys,
        super::list_faults,
        super::add_fault,
        super::clear_faults,
        super::remove_fault,
        super::audit,
        super::records
    ),
    components(schemas(
        TenantConfig,
        KeyConfig,
        Lifetimes,
        GuestLimits,
        UserConfig,
        ClientConfig,
        GrantType,
        SigningAlgName,
        FaultSpec,
        Endpoint,
        IdTokenTamper,
        AuditEvent,
        RecordCounts,
        views::TenantSummary,
        views::RecordsReport,
        views::UserCreated,
        views::ClientCreated,
        views::IdpSessionView,
        views::EndedSessions,
        views::RotateRequest,
        views::RotatedKey,
        views::ClearedFaults,
        views::AuditReport,
        views::ErrorBody,
        views::FaultView
    ))
)]
pub struct AdminApiDoc;

pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(AdminApiDoc::openapi())
}

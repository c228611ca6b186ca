//! The root span of every HTTP request, as tracing-actix-web's default one but with the target's
//! query redacted: its default writes the full `path?query`, and an authorization callback's
//! query carries `code` and `state`, an `end_session` GET its `id_token_hint`.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage};
use tracing::field::{display, Empty};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RequestId, RootSpanBuilder};

use crate::redact::RedactedTarget;

/// Use as `TracingLogger::<RedactedRootSpan>::new()`.
pub struct RedactedRootSpan;

impl RootSpanBuilder for RedactedRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let span = tracing::info_span!(
            "HTTP request",
            http.method = Empty,
            http.route = Empty,
            http.target = Empty,
            http.client_ip = Empty,
            http.status_code = Empty,
            otel.status_code = Empty,
            exception.message = Empty,
            exception.details = Empty,
            request_id = Empty,
        );
        // Its fields cost allocations on every request (the target, the route, the address, the
        // request id as text): none when nothing records the span (`RUST_LOG=warn`, say).
        if span.is_disabled() {
            return span;
        }
        let target = RedactedTarget::new(request.path(), request.query_string());
        let route = request.match_pattern().unwrap_or_default();
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        let client_ip = request
            .connection_info()
            .peer_addr()
            .map(str::to_owned)
            .unwrap_or_default();
        span.record("http.method", display(request.method()));
        span.record("http.route", display(&route));
        span.record("http.target", display(&target));
        span.record("http.client_ip", display(&client_ip));
        span.record("request_id", display(&request_id));
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

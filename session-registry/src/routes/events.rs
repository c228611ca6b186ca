//! `GET /v1/events`: Server-Sent Events for the caller's account (created, extended, revoked).
//! `Last-Event-ID` replays what was missed; the stream ends after the caller's own session is
//! revoked, and when the server shuts down.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use tokio::sync::broadcast;

use super::{bearer, ctx};
use crate::error::ApiError;
use crate::service::Registry;
use crate::store::EventRecord;

fn frame(e: &EventRecord) -> Bytes {
    let data = serde_json::to_string(e).unwrap_or_default();
    Bytes::from(format!("id: {}\nevent: {}\ndata: {data}\n\n", e.id, e.kind))
}

struct State {
    rx: broadcast::Receiver<EventRecord>,
    /// Resolves when the server shuts down.
    closed: Pin<Box<dyn Future<Output = ()>>>,
    backlog: VecDeque<EventRecord>,
    tenant: String,
    account_id: String,
    session_id: String,
    last_id: i64,
    done: bool,
}

#[utoipa::path(get, path = "/v1/events", responses((status = 200, content_type = "text/event-stream"), (status = 401)),
    security(("bearer" = [])))]
pub async fn stream(reg: web::Data<Registry>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let caller = reg.resolve(bearer(&req)?, &ctx(&req)).await?;
    // Subscribe before reading the backlog so nothing falls in between.
    let rx = reg.hub.subscribe();
    let last_id: i64 = req
        .headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(i64::MAX);
    let backlog: VecDeque<EventRecord> = if last_id == i64::MAX {
        VecDeque::new()
    } else {
        reg.store
            .events_after(&caller.tenant, &caller.session.account_id, last_id)
            .await?
            .into()
    };
    // A fresh stream starts after the newest event already stored: a relay that replays the log
    // after a reconnect must not resend history to it.
    let start_id = match backlog.back() {
        Some(e) => e.id,
        None if last_id == i64::MAX => {
            reg.store
                .latest_event_id(&caller.tenant, &caller.session.account_id)
                .await?
        }
        None => last_id,
    };
    let state = State {
        rx,
        closed: Box::pin(reg.hub.closed()),
        backlog,
        tenant: caller.tenant,
        account_id: caller.session.account_id,
        session_id: caller.session.id,
        last_id: start_id,
        done: false,
    };
    let body = futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if let Some(e) = st.backlog.pop_front() {
            st.done = e.kind == "revoked" && e.session_id == st.session_id;
            return Some((Ok::<_, actix_web::Error>(frame(&e)), st));
        }
        loop {
            let next = tokio::select! {
                // A complete response: the client resumes from its Last-Event-ID elsewhere.
                () = &mut st.closed => return None,
                next = tokio::time::timeout(Duration::from_secs(15), st.rx.recv()) => next,
            };
            match next {
                Err(_) => return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), st)),
                Ok(Ok(e)) => {
                    if e.tenant != st.tenant || e.account_id != st.account_id || e.id <= st.last_id
                    {
                        continue;
                    }
                    st.last_id = e.id;
                    st.done = e.kind == "revoked" && e.session_id == st.session_id;
                    return Some((Ok(frame(&e)), st));
                }
                // Fell behind: the client reconnects with Last-Event-ID and replays from the log.
                Ok(Err(broadcast::error::RecvError::Lagged(_)))
                | Ok(Err(broadcast::error::RecvError::Closed)) => return None,
            }
        }
    });
    Ok(HttpResponse::Ok()
        .insert_header(("Content-Type", "text/event-stream"))
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

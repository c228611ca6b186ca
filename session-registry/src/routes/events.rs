//! `GET /v1/events`: Server-Sent Events for the caller's account (created, extended, revoked,
//! upgraded). An event's id is its number in the account (`seq`: 1, 2, 3, … in commit order),
//! the same on every registry process, so `Last-Event-ID` replays exactly what was missed from
//! any of them. An event that arrives with a gap before it (a feed can deliver an account's
//! events out of order) is preceded by the missing ones, read from the database, and so are the
//! events a stream too slow for its account's channel missed. The stream ends after the caller's
//! own session is revoked, and when the server shuts down.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use tokio::sync::broadcast::error::RecvError;

use super::{bearer, ctx};
use crate::error::ApiError;
use crate::events::Subscription;
use crate::refusal::Refusal;
use crate::service::Registry;
use crate::store::{EventRecord, EVENTS_PAGE};

/// What a client sees of an event: its `id` is the account's event number.
#[derive(serde::Serialize)]
struct WireEvent<'a> {
    id: i64,
    tenant: &'a str,
    account_id: &'a str,
    session_id: &'a str,
    kind: &'a str,
    at: i64,
}

fn frame(e: &EventRecord) -> Bytes {
    let data = serde_json::to_string(&WireEvent {
        id: e.seq,
        tenant: &e.tenant,
        account_id: &e.account_id,
        session_id: &e.session_id,
        kind: &e.kind,
        at: e.at,
    })
    .unwrap_or_default();
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {data}\n\n",
        e.seq, e.kind
    ))
}

/// How often an idle-or-not stream gets a keep-alive comment (proxies close silent streams).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The backlog room a stream keeps once its backlog is drained.
const IDLE_BACKLOG: usize = 16;

/// Why a stream reads missed events from the database (the label of
/// `lanyard_registry_event_stream_database_reads_total`).
#[derive(Clone, Copy)]
enum Missed {
    /// What the client's `Last-Event-ID` asked for, past the first page.
    Replay,
    /// What came before an event that arrived with a gap before it.
    Gap,
    /// What the stream missed while it was behind its account's channel.
    Behind,
}

impl Missed {
    fn as_str(self) -> &'static str {
        match self {
            Missed::Replay => "replay",
            Missed::Gap => "gap",
            Missed::Behind => "behind",
        }
    }
}

struct State {
    reg: web::Data<Registry>,
    /// The account's events as this process's feed brings them.
    rx: Subscription,
    /// Resolves when the server shuts down.
    closed: Pin<Box<dyn Future<Output = ()>>>,
    /// The next keep-alive comment: every [`KEEP_ALIVE`], events or not. One timer for the
    /// stream's life, not one per event: a revoke fanned out to thousands of streams of a
    /// process no longer registers (and cancels) a timer in each.
    keep_alive: Pin<Box<tokio::time::Sleep>>,
    backlog: VecDeque<EventRecord>,
    /// Whether the database may hold more missed events past the backlog: the last read of them
    /// came back full (a page is [`EVENTS_PAGE`] events). The stream reads on before it waits.
    more_in_database: bool,
    tenant: String,
    account_id: String,
    session_id: String,
    /// The number of the last event sent (or skipped as already known).
    last_seq: i64,
    done: bool,
}

impl State {
    /// The frame of the next backlog event, ending the stream after the caller's own revocation.
    fn next_from_backlog(&mut self) -> Option<Bytes> {
        let e = self.backlog.pop_front()?;
        self.last_seq = self.last_seq.max(e.seq);
        self.done = e.kind == "revoked" && e.session_id == self.session_id;
        if self.backlog.is_empty() && self.backlog.capacity() > IDLE_BACKLOG {
            // A drained page's room goes back: thousands of streams that once replayed a page
            // must not each keep it for the rest of their lives.
            self.backlog = VecDeque::new();
        }
        Some(frame(&e))
    }

    /// Reads the account's next page of events from the database, after the last one sent or
    /// already in the backlog: what came before an event that arrived with a gap (committed
    /// first), or what this stream missed while it was behind. `false` when the database cannot
    /// answer: the stream then ends, and the client resumes from its `Last-Event-ID` once it
    /// reconnects.
    async fn fill_from_database(&mut self, reason: Missed) -> bool {
        if self.reg.hub.is_closing() {
            // A long replay yields to the shutdown between pages; the client resumes elsewhere.
            return false;
        }
        self.reg
            .metrics
            .event_stream_reads
            .with_label_values(&[reason.as_str()])
            .inc();
        let after = self.backlog.back().map_or(self.last_seq, |e| e.seq);
        match self
            .reg
            .store
            .events_after(&self.tenant, &self.account_id, after)
            .await
        {
            Ok(missed) => {
                self.more_in_database = missed.len() >= EVENTS_PAGE;
                self.backlog.extend(missed);
                true
            }
            Err(err) => {
                tracing::warn!(error = %err, "event stream cannot read what it missed; ending it");
                false
            }
        }
    }
}

#[utoipa::path(get, path = "/v1/events", responses((status = 200, content_type = "text/event-stream"), (status = 401), (status = 429, description = "too many failed attempts from this address")),
    security(("bearer" = [])))]
pub async fn stream(reg: web::Data<Registry>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let caller = reg.resolve(bearer(&req)?, &ctx(&req)).await?;
    let reg_for_stream = reg.clone();
    // Subscribe before reading the backlog so nothing falls in between.
    let rx = reg
        .hub
        .subscribe(&caller.tenant, &caller.session.account_id);
    let last_id: i64 = req
        .headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(i64::MAX);
    let backlog: VecDeque<EventRecord> = if last_id == i64::MAX {
        VecDeque::new()
    } else {
        reg.metrics
            .event_stream_reads
            .with_label_values(&[Missed::Replay.as_str()])
            .inc();
        reg.store
            .events_after(&caller.tenant, &caller.session.account_id, last_id)
            .await?
            .into()
    };
    // A fresh stream starts after the newest event already stored: a relay that replays the log
    // after a reconnect must not resend history to it.
    let start_seq = match backlog.back() {
        Some(e) => e.seq,
        None if last_id == i64::MAX => {
            reg.store
                .latest_event_id(&caller.tenant, &caller.session.account_id)
                .await?
        }
        None => last_id,
    };
    // A revoke of the caller's session that reached this process after its credential was
    // checked and before the subscription began comes through neither: the hub has it.
    // (Revokes after the subscription arrive on it, and end the stream below.)
    if reg.hub.is_revoked(&caller.tenant, &caller.session.id) {
        return Err(Refusal::SessionRevoked {
            reason: "revoked".into(),
        }
        .into());
    }
    let state = State {
        reg: reg_for_stream,
        rx,
        closed: Box::pin(reg.hub.closed()),
        keep_alive: Box::pin(tokio::time::sleep(KEEP_ALIVE)),
        more_in_database: backlog.len() >= EVENTS_PAGE,
        backlog,
        tenant: caller.tenant,
        account_id: caller.session.account_id.clone(),
        session_id: caller.session.id.clone(),
        last_seq: start_seq,
        done: false,
    };
    let body = futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if st.backlog.is_empty()
            && st.more_in_database
            && !st.fill_from_database(Missed::Replay).await
        {
            return None;
        }
        if let Some(bytes) = st.next_from_backlog() {
            return Some((Ok::<_, actix_web::Error>(bytes), st));
        }
        loop {
            let next = tokio::select! {
                // A complete response: the client resumes from its Last-Event-ID elsewhere.
                () = &mut st.closed => return None,
                () = &mut st.keep_alive => None,
                next = st.rx.recv() => Some(next),
            };
            let Some(next) = next else {
                let at = tokio::time::Instant::now() + KEEP_ALIVE;
                st.keep_alive.as_mut().reset(at);
                return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), st));
            };
            match next {
                Ok(fanned) => {
                    let e = &fanned.event;
                    // The caller's own revocation ends the stream, even when it was already
                    // counted in (a stream opened in the moment between a revoke's commit and
                    // its event reaching this process).
                    if e.tenant == st.tenant
                        && e.kind == "revoked"
                        && e.session_id == st.session_id
                        && e.seq <= st.last_seq
                    {
                        return None;
                    }
                    if e.tenant != st.tenant
                        || e.account_id != st.account_id
                        || e.seq <= st.last_seq
                    {
                        continue;
                    }
                    if e.seq > st.last_seq + 1 {
                        // A gap: what came before it is in the database (committed first).
                        if !st.fill_from_database(Missed::Gap).await {
                            return None;
                        }
                        // Past a full page the event waits in the database for a later page, so
                        // the page's end and the event leave no hole between them.
                        if !st.more_in_database && st.backlog.back().is_none_or(|b| b.seq < e.seq) {
                            st.backlog.push_back(e.clone());
                        }
                        let bytes = st.next_from_backlog()?;
                        return Some((Ok(bytes), st));
                    }
                    st.last_seq = e.seq;
                    st.done = e.kind == "revoked" && e.session_id == st.session_id;
                    return Some((Ok(fanned.wire(frame)), st));
                }
                // Fell behind its account's channel: what it missed is in the database.
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "event stream fell behind; reading the database");
                    if !st.fill_from_database(Missed::Behind).await {
                        return None;
                    }
                    // The caller's own revoke may have been among what the channel dropped,
                    // numbered before the stream's start (committed as it opened) and so not in
                    // what was just read: the hub noted it before sending it.
                    let own_revoke_ahead = st
                        .backlog
                        .iter()
                        .any(|e| e.kind == "revoked" && e.session_id == st.session_id);
                    if !own_revoke_ahead && st.reg.hub.is_revoked(&st.tenant, &st.session_id) {
                        return None;
                    }
                    if let Some(bytes) = st.next_from_backlog() {
                        return Some((Ok(bytes), st));
                    }
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Ok(HttpResponse::Ok()
        .insert_header(("Content-Type", "text/event-stream"))
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

//! A Server-Sent Events client that, unlike `events::read_events`, tells how a stream ended: a
//! clean end (the server finished the response) is not the same as a broken connection, and the
//! outage and shutdown tests depend on the difference.

use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct SseEvent {
    pub kind: String,
    pub data: Value,
}

#[derive(Debug)]
pub enum Next {
    Event(SseEvent),
    /// The server ended the response properly (for chunked HTTP/1.1, the last chunk arrived).
    Ended,
    /// The connection broke mid-response.
    Failed(#[allow(dead_code)] String), // read through `Debug`, in failure messages
}

/// reqwest's chunks are `bytes::Bytes`, which actix-web re-exports: no extra dependency.
type Body = Pin<Box<dyn Stream<Item = reqwest::Result<actix_web::web::Bytes>> + Send>>;

pub struct EventStream {
    body: Body,
    buf: String,
    /// The id of the last event received: what a reconnect sends as `Last-Event-ID`.
    pub last_id: Option<String>,
    finished: bool,
}

impl EventStream {
    pub fn new(res: reqwest::Response) -> Self {
        Self {
            body: Box::pin(res.bytes_stream()),
            buf: String::new(),
            last_id: None,
            finished: false,
        }
    }

    /// The next event, or how the stream ended; `None` if nothing of either came `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Next> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(event) = self.take_frame() {
                return Some(Next::Event(event));
            }
            if self.finished {
                return Some(Next::Ended);
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return None,
                Ok(None) => self.finished = true,
                Ok(Some(Err(e))) => return Some(Next::Failed(e.to_string())),
                Ok(Some(Ok(chunk))) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
            }
        }
    }

    /// Reads until an event satisfies `wanted` (returned), the stream ends (its end returned), or
    /// `within` passes (`None`).
    pub async fn wait_for(
        &mut self,
        within: Duration,
        wanted: impl Fn(&SseEvent) -> bool,
    ) -> Option<Next> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await? {
                Next::Event(e) if !wanted(&e) => continue,
                other => return Some(other),
            }
        }
    }

    /// One complete `event:` frame from the buffer; comments (keep-alives) are skipped.
    fn take_frame(&mut self) -> Option<SseEvent> {
        while let Some(end) = self.buf.find("\n\n") {
            let frame: String = self.buf.drain(..end + 2).collect();
            let (mut id, mut kind, mut data) = (String::new(), String::new(), Value::Null);
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.to_owned();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    kind = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(v).unwrap();
                }
            }
            if !kind.is_empty() {
                self.last_id = Some(id);
                return Some(SseEvent { kind, data });
            }
        }
        None
    }
}

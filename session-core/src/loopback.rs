//! The loopback redirect listener (RFC 8252 §7.3, §8.3): bound to 127.0.0.1 on an ephemeral
//! port, it answers exactly one genuine callback. A callback with a wrong or missing `state`
//! gets a 400 and the listener keeps waiting (another local process cannot end the flow);
//! after the timeout it gives up.
//!
//! It reads one HTTP request line per connection by hand: a server framework for a single GET
//! would be most of this crate's dependency weight.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::error::SessionError;

pub const CALLBACK_PATH: &str = "/callback";

pub struct LoopbackListener {
    listener: TcpListener,
    addr: SocketAddr,
}

/// What the provider sent back. `iss` is the authorization response's issuer (RFC 9207),
/// when the provider sends one; the caller compares it with the issuer it asked.
#[derive(Debug)]
pub enum Callback {
    Code {
        code: String,
        iss: Option<String>,
    },
    Error {
        error: String,
        description: Option<String>,
        iss: Option<String>,
    },
}

impl LoopbackListener {
    pub async fn bind() -> Result<Self, SessionError> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(SessionError::transient)?;
        let addr = listener.local_addr().map_err(SessionError::transient)?;
        Ok(Self { listener, addr })
    }

    /// `http://127.0.0.1:{port}/callback`: the IP literal, never `localhost` (RFC 8252 §8.3).
    pub fn redirect_uri(&self) -> String {
        format!("http://{}{CALLBACK_PATH}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits for the callback whose `state` equals `expected_state`.
    pub async fn wait(
        self,
        expected_state: &str,
        timeout: Duration,
    ) -> Result<Callback, SessionError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let accepted = tokio::time::timeout_at(deadline, self.listener.accept()).await;
            let Ok(Ok((mut conn, _))) = accepted else {
                return Err(match accepted {
                    Err(_) => SessionError::LoginTimeout(timeout.as_secs()),
                    Ok(Err(e)) => SessionError::transient(e),
                    Ok(Ok(_)) => SessionError::StateMismatch,
                });
            };
            let mut buf = vec![0u8; 8192];
            let n = match tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => continue,
            };
            let head = String::from_utf8_lossy(&buf[..n]);
            let target = head
                .lines()
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .unwrap_or_default()
                .to_owned();
            let url = url::Url::parse(&format!("http://127.0.0.1{target}")).ok();
            let params: HashMap<String, String> = url
                .as_ref()
                .map(|u| u.query_pairs().into_owned().collect())
                .unwrap_or_default();
            let (status, body, outcome) = if url.as_ref().map(url::Url::path) != Some(CALLBACK_PATH)
            {
                ("404 Not Found", "Not found.", None)
            } else if params.get("state").map(String::as_str) != Some(expected_state) {
                tracing::warn!("loopback callback with a wrong or missing state; still waiting");
                (
                    "400 Bad Request",
                    "This sign-in response does not belong to the sign-in in progress.",
                    None,
                )
            } else if let Some(error) = params.get("error") {
                (
                    "200 OK",
                    "Sign-in was not completed. You can close this window.",
                    Some(Callback::Error {
                        error: error.clone(),
                        description: params.get("error_description").cloned(),
                        iss: params.get("iss").cloned(),
                    }),
                )
            } else if let Some(code) = params.get("code") {
                (
                    "200 OK",
                    "Signed in. You can close this window and return to the terminal.",
                    Some(Callback::Code {
                        code: code.clone(),
                        iss: params.get("iss").cloned(),
                    }),
                )
            } else {
                ("400 Bad Request", "The sign-in response has no code.", None)
            };
            let page = format!("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Lanyard</title></head><body><p>{body}</p></body></html>");
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = conn.write_all(response.as_bytes()).await;
            let _ = conn.shutdown().await;
            if let Some(outcome) = outcome {
                return Ok(outcome);
            }
        }
    }
}

//! `BINARY healthcheck [--url URL]`: asks a running server whether it is up and exits 0 if it
//! answers 2xx within a few seconds, 1 otherwise. For container healthchecks (docker compose):
//! the slim runtime image has no curl, and the binary is already there.

use std::time::Duration;

/// How long a probe may take in all.
const TIMEOUT: Duration = Duration::from_secs(3);

/// The healthcheck subcommand's arguments.
#[derive(Debug, Clone, clap::Parser)]
#[command(about = "Ask a running server whether it is up: exit 0 if it answers 2xx, else 1")]
pub struct HealthcheckArgs {
    /// What to ask; defaults to the server's health endpoint on its default address.
    #[arg(long)]
    pub url: Option<url::Url>,
}

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("{url} did not answer: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} answered {status}")]
    Unhealthy { url: String, status: u16 },
}

/// GETs `url`; `Ok` on a 2xx answer.
pub async fn probe(url: &url::Url) -> Result<(), HealthError> {
    let unreachable = |reason: String| HealthError::Unreachable {
        url: url.to_string(),
        reason,
    };
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| unreachable(e.to_string()))?;
    let res = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if res.status().is_success() {
        Ok(())
    } else {
        Err(HealthError::Unhealthy {
            url: url.to_string(),
            status: res.status().as_u16(),
        })
    }
}

/// Runs the subcommand when the command line is `BINARY healthcheck …`: `Some(exit code)`,
/// else `None` (serve as usual). `default_url` is the health endpoint on the server's
/// configured address.
pub async fn run_if_asked(default_url: impl FnOnce() -> String) -> Option<i32> {
    let mut args = std::env::args_os();
    let binary = args.next()?;
    if args.next()? != "healthcheck" {
        return None;
    }
    let parsed = match <HealthcheckArgs as clap::Parser>::try_parse_from(
        std::iter::once(binary).chain(args),
    ) {
        Ok(parsed) => parsed,
        Err(e) => {
            let _ = e.print();
            return Some(2);
        }
    };
    let url = match parsed.url {
        Some(url) => url,
        None => match url::Url::parse(&default_url()) {
            Ok(url) => url,
            Err(e) => {
                eprintln!("healthcheck: {e}");
                return Some(2);
            }
        },
    };
    Some(match probe(&url).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("healthcheck: {e}");
            1
        }
    })
}

/// The URL of `path` on a server bound to `bind`: a wildcard bind is asked on loopback.
pub fn local_url(bind: &str, path: &str) -> String {
    let addr: Result<std::net::SocketAddr, _> = bind.parse();
    match addr {
        Ok(a) if a.ip().is_unspecified() => format!("http://127.0.0.1:{}{path}", a.port()),
        Ok(a) => format!("http://{a}{path}"),
        Err(_) => format!("http://{bind}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_bind_is_asked_on_loopback() {
        assert_eq!(
            local_url("0.0.0.0:8700", "/healthz"),
            "http://127.0.0.1:8700/healthz"
        );
        assert_eq!(
            local_url("127.0.0.1:8701", "/readyz"),
            "http://127.0.0.1:8701/readyz"
        );
    }

    #[tokio::test]
    async fn nothing_listening_is_unreachable() {
        let url = url::Url::parse("http://127.0.0.1:1/healthz").unwrap();
        assert!(matches!(
            probe(&url).await,
            Err(HealthError::Unreachable { .. })
        ));
    }
}

//! Redirect URI matching (RFC 9700 §4.1.3, RFC 8252 §7.3): exact string comparison, except that
//! a registered loopback IP URI matches any port. Comparison is on the raw strings, so case or
//! percent-encoding variants, added queries, fragments and userinfo tricks never match. There is
//! no wildcard matching.

const LOOPBACK_PREFIXES: [&str; 2] = ["http://127.0.0.1", "http://[::1]"];

/// Strips `:port` from the front of `rest`; `None` if a colon is not followed by a valid port.
fn strip_port(rest: &str) -> Option<&str> {
    let Some(after) = rest.strip_prefix(':') else {
        return Some(rest);
    };
    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
    let port: u32 = after[..digits].parse().ok()?;
    if digits > 5 || port == 0 || port > 65535 {
        return None;
    }
    Some(&after[digits..])
}

/// Whether `requested` is acceptable for a client that registered `registered`.
pub fn matches(registered: &str, requested: &str) -> bool {
    if requested.contains('#') {
        return false;
    }
    if registered == requested {
        return true;
    }
    for prefix in LOOPBACK_PREFIXES {
        let (Some(reg), Some(req)) = (
            registered.strip_prefix(prefix),
            requested.strip_prefix(prefix),
        ) else {
            continue;
        };
        let (Some(reg), Some(req)) = (strip_port(reg), strip_port(req)) else {
            return false;
        };
        // The path must start right after the authority, so `127.0.0.1.evil.example` fails here.
        return reg == req && (req.is_empty() || req.starts_with('/'));
    }
    false
}

/// Whether a URI is one we accept for registration: absolute, no fragment.
pub fn is_registrable(uri: &str) -> bool {
    match url::Url::parse(uri) {
        Ok(u) => {
            u.fragment().is_none() && matches!(u.scheme(), "http" | "https") && u.host().is_some()
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REG: &str = "http://127.0.0.1/callback";

    #[test]
    fn loopback_port_may_vary() {
        assert!(matches(REG, "http://127.0.0.1/callback"));
        assert!(matches(REG, "http://127.0.0.1:53682/callback"));
        assert!(matches(REG, "http://127.0.0.1:1/callback"));
        assert!(matches("http://[::1]/cb", "http://[::1]:8080/cb"));
    }

    #[test]
    fn everything_else_is_exact() {
        for bad in [
            "http://127.0.0.1:53682/other",
            "http://127.0.0.1:53682/callback?x=1",
            "http://127.0.0.1:53682/callback#frag",
            "http://127.0.0.1.evil.example/callback",
            "http://127.0.0.1@evil.example/callback",
            "http://127.0.0.1:53682@evil.example/callback",
            "http://127.0.0.1:53682/%63allback",
            "http://127.0.0.1:53682/Callback",
            "HTTP://127.0.0.1:53682/callback",
            "https://evil.example/callback",
            "http://localhost:53682/callback",
            "http://127.0.0.1:0/callback",
            "http://127.0.0.1:99999/callback",
            "http://127.0.0.1:/callback",
            "http://127.0.0.1:53682/callback/",
        ] {
            assert!(!matches(REG, bad), "{bad} matched");
        }
    }

    #[test]
    fn non_loopback_registrations_need_exact_match() {
        let reg = "https://app.example/cb";
        assert!(matches(reg, reg));
        assert!(!matches(reg, "https://app.example:8443/cb"));
    }
}

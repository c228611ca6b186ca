//! Which query and form values are secrets, and a query string with them replaced.

/// What a sensitive value is written as.
pub const REDACTED: &str = "[redacted]";

/// Parameter names whose values are credentials or single-use protocol values: authorization
/// codes, `state` and `nonce`, device-grant codes; besides these, every name containing `token`
/// (`id_token_hint`, `logout_token`, `refresh_token`…), `secret` or `password`.
const SENSITIVE: &[&str] = &[
    "code",
    "state",
    "nonce",
    "token",
    "client_secret",
    "user_code",
    "device_code",
    "password",
    "code_verifier",
    "client_assertion",
    "assertion",
    "api_key",
    "csrf",
    "csrf_token",
];

/// Whether a query or form parameter's value must never be logged.
pub fn is_sensitive_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SENSITIVE.contains(&name.as_str())
        || name.contains("token")
        || name.contains("secret")
        || name.contains("password")
}

/// `query` (without the `?`) with the value of every sensitive parameter replaced by
/// [`REDACTED`]; other pairs are kept byte for byte, in order. A name is compared after
/// percent-decoding, so `%63ode=` is redacted like `code=`.
pub fn redact_query(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    // Writing to a String cannot fail.
    let _ = write_query(&mut out, query);
    out
}

/// A request target (`/path?query`) with its query redacted by [`redact_query`].
pub fn redact_target(path: &str, query: &str) -> String {
    RedactedTarget::new(path, query).to_string()
}

/// A request target that writes itself redacted (as [`redact_target`]) when displayed, so a
/// log field costs nothing unless a subscriber records it.
pub struct RedactedTarget<'a> {
    path: &'a str,
    query: &'a str,
}

impl<'a> RedactedTarget<'a> {
    pub fn new(path: &'a str, query: &'a str) -> Self {
        Self { path, query }
    }
}

impl std::fmt::Display for RedactedTarget<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.path)?;
        if !self.query.is_empty() {
            f.write_str("?")?;
            write_query(f, self.query)?;
        }
        Ok(())
    }
}

fn write_query(out: &mut impl std::fmt::Write, query: &str) -> std::fmt::Result {
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.write_str("&")?;
        }
        let (raw_name, has_value) = match pair.split_once('=') {
            Some((n, _)) => (n, true),
            None => (pair, false),
        };
        let name: String = url::form_urlencoded::parse(raw_name.as_bytes())
            .map(|(k, _)| k.into_owned())
            .next()
            .unwrap_or_default();
        if has_value && is_sensitive_parameter(&name) {
            write!(out, "{raw_name}={REDACTED}")?;
        } else {
            out.write_str(pair)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_secret_of_a_sign_in_is_replaced_and_the_rest_kept() {
        let q = "response_type=code&client_id=lanyard-cli&code=abc123&state=s3cr3t&nonce=n0nce\
                 &id_token_hint=eyJhbGc&logout_token=eyJx&refresh_token=rt&client_secret=cs\
                 &user_code=WXYZ&device_code=dc&password=pw&redirect_uri=http%3A%2F%2F127.0.0.1";
        let out = redact_query(q);
        for secret in [
            "abc123", "s3cr3t", "n0nce", "eyJhbGc", "eyJx", "=rt", "=cs", "WXYZ", "=dc", "=pw",
        ] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.starts_with("response_type=code&client_id=lanyard-cli&code=[redacted]"));
        assert!(out.ends_with("redirect_uri=http%3A%2F%2F127.0.0.1"));
    }

    #[test]
    fn an_encoded_name_is_redacted_too() {
        assert_eq!(redact_query("%63ode=x&a=b"), "%63ode=[redacted]&a=b");
        assert_eq!(redact_query("Code=x"), "Code=[redacted]");
    }

    #[test]
    fn a_target_without_query_is_the_path() {
        assert_eq!(redact_target("/acme/jwks", ""), "/acme/jwks");
        assert_eq!(
            redact_target("/cb", "code=1&iss=x"),
            "/cb?code=[redacted]&iss=x"
        );
    }

    proptest! {
        #[test]
        fn a_sensitive_value_never_survives(value in "[A-Za-z0-9._~-]{6,40}", other in "[a-z]{1,8}") {
            prop_assume!(!other.ends_with("token") && !is_sensitive_parameter(&other));
            let q = format!("{other}=keep&code={value}&x_token={value}");
            let out = redact_query(&q);
            prop_assert!(!out.contains(&value));
            let kept = format!("{other}=keep");
            prop_assert!(out.contains(&kept));
        }
    }
}

//! The JetStream stream and subjects of one deployment: `{prefix}.events.{tenant}.{account}` for
//! sessions' events, `{prefix}.keys` for signing-key rotations. A tenant slug or account id that
//! is not a plain subject token (letters, digits, `-`, `_`) is written as `x` and its hex bytes,
//! so no name can add a level to a subject or match as a wildcard.

/// Subject and stream names of a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
    stream: String,
}

impl Subjects {
    /// For the deployment `name` (one stream per deployment: several deployments can share a
    /// NATS server).
    pub fn new(name: &str) -> Self {
        let token = token(name);
        Self {
            prefix: format!("lanyard.{token}"),
            stream: format!("LANYARD_{}", token.replace('-', "_")),
        }
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Every subject of the deployment (the stream's, and every consumer's filter).
    pub fn all(&self) -> String {
        format!("{}.>", self.prefix)
    }

    pub fn event(&self, tenant: &str, account_id: &str) -> String {
        format!(
            "{}.events.{}.{}",
            self.prefix,
            token(tenant),
            token(account_id)
        )
    }

    pub fn keys(&self) -> String {
        format!("{}.keys", self.prefix)
    }

    /// Whether `subject` is this deployment's key-rotation subject.
    pub fn is_keys(&self, subject: &str) -> bool {
        subject.strip_prefix(self.prefix.as_str()) == Some(".keys")
    }
}

fn token(name: &str) -> String {
    let plain = !name.is_empty()
        && !name.starts_with('x')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        name.to_owned()
    } else {
        format!("x{}", hex::encode(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_single_subject_tokens() {
        let s = Subjects::new("prod");
        assert_eq!(s.event("acme", "0af3"), "lanyard.prod.events.acme.0af3");
        // A dot, a wildcard or a space would add a level or match more: hex-encoded instead.
        assert_eq!(s.event("a.b", "*"), "lanyard.prod.events.x612e62.x2a");
        // A plain name starting with `x` is encoded too, so no two names share a token.
        assert_eq!(s.event("x61", ">"), "lanyard.prod.events.x783631.x3e");
        assert_ne!(token("a"), token("x61"));
        assert_eq!(s.keys(), "lanyard.prod.keys");
        assert!(s.is_keys("lanyard.prod.keys"));
        assert!(!s.is_keys("lanyard.prod.events.keys"));
        assert_eq!(s.all(), "lanyard.prod.>");
        assert_eq!(Subjects::new("my-dep").stream(), "LANYARD_my_dep");
    }
}

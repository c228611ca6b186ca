//! OAuth scopes (RFC 6749 §3.3): a space-delimited set.

use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope(BTreeSet<String>);

impl Scope {
    /// Parses a scope string; each token must be `%x21 / %x23-5B / %x5D-7E`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut set = BTreeSet::new();
        for token in s.split(' ').filter(|t| !t.is_empty()) {
            let ok = token
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
            if !ok || token.len() > 128 {
                return Err(format!(
                    "scope token '{}' has characters RFC 6749 §3.3 forbids",
                    token.escape_default()
                ));
            }
            set.insert(token.to_owned());
        }
        Ok(Self(set))
    }

    pub fn contains(&self, s: &str) -> bool {
        self.0.contains(s)
    }

    pub fn is_subset(&self, other: &Scope) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The scopes not in `allowed`.
    pub fn outside<'a>(&'a self, allowed: &'a [String]) -> Vec<&'a str> {
        self.0
            .iter()
            .filter(|s| !allowed.contains(s))
            .map(String::as_str)
            .collect()
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let joined: Vec<&str> = self.0.iter().map(String::as_str).collect();
        f.write_str(&joined.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_compares() {
        let s = Scope::parse("openid  profile email").unwrap();
        assert_eq!(s.to_string(), "email openid profile");
        assert!(Scope::parse("openid").unwrap().is_subset(&s));
        assert!(Scope::parse("bad\"quote").is_err());
    }
}

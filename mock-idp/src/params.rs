//! `application/x-www-form-urlencoded` parameters, as OAuth reads them: a parameter sent twice
//! is an error (RFC 6749 §3.1, §3.2) and an empty value counts as absent.

use std::collections::BTreeMap;

use url::form_urlencoded;

/// Most parameters any endpoint accepts; more is an attack, not a client.
const MAX_PARAMS: usize = 64;

#[derive(Debug, Default, Clone)]
pub struct Params(BTreeMap<String, String>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParamsError {
    #[error("parameter '{0}' is repeated")]
    Repeated(String),
    #[error("too many parameters")]
    TooMany,
    #[error("the body is not valid UTF-8 form data")]
    NotUtf8,
}

impl Params {
    pub fn parse(bytes: &[u8]) -> Result<Self, ParamsError> {
        if std::str::from_utf8(bytes).is_err() {
            return Err(ParamsError::NotUtf8);
        }
        let mut map = BTreeMap::new();
        for (k, v) in form_urlencoded::parse(bytes) {
            if map.len() >= MAX_PARAMS {
                return Err(ParamsError::TooMany);
            }
            if v.is_empty() {
                continue;
            }
            if map.insert(k.to_string(), v.into_owned()).is_some() {
                return Err(ParamsError::Repeated(k.escape_default().to_string()));
            }
        }
        Ok(Self(map))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn require(&self, name: &str) -> Result<&str, String> {
        self.get(name)
            .ok_or_else(|| format!("'{name}' is required"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_refused_and_empties_ignored() {
        assert_eq!(
            Params::parse(b"a=1&a=2").unwrap_err(),
            ParamsError::Repeated("a".into())
        );
        let p = Params::parse(b"a=&b=x%20y").unwrap();
        assert_eq!(p.get("a"), None);
        assert_eq!(p.get("b"), Some("x y"));
        assert_eq!(
            Params::parse(&[0xff, 0xfe]).unwrap_err(),
            ParamsError::NotUtf8
        );
    }
}

//! Token responses from minting to the wire: what one is issued for ([`Issue`]), the claims
//! minted for it ([`Minted`], by [`Mint`], which the tenant implements), the response once the
//! grant store has registered it ([`Unsigned`]), and signing it ([`Unsigned::sign`]).
//!
//! The split follows the lock: minting and registering happen inside one grant-store operation
//! (so a rotation and its new tokens are one atomic step), signing after it (signing is most of a
//! token request's CPU; under the lock the token endpoint could use one core at most).

use std::sync::Arc;

use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::config::SigningAlg;
use crate::directory::Client;
use crate::jwt::{self, IdTokenTamper};
use crate::keys::SigningKey;
use crate::scope::Scope;

/// What a token response is issued for.
pub struct Issue<'a> {
    pub client: &'a Client,
    pub sub: &'a str,
    pub sid: Option<&'a str>,
    pub scope: &'a Scope,
    pub nonce: Option<&'a str>,
    pub auth_time: OffsetDateTime,
    /// Whether a refresh token is issued (the grant store decides its family).
    pub with_refresh: bool,
}

/// Why no token response was issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("the user of this grant no longer exists")]
    UserGone,
    #[error("no active signing key")]
    NoAccessTokenKey,
    #[error("no active {0:?} key")]
    NoIdTokenKey(SigningAlg),
    #[error("{0}")]
    Signing(#[from] jwt::JwtError),
}

/// Mints the claims of a token response. The grant store calls it under its lock, so it must
/// not touch the grants; everything that can fail, short of signing itself, fails here.
pub trait Mint {
    fn mint(&self, req: &Issue<'_>) -> Result<Minted, IssueError>;
}

/// The claims of a token response and the records the grant store keeps of it.
pub struct Minted {
    pub(crate) tokens: UnsignedTokens,
    pub(crate) access_expires_at: OffsetDateTime,
    /// The refresh token's expiry, when one is issued (the grant store makes the token: it
    /// names its family).
    pub(crate) refresh_expires_at: Option<OffsetDateTime>,
}

/// A token response registered in the grants but not yet signed.
pub struct Unsigned {
    pub(crate) tokens: UnsignedTokens,
    /// The grant (refresh-token family) the response belongs to; its access token names it.
    pub(crate) grant: String,
    pub(crate) refresh_fp: Option<String>,
}

pub(crate) struct UnsignedTokens {
    pub(crate) at_claims: Value,
    pub(crate) at_key: Arc<SigningKey>,
    pub(crate) id_token: Option<UnsignedIdToken>,
    pub(crate) expires_in: u64,
    pub(crate) scope: String,
    pub(crate) refresh_token: Option<String>,
}

pub(crate) struct UnsignedIdToken {
    pub(crate) claims: Value,
    pub(crate) key: Arc<SigningKey>,
    /// An `id_token` fault taken when the response was minted.
    pub(crate) tamper: Option<IdTokenTamper>,
}

impl Unsigned {
    /// Signs the response; call it with the grants lock released.
    pub fn sign(self) -> Result<Issued, SignFailure> {
        match self.tokens.sign() {
            Ok(body) => Ok(Issued { body }),
            Err(error) => Err(SignFailure {
                error,
                refresh_fp: self.refresh_fp,
            }),
        }
    }

    /// The fingerprint of the refresh token in this response, if any.
    pub fn refresh_fp(&self) -> Option<&str> {
        self.refresh_fp.as_deref()
    }
}

/// A signed token response.
pub struct Issued {
    pub body: Value,
}

/// A response whose signing failed: its tokens were registered but will never be handed out,
/// so the grant store must take them back (every store operation that settles a response takes
/// this in its `Err` case).
#[must_use = "the registered tokens must be discarded"]
pub struct SignFailure {
    pub(crate) error: IssueError,
    pub(crate) refresh_fp: Option<String>,
}

impl UnsignedTokens {
    /// Signs the access token and the ID token and assembles the response body.
    fn sign(self) -> Result<Value, IssueError> {
        let access_token = jwt::sign(&self.at_claims, &self.at_key, Some("at+jwt"))?;
        let id_token = match self.id_token {
            Some(UnsignedIdToken {
                mut claims,
                key,
                tamper,
            }) => {
                claims["at_hash"] = Value::from(jwt::at_hash(&access_token));
                Some(match tamper {
                    Some(t) => t.sign(claims, &key),
                    None => jwt::sign(&claims, &key, None),
                }?)
            }
            None => None,
        };
        let mut body = json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        });
        if let Some(id_token) = id_token {
            body["id_token"] = Value::from(id_token);
        }
        if let Some(refresh_token) = self.refresh_token {
            body["refresh_token"] = Value::from(refresh_token);
        }
        Ok(body)
    }
}

//! Pending authorization requests (the login page's `auth_request`) and authorization codes:
//! issuing a code within an IdP session, and redeeming it once (RFC 6749 §4.1.2: a replay revokes
//! what the first redemption issued; SECURITY E-03, E-07: a failed redemption burns the code).

use time::{Duration, OffsetDateTime};

use super::{AuthRequest, CodeRecord, CodeState, GrantStore, IdpSession, IssuedCode};
use crate::directory::Client;
use crate::issue::{Issue, IssueError, Mint, SignFailure, Unsigned};
use crate::pkce::PkceError;
use crate::random;

/// What the token request presents with a code.
pub struct CodePresentation<'a> {
    pub client: &'a Client,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
    /// Whether the response carries a refresh token.
    pub with_refresh: bool,
}

/// Why a code was not redeemed.
#[derive(Debug, thiserror::Error)]
pub enum CodeRefusal {
    #[error("authorization code is unknown or expired")]
    Unknown,
    /// A second redemption: what the first one issued is now revoked.
    #[error("authorization code was already used; the tokens issued with it are now revoked")]
    Replayed { sub: String },
    #[error("authorization code was burnt by an earlier failed redemption")]
    Burned,
    /// The IdP session the code was issued in has ended (signed out, or expired) since: a grant
    /// made now would outlive that sign-out. The code is burnt.
    #[error(
        "the sign-in this authorization code was issued in has ended (signed out or expired); \
         sign in again"
    )]
    SessionEnded,
    /// The presentation did not match; the code is burnt.
    #[error("{reason}")]
    Rejected { sub: String, reason: CodeRejection },
    #[error(transparent)]
    Issue(#[from] IssueError),
}

/// Why a presented code did not match what it was issued for.
#[derive(Debug, thiserror::Error)]
pub enum CodeRejection {
    #[error("authorization code has expired")]
    Expired,
    #[error("authorization code was issued to another client")]
    OtherClient,
    #[error("redirect_uri does not match the one in the authorization request")]
    RedirectUriMismatch,
    #[error("redirect_uri does not match the registered one")]
    RedirectUriNotRegistered,
    #[error("{0}")]
    Pkce(PkceError),
    #[error("code_verifier sent, but the authorization request had no code_challenge")]
    VerifierWithoutChallenge,
}

impl GrantStore {
    /// Keeps `request` while the login page is open; returns its `auth_request` id.
    pub fn hold_request(&self, request: AuthRequest) -> String {
        let id = random::token();
        self.lock().pending.insert(id.clone(), request);
        id
    }

    /// The pending request `id`, if it is live; it stays pending.
    pub fn pending_request(&self, id: &str, now: OffsetDateTime) -> Option<AuthRequest> {
        self.lock()
            .pending
            .get(id)
            .filter(|r| r.expires_at > now)
            .cloned()
    }

    /// Takes the pending request `id` out, if it is live: one sign-in per request.
    pub fn take_request(&self, id: &str, now: OffsetDateTime) -> Option<AuthRequest> {
        let request = self.lock().pending.remove(id)?;
        (request.expires_at > now).then_some(request)
    }

    /// Puts back a request taken by [`take_request`](Self::take_request) whose sign-in was
    /// refused, so the page that carried it still works.
    pub fn return_request(&self, id: &str, request: AuthRequest) {
        self.lock().pending.insert(id.to_owned(), request);
    }

    /// Issues a code for `request` within `session` (which the request's client joins); returns
    /// the code.
    pub fn issue_code(
        &self,
        session: &IdpSession,
        request: AuthRequest,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> String {
        let code = random::token();
        let mut grants = self.lock();
        if let Some(s) = grants.sessions.values_mut().find(|s| s.sid == session.sid) {
            s.clients.insert(request.client_id.clone());
        }
        grants.codes.insert(
            random::fingerprint(&code),
            CodeRecord {
                sub: session.sub.clone(),
                expires_at: now + ttl,
                state: CodeState::Fresh(Box::new(IssuedCode {
                    request,
                    sid: session.sid.clone(),
                    auth_time: session.auth_time,
                })),
            },
        );
        code
    }

    /// Redeems the code with fingerprint `fp`: checks it against `presented`, mints its
    /// response with `mint` and marks the code redeemed, all in one step. From the first check
    /// that fails on, the code is burnt; a replay revokes what the first redemption issued, even
    /// while that response is still being signed.
    pub fn redeem_code(
        &self,
        mint: &impl Mint,
        fp: &str,
        presented: &CodePresentation<'_>,
        now: OffsetDateTime,
    ) -> Result<Unsigned, CodeRefusal> {
        let mut grants = self.lock();
        let Some(rec) = grants.codes.get_mut(fp) else {
            return Err(CodeRefusal::Unknown);
        };
        let issued = match &rec.state {
            CodeState::Redeemed { grant } => {
                let (sub, grant) = (rec.sub.clone(), grant.clone());
                grants.revoke_family(&grant, super::Ending::Theft);
                return Err(CodeRefusal::Replayed { sub });
            }
            CodeState::Burned => return Err(CodeRefusal::Burned),
            CodeState::Fresh(issued) => issued.clone(),
        };
        if let Err(reason) = issued.check(rec.expires_at, presented, now) {
            rec.state = CodeState::Burned;
            return Err(CodeRefusal::Rejected {
                sub: rec.sub.clone(),
                reason,
            });
        }
        let sub = rec.sub.clone();
        if !grants.session_live(&issued.sid, now) {
            if let Some(r) = grants.codes.get_mut(fp) {
                r.state = CodeState::Burned;
            }
            return Err(CodeRefusal::SessionEnded);
        }
        let issue = Issue {
            client: presented.client,
            sub: &sub,
            sid: Some(&issued.sid),
            scope: &issued.request.scope,
            nonce: issued.request.nonce.as_deref(),
            auth_time: issued.auth_time,
            with_refresh: presented.with_refresh,
        };
        let minted = mint.mint(&issue)?;
        let unsigned = grants.register(minted, &issue, None);
        if let Some(r) = grants.codes.get_mut(fp) {
            r.state = CodeState::Redeemed {
                grant: unsigned.grant.clone(),
            };
        }
        Ok(unsigned)
    }

    /// The response of code `fp` could not be signed: nothing was handed out, its tokens are
    /// taken back and the failure burns the code.
    pub fn code_not_delivered(&self, fp: &str, failure: SignFailure) -> IssueError {
        let mut grants = self.lock();
        if let Some(r) = grants.codes.get_mut(fp) {
            r.state = CodeState::Burned;
        }
        grants.discard(failure.refresh_fp.as_deref());
        failure.error
    }
}

impl IssuedCode {
    /// Checks a presentation of this fresh code, which expires at `expires_at`.
    fn check(
        &self,
        expires_at: OffsetDateTime,
        presented: &CodePresentation<'_>,
        now: OffsetDateTime,
    ) -> Result<(), CodeRejection> {
        let request = &self.request;
        let redirect_uri = presented.redirect_uri;
        if expires_at <= now {
            return Err(CodeRejection::Expired);
        }
        if request.client_id != *presented.client.id() {
            return Err(CodeRejection::OtherClient);
        }
        if request.redirect_uri_given && redirect_uri != Some(request.redirect_uri.as_str()) {
            return Err(CodeRejection::RedirectUriMismatch);
        }
        if !request.redirect_uri_given && redirect_uri.is_some_and(|r| r != request.redirect_uri) {
            return Err(CodeRejection::RedirectUriNotRegistered);
        }
        match (&request.code_challenge, presented.code_verifier) {
            (Some(challenge), v) => challenge.verify(v).map_err(CodeRejection::Pkce),
            (None, Some(_)) => Err(CodeRejection::VerifierWithoutChallenge),
            (None, None) => Ok(()),
        }
    }
}

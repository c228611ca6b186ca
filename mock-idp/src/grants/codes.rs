//! Pending authorization requests (the login page's `auth_request`) and authorization codes:
//! issuing a code within an IdP session, and redeeming it once (RFC 6749 §4.1.2: a replay revokes
//! what the first redemption issued; SECURITY E-03, E-07: a failed redemption burns the code).
//!
//! A code names the grant its redemption will make: `GRANT~SECRET`, the grant's id (public: every
//! access token of the grant carries it) and 256 random bits. Redemption drops the code's record
//! and leaves the code's fingerprint in the grant, so a replay is recognised — and revokes the
//! grant — for as long as the grant lives, with no record per spent code. Each one was about
//! 250 B kept for 11 minutes: 13,000 of them at the end of a 10-minute soak.

use time::{Duration, OffsetDateTime};

use super::{AuthRequest, CodeRecord, CodeState, Ending, GrantStore, IdpSession, IssuedCode};
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
        let code = format!("{}{GRANT_SEPARATOR}{}", random::id(), random::token());
        let mut grants = self.lock();
        if let Some(s) = grants.sessions.values_mut().find(|s| s.sid == session.sid) {
            s.clients.insert(request.client_id.clone());
        }
        grants.codes.insert(
            random::fingerprint(&code),
            CodeRecord {
                expires_at: now + ttl,
                state: CodeState::Fresh(Box::new(IssuedCode {
                    request,
                    sub: session.sub.clone(),
                    sid: session.sid.clone(),
                    auth_time: session.auth_time,
                })),
            },
        );
        code
    }

    /// Redeems `code`: checks it against `presented`, mints its response with `mint` and makes
    /// the grant the code names, all in one step. From the first check that fails on, the code
    /// is burnt; a replay revokes what the first redemption issued, even while that response is
    /// still being signed.
    pub fn redeem_code(
        &self,
        mint: &impl Mint,
        code: &str,
        presented: &CodePresentation<'_>,
        now: OffsetDateTime,
    ) -> Result<Unsigned, CodeRefusal> {
        let fp = random::fingerprint(code);
        let mut grants = self.lock();
        let Some(rec) = grants.codes.get_mut(&fp) else {
            // Redeemed (no record of its own): a replay, if the grant it names holds it.
            let replayed = named_grant(code).and_then(|id| {
                grants
                    .families
                    .get(id)
                    .filter(|f| f.code_fp.as_deref() == Some(fp.as_str()))
                    .map(|f| (id.to_owned(), f.sub.clone()))
            });
            let Some((grant, sub)) = replayed else {
                return Err(CodeRefusal::Unknown);
            };
            grants.revoke_family(&grant, Ending::Theft);
            return Err(CodeRefusal::Replayed { sub });
        };
        let issued = match &rec.state {
            CodeState::Burned => return Err(CodeRefusal::Burned),
            CodeState::Fresh(issued) => issued.clone(),
        };
        if let Err(reason) = issued.check(rec.expires_at, presented, now) {
            rec.state = CodeState::Burned;
            return Err(CodeRefusal::Rejected {
                sub: issued.sub,
                reason,
            });
        }
        if !grants.session_live(&issued.sid, now) {
            if let Some(r) = grants.codes.get_mut(&fp) {
                r.state = CodeState::Burned;
            }
            return Err(CodeRefusal::SessionEnded);
        }
        let issue = Issue {
            client: presented.client,
            sub: &issued.sub,
            sid: Some(&issued.sid),
            scope: &issued.request.scope,
            nonce: issued.request.nonce.as_deref(),
            auth_time: issued.auth_time,
            with_refresh: presented.with_refresh,
        };
        let minted = mint.mint(&issue)?;
        // The grant takes the id the code names (issued with the code, so it is new); the
        // code's record gives way to its fingerprint in the grant.
        let id = named_grant(code)
            .filter(|id| !grants.families.contains_key(*id) && !grants.ended.contains_key(*id))
            .map(str::to_owned);
        let unsigned = grants.register(minted, &issue, id);
        grants.codes.remove(&fp);
        if let Some(f) = grants.families.get_mut(&unsigned.grant) {
            f.code_fp = Some(fp);
        }
        Ok(unsigned)
    }

    /// The response of `code` could not be signed: nothing was handed out, its tokens are
    /// taken back and the failure burns the code (a second presentation is told so, not taken
    /// for a replay).
    pub fn code_not_delivered(
        &self,
        code: &str,
        failure: SignFailure,
        now: OffsetDateTime,
    ) -> IssueError {
        let fp = random::fingerprint(code);
        let mut grants = self.lock();
        if let Some(f) = named_grant(code).and_then(|id| grants.families.get_mut(id)) {
            if f.code_fp.as_deref() == Some(fp.as_str()) {
                f.code_fp = None;
            }
        }
        grants.codes.insert(
            fp,
            CodeRecord {
                expires_at: now,
                state: CodeState::Burned,
            },
        );
        grants.discard(failure.refresh_fp.as_deref());
        failure.error
    }
}

/// Between the grant a code names and its secret part.
const GRANT_SEPARATOR: char = '~';

/// The grant `code` names (see the module documentation), if it has the shape.
fn named_grant(code: &str) -> Option<&str> {
    code.split_once(GRANT_SEPARATOR).map(|(grant, _)| grant)
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

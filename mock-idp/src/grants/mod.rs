//! The mutable grant state of one tenant: pending authorization requests, codes, refresh-token
//! families, access tokens, IdP sessions and device grants. Secrets are keyed by their SHA-256
//! fingerprint, never by value.
//!
//! [`GrantStore`] is the only way in, and the only place that takes the lock: every operation
//! (redeem a code, rotate a refresh token, approve a device, end a session…) is one method that
//! locks once, so it is atomic, and answers with what to issue or a typed refusal. The maps and
//! the records in them are private to this module; handlers never see them. One submodule per
//! kind of grant: [`codes`] (pending requests and codes), [`tokens`] (access tokens, refresh
//! families), [`sessions`] (IdP sessions), [`devices`] (device grants).
//!
//! Operations that issue tokens take a [`Mint`] and call it under the lock (the tenant reads its
//! directory, keys and faults there: lock order is grants, then those), and hand back an
//! [`Unsigned`](crate::issue::Unsigned) response for the caller to sign after the lock; a signing
//! failure goes back to the store, which takes the registered tokens back.

mod codes;
mod devices;
mod refresh_token;
mod sessions;
mod tokens;

use std::collections::{BTreeSet, HashMap, VecDeque};

use parking_lot::{Mutex, MutexGuard};
use serde_json::Value;
use time::{Duration, OffsetDateTime};
use tokio::sync::Notify;

use crate::ids::ClientId;
use crate::issue::{Issue, Minted, Unsigned};
use crate::pkce::CodeChallenge;
use crate::random;
use crate::scope::Scope;

pub use codes::{CodePresentation, CodeRefusal, CodeRejection};
pub use devices::{Approver, DeviceDecisionRefusal, DevicePollRefusal, StartedDevice};
pub use tokens::{
    AccessGrant, AccessRefusal, RefreshIntrospection, RefreshRefusal, Revocation, Rotate,
};

/// A validated authorization request waiting for the user to sign in. A value the front channel
/// builds (`authorization_request.rs`); the store only keeps it.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub client_id: ClientId,
    pub redirect_uri: String,
    /// Whether `redirect_uri` was sent (then the token request must repeat it, RFC 6749 §4.1.3).
    pub redirect_uri_given: bool,
    pub scope: Scope,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<CodeChallenge>,
    pub login_hint: Option<String>,
    pub expires_at: OffsetDateTime,
}

/// An IdP session. Handed out as a snapshot (a clone): changing one changes nothing stored.
#[derive(Debug, Clone)]
pub struct IdpSession {
    pub sid: String,
    pub sub: String,
    pub auth_time: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub clients: BTreeSet<ClientId>,
}

/// What a fresh code was issued for.
#[derive(Debug, Clone)]
struct IssuedCode {
    request: AuthRequest,
    sub: String,
    sid: String,
    auth_time: OffsetDateTime,
}

#[derive(Debug, Clone)]
enum CodeState {
    Fresh(Box<IssuedCode>),
    /// A failed redemption burnt it.
    Burned,
}

/// A code not redeemed yet (fresh, or burnt by a failed redemption). A redeemed code keeps no
/// record: it names the grant its redemption made (`codes`), which keeps its fingerprint.
#[derive(Debug, Clone)]
struct CodeRecord {
    expires_at: OffsetDateTime,
    state: CodeState,
}

/// A grant: every token response issued from one sign-in (a code, a device approval, client
/// credentials) and its refresh rotations — the refresh-token family, if it has refresh tokens.
/// Access tokens keep no record of their own: each names its grant (claim `grant`) and is live
/// while the grant is, unrevoked, so revoking the grant revokes them and the records follow the
/// live grants, not the access tokens issued (one per sign-in and per refresh, each kept until
/// it expired before).
#[derive(Debug, Clone)]
struct Family {
    client_id: ClientId,
    sub: String,
    sid: Option<String>,
    scope: Scope,
    auth_time: OffsetDateTime,
    /// When the grant's latest access token expires: the record lasts at least until then.
    access_expires_at: OffsetDateTime,
    /// Access tokens of the grant revoked one by one (RFC 7009), by `jti`, until they expire.
    revoked_access: HashMap<String, OffsetDateTime>,
    /// Fingerprints of the family's used (rotated-out) refresh tokens still held whole, oldest
    /// first, at most [`USED_REFRESH_KEPT`].
    used_refresh: VecDeque<String>,
    /// The key of the MACs in the family's refresh tokens (see `refresh_token`).
    key: refresh_token::FamilyKey,
    /// Refresh tokens issued in the family so far: the next one's generation.
    generation: u64,
    /// Fingerprint of the family's latest refresh token.
    live_refresh: Option<String>,
    /// The generations below this one have left the window of used tokens: a genuine token of
    /// such a generation is a used one, forgotten. (A token whose record expired and was swept
    /// is not among them: it is merely unknown, as an expired token is.)
    forgotten_below: u64,
    /// Fingerprint of the authorization code whose redemption made the grant: a replay of it
    /// revokes the grant, for as long as the grant lives (`codes`).
    code_fp: Option<String>,
}

/// Used refresh tokens kept whole per family: the immediate parent of the live token, which the
/// reuse grace window answers with the same child (it covers that one token only). Older ones
/// are forgotten: a replay of any of them is still recognised, by the family and the generation
/// its MAC vouches for (`refresh_token`), and revokes the family (RFC 9700 §4.14.2), however
/// many times a thief rotated since. A whole record per rotation was about 2.4 KB (with the
/// rotation's access token; 300,000 rotations in a quarter of an hour took 720 MB), a tombstone
/// per rotation still about 200 B for the refresh lifetime, and a window of 16 whole records
/// about 5 KB per long-lived grant (the soak's IdP grew 3 MB in ten minutes): now a family
/// holds two records (its live token and that parent) after a million rotations as after one.
pub const USED_REFRESH_KEPT: usize = 1;

/// What is left of a revoked grant (by its client, RFC 7009; by a reuse or a code replay; with
/// its IdP session), for as long as its [`Ending`] says: what answering its tokens needs —
/// "revoked", not "unknown" — and nothing else. Its refresh tokens are recognised by their MAC
/// (every generation issued is below `generation`); its access tokens by the grant they name.
/// The whole record (subject, scope, session, token lists: about 1 KB) stayed until then
/// before, and a grant revoked other than by its client kept it, with every refresh-token
/// record, for the refresh lifetime (30 days by default): the soak's IdP grew 12 MB in ten
/// minutes of sign-ins and sign-outs.
#[derive(Debug, Clone)]
struct Ended {
    client_id: ClientId,
    key: refresh_token::FamilyKey,
    /// Refresh tokens issued in the grant: each was below this generation.
    generation: u64,
    /// When the sweep drops the tombstone, after which the grant's tokens are merely unknown.
    until: OffsetDateTime,
}

/// Why a grant is revoked, which sets how long its tombstone answers "revoked".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Signed out, by its client (RFC 7009) or with its IdP session: until its last access
    /// token expires. A client that comes back later knows it signed out.
    SignedOut,
    /// A used refresh token or a spent code came back (RFC 9700 §4.14.2, RFC 6749 §4.1.2): a
    /// theft. Until its refresh tokens would have expired, so the client that holds the live
    /// one hears, whenever it comes back, that it was revoked — not that its token is unknown.
    /// Thefts are rare: these tombstones add no steady growth.
    Theft,
}

/// A refresh token recognised by its MAC alone (`Grants::recognise`), by its grant's id.
enum Recognised {
    /// A used token of a live grant, past the window of whole records.
    Used(String),
    /// Any token of a revoked grant.
    OfRevoked(String),
}

impl Recognised {
    fn family(&self) -> &str {
        match self {
            Self::Used(f) | Self::OfRevoked(f) => f,
        }
    }
}

#[derive(Debug, Clone)]
struct RefreshRecord {
    family: String,
    /// Its place in the family (`refresh_token`).
    generation: u64,
    expires_at: OffsetDateTime,
    used_at: Option<OffsetDateTime>,
    /// What this token was rotated into, for the reuse grace window.
    child: Option<Rotation>,
}

/// A refresh token's successor and the response that carried it.
#[derive(Debug, Clone)]
struct Rotation {
    /// Fingerprint of the child refresh token.
    child_fp: String,
    /// The token response; `None` while its JWTs are being signed, outside the grants lock, and
    /// for good if the client has no reuse grace window (nothing would ever read it).
    response: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DeviceStatus {
    Pending,
    Approved {
        sub: String,
        sid: String,
        auth_time: OffsetDateTime,
    },
    Denied,
}

#[derive(Debug, Clone)]
struct DeviceGrant {
    client_id: ClientId,
    scope: Scope,
    expires_at: OffsetDateTime,
    interval: Duration,
    /// `max_age` of the device authorization request: how old, in seconds, a browser's sign-in
    /// may be to approve this device with it.
    max_age: Option<i64>,
    last_poll: Option<OffsetDateTime>,
    status: DeviceStatus,
}

#[derive(Debug, Default)]
struct Grants {
    pending: HashMap<String, AuthRequest>,
    codes: HashMap<String, CodeRecord>,
    /// Live grants. A revoked one leaves [`Ended`] in `ended`.
    families: HashMap<String, Family>,
    ended: HashMap<String, Ended>,
    refresh: HashMap<String, RefreshRecord>,
    /// IdP sessions by the fingerprint of their cookie.
    sessions: HashMap<String, IdpSession>,
    /// Device grants by the fingerprint of their device_code.
    devices: HashMap<String, DeviceGrant>,
    /// user_code → device_code fingerprint.
    user_codes: HashMap<String, String>,
}

/// The grants of one tenant behind their one mutex; see the module documentation.
#[derive(Debug, Default)]
pub struct GrantStore {
    grants: Mutex<Grants>,
    /// Woken whenever a refresh rotation settles: its response is stored in the parent record,
    /// or the rotation is rolled back. A repeat inside the reuse grace window that finds the
    /// response still being signed waits on it.
    rotations: Notify,
}

impl GrantStore {
    /// The one place the lock is taken.
    fn lock(&self) -> MutexGuard<'_, Grants> {
        self.grants.lock()
    }

    /// Drops what has expired.
    pub fn sweep(&self, now: OffsetDateTime) {
        self.lock().sweep(now);
    }

    /// How many records of each kind are held.
    pub fn counts(&self) -> RecordCounts {
        self.lock().counts()
    }
}

/// How many records of each kind a tenant's grant store holds (the admin audit reports them, so
/// a soak can show they stay bounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RecordCounts {
    pub pending_requests: usize,
    pub codes: usize,
    /// Live grants (refresh-token families, and grants of access tokens alone).
    pub families: usize,
    /// Tombstones of revoked grants, each kept until the grant's last access token expires.
    pub revoked_grants: usize,
    pub refresh_tokens: usize,
    /// Access-token records: only those revoked one by one (a live access token is checked
    /// against its grant, among `families`).
    pub access_tokens: usize,
    pub idp_sessions: usize,
    pub device_grants: usize,
}

impl Grants {
    /// Registers a minted response in grant `family` (a refresh rotation's), or in a new grant:
    /// its access token names the grant and extends its life to the token's expiry, and a
    /// refresh token is made in it if one was minted.
    fn register(&mut self, minted: Minted, req: &Issue<'_>, family: Option<String>) -> Unsigned {
        let client_id = req.client.id().clone();
        let fid = family.unwrap_or_else(random::id);
        let mut tokens = minted.tokens;
        let f = self.families.entry(fid.clone()).or_insert_with(|| Family {
            client_id: client_id.clone(),
            sub: req.sub.to_owned(),
            sid: req.sid.map(str::to_owned),
            scope: req.scope.clone(),
            auth_time: req.auth_time,
            access_expires_at: minted.access_expires_at,
            revoked_access: HashMap::new(),
            used_refresh: VecDeque::new(),
            key: refresh_token::FamilyKey::generate(),
            generation: 0,
            forgotten_below: 0,
            live_refresh: None,
            code_fp: None,
        });
        f.access_expires_at = f.access_expires_at.max(minted.access_expires_at);
        tokens.at_claims["grant"] = Value::from(fid.as_str());
        let mut refresh_fp = None;
        if let Some(expires_at) = minted.refresh_expires_at {
            let generation = f.generation;
            let token = refresh_token::make(&fid, generation, &f.key);
            f.generation += 1;
            let fp = random::fingerprint(&token);
            f.live_refresh = Some(fp.clone());
            tokens.refresh_token = Some(token);
            self.refresh.insert(
                fp.clone(),
                RefreshRecord {
                    family: fid.clone(),
                    generation,
                    expires_at,
                    used_at: None,
                    child: None,
                },
            );
            refresh_fp = Some(fp);
        }
        Unsigned {
            tokens,
            grant: fid,
            refresh_fp,
        }
    }

    /// Revokes grant `family`: its refresh tokens and every access token issued in it. Its
    /// record and its refresh tokens' records give way to an [`Ended`] tombstone, kept as long
    /// as `ending` says. Returns whether anything changed (false if it was not live).
    fn revoke_family(&mut self, family: &str, ending: Ending) -> bool {
        let Some(f) = self.families.remove(family) else {
            return false;
        };
        let mut until = f.access_expires_at;
        for fp in f.used_refresh.iter().chain(&f.live_refresh) {
            if let Some(r) = self.refresh.remove(fp) {
                if ending == Ending::Theft {
                    until = until.max(r.expires_at);
                }
            }
        }
        self.ended.insert(
            family.to_owned(),
            Ended {
                client_id: f.client_id,
                key: f.key,
                generation: f.generation,
                until,
            },
        );
        true
    }

    /// Forgets the refresh token of a response that was registered but never handed out (its
    /// signing failed). Its access token was never seen: nothing of it to forget. A grant made
    /// for it alone lasts, unused, until that token would have expired.
    fn discard(&mut self, refresh_fp: Option<&str>) {
        if let Some(fp) = refresh_fp {
            self.refresh.remove(fp);
        }
    }

    /// Marks refresh token `fp` of `family` used (rotated into `child`). The family's oldest
    /// used tokens past [`USED_REFRESH_KEPT`] are forgotten once the rotation settles
    /// ([`forget_past_window`](Self::forget_past_window)): until then a failed signing may still
    /// take the rotation back, and the parent's own parent must still answer a repeat inside
    /// the grace window.
    fn retire_refresh(
        &mut self,
        fp: &str,
        family: &str,
        now: OffsetDateTime,
        child: Option<Rotation>,
    ) {
        if let Some(r) = self.refresh.get_mut(fp) {
            r.used_at = Some(now);
            r.child = child;
        }
        if let Some(f) = self.families.get_mut(family) {
            f.used_refresh.push_back(fp.to_owned());
        }
    }

    /// Forgets family `family`'s oldest used refresh tokens past [`USED_REFRESH_KEPT`]: their
    /// replays are recognised by the MAC from now on (`forgotten_below`).
    fn forget_past_window(&mut self, family: &str) {
        let Some(f) = self.families.get_mut(family) else {
            return;
        };
        while f.used_refresh.len() > USED_REFRESH_KEPT {
            if let Some(old) = f.used_refresh.pop_front() {
                if let Some(r) = self.refresh.remove(&old) {
                    f.forgotten_below = f.forgotten_below.max(r.generation + 1);
                }
            }
        }
    }

    /// A refresh token the records do not hold, recognised by its MAC: a used one of a live
    /// grant past its window, or any of a revoked grant's while its tombstone lasts.
    fn recognise(&self, token: &str) -> Option<Recognised> {
        let presented = refresh_token::parse(token)?;
        let family = presented.family.to_owned();
        if let Some(f) = self.families.get(presented.family) {
            return (presented.generation < f.forgotten_below && presented.is_genuine(&f.key))
                .then_some(Recognised::Used(family));
        }
        let e = self.ended.get(presented.family)?;
        (presented.generation < e.generation && presented.is_genuine(&e.key))
            .then_some(Recognised::OfRevoked(family))
    }

    /// The client that holds grant `family`, live or revoked.
    fn holder(&self, family: &str) -> Option<&ClientId> {
        self.families
            .get(family)
            .map(|f| &f.client_id)
            .or_else(|| self.ended.get(family).map(|e| &e.client_id))
    }

    /// A refresh token not among the records: a used one past its family's window comes back
    /// (its family revoked: reuse); one of a revoked grant is revoked; else it is unknown. A
    /// used token is at least [`USED_REFRESH_KEPT`] rotations old, so older than the family's
    /// live token; if it has expired since, its replay still revokes: the client that holds
    /// the live token never presents it.
    fn replayed_forgotten(&mut self, token: &str, client: &ClientId) -> tokens::RefreshRefusal {
        let Some(recognised) = self.recognise(token) else {
            return tokens::RefreshRefusal::Unknown;
        };
        if self.holder(recognised.family()) != Some(client) {
            return tokens::RefreshRefusal::OtherClient;
        }
        match recognised {
            Recognised::OfRevoked(_) => tokens::RefreshRefusal::Revoked,
            Recognised::Used(family) => {
                let sub = self
                    .families
                    .get(&family)
                    .map(|f| f.sub.clone())
                    .unwrap_or_default();
                self.revoke_family(&family, Ending::Theft);
                tokens::RefreshRefusal::Reused { sub }
            }
        }
    }

    /// Takes back the rotation of `fp` (its response could not be signed): live again, and no
    /// longer among its family's used tokens.
    fn unretire_refresh(&mut self, fp: &str) {
        let Some(r) = self.refresh.get_mut(fp) else {
            return;
        };
        r.used_at = None;
        r.child = None;
        let family = r.family.clone();
        if let Some(f) = self.families.get_mut(&family) {
            f.used_refresh.retain(|u| u != fp);
            f.live_refresh = Some(fp.to_owned());
        }
    }

    /// How many records of each kind the tenant holds (for the admin API: the soak's check
    /// that they stay bounded).
    fn counts(&self) -> RecordCounts {
        RecordCounts {
            pending_requests: self.pending.len(),
            codes: self.codes.len(),
            families: self.families.len(),
            revoked_grants: self.ended.len(),
            refresh_tokens: self.refresh.len(),
            access_tokens: self.families.values().map(|f| f.revoked_access.len()).sum(),
            idp_sessions: self.sessions.len(),
            device_grants: self.devices.len(),
        }
    }

    /// Whether IdP session `sid` is live: a grant bound to it may be made. A scan, as the
    /// other look-ups by `sid` (sessions are few: one per person and browser for 8 hours).
    fn session_live(&self, sid: &str, now: OffsetDateTime) -> bool {
        self.sessions
            .values()
            .any(|s| s.sid == sid && s.expires_at > now)
    }

    /// Revokes every family bound to IdP session `sid`.
    fn revoke_session_families(&mut self, sid: &str) -> usize {
        let ids: Vec<String> = self
            .families
            .iter()
            .filter(|(_, f)| f.sid.as_deref() == Some(sid))
            .map(|(id, _)| id.clone())
            .collect();
        ids.iter()
            .filter(|id| self.revoke_family(id, Ending::SignedOut))
            .count()
    }

    /// Drops what has expired. Codes not redeemed are kept 10 minutes past expiry, so a late
    /// presentation is told the code expired or was burnt; a redeemed code's replay is
    /// recognised by its grant for as long as that lives.
    fn sweep(&mut self, now: OffsetDateTime) {
        self.pending.retain(|_, r| r.expires_at > now);
        self.codes
            .retain(|_, c| c.expires_at + Duration::minutes(10) > now);
        self.refresh.retain(|_, r| r.expires_at > now);
        let live: BTreeSet<&String> = self.refresh.values().map(|r| &r.family).collect();
        let dead: Vec<String> = self
            .families
            .iter()
            .filter(|(id, f)| !live.contains(id) && f.access_expires_at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in dead {
            self.families.remove(&id);
        }
        self.ended.retain(|_, e| e.until > now);
        let refresh = &self.refresh;
        for f in self.families.values_mut() {
            f.revoked_access.retain(|_, expires_at| *expires_at > now);
            f.used_refresh.retain(|r| refresh.contains_key(r));
        }
        self.sessions.retain(|_, s| s.expires_at > now);
        self.devices.retain(|_, d| d.expires_at > now);
        let devices = &self.devices;
        self.user_codes.retain(|_, fp| devices.contains_key(fp));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> ClientId {
        ClientId::parse("c").unwrap()
    }

    /// A live grant of [`client`] issued at `t0`: one refresh token issued, its access token
    /// live for 10 minutes.
    fn family(t0: OffsetDateTime) -> Family {
        Family {
            client_id: client(),
            sub: "s".into(),
            sid: None,
            scope: Scope::default(),
            auth_time: t0,
            access_expires_at: t0 + Duration::minutes(10),
            revoked_access: HashMap::new(),
            used_refresh: VecDeque::new(),
            key: refresh_token::FamilyKey::generate(),
            generation: 1,
            forgotten_below: 0,
            live_refresh: None,
            code_fp: None,
        }
    }

    #[test]
    fn sweep_drops_expired_grants_and_keeps_live_ones() {
        let t0 = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let mut g = Grants::default();
        let request = AuthRequest {
            client_id: client(),
            redirect_uri: "http://127.0.0.1/cb".into(),
            redirect_uri_given: true,
            scope: Scope::default(),
            state: None,
            nonce: None,
            code_challenge: None,
            login_hint: None,
            expires_at: t0 + Duration::minutes(10),
        };
        g.pending.insert("p".into(), request.clone());
        g.codes.insert(
            "c".into(),
            CodeRecord {
                expires_at: t0 + Duration::seconds(60),
                state: CodeState::Fresh(Box::new(IssuedCode {
                    request,
                    sub: "s".into(),
                    sid: "sid".into(),
                    auth_time: t0,
                })),
            },
        );
        g.families.insert("f".into(), family(t0));
        g.refresh.insert(
            "r".into(),
            RefreshRecord {
                family: "f".into(),
                generation: 0,
                expires_at: t0 + Duration::days(1),
                used_at: None,
                child: None,
            },
        );
        // A grant without refresh tokens (its access token only, alive for 10 minutes).
        g.families.insert(
            "g".into(),
            Family {
                live_refresh: None,
                generation: 0,
                ..g.families["f"].clone()
            },
        );

        g.sweep(t0 + Duration::minutes(5));
        assert_eq!(
            (
                g.pending.len(),
                g.codes.len(),
                g.families.len(),
                g.refresh.len()
            ),
            (1, 1, 2, 1)
        );
        g.sweep(t0 + Duration::minutes(15));
        assert_eq!((g.pending.len(), g.codes.len()), (0, 0));
        assert_eq!(
            g.families.keys().collect::<Vec<_>>(),
            ["f"],
            "the family lives while its refresh token does; the grant of an access token alone \
             until that token expires"
        );
        g.sweep(t0 + Duration::days(2));
        assert!(g.refresh.is_empty() && g.families.is_empty());
    }

    #[test]
    fn revoking_a_family_revokes_its_access_tokens() {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let mut g = Grants::default();
        g.families.insert(
            "f".into(),
            Family {
                sid: Some("sid".into()),
                ..family(t0)
            },
        );
        assert_eq!(g.revoke_session_families("sid"), 1);
        assert!(
            g.families.is_empty(),
            "the grant's record gives way to its tombstone"
        );
        assert_eq!(g.ended["f"].until, t0 + Duration::minutes(10));
        assert!(
            !g.revoke_family("f", Ending::SignedOut),
            "second revocation changes nothing"
        );
        g.sweep(t0 + Duration::minutes(9));
        assert_eq!(g.ended.len(), 1, "kept while its access tokens live");
        g.sweep(t0 + Duration::minutes(10));
        assert!(g.ended.is_empty(), "then the tombstone goes too");
    }
    /// A rotation whose response could not be signed is taken back: its parent is live again
    /// (and what revocation forgets), and the used token before it was not forgotten early — a
    /// repeat of it inside the grace window still finds its record. Revoking the grant then
    /// leaves no refresh-token record behind.
    #[test]
    fn a_rotation_taken_back_keeps_the_window_and_revocation_leaves_no_record() {
        let t0 = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let mut g = Grants::default();
        let record = |generation: u64, used_at: Option<OffsetDateTime>| RefreshRecord {
            family: "f".into(),
            generation,
            expires_at: t0 + Duration::days(30),
            used_at,
            child: None,
        };
        g.refresh.insert("p".into(), record(0, Some(t0)));
        g.refresh.insert("c".into(), record(1, None));
        g.families.insert(
            "f".into(),
            Family {
                used_refresh: VecDeque::from(["p".to_owned()]),
                generation: 2,
                live_refresh: Some("c".into()),
                ..family(t0)
            },
        );
        // C rotated into D (as `register` and `retire_refresh` do), D's response being signed.
        g.refresh.insert("d".into(), record(2, None));
        if let Some(f) = g.families.get_mut("f") {
            f.generation = 3;
            f.live_refresh = Some("d".into());
        }
        g.retire_refresh(
            "c",
            "f",
            t0,
            Some(Rotation {
                child_fp: "d".into(),
                response: None,
            }),
        );
        assert!(
            g.refresh.contains_key("p"),
            "P is forgotten only once the rotation settles"
        );
        // Its signing failed: taken back.
        g.unretire_refresh("c");
        g.discard(Some("d"));
        assert_eq!(g.families["f"].live_refresh.as_deref(), Some("c"));
        assert_eq!(g.families["f"].used_refresh, ["p"]);
        assert!(g.refresh["c"].used_at.is_none() && g.refresh.contains_key("p"));

        assert!(g.revoke_family("f", Ending::SignedOut));
        assert!(
            g.refresh.is_empty(),
            "no record of a revoked grant's tokens is left: {:?}",
            g.refresh.keys().collect::<Vec<_>>()
        );
        assert_eq!(g.ended["f"].until, t0 + Duration::minutes(10));
    }

    /// A grant revoked for a theft keeps its tombstone as long as its refresh tokens would have
    /// lived; one signed out, until its last access token expires.
    #[test]
    fn a_theft_is_remembered_for_the_refresh_lifetime_a_sign_out_for_the_access_lifetime() {
        let t0 = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let mut g = Grants::default();
        for id in ["stolen", "signed-out"] {
            g.refresh.insert(
                format!("{id}-rt"),
                RefreshRecord {
                    family: id.into(),
                    generation: 0,
                    expires_at: t0 + Duration::days(30),
                    used_at: None,
                    child: None,
                },
            );
            g.families.insert(
                id.into(),
                Family {
                    live_refresh: Some(format!("{id}-rt")),
                    ..family(t0)
                },
            );
        }
        g.revoke_family("stolen", Ending::Theft);
        g.revoke_family("signed-out", Ending::SignedOut);
        g.sweep(t0 + Duration::days(29));
        assert_eq!(g.ended.keys().collect::<Vec<_>>(), ["stolen"]);
        g.sweep(t0 + Duration::days(30));
        assert!(g.ended.is_empty());
    }

    /// A revoked grant's tokens are recognised by its tombstone's MAC key: a genuine one is
    /// answered revoked to its client and "another client's" to any other; a made-up one — a
    /// generation never issued, another key's MAC — is merely unknown.
    #[test]
    fn a_tombstone_recognises_only_the_grants_own_tokens() {
        let t0 = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let mut g = Grants::default();
        let key = refresh_token::FamilyKey::generate();
        g.families.insert(
            "f".into(),
            Family {
                key: key.clone(),
                generation: 2,
                forgotten_below: 1,
                ..family(t0)
            },
        );
        assert!(g.revoke_family("f", Ending::SignedOut));
        let other = ClientId::parse("other").unwrap();
        for generation in [0, 1] {
            let token = refresh_token::make("f", generation, &key);
            assert!(matches!(
                g.replayed_forgotten(&token, &client()),
                tokens::RefreshRefusal::Revoked
            ));
            assert!(matches!(
                g.replayed_forgotten(&token, &other),
                tokens::RefreshRefusal::OtherClient
            ));
        }
        for forged in [
            refresh_token::make("f", 2, &key),
            refresh_token::make("f", 0, &refresh_token::FamilyKey::generate()),
        ] {
            assert!(matches!(
                g.replayed_forgotten(&forged, &client()),
                tokens::RefreshRefusal::Unknown
            ));
        }
        assert!(
            g.families.is_empty() && g.ended.len() == 1,
            "answering changed nothing"
        );
    }
}

//! Fault injection, per tenant and endpoint: latency, error statuses (fixed, at a rate, or for
//! the next N requests), "down" (the connection is closed without a response), an offset on the
//! clock used for issued tokens, and defective ID tokens. Faults are added, listed and cleared
//! through the admin API.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::jwt::IdTokenTamper;

/// The endpoints a fault can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    #[serde(rename = "*")]
    All,
    Discovery,
    Jwks,
    Authorize,
    Login,
    Token,
    Userinfo,
    Revocation,
    Introspection,
    EndSession,
    DeviceAuthorization,
    Device,
    Guest,
}

/// The largest clock offset a fault may set, either way: 10 years, in seconds (the longest
/// lifetime a tenant may configure). Anything past it is a typo, and past what a date can hold
/// it would make every token request fail.
pub const MAX_CLOCK_OFFSET_SECS: i64 = 315_360_000;

/// The most requests a counted fault may fire on (the schema's `maximum`; the Rust type would take
/// 2^32 − 1, past the int32 the schema's type promises).
pub const MAX_FAULT_COUNT: u32 = 1_000_000;

/// What a test asks for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    #[serde(default = "all")]
    pub endpoint: Endpoint,
    /// Delay before answering, in milliseconds.
    #[serde(default)]
    #[schema(maximum = 120_000)]
    pub latency_ms: Option<u64>,
    /// Answer with this HTTP status (a §5.2 `server_error`/`temporarily_unavailable` body).
    #[serde(default)]
    #[schema(minimum = 400, maximum = 599)]
    pub status: Option<u16>,
    /// Fire on this fraction of requests (0.0-1.0); always when absent.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1)]
    pub rate: Option<f64>,
    /// Fire on the next N requests only, then disappear (at most [`MAX_FAULT_COUNT`]).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub count: Option<u32>,
    /// Close the connection without an HTTP response.
    #[serde(default)]
    pub down: bool,
    /// Shift `iat`/`exp`/`auth_time` of issued tokens by this many seconds (at most
    /// [`MAX_CLOCK_OFFSET_SECS`] either way; the offsets of several faults add up to at most as
    /// much).
    #[serde(default)]
    #[schema(minimum = -315_360_000, maximum = 315_360_000)]
    pub clock_offset_secs: Option<i64>,
    /// Issue defective ID tokens from the token endpoint.
    #[serde(default)]
    pub id_token: Option<IdTokenTamper>,
}

fn all() -> Endpoint {
    Endpoint::All
}

impl FaultSpec {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(rate) = self.rate {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("rate must be between 0 and 1, got {rate}"));
            }
        }
        if let Some(status) = self.status {
            if !(400..=599).contains(&status) {
                return Err(format!(
                    "status must be an HTTP error status (400-599), got {status}"
                ));
            }
        }
        if self.count == Some(0) {
            return Err("count must be at least 1".into());
        }
        if let Some(count) = self.count.filter(|&c| c > MAX_FAULT_COUNT) {
            return Err(format!(
                "count must be at most {MAX_FAULT_COUNT}, got {count}"
            ));
        }
        if let Some(ms) = self.latency_ms {
            if ms > 120_000 {
                return Err("latency_ms must be at most 120000".into());
            }
        }
        if let Some(secs) = self.clock_offset_secs {
            if !(-MAX_CLOCK_OFFSET_SECS..=MAX_CLOCK_OFFSET_SECS).contains(&secs) {
                return Err(format!(
                    "clock_offset_secs must be between -{MAX_CLOCK_OFFSET_SECS} and \
                     {MAX_CLOCK_OFFSET_SECS} (10 years), got {secs}"
                ));
            }
        }
        let effects = [
            self.latency_ms.is_some(),
            self.status.is_some(),
            self.down,
            self.clock_offset_secs.is_some(),
            self.id_token.is_some(),
        ];
        if !effects.contains(&true) {
            return Err(
                "a fault needs an effect: latency_ms, status, down, clock_offset_secs or id_token"
                    .into(),
            );
        }
        Ok(())
    }

    fn is_request_fault(&self) -> bool {
        self.latency_ms.is_some() || self.status.is_some() || self.down
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub id: String,
    #[serde(flatten)]
    pub spec: FaultSpec,
    /// Requests left for a `count` fault.
    pub remaining: Option<u32>,
}

/// What a request must suffer.
#[derive(Debug, Default, PartialEq)]
pub struct Verdict {
    pub latency: Duration,
    pub outcome: Outcome,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub enum Outcome {
    #[default]
    Pass,
    Status(u16),
    Down,
}

/// The faults of one tenant.
#[derive(Debug, Default)]
pub struct FaultSet {
    faults: Vec<Fault>,
}

impl FaultSet {
    pub fn add(&mut self, spec: FaultSpec) -> Fault {
        let fault = Fault {
            id: crate::random::id(),
            remaining: spec.count,
            spec,
        };
        self.faults.push(fault.clone());
        fault
    }

    pub fn list(&self) -> Vec<Fault> {
        self.faults.clone()
    }

    pub fn clear(&mut self) -> usize {
        let n = self.faults.len();
        self.faults.clear();
        n
    }

    pub fn remove(&mut self, id: &str) -> bool {
        let before = self.faults.len();
        self.faults.retain(|f| f.id != id);
        before != self.faults.len()
    }

    /// Decides whether `fault` fires now, consuming one of its `count`.
    fn fire(fault: &mut Fault) -> bool {
        if let Some(rate) = fault.spec.rate {
            if !rand::thread_rng().gen_bool(rate) {
                return false;
            }
        }
        match &mut fault.remaining {
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
            None => true,
        }
    }

    fn drop_spent(&mut self) {
        self.faults.retain(|f| f.remaining != Some(0));
    }

    /// The verdict for one request to `endpoint`.
    pub fn check(&mut self, endpoint: Endpoint) -> Verdict {
        let mut verdict = Verdict::default();
        for fault in self.faults.iter_mut() {
            let targets = fault.spec.endpoint == Endpoint::All || fault.spec.endpoint == endpoint;
            if !targets || !fault.spec.is_request_fault() || !Self::fire(fault) {
                continue;
            }
            if let Some(ms) = fault.spec.latency_ms {
                verdict.latency += Duration::from_millis(ms);
            }
            if verdict.outcome == Outcome::Pass {
                if fault.spec.down {
                    verdict.outcome = Outcome::Down;
                } else if let Some(status) = fault.spec.status {
                    verdict.outcome = Outcome::Status(status);
                }
            }
        }
        self.drop_spent();
        verdict
    }

    /// Offset applied to issued tokens' time claims: the faults' offsets together, held to
    /// [`MAX_CLOCK_OFFSET_SECS`] either way.
    pub fn clock_offset(&self) -> time::Duration {
        let secs = self
            .faults
            .iter()
            .filter_map(|f| f.spec.clock_offset_secs)
            .fold(0i64, i64::saturating_add)
            .clamp(-MAX_CLOCK_OFFSET_SECS, MAX_CLOCK_OFFSET_SECS);
        time::Duration::seconds(secs)
    }

    /// The ID-token defect for the next token response, if any.
    pub fn take_id_token_tamper(&mut self) -> Option<IdTokenTamper> {
        let mut found = None;
        for fault in self.faults.iter_mut() {
            if let Some(t) = fault.spec.id_token {
                if Self::fire(fault) {
                    found = Some(t);
                    break;
                }
            }
        }
        self.drop_spent();
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> FaultSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn count_faults_fire_n_times_then_vanish() {
        let mut set = FaultSet::default();
        set.add(spec(
            serde_json::json!({"endpoint": "token", "status": 503, "count": 2}),
        ));
        assert_eq!(set.check(Endpoint::Jwks).outcome, Outcome::Pass);
        assert_eq!(set.check(Endpoint::Token).outcome, Outcome::Status(503));
        assert_eq!(set.check(Endpoint::Token).outcome, Outcome::Status(503));
        assert_eq!(set.check(Endpoint::Token).outcome, Outcome::Pass);
        assert!(set.list().is_empty());
    }

    #[test]
    fn rate_zero_never_fires_and_rate_one_always_does() {
        let mut set = FaultSet::default();
        set.add(spec(serde_json::json!({"status": 500, "rate": 0.0})));
        assert!((0..100).all(|_| set.check(Endpoint::Token).outcome == Outcome::Pass));
        set.clear();
        set.add(spec(serde_json::json!({"down": true, "rate": 1.0})));
        assert!((0..100).all(|_| set.check(Endpoint::Userinfo).outcome == Outcome::Down));
    }

    #[test]
    fn specs_without_effect_or_with_bad_values_are_refused() {
        assert!(spec(serde_json::json!({"endpoint": "token"}))
            .validate()
            .is_err());
        assert!(spec(serde_json::json!({"status": 200})).validate().is_err());
        assert!(spec(serde_json::json!({"status": 500, "rate": 1.5}))
            .validate()
            .is_err());
        assert!(serde_json::from_value::<FaultSpec>(
            serde_json::json!({"endpoint": "nope", "down": true})
        )
        .is_err());
    }
}

//! On a machine without a keyring the store falls back to the encrypted vault file. That is
//! worth saying — once per profile, when signing in, and in `status` (which describes the
//! store) — not as a warning on every `lanyard token` of every script.

use account_store::BackendInfo;

use crate::context::Context;

/// The marker, in the profile's folder, that the notice was given.
const MARKER: &str = "vault-notice-given";

/// Says that secrets live in the vault, unless this profile was told already.
pub fn once_per_profile(ctx: &Context, backend: &BackendInfo) {
    if backend.name != "vault" {
        return;
    }
    let marker = ctx.dirs.profile(&ctx.profile).join(MARKER);
    if marker.exists() {
        return;
    }
    eprintln!(
        "note: no OS keyring answered; this profile keeps its tokens in the encrypted vault {}",
        backend.location
    );
    if let Err(e) = std::fs::write(&marker, b"") {
        tracing::debug!(error = %e, "could not record the vault notice");
    }
}

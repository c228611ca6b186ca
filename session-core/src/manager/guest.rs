//! Guests: signing in as a new guest, and upgrading a guest to a registered user. The upgrade
//! keeps the account: the IdP keeps the guest's `sub`, so the refreshed tokens land under the
//! same account key, and the registry session follows (`POST /v1/sessions/upgrade`) keeping its
//! id. An upgrade interrupted after the IdP step resumes on the next try.

use std::time::Duration;

use account_store::{AccountKey, AccountMeta, ItemKind};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::{LoginRequest, SessionManager};
use crate::error::SessionError;
use crate::oidc::AuthPrompt;
use crate::state::{ManagerEvent, SessionState};
use crate::tokens::jwt_claims;

/// The registered identity a guest becomes.
#[derive(Debug, Clone)]
pub struct UpgradeRequest {
    pub username: String,
    /// At least 8 characters (the IdP's rule).
    pub password: SecretString,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// What an upgrade did.
#[derive(Debug, Clone)]
pub struct Upgraded {
    /// The same account as before (same key and subject), now `is_guest: false`.
    pub account: AccountMeta,
    /// The registry session that followed (the same id as before), if the account has one.
    pub session_id: Option<String>,
    /// The registered username as the IdP now reports it (`preferred_username`); after a resumed
    /// upgrade it is the one chosen the first time.
    pub username: Option<String>,
}

/// Why an upgrade did not happen. After a refusal the account is still a guest (its tokens may
/// have been refreshed); a failure after the IdP upgraded the guest leaves the account a guest
/// here, and trying again completes it.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("{account} is not a guest: only a guest account can be upgraded")]
    NotAGuest { account: String },
    #[error("the username '{username}' is already taken")]
    UsernameTaken { username: String },
    /// A weak password, a malformed username or email…: fix the input and try again.
    #[error("the identity provider refused the upgrade: {description}")]
    Refused { description: String },
    #[error("the identity provider still reports a guest after the upgrade")]
    StillAGuest,
    #[error(transparent)]
    Session(#[from] SessionError),
}

impl SessionManager {
    /// Signs in as a new guest through the browser (`prompt=create`) and opens the account as
    /// [`SessionManager::login`] does, with `is_guest` from the ID token.
    pub async fn login_guest(
        &self,
        req: LoginRequest,
        prompt: &dyn AuthPrompt,
        timeout: Duration,
    ) -> Result<AccountMeta, SessionError> {
        let provider = self.provider(&req.issuer, &req.client_id).await?;
        let tokens = provider
            .login_as_guest_with_browser(prompt, timeout)
            .await?;
        if !tokens.is_guest {
            // A provider without guests shows its usual sign-in; the person chose an account.
            tracing::info!("asked for a guest; the provider signed in a registered user");
        }
        self.open_account(req, tokens).await
    }

    /// Turns the guest `account` into a registered user at its IdP (`{issuer}/guest/upgrade`
    /// with the guest's access token), refreshes its tokens (same subject, so the same account),
    /// moves its registry session along (same session id, a new session JWT) and marks it
    /// registered. Emits [`ManagerEvent::Upgraded`].
    #[tracing::instrument(skip(self, req), fields(account = %account))]
    pub async fn upgrade_guest(
        &self,
        account: &AccountKey,
        req: UpgradeRequest,
    ) -> Result<Upgraded, UpgradeError> {
        let meta = self.meta(Some(account)).await?;
        if !meta.is_guest {
            return Err(UpgradeError::NotAGuest {
                account: meta.display_name,
            });
        }
        let id_token = self.upgrade_at_idp(&meta, &req).await?;
        let claims = jwt_claims(id_token.expose_secret()).unwrap_or(Value::Null);
        if claims["is_guest"].as_bool() != Some(false) {
            return Err(UpgradeError::StillAGuest);
        }

        let mut session = None;
        if let Some(url) = &meta.registry_url {
            if let Some(token) = self.item(account, ItemKind::SessionToken).await? {
                session = Some(
                    self.registry(url)
                        .upgrade(&token, &id_token, account.as_str())
                        .await?,
                );
            }
        }

        // Re-read: the refresh updated the token expiry.
        let mut updated = self.meta(Some(account)).await?;
        updated.is_guest = false;
        let str_claim = |k: &str| claims[k].as_str().map(str::to_owned);
        updated.email = str_claim("email").or(updated.email);
        updated.display_name = updated
            .email
            .clone()
            .or(str_claim("name"))
            .unwrap_or_else(|| updated.id.subject.as_str().to_owned());
        let items: Vec<(ItemKind, SecretString)> = session
            .iter()
            .map(|s| (ItemKind::SessionJwt, s.session_jwt.clone().into_secret()))
            .collect();
        let saved = updated.clone();
        self.blocking(move |s| s.save_account(saved, &items))
            .await?;
        if let Some(s) = &session {
            self.set_state(
                account,
                SessionState::Available {
                    session_id: s.session.session_id.clone(),
                    expires_at: s.session.expires_at,
                    last_validated_at: self.now(),
                },
            );
        }
        tracing::info!("guest upgraded to a registered account");
        self.emit(ManagerEvent::Upgraded {
            account: account.clone(),
        });
        Ok(Upgraded {
            account: updated,
            session_id: session.map(|s| s.session.session_id),
            username: str_claim("preferred_username"),
        })
    }

    /// The IdP step, then a forced refresh so the stored tokens are a registered user's; returns
    /// the refreshed ID token. A refusal (the name is taken — by this very user —, or it is no
    /// longer a guest) is taken as an earlier, interrupted upgrade when that token says it is
    /// registered.
    async fn upgrade_at_idp(
        &self,
        meta: &AccountMeta,
        req: &UpgradeRequest,
    ) -> Result<SecretString, UpgradeError> {
        let url = format!(
            "{}/guest/upgrade",
            meta.id.issuer.as_str().trim_end_matches('/')
        );
        let http = reqwest::Client::builder()
            .timeout(self.inner.options.http_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(SessionError::transient)?;
        let res = self
            .send_authenticated(Some(&meta.key), |access_token| {
                http.post(&url).bearer_auth(access_token).json(&json!({
                    "username": req.username,
                    "password": req.password.expose_secret(),
                    "email": req.email,
                    "name": req.name,
                }))
            })
            .await?;
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        let description = body["error_description"]
            .as_str()
            .or(body["error"].as_str())
            .unwrap_or("no reason given")
            .to_owned();
        let refused = match status {
            200..=299 => None,
            409 => Some(UpgradeError::UsernameTaken {
                username: req.username.clone(),
            }),
            401 => {
                return Err(SessionError::ReauthenticationRequired {
                    account: meta.key.to_string(),
                    reason: format!(
                        "the identity provider refused the guest's token ({description})"
                    ),
                }
                .into())
            }
            429 | 500..=599 => {
                return Err(SessionError::Transient {
                    detail: format!("the guest upgrade answered {status} ({description})"),
                }
                .into())
            }
            _ => Some(UpgradeError::Refused { description }),
        };
        let before = self.item(&meta.key, ItemKind::IdToken).await?;
        self.refresh(&meta.key, true).await?;
        // What the account is now is told by a new ID token only: a provider may leave it out
        // of a refresh answer (OIDC Core §12.2), and the sign-in's, kept then, still says guest.
        let Some(id_token) = self
            .item(&meta.key, ItemKind::IdToken)
            .await?
            .filter(|after| {
                before
                    .as_ref()
                    .is_none_or(|b| b.expose_secret() != after.expose_secret())
            })
        else {
            tracing::warn!(account = %meta.key, "the refresh after the guest upgrade brought no new ID token");
            return Err(SessionError::ReauthenticationRequired {
                account: meta.key.to_string(),
                reason: "the identity provider's refresh brought no new ID token to show the upgrade: sign in again to finish it".into(),
            }
            .into());
        };
        if let Some(refusal) = refused {
            let still_guest = jwt_claims(id_token.expose_secret())
                .and_then(|c| c["is_guest"].as_bool())
                .unwrap_or(true);
            if still_guest {
                return Err(refusal);
            }
            tracing::info!("the IdP had already upgraded this guest; resuming");
        }
        Ok(id_token)
    }
}

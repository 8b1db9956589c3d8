//! App access tokens by the OAuth client credentials flow
//! (`POST {auth_url}/oauth2/token` with `client_id`, `client_secret`,
//! `grant_type=client_credentials`). The token is refreshed shortly before it expires and
//! whenever Helix answers 401 with it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;
use tracing::info;

use super::HelixError;
use crate::metrics::{Stats, METRICS};

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

/// A token and the generation it belongs to (to invalidate exactly the token that failed).
#[derive(Clone)]
pub struct AppToken {
    pub value: SecretString,
    pub generation: u64,
    expires_at: Instant,
    refresh_at: Instant,
    /// Helix answered 401 with it: the next [`TokenSource::get`] fetches a new one.
    revoked: bool,
}

/// Obtains and caches the app access token.
pub struct TokenSource {
    http: reqwest::Client,
    url: String,
    client_id: String,
    secret: SecretString,
    margin: Duration,
    state: Mutex<Option<AppToken>>,
    generation: std::sync::atomic::AtomicU64,
    stats: Arc<Stats>,
}

/// When to refresh a token valid for `lifetime`: `margin` before expiry, but never more than a
/// tenth of its lifetime early (short-lived tokens in tests).
pub(crate) fn refresh_after(lifetime: Duration, margin: Duration) -> Duration {
    lifetime.saturating_sub(margin.min(lifetime / 10))
}

impl TokenSource {
    pub fn new(
        http: reqwest::Client,
        auth_url: &str,
        client_id: String,
        secret: SecretString,
        margin: Duration,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            http,
            url: format!("{}/oauth2/token", auth_url.trim_end_matches('/')),
            client_id,
            secret,
            margin,
            state: Mutex::new(None),
            generation: Default::default(),
            stats,
        }
    }

    /// A valid token: the cached one, or a new one when there is none or it is about to expire.
    pub async fn get(&self) -> Result<AppToken, HelixError> {
        let mut g = self.state.lock().await;
        let now = Instant::now();
        let reason = match g.as_ref() {
            Some(t) if t.revoked => "unauthorized",
            Some(t) if now < t.refresh_at => return Ok(t.clone()),
            Some(t) if now < t.expires_at => "expiring",
            Some(_) => "expired",
            None => "initial",
        };
        let t = self.fetch(reason).await?;
        *g = Some(t.clone());
        Ok(t)
    }

    /// Marks the token of `generation` revoked (Helix answered 401 with it); the next
    /// [`Self::get`] fetches a new one, counted as reason `unauthorized`.
    pub async fn invalidate(&self, generation: u64) {
        let mut g = self.state.lock().await;
        if let Some(t) = g.as_mut().filter(|t| t.generation == generation) {
            t.revoked = true;
        }
    }

    async fn fetch(&self, reason: &'static str) -> Result<AppToken, HelixError> {
        let form = [
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.secret.expose_secret()),
            ("grant_type", "client_credentials"),
        ];
        let resp = self
            .http
            .post(&self.url)
            .form(&form)
            .send()
            .await
            .map_err(|e| HelixError::Transport {
                what: "token request",
                source: e,
            })?;
        let status = resp.status();
        if !status.is_success() {
            let body: String = resp
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            // An outage or rate limit of the token endpoint is not a refusal of the credentials
            // (which pages as TciTwitchCredentialsRejected): those stay Helix statuses.
            if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                return Err(HelixError::Status {
                    status: status.as_u16(),
                    body,
                });
            }
            return Err(HelixError::TokenRefused {
                status: status.as_u16(),
                body,
            });
        }
        let body: TokenResponse = resp.json().await.map_err(|e| HelixError::Malformed {
            what: "token response",
            reason: e.to_string(),
        })?;
        let lifetime = Duration::from_secs(body.expires_in.max(1));
        let now = Instant::now();
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        METRICS.token_refreshes.with_label_values(&[reason]).inc();
        Stats::inc(&self.stats.token_refreshes);
        info!(
            reason,
            expires_in_s = lifetime.as_secs(),
            generation,
            "obtained a Twitch app access token"
        );
        Ok(AppToken {
            value: SecretString::from(body.access_token),
            generation,
            expires_at: now + lifetime,
            refresh_at: now + refresh_after(lifetime, self.margin),
            revoked: false,
        })
    }
}

impl std::fmt::Debug for AppToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppToken")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_happens_before_expiry() {
        let day = Duration::from_secs(86_400);
        assert_eq!(
            refresh_after(day * 60, Duration::from_secs(300)),
            day * 60 - Duration::from_secs(300)
        );
        // Short tokens are refreshed at 90 % of their life, not at once.
        assert_eq!(
            refresh_after(Duration::from_secs(10), Duration::from_secs(300)),
            Duration::from_secs(9)
        );
        assert_eq!(
            refresh_after(Duration::ZERO, Duration::from_secs(300)),
            Duration::ZERO
        );
    }

    #[test]
    fn the_token_never_prints() {
        let t = AppToken {
            value: SecretString::from("abc123secret"),
            generation: 1,
            expires_at: Instant::now(),
            refresh_at: Instant::now(),
            revoked: false,
        };
        assert!(!format!("{t:?}").contains("abc123secret"));
    }
}

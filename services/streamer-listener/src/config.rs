//! Configuration of the streamer listener (see `config.sample.toml` next to `Cargo.toml`).

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tci_common::CommonConfig;

/// The whole configuration: the shared sections plus `[twitch]`, `[poll]` and `[filters]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Config {
    #[serde(flatten)]
    pub common: CommonConfig,
    pub twitch: TwitchConfig,
    pub poll: PollConfig,
    pub filters: Filters,
}

/// The Twitch application and the endpoints it talks to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TwitchConfig {
    /// The application's client id (sent as `Client-Id`).
    pub client_id: String,
    /// The application's client secret: `TCI__TWITCH__CLIENT_SECRET` (a Kubernetes Secret).
    /// Never logged, never serialized.
    #[serde(skip_serializing)]
    pub client_secret: Option<SecretString>,
    /// Base URL of the OAuth server (`POST {auth_url}/oauth2/token`).
    pub auth_url: String,
    /// Base URL of the Helix API (`GET {helix_url}/helix/streams`).
    pub helix_url: String,
    /// Timeout of one HTTP request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Refresh the app token this long before it expires (at most a tenth of its lifetime).
    #[serde(with = "humantime_serde")]
    pub token_refresh_margin: Duration,
}

impl Default for TwitchConfig {
    fn default() -> Self {
        Self {
            client_id: String::new(),
            client_secret: None,
            auth_url: "https://id.twitch.tv".into(),
            helix_url: "https://api.twitch.tv".into(),
            request_timeout: Duration::from_secs(10),
            token_refresh_margin: Duration::from_secs(300),
        }
    }
}

/// How often and how carefully to walk the streams list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PollConfig {
    /// Time between poll starts.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// `first` of each page (1..=100).
    pub page_size: u32,
    /// Stop after this many pages (0: walk every page). A capped walk publishes the most-watched
    /// `max_pages * page_size` channels; it is counted as outcome `capped`.
    pub max_pages: u32,
    /// Retries of one page on 5xx, transport and malformed-body errors before the poll fails.
    pub page_retries: u32,
    /// Backoff of those retries (capped exponential with jitter).
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_cap: Duration,
    /// Longest single wait for the rate-limit bucket (`Ratelimit-Reset`), whatever Helix says.
    #[serde(with = "humantime_serde")]
    pub max_rate_limit_wait: Duration,
    /// 429 answers tolerated for one page before the poll fails.
    pub max_rate_limited_per_page: u32,
    /// Records in flight to Kafka at once while publishing a poll.
    pub publish_concurrency: usize,
}

impl Default for PollConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(120),
            page_size: 100,
            max_pages: 0,
            page_retries: 5,
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(30),
            max_rate_limit_wait: Duration::from_secs(90),
            max_rate_limited_per_page: 20,
            publish_concurrency: 1000,
        }
    }
}

/// Which live channels to publish. `languages` and `game_ids` are passed to Helix (at most 100
/// each); the rest is applied locally to every page.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Filters {
    /// Helix `language` filter (ISO 639-1 codes, or `other`).
    pub languages: Vec<String>,
    /// Helix `game_id` filter.
    pub game_ids: Vec<String>,
    /// Drop streams with fewer viewers.
    pub min_viewers: i64,
    /// When non-empty, only these logins (case-insensitive).
    pub allow_logins: Vec<String>,
    /// Never these logins (case-insensitive); wins over `allow_logins`.
    pub deny_logins: Vec<String>,
}

/// A configuration value that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("twitch.client_id is empty (set TCI__TWITCH__CLIENT_ID)")]
    MissingClientId,
    #[error("twitch.client_secret is not set (set TCI__TWITCH__CLIENT_SECRET, e.g. from a Kubernetes Secret)")]
    MissingClientSecret,
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl Config {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason: String| Err(ConfigError::Invalid { field, reason });
        if self.twitch.client_id.trim().is_empty() {
            return Err(ConfigError::MissingClientId);
        }
        if self.twitch.client_secret.is_none() {
            return Err(ConfigError::MissingClientSecret);
        }
        for (field, url) in [
            ("twitch.auth_url", &self.twitch.auth_url),
            ("twitch.helix_url", &self.twitch.helix_url),
        ] {
            if let Err(e) = reqwest::Url::parse(url) {
                return bad(field, format!("{url:?} is not a URL: {e}"));
            }
        }
        if !(1..=100).contains(&self.poll.page_size) {
            return bad(
                "poll.page_size",
                format!("{} is outside 1..=100", self.poll.page_size),
            );
        }
        if self.poll.interval.is_zero() {
            return bad("poll.interval", "must be > 0".into());
        }
        if self.poll.publish_concurrency == 0 {
            return bad("poll.publish_concurrency", "must be > 0".into());
        }
        if self.filters.languages.len() > 100 {
            return bad(
                "filters.languages",
                format!(
                    "Helix takes at most 100, got {}",
                    self.filters.languages.len()
                ),
            );
        }
        if self.filters.game_ids.len() > 100 {
            return bad(
                "filters.game_ids",
                format!(
                    "Helix takes at most 100, got {}",
                    self.filters.game_ids.len()
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Config {
        let mut c = Config::default();
        c.twitch.client_id = "id".into();
        c.twitch.client_secret = Some(SecretString::from("s3cr3t-value"));
        c
    }

    #[test]
    fn defaults_point_at_twitch_and_need_credentials() {
        let c = Config::default();
        assert_eq!(c.twitch.auth_url, "https://id.twitch.tv");
        assert_eq!(c.twitch.helix_url, "https://api.twitch.tv");
        assert_eq!(c.poll.interval, Duration::from_secs(120));
        assert!(matches!(c.validate(), Err(ConfigError::MissingClientId)));
        valid().validate().expect("valid");
    }

    #[test]
    fn the_secret_never_prints_or_serializes() {
        let c = valid();
        assert!(!format!("{c:?}").contains("s3cr3t-value"));
        assert!(!serde_json::to_string(&c)
            .expect("serializes")
            .contains("s3cr3t-value"));
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let mut c = valid();
        c.poll.page_size = 101;
        assert!(c
            .validate()
            .expect_err("refused")
            .to_string()
            .contains("poll.page_size"));
        let mut c = valid();
        c.filters.languages = (0..101).map(|i| i.to_string()).collect();
        assert!(c.validate().is_err());
    }
}

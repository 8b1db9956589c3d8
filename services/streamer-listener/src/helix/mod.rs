//! The Helix client: `GET {helix_url}/helix/streams` one page at a time, with the app token,
//! the rate-limit headers (`Ratelimit-Limit`, `Ratelimit-Remaining`, `Ratelimit-Reset`: when
//! Remaining is 0, wait until Reset, the Unix second at which the bucket is full again), and
//! capped, counted retries of 429, 5xx, transport and malformed answers.

pub mod auth;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{header::HeaderMap, StatusCode};
use secrecy::ExposeSecret;
use serde::Deserialize;
use tci_common::retry::Backoff;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::{Filters, PollConfig};
use crate::metrics::{Stats, METRICS};
use auth::TokenSource;

/// One entry of a `GET /helix/streams` page (the fields we use).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct HelixStream {
    pub id: String,
    pub user_id: String,
    pub user_login: String,
    pub user_name: String,
    #[serde(default)]
    pub game_id: String,
    #[serde(default)]
    pub game_name: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub viewer_count: i64,
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub language: String,
}

/// A page and the cursor of the next one.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamsPage {
    pub data: Vec<HelixStream>,
    #[serde(default)]
    pub pagination: Pagination,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Pagination {
    pub cursor: Option<String>,
}

/// Why a Helix call failed.
#[derive(Debug, thiserror::Error)]
pub enum HelixError {
    #[error("{what} failed: {source}")]
    Transport {
        what: &'static str,
        source: reqwest::Error,
    },
    #[error("the token endpoint refused the client credentials: HTTP {status}: {body}")]
    TokenRefused { status: u16, body: String },
    #[error("{what} is malformed: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("Helix answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("Helix answered 401 even with a freshly obtained token: {body}")]
    Unauthorized { body: String },
    #[error("Helix kept answering 429 ({count} times for one page)")]
    RateLimited { count: u32 },
    #[error("page {page} failed after {attempts} attempts; last error: {last}")]
    RetriesExhausted {
        page: u32,
        attempts: u32,
        last: Box<HelixError>,
    },
    #[error("shutdown requested")]
    Cancelled,
}

impl HelixError {
    /// Stable short name for the `kind` metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Transport { .. } => "transport",
            Self::TokenRefused { .. } => "token_refused",
            Self::Malformed { .. } => "malformed",
            Self::Status { status, .. } if *status >= 500 => "server_error",
            Self::Status { .. } => "client_error",
            Self::Unauthorized { .. } => "unauthorized",
            Self::RateLimited { .. } => "rate_limited",
            Self::RetriesExhausted { last, .. } => last.kind(),
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether another attempt at the same request may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Malformed { .. } => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// The rate-limit headers of one answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: Option<u32>,
    pub remaining: Option<u32>,
    /// Unix seconds at which the bucket is full again.
    pub reset: Option<u64>,
}

impl RateLimit {
    pub fn from_headers(h: &HeaderMap) -> Self {
        let num = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        Self {
            limit: num("ratelimit-limit").map(|v| v as u32),
            remaining: num("ratelimit-remaining").map(|v| v as u32),
            reset: num("ratelimit-reset"),
        }
    }

    /// How long to wait before the next request, given the time now (ms since the epoch):
    /// nothing while points remain; until Reset (plus a little slack for clock granularity,
    /// capped at `cap`) when the bucket is empty.
    pub fn wait_before_next(&self, now_ms: i64, cap: Duration) -> Option<Duration> {
        if self.remaining != Some(0) {
            return None;
        }
        Some(until_reset(self.reset, now_ms, cap))
    }
}

/// Time until `reset` (Unix seconds) plus 250 ms slack; 1 s when unknown; at most `cap`.
pub fn until_reset(reset: Option<u64>, now_ms: i64, cap: Duration) -> Duration {
    let wait = match reset {
        Some(r) => {
            let ms = (r as i64)
                .saturating_mul(1000)
                .saturating_sub(now_ms)
                .max(0) as u64;
            Duration::from_millis(ms + 250)
        }
        None => Duration::from_secs(1),
    };
    wait.min(cap)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What fetching one page cost (waits, retries), added to the walk's report.
#[derive(Debug, Clone, Copy, Default)]
pub struct PageCost {
    pub rate_limit_waits: u32,
    pub rate_limit_waited: Duration,
    pub rate_limited_429: u32,
    pub retries: u32,
}

/// The Helix streams client of one listener.
pub struct HelixClient {
    http: reqwest::Client,
    streams_url: String,
    client_id: String,
    tokens: TokenSource,
    /// `type=live&first=N` plus the Helix-side filters.
    base_query: Vec<(String, String)>,
    cfg: PollConfig,
    rate: std::sync::Mutex<RateLimit>,
    stats: Arc<Stats>,
}

impl HelixClient {
    pub fn new(
        http: reqwest::Client,
        helix_url: &str,
        client_id: String,
        tokens: TokenSource,
        cfg: PollConfig,
        filters: &Filters,
        stats: Arc<Stats>,
    ) -> Self {
        let mut base_query = vec![
            ("type".to_string(), "live".to_string()),
            ("first".to_string(), cfg.page_size.to_string()),
        ];
        base_query.extend(
            filters
                .languages
                .iter()
                .map(|l| ("language".to_string(), l.clone())),
        );
        base_query.extend(
            filters
                .game_ids
                .iter()
                .map(|g| ("game_id".to_string(), g.clone())),
        );
        Self {
            http,
            streams_url: format!("{}/helix/streams", helix_url.trim_end_matches('/')),
            client_id,
            tokens,
            base_query,
            cfg,
            rate: std::sync::Mutex::new(RateLimit::default()),
            stats,
        }
    }

    fn set_rate(&self, r: RateLimit) {
        if r.remaining.is_some() {
            if let Ok(mut g) = self.rate.lock() {
                *g = r;
            }
        }
    }

    fn pending_wait(&self) -> Option<(Duration, RateLimit)> {
        let r = *self.rate.lock().ok()?;
        r.wait_before_next(now_ms(), self.cfg.max_rate_limit_wait)
            .map(|w| (w, r))
    }

    async fn sleep(&self, d: Duration, cancel: &CancellationToken) -> Result<(), HelixError> {
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = cancel.cancelled() => Err(HelixError::Cancelled),
        }
    }

    async fn rate_wait(
        &self,
        d: Duration,
        cost: &mut PageCost,
        cancel: &CancellationToken,
    ) -> Result<(), HelixError> {
        cost.rate_limit_waits += 1;
        cost.rate_limit_waited += d;
        METRICS.rate_limit_waits.inc();
        METRICS.rate_limit_wait_seconds.observe(d.as_secs_f64());
        Stats::inc(&self.stats.rate_limit_waits);
        self.sleep(d, cancel).await?;
        // The bucket state is unknown again until the next answer.
        if let Ok(mut g) = self.rate.lock() {
            g.remaining = None;
        }
        Ok(())
    }

    /// Fetches page number `page` (1-based, for messages) at `cursor`, waiting for the rate
    /// limit and retrying as configured.
    pub async fn page(
        &self,
        page: u32,
        cursor: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<(StreamsPage, PageCost), HelixError> {
        let mut cost = PageCost::default();
        let mut backoff = Backoff::new(self.cfg.backoff_base, self.cfg.backoff_cap);
        let mut failures = 0u32;
        let mut unauthorized = 0u32;
        loop {
            if cancel.is_cancelled() {
                return Err(HelixError::Cancelled);
            }
            if let Some((wait, r)) = self.pending_wait() {
                debug!(page, ?wait, limit = ?r.limit, reset = ?r.reset, "rate-limit bucket empty; waiting for Ratelimit-Reset");
                self.rate_wait(wait, &mut cost, cancel).await?;
            }
            let result = match self.tokens.get().await {
                Ok(token) => self.request(cursor, &token).await,
                Err(e) => Err(e),
            };
            let err = match result {
                Ok(Answer::Page(p)) => return Ok((p, cost)),
                Ok(Answer::RateLimited(r)) => {
                    cost.rate_limited_429 += 1;
                    Stats::inc(&self.stats.rate_limited_429);
                    METRICS.retries.with_label_values(&["rate_limited"]).inc();
                    if cost.rate_limited_429 > self.cfg.max_rate_limited_per_page {
                        return Err(HelixError::RateLimited {
                            count: cost.rate_limited_429,
                        });
                    }
                    let wait = until_reset(r.reset, now_ms(), self.cfg.max_rate_limit_wait);
                    warn!(page, ?wait, reset = ?r.reset, "Helix answered 429; waiting for Ratelimit-Reset");
                    self.rate_wait(wait, &mut cost, cancel).await?;
                    continue;
                }
                Ok(Answer::Unauthorized { generation, body }) => {
                    unauthorized += 1;
                    Stats::inc(&self.stats.unauthorized);
                    METRICS.retries.with_label_values(&["unauthorized"]).inc();
                    self.tokens.invalidate(generation).await;
                    if unauthorized > 1 {
                        return Err(HelixError::Unauthorized { body });
                    }
                    warn!(page, "Helix answered 401; obtaining a new app access token");
                    continue;
                }
                Err(e) => e,
            };
            if !err.is_retriable() {
                return Err(err);
            }
            failures += 1;
            if failures > self.cfg.page_retries {
                return Err(HelixError::RetriesExhausted {
                    page,
                    attempts: failures,
                    last: Box::new(err),
                });
            }
            cost.retries += 1;
            Stats::inc(&self.stats.retries);
            METRICS.retries.with_label_values(&[err.kind()]).inc();
            let delay = backoff.next_delay();
            warn!(page, attempt = failures, retry_in = ?delay, error = %err, "Helix streams request failed; retrying");
            self.sleep(delay, cancel).await?;
        }
    }

    async fn request(
        &self,
        cursor: Option<&str>,
        token: &auth::AppToken,
    ) -> Result<Answer, HelixError> {
        let mut query = self.base_query.clone();
        if let Some(c) = cursor {
            query.push(("after".to_string(), c.to_string()));
        }
        let resp = self
            .http
            .get(&self.streams_url)
            .query(&query)
            .header("Client-Id", &self.client_id)
            .bearer_auth(token.value.expose_secret())
            .send()
            .await
            .map_err(|e| HelixError::Transport {
                what: "GET /helix/streams",
                source: e,
            })?;
        let rate = RateLimit::from_headers(resp.headers());
        self.set_rate(rate);
        let status = resp.status();
        match status {
            StatusCode::OK => {
                let bytes = resp.bytes().await.map_err(|e| HelixError::Transport {
                    what: "reading a streams page",
                    source: e,
                })?;
                let page: StreamsPage =
                    serde_json::from_slice(&bytes).map_err(|e| HelixError::Malformed {
                        what: "streams page",
                        reason: e.to_string(),
                    })?;
                Ok(Answer::Page(page))
            }
            StatusCode::TOO_MANY_REQUESTS => Ok(Answer::RateLimited(rate)),
            StatusCode::UNAUTHORIZED => {
                let body = resp
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(300)
                    .collect();
                Ok(Answer::Unauthorized {
                    generation: token.generation,
                    body,
                })
            }
            other => {
                let body = resp
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(300)
                    .collect();
                Err(HelixError::Status {
                    status: other.as_u16(),
                    body,
                })
            }
        }
    }
}

enum Answer {
    Page(StreamsPage),
    RateLimited(RateLimit),
    Unauthorized { generation: u64, body: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn rate_limit_headers_parse_case_insensitively() {
        let mut h = HeaderMap::new();
        h.insert("Ratelimit-Limit", HeaderValue::from_static("800"));
        h.insert("RateLimit-Remaining", HeaderValue::from_static("0"));
        h.insert("ratelimit-reset", HeaderValue::from_static("1700000010"));
        let r = RateLimit::from_headers(&h);
        assert_eq!(
            r,
            RateLimit {
                limit: Some(800),
                remaining: Some(0),
                reset: Some(1_700_000_010)
            }
        );
    }

    #[test]
    fn an_empty_bucket_waits_until_reset_and_a_full_one_does_not() {
        let cap = Duration::from_secs(90);
        let now = 1_700_000_000_500;
        let empty = RateLimit {
            limit: Some(800),
            remaining: Some(0),
            reset: Some(1_700_000_003),
        };
        assert_eq!(
            empty.wait_before_next(now, cap),
            Some(Duration::from_millis(2_500 + 250))
        );
        let some = RateLimit {
            remaining: Some(1),
            ..empty
        };
        assert_eq!(some.wait_before_next(now, cap), None);
        assert_eq!(RateLimit::default().wait_before_next(now, cap), None);
        // A reset in the past: only the slack; an absurd one: the cap.
        let past = RateLimit {
            reset: Some(1_600_000_000),
            ..empty
        };
        assert_eq!(
            past.wait_before_next(now, cap),
            Some(Duration::from_millis(250))
        );
        let far = RateLimit {
            reset: Some(1_800_000_000),
            ..empty
        };
        assert_eq!(far.wait_before_next(now, cap), Some(cap));
        assert_eq!(until_reset(None, now, cap), Duration::from_secs(1));
    }

    #[test]
    fn a_page_parses_with_and_without_a_cursor() {
        let body = r#"{"data":[{"id":"1","user_id":"24538518","user_login":"sneakylol","user_name":"SneakyLOL",
            "game_id":"21779","game_name":"League of Legends","type":"live","title":"t","viewer_count":1234,
            "started_at":"2024-01-28T01:00:00Z","language":"en","thumbnail_url":"x","tag_ids":[],"tags":["a"],
            "is_mature":false}],"pagination":{"cursor":"abc"}}"#;
        let p: StreamsPage = serde_json::from_str(body).expect("parses");
        assert_eq!(p.data[0].user_id, "24538518");
        assert_eq!(p.data[0].viewer_count, 1234);
        assert_eq!(p.pagination.cursor.as_deref(), Some("abc"));
        let last: StreamsPage =
            serde_json::from_str(r#"{"data":[],"pagination":{}}"#).expect("parses");
        assert!(last.pagination.cursor.is_none());
    }

    #[test]
    fn only_transient_errors_are_retriable() {
        assert!(HelixError::Status {
            status: 503,
            body: String::new()
        }
        .is_retriable());
        assert!(!HelixError::Status {
            status: 400,
            body: String::new()
        }
        .is_retriable());
        assert!(HelixError::Status {
            status: 429,
            body: String::new()
        }
        .is_retriable());
        assert!(!HelixError::TokenRefused {
            status: 403,
            body: String::new()
        }
        .is_retriable());
        assert!(HelixError::Malformed {
            what: "x",
            reason: String::new()
        }
        .is_retriable());
        let e = HelixError::RetriesExhausted {
            page: 3,
            attempts: 6,
            last: Box::new(HelixError::Status {
                status: 503,
                body: String::new(),
            }),
        };
        assert_eq!(e.kind(), "server_error");
    }
}

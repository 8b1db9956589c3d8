//! App access tokens and the per-client-id token bucket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::distr::Alphanumeric;
use rand::Rng;

/// Rate-limit numbers for the `Ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateInfo {
    pub limit: u32,
    pub remaining: u32,
    /// Unix seconds at which the bucket is full again.
    pub reset: u64,
}

#[derive(Debug)]
struct Bucket {
    points: f64,
    at: Instant,
}

#[derive(Debug)]
struct TokenInfo {
    client_id: String,
    expires: Instant,
}

/// Outcome of checking a bearer token.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TokenCheck {
    Valid,
    Invalid,
    ClientMismatch,
}

/// Tokens, buckets and injected failures.
#[derive(Debug)]
pub(crate) struct HelixState {
    size: u32,
    per_sec: f64,
    lifetime: Duration,
    tokens: Mutex<HashMap<String, TokenInfo>>,
    buckets: Mutex<HashMap<String, Bucket>>,
    failures: Mutex<Failures>,
    empty_next: AtomicU64,
}

/// Injected 503s: `count` of them, after `after` stream requests answered normally.
#[derive(Debug, Default)]
struct Failures {
    after: u64,
    count: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl HelixState {
    pub(crate) fn new(size: u32, refill: Duration, lifetime: Duration) -> Self {
        Self {
            size,
            per_sec: size as f64 / refill.as_secs_f64(),
            lifetime,
            tokens: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            failures: Mutex::default(),
            empty_next: AtomicU64::new(0),
        }
    }

    /// Issues a new app access token for `client_id`.
    pub(crate) fn issue(&self, client_id: &str) -> String {
        let token: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(30)
            .map(|b| (b as char).to_ascii_lowercase())
            .collect();
        let now = Instant::now();
        let mut g = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        g.retain(|_, t| t.expires > now);
        g.insert(
            token.clone(),
            TokenInfo {
                client_id: client_id.to_string(),
                expires: now + self.lifetime,
            },
        );
        token
    }

    pub(crate) fn check(&self, token: &str, client_id: &str) -> TokenCheck {
        let g = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        match g.get(token) {
            Some(t) if t.expires <= Instant::now() => TokenCheck::Invalid,
            Some(t) if t.client_id != client_id => TokenCheck::ClientMismatch,
            Some(_) => TokenCheck::Valid,
            None => TokenCheck::Invalid,
        }
    }

    /// Seconds left and client id of a token (for `/oauth2/validate`).
    pub(crate) fn describe(&self, token: &str) -> Option<(String, u64)> {
        let g = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let t = g.get(token)?;
        let left = t.expires.checked_duration_since(Instant::now())?;
        Some((t.client_id.clone(), left.as_secs()))
    }

    /// Invalidates every issued token.
    pub(crate) fn expire_all(&self) -> usize {
        let mut g = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let n = g.len();
        g.clear();
        n
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let dt = now.duration_since(b.at).as_secs_f64();
        b.points = (b.points + dt * self.per_sec).min(self.size as f64);
        b.at = now;
    }

    fn info(&self, b: &Bucket) -> RateInfo {
        let missing = self.size as f64 - b.points;
        RateInfo {
            limit: self.size,
            remaining: b.points.floor().max(0.0) as u32,
            reset: unix_now() + (missing / self.per_sec).ceil() as u64,
        }
    }

    /// Takes one point from `client_id`'s bucket: `Ok` with the numbers after taking it,
    /// `Err` (429) when empty.
    pub(crate) fn take(&self, client_id: &str) -> Result<RateInfo, RateInfo> {
        let now = Instant::now();
        let mut g = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = g.entry(client_id.to_string()).or_insert(Bucket {
            points: self.size as f64,
            at: now,
        });
        self.refill(b, now);
        let emptied = self
            .empty_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if emptied {
            b.points = 0.0;
        }
        if b.points >= 1.0 {
            b.points -= 1.0;
            Ok(self.info(b))
        } else {
            Err(self.info(b))
        }
    }

    /// Current numbers for a client id without taking a point.
    pub(crate) fn peek(&self, client_id: &str) -> RateInfo {
        let now = Instant::now();
        let mut g = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        match g.get_mut(client_id) {
            Some(b) => {
                self.refill(b, now);
                self.info(b)
            }
            None => RateInfo {
                limit: self.size,
                remaining: self.size,
                reset: unix_now(),
            },
        }
    }

    /// Makes the next `n` stream requests fail with 503.
    pub(crate) fn fail_next(&self, n: u64) {
        self.fail_after(0, n);
    }

    /// Lets the next `ok` stream requests through (those that pass the rate limit, whatever
    /// they are answered then), then fails `n` with 503: mid-walk, at a known page.
    pub(crate) fn fail_after(&self, ok: u64, n: u64) {
        let mut g = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        *g = Failures {
            after: ok,
            count: n,
        };
    }

    /// Consumes one injected failure, if one is due.
    pub(crate) fn take_failure(&self) -> bool {
        let mut g = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if g.count == 0 {
            false
        } else if g.after > 0 {
            g.after -= 1;
            false
        } else {
            g.count -= 1;
            true
        }
    }

    /// Makes the next `n` stream requests find their bucket empty, as if a neighbour with the
    /// same client id had just taken every point: each is answered 429 with the real
    /// `Ratelimit-Reset` of an empty bucket, and the bucket refills from zero.
    pub(crate) fn empty_next(&self, n: u64) {
        self.empty_next.store(n, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_empties_and_reports() {
        let s = HelixState::new(3, Duration::from_secs(300), Duration::from_secs(60));
        assert_eq!(s.take("a").unwrap().remaining, 2);
        assert_eq!(s.take("a").unwrap().remaining, 1);
        let last = s.take("a").unwrap();
        assert_eq!(last.remaining, 0);
        assert!(last.reset >= unix_now() + 299);
        assert!(s.take("a").is_err());
        assert_eq!(
            s.take("b").unwrap().remaining,
            2,
            "buckets are per client id"
        );
    }

    #[test]
    fn tokens_and_failures() {
        let s = HelixState::new(3, Duration::from_secs(1), Duration::from_secs(60));
        let t = s.issue("c");
        assert_eq!(t.len(), 30);
        assert_eq!(s.check(&t, "c"), TokenCheck::Valid);
        assert_eq!(s.check(&t, "d"), TokenCheck::ClientMismatch);
        assert_eq!(s.expire_all(), 1);
        assert_eq!(s.check(&t, "c"), TokenCheck::Invalid);
        s.fail_next(2);
        assert!(s.take_failure() && s.take_failure() && !s.take_failure());
        s.fail_after(2, 1);
        let due: Vec<bool> = (0..4).map(|_| s.take_failure()).collect();
        assert_eq!(due, [false, false, true, false]);
    }

    #[test]
    fn an_emptied_bucket_answers_429_with_a_real_reset_then_refills() {
        // 4 points, refilling completely in 2 s: 2 points per second.
        let s = HelixState::new(4, Duration::from_secs(2), Duration::from_secs(60));
        assert_eq!(s.take("c").unwrap().remaining, 3);
        s.empty_next(1);
        let before_empty = Instant::now();
        let refused = s.take("c").unwrap_err();
        assert_eq!(refused.remaining, 0);
        let now = unix_now();
        assert!(
            (now + 1..=now + 2).contains(&refused.reset),
            "an empty bucket of 4 at 2/s is full again in 2 s: {refused:?} at {now}"
        );
        assert!(s.take("c").is_err(), "still empty right after");
        std::thread::sleep(Duration::from_millis(600));
        let remaining = s.take("c").unwrap().remaining;
        // Refilled from zero at 2 points/s, one taken now: at most this many left (a full
        // bucket would say 3).
        let refilled = (before_empty.elapsed().as_secs_f64() * 2.0) as u32;
        assert!(
            remaining < refilled,
            "{remaining} left after {refilled} refilled"
        );
    }
}

//! Twitch's JOIN rate limit: a number of JOIN attempts per window per login (20 per 10 s for a
//! normal account, 2,000 per 10 s for a verified bot). Twitch keeps a bucket per user that is
//! refilled to full on a fixed schedule; an attempt made while the bucket is empty is ignored
//! without an answer (no JOIN echo, no ROOMSTATE), so a client that sends too fast never learns
//! which of its channels it is not in.
//!
//! Here the bucket of a login starts full at its first JOIN attempt and is refilled to full
//! every `window` after that. Each channel of a comma-separated `JOIN #a,#b` is one attempt.
//! Anonymous connections each log in as their own `justinfanNNNNN`, so for them the limit is
//! per connection; connections sharing one login (a bot account) share one bucket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Above this many remembered logins, those whose window has ended are forgotten.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    window_start: Instant,
    used: u32,
}

/// JOIN attempts per `window` per login; `limit == 0` means unlimited.
#[derive(Debug)]
pub(crate) struct JoinLimits {
    limit: u32,
    window: Duration,
    buckets: Mutex<HashMap<String, Bucket>>,
    refused: AtomicU64,
    accepted: AtomicU64,
}

impl JoinLimits {
    pub(crate) fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            buckets: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
        }
    }

    /// Takes one attempt of `login`'s bucket at `now`; `false` when it is empty (the JOIN is
    /// to be ignored).
    pub(crate) fn allow_at(&self, login: &str, now: Instant) -> bool {
        if self.limit == 0 || self.window.is_zero() {
            self.accepted.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        let mut g = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if g.len() > PRUNE_ABOVE && !g.contains_key(login) {
            let window = self.window;
            g.retain(|_, b| now.saturating_duration_since(b.window_start) < window);
        }
        let b = g.entry(login.to_string()).or_insert(Bucket {
            window_start: now,
            used: 0,
        });
        let since = now.saturating_duration_since(b.window_start);
        if since >= self.window {
            // Refilled on a fixed schedule: whole windows after the first attempt.
            let windows = (since.as_nanos() / self.window.as_nanos()) as u32;
            b.window_start += self.window * windows;
            b.used = 0;
        }
        let ok = b.used < self.limit;
        if ok {
            b.used += 1;
            self.accepted.fetch_add(1, Ordering::Relaxed);
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    pub(crate) fn allow(&self, login: &str) -> bool {
        self.allow_at(login, Instant::now())
    }

    /// JOIN attempts ignored because the login's bucket was empty.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// JOIN attempts let through.
    pub(crate) fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    pub(crate) fn limit(&self) -> u32 {
        self.limit
    }

    pub(crate) fn window(&self) -> Duration {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_per_ten_seconds_per_login_refilled_on_a_fixed_schedule() {
        let l = JoinLimits::new(20, Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..20 {
            assert!(
                l.allow_at("bot", t0 + Duration::from_millis(i * 100)),
                "{i}"
            );
        }
        // A token bucket refilling continuously would allow these; Twitch's does not.
        assert!(!l.allow_at("bot", t0 + Duration::from_secs(5)));
        assert!(!l.allow_at("bot", t0 + Duration::from_millis(9_999)));
        // Another login has its own bucket.
        assert!(l.allow_at("justinfan123", t0 + Duration::from_secs(5)));
        // Full again once the window is over, and the schedule stays anchored.
        assert!(l.allow_at("bot", t0 + Duration::from_secs(10)));
        for _ in 0..19 {
            assert!(l.allow_at("bot", t0 + Duration::from_secs(25)));
        }
        assert!(l.allow_at("bot", t0 + Duration::from_secs(29)));
        assert!(l.allow_at("bot", t0 + Duration::from_secs(30)));
        assert_eq!(l.refused(), 2);
        assert_eq!(l.accepted(), 20 + 1 + 1 + 19 + 1 + 1);
    }

    #[test]
    fn zero_means_unlimited() {
        let l = JoinLimits::new(0, Duration::from_secs(10));
        let t0 = Instant::now();
        assert!((0..10_000).all(|_| l.allow_at("x", t0)));
        assert_eq!(l.refused(), 0);
    }

    #[test]
    fn old_logins_are_forgotten() {
        let l = JoinLimits::new(1, Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..=PRUNE_ABOVE {
            assert!(l.allow_at(&format!("justinfan{i}"), t0));
        }
        assert!(l.allow_at("late", t0 + Duration::from_secs(2)));
        let n = l.buckets.lock().unwrap().len();
        assert_eq!(n, 1, "expired buckets pruned");
    }
}

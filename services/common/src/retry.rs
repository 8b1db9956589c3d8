//! Capped exponential backoff with full jitter.

use std::time::Duration;

use rand::Rng;

/// Backoff state: `next()` returns the next delay.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// Delays grow from `base` doubling up to `cap`; each delay is uniformly drawn in
    /// `[ceiling/2, ceiling]` so a fleet of clients does not retry in lock step.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The default for dependencies: 100 ms doubling to 10 s.
    pub fn default_for_dependencies() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(10))
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(20));
        let ceiling = exp.min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let lo = ceiling / 2;
        let span = ceiling.saturating_sub(lo).as_millis() as u64;
        lo + Duration::from_millis(rand::rng().random_range(0..=span))
    }

    /// How many delays were handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Back to `base` after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_under_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d: Vec<_> = (0..10).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100));
        assert!(d[3] >= Duration::from_millis(400), "{d:?}");
        assert!(d.iter().all(|x| *x <= Duration::from_secs(1)), "{d:?}");
        assert!(d[9] >= Duration::from_millis(500));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}

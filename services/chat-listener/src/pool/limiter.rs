//! The JOIN rate limit, shared by every connection of the process (Twitch: 20 JOINs per 10 s
//! for an anonymous or normal account).

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// A token bucket: `capacity` tokens, refilled continuously over `window`.
#[derive(Debug)]
pub struct JoinLimiter {
    state: Mutex<(f64, Instant)>,
    capacity: f64,
    per_sec: f64,
}

impl JoinLimiter {
    pub fn new(capacity: u32, window: Duration) -> Self {
        let capacity = f64::from(capacity.max(1));
        Self {
            state: Mutex::new((capacity, Instant::now())),
            capacity,
            per_sec: capacity / window.as_secs_f64().max(0.001),
        }
    }

    /// Takes a token now, or says how long until one is available.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        self.try_acquire_at(Instant::now())
    }

    fn try_acquire_at(&self, now: Instant) -> Result<(), Duration> {
        let Ok(mut st) = self.state.lock() else {
            return Err(Duration::from_millis(100));
        };
        let elapsed = now.saturating_duration_since(st.1).as_secs_f64();
        st.0 = (st.0 + elapsed * self.per_sec).min(self.capacity);
        st.1 = now;
        if st.0 >= 1.0 {
            st.0 -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - st.0) / self.per_sec))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_per_ten_seconds() {
        let l = JoinLimiter::new(20, Duration::from_secs(10));
        let t0 = Instant::now();
        for _ in 0..20 {
            l.try_acquire_at(t0).expect("burst of 20");
        }
        let wait = l.try_acquire_at(t0).expect_err("21st must wait");
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        l.try_acquire_at(t0 + Duration::from_millis(500))
            .expect("one token after 0.5 s");
    }
}

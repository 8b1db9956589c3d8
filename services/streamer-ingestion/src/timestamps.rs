//! Write timestamps that make the `streamers` upserts idempotent and order-independent, without
//! lightweight transactions.
//!
//! Cassandra keeps, per cell, the write with the highest write timestamp (`USING TIMESTAMP`).
//!
//! - `last_seen_live` and the descriptive columns (login, title, viewers, …) are written with
//!   `USING TIMESTAMP observed_at_micros`: the latest observation wins, and replaying an older
//!   record (a consumer restart, a rebalance) can never move them backwards.
//! - `first_seen` is written in its own statement with
//!   `USING TIMESTAMP (i64::MAX / 2) - observed_at_micros`: the timestamp *decreases* as the
//!   observation gets later, so the earliest observation has the highest timestamp and wins,
//!   whatever order records arrive in. Written once per record; it never moves after the
//!   earliest observation has landed.
//!
//! Consequence for operators: `first_seen` cells carry timestamps far in the future
//! (≈ 4.6·10^18 µs), so a plain `DELETE` (timestamp = now) does not remove them; delete a
//! streamer with `DELETE FROM streamers USING TIMESTAMP 9223372036854775807 WHERE …`.

/// The offset that turns "earlier" into "higher" for `first_seen`.
pub const FIRST_SEEN_BASE: i64 = i64::MAX / 2;

/// Latest `observed_at` (ms) accepted: keeps every derived timestamp positive and below
/// [`FIRST_SEEN_BASE`] (year ≈ 148 000).
pub const MAX_OBSERVED_AT_MS: i64 = FIRST_SEEN_BASE / 1000 / 2;

/// Why an `observed_at` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("observed_at {0} ms is outside 1..={MAX_OBSERVED_AT_MS}")]
pub struct OutOfRange(pub i64);

/// `USING TIMESTAMP` of the `last_seen_live` upsert: the observation time in microseconds.
pub fn last_seen_write_ts(observed_at_ms: i64) -> Result<i64, OutOfRange> {
    check(observed_at_ms).map(|ms| ms * 1000)
}

/// `USING TIMESTAMP` of the `first_seen` write: earlier observations get higher timestamps.
pub fn first_seen_write_ts(observed_at_ms: i64) -> Result<i64, OutOfRange> {
    check(observed_at_ms).map(|ms| FIRST_SEEN_BASE - ms * 1000)
}

fn check(ms: i64) -> Result<i64, OutOfRange> {
    if (1..=MAX_OBSERVED_AT_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(OutOfRange(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays writes like Cassandra does: per cell, the highest timestamp wins (ties: the
    /// greater value, which here is irrelevant because equal timestamps carry equal values).
    fn resolve(writes: &[(i64, i64)]) -> i64 {
        writes
            .iter()
            .max_by_key(|(ts, v)| (*ts, *v))
            .map(|(_, v)| *v)
            .expect("writes")
    }

    #[test]
    fn the_earliest_observation_wins_first_seen_in_any_order() {
        let obs = [1_706_408_359_963i64, 1_706_408_419_963, 1_706_408_479_963];
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]] {
            let writes: Vec<_> = order
                .iter()
                .map(|&i| (first_seen_write_ts(obs[i]).expect("ok"), obs[i]))
                .collect();
            assert_eq!(resolve(&writes), obs[0], "order {order:?}");
        }
    }

    #[test]
    fn the_latest_observation_wins_last_seen_in_any_order() {
        let obs = [1_706_408_359_963i64, 1_706_408_419_963, 1_706_408_479_963];
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
            let writes: Vec<_> = order
                .iter()
                .map(|&i| (last_seen_write_ts(obs[i]).expect("ok"), obs[i]))
                .collect();
            assert_eq!(resolve(&writes), obs[2], "order {order:?}");
        }
        // A replay of an old record after a newer one does not move it back.
        let w = [
            (last_seen_write_ts(obs[2]).expect("ok"), obs[2]),
            (last_seen_write_ts(obs[0]).expect("ok"), obs[0]),
        ];
        assert_eq!(resolve(&w), obs[2]);
    }

    #[test]
    fn timestamps_are_exact_and_stay_in_range() {
        assert_eq!(
            last_seen_write_ts(1_706_408_359_963),
            Ok(1_706_408_359_963_000)
        );
        assert_eq!(
            first_seen_write_ts(1_706_408_359_963),
            Ok(i64::MAX / 2 - 1_706_408_359_963_000)
        );
        assert_eq!(FIRST_SEEN_BASE, 4_611_686_018_427_387_903);
        assert_eq!(first_seen_write_ts(1), Ok(4_611_686_018_427_386_903));
        // Both families stay positive; first_seen timestamps always exceed last_seen ones.
        let max = MAX_OBSERVED_AT_MS;
        assert!(first_seen_write_ts(max).expect("ok") > last_seen_write_ts(max).expect("ok"));
        assert!(first_seen_write_ts(max).expect("ok") > 0);
        assert_eq!(last_seen_write_ts(0), Err(OutOfRange(0)));
        assert_eq!(last_seen_write_ts(-5), Err(OutOfRange(-5)));
        assert_eq!(first_seen_write_ts(max + 1), Err(OutOfRange(max + 1)));
    }
}

//! Partition arithmetic: chat is partitioned by channel and 5-minute bucket, and the deletion
//! rule that follows from it.

/// Width of one chat partition ("bucket") in milliseconds: five minutes.
/// See docs/ARCHITECTURE.md for the partition-size arithmetic behind it.
pub const BUCKET_MS: i64 = 5 * 60 * 1000;

/// The bucket (partition time window) a message sent at `sent_ms` belongs to: the window's start
/// in ms since the epoch. Works for times before 1970 too (floors, never truncates toward zero).
pub fn bucket_of(sent_ms: i64) -> i64 {
    sent_ms.div_euclid(BUCKET_MS) * BUCKET_MS
}

/// One day: the time window of a `user_chat_index` partition.
pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// 28 days: the time window of a `user_chat_days` partition.
pub const PERIOD_MS: i64 = 28 * DAY_MS;

/// How many `user_chat_index` / `user_chat_days` partitions share a channel's day / period.
pub const USER_SHARDS: i32 = 8;

/// The UTC day `sent_ms` falls in: its start in ms since the epoch (floors, like [`bucket_of`]).
pub fn day_of(sent_ms: i64) -> i64 {
    sent_ms.div_euclid(DAY_MS) * DAY_MS
}

/// The 28-day period (of `user_chat_days`) `ms` falls in: its start.
pub fn period_of(ms: i64) -> i64 {
    ms.div_euclid(PERIOD_MS) * PERIOD_MS
}

/// The by-user partition shard of a chatter: `user_id mod 8`, never negative.
pub fn user_shard(user_id: i64) -> i32 {
    // rem_euclid of a positive modulus is in 0..USER_SHARDS.
    user_id.rem_euclid(i64::from(USER_SHARDS)) as i32
}

/// How long after it was sent a message can still be deleted: Twitch lets moderators delete
/// messages sent within the last 6 hours (Helix "Delete Chat Messages").
pub const DELETABLE_FOR_MS: i64 = 6 * 60 * 60 * 1000;

/// The buckets a CLEARMSG sent at `clearmsg_ms` marks: every bucket its target can have been
/// sent in, from `clearmsg_ms - DELETABLE_FOR_MS` to the CLEARMSG's own (73 buckets).
///
/// A CLEARMSG names the message, not when it was sent, and finding that out would be a read per
/// deletion; the reader pages one bucket at a time and reads that bucket's marks. So the mark is
/// written wherever the message can be: deletions are rare (a fraction of a percent of chat),
/// and 73 small rows each cost less than a lookup would.
pub fn deletion_buckets(clearmsg_ms: i64) -> impl Iterator<Item = i64> {
    let last = bucket_of(clearmsg_ms);
    let first = bucket_of(clearmsg_ms.saturating_sub(DELETABLE_FOR_MS));
    (0..=(last - first) / BUCKET_MS).map(move |i| first + i * BUCKET_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_floor_to_five_minutes() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(BUCKET_MS - 1), 0);
        assert_eq!(bucket_of(BUCKET_MS), BUCKET_MS);
        assert_eq!(bucket_of(-1), -BUCKET_MS);
        assert_eq!(bucket_of(1_706_408_359_963) % BUCKET_MS, 0);
    }

    #[test]
    fn days_periods_and_shards() {
        assert_eq!(day_of(DAY_MS - 1), 0);
        assert_eq!(day_of(-1), -DAY_MS);
        assert_eq!(
            day_of(1_706_408_359_963),
            1_706_400_000_000 - 1_706_400_000_000 % DAY_MS
        );
        assert_eq!(period_of(PERIOD_MS + DAY_MS), PERIOD_MS);
        assert_eq!(period_of(day_of(1_706_408_359_963)) % PERIOD_MS, 0);
        assert_eq!(user_shard(17), 1);
        assert_eq!(user_shard(-1), 7);
        assert!((0..USER_SHARDS).contains(&user_shard(i64::MIN)));
    }

    #[test]
    fn a_deletion_reaches_every_bucket_its_target_can_be_in() {
        let clearmsg = 1_706_408_359_963;
        let marked: Vec<i64> = deletion_buckets(clearmsg).collect();
        assert_eq!(marked.len(), 73);
        assert_eq!(*marked.last().unwrap(), bucket_of(clearmsg));
        for sent in [
            clearmsg,
            clearmsg - 1,
            clearmsg - BUCKET_MS,
            clearmsg - 3_600_000,
            clearmsg - DELETABLE_FOR_MS,
        ] {
            assert!(marked.contains(&bucket_of(sent)), "sent at {sent}");
        }
        assert!(marked.windows(2).all(|w| w[1] - w[0] == BUCKET_MS));
    }
}

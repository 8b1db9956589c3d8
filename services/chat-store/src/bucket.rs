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

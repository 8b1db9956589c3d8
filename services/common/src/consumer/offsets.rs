//! Per-partition contiguous watermarks.
//!
//! Records of one Kafka partition are read in order but complete (are written, dead-lettered or
//! skipped) out of order: several batches are written at once and finish whenever the store
//! answers. The offset that may be stored for a Kafka partition is the lowest offset still
//! outstanding (or one past the highest seen when none is outstanding): storing it says "every
//! record before it is durable", which is the at-least-once contract.
//!
//! Each partition's state carries an epoch, handed out anew whenever the partition is (re)seen
//! after a revocation, so a completion arriving for an assignment that was revoked meanwhile is
//! ignored instead of advancing the new owner's watermark.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
};

/// A Kafka partition: topic and partition number.
pub type TopicPartition = (Arc<str>, i32);

/// One outstanding record; give it back to [`Tracker::complete`] once the record is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    epoch: u64,
}

#[derive(Debug)]
struct PartState {
    epoch: u64,
    pending: BTreeSet<i64>,
    max_seen: i64,
    stored: i64,
}

/// Watermarks of every partition this consumer currently reads.
#[derive(Debug, Default)]
pub struct Tracker {
    parts: HashMap<TopicPartition, PartState>,
    next_epoch: u64,
}

impl Tracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a record just read. Must be called in read order per partition.
    pub fn begin(&mut self, topic: &Arc<str>, partition: i32, offset: i64) -> Ticket {
        let key = (topic.clone(), partition);
        let next_epoch = &mut self.next_epoch;
        let st = self.parts.entry(key).or_insert_with(|| {
            *next_epoch += 1;
            PartState {
                epoch: *next_epoch,
                pending: BTreeSet::new(),
                max_seen: offset - 1,
                stored: offset,
            }
        });
        st.pending.insert(offset);
        st.max_seen = st.max_seen.max(offset);
        Ticket {
            topic: topic.clone(),
            partition,
            offset,
            epoch: st.epoch,
        }
    }

    /// Marks a record durable. Returns the new offset to store for its partition when the
    /// contiguous watermark advanced, `None` otherwise (or when the ticket is stale).
    pub fn complete(&mut self, t: &Ticket) -> Option<i64> {
        let st = self.parts.get_mut(&(t.topic.clone(), t.partition))?;
        if st.epoch != t.epoch || !st.pending.remove(&t.offset) {
            return None;
        }
        let wm = st.pending.first().copied().unwrap_or(st.max_seen + 1);
        if wm > st.stored {
            st.stored = wm;
            Some(wm)
        } else {
            None
        }
    }

    /// Completes many tickets; returns the partitions whose watermark advanced, with the new
    /// offset to store.
    pub fn complete_all<'a>(
        &mut self,
        tickets: impl IntoIterator<Item = &'a Ticket>,
    ) -> Vec<(TopicPartition, i64)> {
        let mut out: HashMap<TopicPartition, i64> = HashMap::new();
        for t in tickets {
            if let Some(wm) = self.complete(t) {
                out.insert((t.topic.clone(), t.partition), wm);
            }
        }
        out.into_iter().collect()
    }

    /// Records of `(topic, partition)` read but not yet durable.
    pub fn outstanding(&self, topic: &str, partition: i32) -> usize {
        self.parts
            .iter()
            .find(|((t, p), _)| &**t == topic && *p == partition)
            .map(|(_, s)| s.pending.len())
            .unwrap_or(0)
    }

    /// Records read but not yet durable, over every partition.
    pub fn outstanding_total(&self) -> usize {
        self.parts.values().map(|s| s.pending.len()).sum()
    }

    /// Forgets a revoked partition: later completions of its tickets are ignored.
    pub fn revoke(&mut self, topic: &str, partition: i32) {
        self.parts
            .retain(|(t, p), _| !(&**t == topic && *p == partition));
    }

    /// The offset last handed out for storing, per partition.
    pub fn stored(&self) -> Vec<(TopicPartition, i64)> {
        self.parts
            .iter()
            .map(|(k, s)| (k.clone(), s.stored))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Arc<str> {
        Arc::from("chat")
    }

    #[test]
    fn out_of_order_completions_store_only_the_contiguous_prefix() {
        let mut tr = Tracker::new();
        let a = tr.begin(&t(), 0, 10);
        let b = tr.begin(&t(), 0, 11);
        let c = tr.begin(&t(), 0, 12);
        assert_eq!(tr.complete(&c), None, "12 done but 10, 11 are not");
        assert_eq!(tr.complete(&b), None);
        assert_eq!(tr.outstanding("chat", 0), 1);
        assert_eq!(
            tr.complete(&a),
            Some(13),
            "everything up to 12 is durable: next is 13"
        );
        assert_eq!(tr.outstanding_total(), 0);
    }

    #[test]
    fn a_hole_holds_the_watermark() {
        let mut tr = Tracker::new();
        let a = tr.begin(&t(), 1, 0);
        let b = tr.begin(&t(), 1, 1);
        let c = tr.begin(&t(), 1, 5); // offsets may jump (compaction, transaction markers)
        assert_eq!(tr.complete(&a), Some(1));
        assert_eq!(tr.complete(&c), None);
        assert_eq!(tr.complete(&b), Some(6));
        assert_eq!(tr.complete(&b), None, "a second completion is a no-op");
    }

    #[test]
    fn partitions_are_independent() {
        let mut tr = Tracker::new();
        let a0 = tr.begin(&t(), 0, 0);
        let a1 = tr.begin(&t(), 1, 100);
        let m = tr.begin(&Arc::from("mod"), 0, 7);
        let mut adv = tr.complete_all([&a1, &m]);
        adv.sort();
        assert_eq!(adv, vec![((t(), 1), 101), ((Arc::from("mod"), 0), 8)]);
        assert_eq!(tr.complete(&a0), Some(1));
    }

    #[test]
    fn completions_of_a_revoked_assignment_are_ignored() {
        let mut tr = Tracker::new();
        let old = tr.begin(&t(), 0, 0);
        tr.revoke("chat", 0);
        let new = tr.begin(&t(), 0, 0); // reassigned: read again from the committed offset
        assert_eq!(tr.complete(&old), None, "stale epoch");
        assert_eq!(tr.outstanding("chat", 0), 1);
        assert_eq!(tr.complete(&new), Some(1));
    }
}

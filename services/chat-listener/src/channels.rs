//! Which channels this replica captures.
//!
//! chat-listener consumes the live-streams topic in its own consumer group. A replica owns the
//! channels whose records arrive on the partitions assigned to it (records are keyed by
//! broadcaster id), so replicas split the channels without capturing one twice; on a rebalance
//! it parts what it lost and joins what it gained. A channel not seen live for `ttl` is parted.
//!
//! The live set is soft state rebuilt from the topic: offsets are never committed; whenever a
//! partition is (re)assigned, the consumer seeks it back to `now - ttl`, so a restarted replica
//! knows every live channel at once instead of waiting for the next Helix poll.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use rdkafka::{
    consumer::{Consumer, StreamConsumer},
    Message, Offset, TopicPartitionList,
};
use tci_common::{kafka::ErrorKeeper, registry::AvroCodec};
use tci_schemas::LiveStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{config::ChannelsConfig, metrics::M};

/// A change to the set of joined channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolCmd {
    /// Join `channel` (a login); `room_id` is its broadcaster id from the live-stream record.
    Join {
        channel: String,
        room_id: i64,
    },
    Part(String),
}

#[derive(Debug, Clone)]
struct Entry {
    last_seen_ms: i64,
    partition: i32,
}

/// Why a live-stream record did not change the live set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Not a Twitch login (`[a-z0-9_]{1,25}`): never sent to IRC, where it could inject commands.
    InvalidLogin,
    /// From a partition whose assignment was not seen yet; the rewind after the assignment
    /// re-reads it.
    NotAssignedYet,
    /// Older than the TTL.
    Stale,
}

impl Ignored {
    pub fn label(self) -> &'static str {
        match self {
            Self::InvalidLogin => "invalid_login",
            Self::NotAssignedYet => "not_assigned_yet",
            Self::Stale => "stale",
        }
    }
}

/// True for a Twitch login: 1–25 ASCII letters, digits or underscores.
pub fn valid_login(login: &str) -> bool {
    (1..=25).contains(&login.len())
        && login
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The owned live channels (pure logic; the consumer loop feeds it).
///
/// Channels of a partition this replica loses are not parted at once but kept for a handover
/// grace: when the group only lost this replica for a moment (a Kafka broker restart times the
/// session out, then the sticky assignor hands the same partitions back), capture never stops;
/// when another replica really took them, both capture for the grace and the idempotent message
/// ids merge the copies.
#[derive(Debug, Default)]
pub struct LiveSet {
    ttl_ms: i64,
    handover_ms: i64,
    channels: HashMap<String, Entry>,
    /// Channels of lost partitions, still joined until the deadline (ms).
    leaving: HashMap<String, (Entry, i64)>,
    assigned: HashSet<i32>,
}

impl LiveSet {
    /// Parts lost partitions' channels at once (no handover grace).
    pub fn new(ttl: Duration) -> Self {
        Self::with_handover(ttl, Duration::ZERO)
    }

    /// Keeps lost partitions' channels joined for `handover` (see the type's docs).
    pub fn with_handover(ttl: Duration, handover: Duration) -> Self {
        Self {
            ttl_ms: ttl.as_millis() as i64,
            handover_ms: handover.as_millis() as i64,
            ..Self::default()
        }
    }

    /// Number of joined channels (owned, or kept through a handover).
    pub fn len(&self) -> usize {
        self.channels.len() + self.leaving.len()
    }

    /// True when no channel is joined.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty() && self.leaving.is_empty()
    }

    /// True when `login` is joined.
    pub fn contains(&self, login: &str) -> bool {
        self.channels.contains_key(login) || self.leaving.contains_key(login)
    }

    /// A live-stream record from `partition`. Returns the login to join when it is new, or why
    /// the record was ignored.
    pub fn observe(
        &mut self,
        login: &str,
        observed_at_ms: i64,
        partition: i32,
        now_ms: i64,
    ) -> Result<Option<String>, Ignored> {
        if !valid_login(login) {
            return Err(Ignored::InvalidLogin);
        }
        if !self.assigned.contains(&partition) {
            return Err(Ignored::NotAssignedYet);
        }
        if observed_at_ms < now_ms.saturating_sub(self.ttl_ms) {
            return Err(Ignored::Stale);
        }
        let login = login.to_ascii_lowercase();
        if let Some((e, _)) = self.leaving.remove(&login) {
            // Still joined from before a handover: owned again, nothing to join.
            self.channels.insert(login.clone(), e);
        }
        match self.channels.get_mut(&login) {
            Some(e) => {
                e.last_seen_ms = e.last_seen_ms.max(observed_at_ms);
                e.partition = partition;
                Ok(None)
            }
            None => {
                self.channels.insert(
                    login.clone(),
                    Entry {
                        last_seen_ms: observed_at_ms,
                        partition,
                    },
                );
                Ok(Some(login))
            }
        }
    }

    /// Channels not seen live within the TTL, and channels whose handover grace ended: removed
    /// and returned (to part).
    pub fn expire(&mut self, now_ms: i64) -> Vec<String> {
        let cutoff = now_ms - self.ttl_ms;
        let mut gone: Vec<String> = self
            .channels
            .iter()
            .filter(|(_, e)| e.last_seen_ms < cutoff)
            .map(|(k, _)| k.clone())
            .collect();
        for g in &gone {
            self.channels.remove(g);
        }
        let handed_over: Vec<String> = self
            .leaving
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now_ms)
            .map(|(k, _)| k.clone())
            .collect();
        for g in &handed_over {
            self.leaving.remove(g);
        }
        gone.extend(handed_over);
        gone
    }

    /// Applies a new partition assignment at `now_ms`: returns the partitions gained (to
    /// rewind) and the channels to part now. Without a handover grace those are the channels of
    /// lost partitions; with one, they are kept joined until [`Self::expire`] finds the grace
    /// over, and come back as owned if their partition is assigned again before that.
    pub fn set_assignment(&mut self, now: HashSet<i32>, now_ms: i64) -> (Vec<i32>, Vec<String>) {
        let mut gained: Vec<i32> = now.difference(&self.assigned).copied().collect();
        gained.sort_unstable();
        let lost: HashSet<i32> = self.assigned.difference(&now).copied().collect();
        let losing: Vec<String> = self
            .channels
            .iter()
            .filter(|(_, e)| lost.contains(&e.partition))
            .map(|(k, _)| k.clone())
            .collect();
        let mut parts = Vec::new();
        for login in losing {
            if let Some(e) = self.channels.remove(&login) {
                if self.handover_ms > 0 {
                    self.leaving.insert(login, (e, now_ms + self.handover_ms));
                } else {
                    parts.push(login);
                }
            }
        }
        let back: Vec<String> = self
            .leaving
            .iter()
            .filter(|(_, (e, _))| now.contains(&e.partition))
            .map(|(k, _)| k.clone())
            .collect();
        for login in back {
            if let Some((e, _)) = self.leaving.remove(&login) {
                self.channels.insert(login, e);
            }
        }
        self.assigned = now;
        (gained, parts)
    }

    /// Channels kept joined through a handover grace.
    pub fn leaving(&self) -> usize {
        self.leaving.len()
    }
}

/// Consumes the live-streams topic and sends joins/parts to the pool until `token` is cancelled.
pub async fn run(
    cfg: ChannelsConfig,
    topic: String,
    consumer: Arc<StreamConsumer<ErrorKeeper>>,
    codec: AvroCodec,
    pool: mpsc::Sender<PoolCmd>,
    owned: Arc<std::sync::atomic::AtomicUsize>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let mut live = LiveSet::with_handover(cfg.ttl, cfg.handover_grace);
    let mut tick = tokio::time::interval(cfg.check_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut to_rewind: Vec<i32> = Vec::new();
    loop {
        tokio::select! {
            _ = token.cancelled() => return Ok(()),
            msg = consumer.recv() => {
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        warn!(error = %e, "live-streams consumer error");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                M.live_records.inc();
                let partition = msg.partition();
                match codec.decode::<LiveStream>(msg.payload()).await {
                    Ok(ls) => match live.observe(&ls.broadcaster_login, ls.observed_at, partition, tci_common::now_ms()) {
                        Ok(Some(join)) => {
                            debug!(channel = %join, broadcaster_id = ls.broadcaster_id, "channel is live: joining");
                            if pool.send(PoolCmd::Join { channel: join, room_id: ls.broadcaster_id }).await.is_err() {
                                return Ok(());
                            }
                        }
                        Ok(None) => {}
                        Err(why) => {
                            M.live_ignored.with_label_values(&[why.label()]).inc();
                            if why == Ignored::InvalidLogin {
                                warn!(login = ?ls.broadcaster_login, broadcaster_id = ls.broadcaster_id, "live-stream record with an invalid login; not joined");
                            }
                        }
                    },
                    Err(e) => {
                        M.live_decode_errors.inc();
                        warn!(error = %e, partition, offset = msg.offset(), "cannot decode a live-stream record; skipped");
                    }
                }
            }
            _ = tick.tick() => {
                let assignment: HashSet<i32> = match consumer.assignment() {
                    Ok(tpl) => tpl.elements().iter().filter(|e| e.topic() == topic).map(|e| e.partition()).collect(),
                    Err(e) => {
                        warn!(error = %e, "cannot read the consumer assignment");
                        continue;
                    }
                };
                let leaving_before = live.leaving();
                let (gained, lost_channels) = live.set_assignment(assignment, tci_common::now_ms());
                if !gained.is_empty() || !lost_channels.is_empty() || live.leaving() != leaving_before {
                    info!(gained = ?gained, parted = lost_channels.len(), kept_for_handover = live.leaving(), "live-streams partitions rebalanced");
                }
                to_rewind.extend(gained);
                if !to_rewind.is_empty() {
                    to_rewind = rewind(&consumer, &topic, std::mem::take(&mut to_rewind), cfg.ttl).await;
                }
                let mut parts = lost_channels;
                parts.extend(live.expire(tci_common::now_ms()));
                for p in parts {
                    if pool.send(PoolCmd::Part(p)).await.is_err() {
                        return Ok(());
                    }
                }
                M.owned_channels.set(live.len() as i64);
                owned.store(live.len(), std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

/// Seeks `partitions` back to `now - ttl`. Returns the partitions to retry later (a partition
/// just assigned may not accept a seek until its fetcher has started).
async fn rewind(
    consumer: &Arc<StreamConsumer<ErrorKeeper>>,
    topic: &str,
    partitions: Vec<i32>,
    ttl: Duration,
) -> Vec<i32> {
    let consumer = consumer.clone();
    let topic = topic.to_string();
    let since = tci_common::now_ms() - ttl.as_millis() as i64;
    let res = tokio::task::spawn_blocking(move || -> Result<(), (Vec<i32>, String)> {
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(&topic, *p, Offset::Offset(since))
                .map_err(|e| (partitions.clone(), e.to_string()))?;
        }
        let found = consumer
            .offsets_for_times(tpl, Duration::from_secs(10))
            .map_err(|e| (partitions.clone(), e.to_string()))?;
        let mut seek = TopicPartitionList::new();
        for el in found.elements() {
            // No record at or after `since`: nothing to replay, continue from the end.
            let off = match el.offset() {
                Offset::Offset(o) if o >= 0 => Offset::Offset(o),
                _ => Offset::End,
            };
            seek.add_partition_offset(el.topic(), el.partition(), off)
                .map_err(|e| (partitions.clone(), e.to_string()))?;
        }
        let done = consumer
            .seek_partitions(seek, Duration::from_secs(10))
            .map_err(|e| (partitions.clone(), e.to_string()))?;
        let failed: Vec<i32> = done
            .elements()
            .iter()
            .filter(|e| e.error().is_err())
            .map(|e| e.partition())
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err((failed, "seek refused".into()))
        }
    })
    .await;
    match res {
        Ok(Ok(())) => Vec::new(),
        Ok(Err((retry, why))) => {
            debug!(partitions = ?retry, reason = %why, "rewinding live-streams partitions: will retry");
            retry
        }
        Err(e) => {
            warn!(error = %e, "rewind task failed");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ps: &[i32]) -> HashSet<i32> {
        ps.iter().copied().collect()
    }

    #[test]
    fn joins_new_channels_once_and_parts_them_after_the_ttl() {
        let mut l = LiveSet::new(Duration::from_secs(300));
        l.set_assignment(set(&[0, 1]), 0);
        assert_eq!(
            l.observe("Foo", 1_000_000, 0, 1_000_000),
            Ok(Some("foo".into()))
        );
        assert_eq!(l.observe("foo", 1_060_000, 0, 1_060_000), Ok(None));
        assert!(
            l.expire(1_300_000).is_empty(),
            "seen at 1_060_000, ttl 300 s"
        );
        assert_eq!(l.expire(1_360_001), vec!["foo".to_string()]);
        assert!(l.is_empty());
    }

    #[test]
    fn stale_records_foreign_partitions_and_invalid_logins_are_ignored() {
        let mut l = LiveSet::new(Duration::from_secs(300));
        l.set_assignment(set(&[1]), 0);
        assert_eq!(l.observe("a", 0, 1, 1_000_000), Err(Ignored::Stale));
        assert_eq!(
            l.observe("b", 999_000, 2, 1_000_000),
            Err(Ignored::NotAssignedYet)
        );
        assert_eq!(l.observe("c", 999_000, 1, 1_000_000), Ok(Some("c".into())));
        for bad in [
            "",
            "a b",
            "x\r\nPRIVMSG #y :hi",
            "a,b",
            "#c",
            "abcdefghijklmnopqrstuvwxyz",
        ] {
            assert_eq!(
                l.observe(bad, 999_000, 1, 1_000_000),
                Err(Ignored::InvalidLogin),
                "{bad:?}"
            );
        }
        assert!(valid_login("sneaky_lol99"));
    }

    #[test]
    fn a_rebalance_parts_the_channels_of_lost_partitions_only() {
        let mut l = LiveSet::new(Duration::from_secs(300));
        l.set_assignment(set(&[0, 1]), 0);
        l.observe("a", 10, 0, 10).expect("a");
        l.observe("b", 10, 1, 10).expect("b");
        let (gained, parted) = l.set_assignment(set(&[1, 2]), 0);
        assert_eq!(gained, vec![2]);
        assert_eq!(parted, vec!["a".to_string()]);
        assert!(l.contains("b") && !l.contains("a"));
    }

    #[test]
    fn lost_partitions_are_kept_through_the_handover_grace() {
        let mut l = LiveSet::with_handover(Duration::from_secs(300), Duration::from_secs(60));
        l.set_assignment(set(&[0, 1]), 0);
        assert_eq!(l.observe("a", 1_000, 0, 1_000), Ok(Some("a".into())));
        assert_eq!(l.observe("b", 1_000, 1, 1_000), Ok(Some("b".into())));
        // A Kafka outage times the session out: every partition is lost for a while ...
        let (_, parts) = l.set_assignment(set(&[]), 2_000);
        assert!(parts.is_empty(), "nothing parted during the grace");
        assert!(l.contains("a") && l.contains("b"));
        assert!(l.expire(30_000).is_empty());
        // ... and the sticky assignor hands partition 0 back: "a" is owned again, no re-join.
        let (gained, parts) = l.set_assignment(set(&[0]), 31_000);
        assert_eq!((gained, parts), (vec![0], vec![]));
        assert_eq!(l.observe("a", 31_000, 0, 31_000), Ok(None));
        // "b" went to another replica: parted once the grace is over.
        assert_eq!(l.expire(61_999), Vec::<String>::new());
        assert_eq!(l.expire(62_000), vec!["b".to_string()]);
        assert!(l.contains("a") && !l.contains("b"));
        assert_eq!(l.len(), 1);
    }
}

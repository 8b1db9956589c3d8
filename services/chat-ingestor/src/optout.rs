//! Opt-out in chat-ingestor: the set of opted-out chatters and channels (followed from the
//! compacted topic), the filter every flush goes through (live and backfill), the
//! `user_channels` index written with the chat, and the purge of stored chat.
//!
//! Ordering: the set sits behind a `tokio::sync::RwLock`. A flush holds the read lock from its
//! filter until its rows are written; applying an opt-out takes the write lock, so it waits for
//! the flushes that were filtered with the old set to land, and every later flush already drops
//! the person's records. Only then does the purge run: nothing written before the opt-out was
//! applied can land after the purge.

use std::{
    collections::HashSet,
    sync::{Arc, LazyLock, Mutex},
};

use chat_store::optout::{OptOutStatements, PurgeCounts};
use futures::{StreamExt, TryStreamExt};
use prometheus::IntCounterVec;
use scylla::client::session::Session;
use tci_common::{
    follow::Followed, registry::AvroCodec, retry::Backoff, telemetry::counter_vec, KafkaConfig,
};
use tci_schemas::{OptOut, OptOutScope, OptOutSet};
use tokio::sync::{mpsc, watch, RwLock, RwLockReadGuard};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    decode::Record,
    writer::{WriteError, Writer},
};

/// The opt-out metrics of chat-ingestor.
pub struct OptOutMetrics {
    pub dropped: IntCounterVec,
    pub purged_rows: IntCounterVec,
    pub purges: IntCounterVec,
}

pub static METRICS: LazyLock<OptOutMetrics> = LazyLock::new(|| {
    OptOutMetrics {
    dropped: counter_vec(
        "tci_chat_ingestor_optout_dropped_total",
        "Records not written because their chatter or channel opted out (in flight when the opt-out came, or replayed), by topic.",
        &["topic"],
    ),
    purged_rows: counter_vec(
        "tci_chat_ingestor_optout_purged_rows_total",
        "Stored rows deleted by opt-out purges, by table.",
        &["table"],
    ),
    purges: counter_vec(
        "tci_chat_ingestor_optout_purges_total",
        "Opt-out purges completed, by scope (user, channel).",
        &["scope"],
    ),
}
});

/// The set, and whether it is complete (the topic was read to its end).
pub struct OptOutGate {
    set: RwLock<OptOutSet>,
    ready: watch::Receiver<bool>,
}

impl OptOutGate {
    /// A gate that is not ready until the returned sender says so.
    pub fn new() -> (Arc<Self>, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        (
            Arc::new(Self {
                set: RwLock::new(OptOutSet::new()),
                ready: rx,
            }),
            tx,
        )
    }

    /// Waits until the set is complete; false when `stop` came first.
    pub async fn wait_ready(&self, stop: &CancellationToken) -> bool {
        let mut rx = self.ready.clone();
        tokio::select! {
            r = rx.wait_for(|r| *r) => r.is_ok(),
            _ = stop.cancelled() => false,
        }
    }

    /// The set, held while a flush is filtered and written (see the module docs).
    pub async fn read(&self) -> RwLockReadGuard<'_, OptOutSet> {
        self.set.read().await
    }

    /// Applies a record once no flush holds the old set; whether the state changed.
    pub async fn apply(&self, e: &OptOut) -> bool {
        self.set.write().await.apply(e)
    }
}

/// True when `r` belongs to an opted-out chatter or channel (moderation events: the user they
/// name).
pub fn excludes(set: &OptOutSet, r: &Record) -> bool {
    let user = match r {
        Record::Chat(m) => m.user_id(),
        Record::Moderation(e) => e.target_user_id.as_deref().and_then(|u| u.parse().ok()),
    };
    set.excludes(r.broadcaster_id(), user, r.sent_timestamp())
}

/// True when `r` is excluded by an opt-out in force that is older than the record: sent after
/// the opt-out, so either captured by a listener that did not know yet (dropped) or sent after
/// an opt-in this process has not read yet (kept once it has). The sink gives such records
/// [`OPTIN_GRACE`] before deciding.
pub fn sent_after_optout(set: &OptOutSet, r: &Record) -> bool {
    let user = match r {
        Record::Chat(m) => m.user_id(),
        Record::Moderation(e) => e.target_user_id.as_deref().and_then(|u| u.parse().ok()),
    };
    set.opted_out_at(r.broadcaster_id(), user)
        .is_some_and(|at| r.sent_timestamp() > at)
}

/// How long a flush waits for the opt-out set to catch up before dropping records sent after
/// an opt-out (the opt-in and the next message travel on different topics).
pub const OPTIN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Counts `dropped` records per topic label.
pub fn count_dropped(dropped: &[&Record]) {
    for r in dropped {
        let topic = match r {
            Record::Chat(_) => "chat",
            Record::Moderation(_) => "moderation",
        };
        METRICS.dropped.with_label_values(&[topic]).inc();
    }
}

/// `(user, broadcaster)`.
type Pair = (i64, i64);
/// `(broadcaster, user, bucket)`.
type BucketKey = (i64, i64, i64);

/// Most `(user, channel)` pairs remembered as indexed.
const KNOWN_LIMIT: usize = 500_000;

/// Index writes of one flush in flight at once (the writer's limit applies as well).
const INDEX_CONCURRENCY: usize = 32;

/// Writes `user_channels` (user → channels), the index a user's purge starts from.
pub struct UserChannels {
    session: Arc<Session>,
    st: Arc<OptOutStatements>,
    /// Retries, concurrency and health: an index write is a write like any other.
    writer: Arc<Writer>,
    /// The statements' text, for a permanent failure's report.
    insert_text: String,
    reindex_text: String,
    known: Mutex<HashSet<Pair>>,
    /// Bucket-index rows rewritten after an opt-in.
    reindexed: Mutex<HashSet<BucketKey>>,
}

impl UserChannels {
    pub fn new(
        session: Arc<Session>,
        st: Arc<OptOutStatements>,
        writer: Arc<Writer>,
        keyspace: &str,
    ) -> Self {
        Self {
            session,
            st,
            writer,
            insert_text: chat_store::optout::cql::insert_user_channel(keyspace),
            reindex_text: format!(
                "{}; {}",
                chat_store::optout::cql::reindex_bucket(keyspace),
                chat_store::optout::cql::reindex_user_day(keyspace)
            ),
            known: Mutex::new(HashSet::new()),
            reindexed: Mutex::new(HashSet::new()),
        }
    }

    /// Indexes the (user, channel) pairs of `batch` not indexed by this process yet; written
    /// before the chat rows, so no stored row lacks its index entry. The chat of someone who
    /// opted back in (a user or channel with a state in `set`) also gets its bucket-index rows
    /// written here: a purge deleted them, and the writer, which remembers the index rows it
    /// wrote, would not write them again.
    pub async fn index<'a>(
        &self,
        batch: impl Iterator<Item = &'a Record>,
        set: &OptOutSet,
        stop: &CancellationToken,
    ) -> Result<(), WriteError> {
        let (new, reindex): (Vec<Pair>, Vec<BucketKey>) = {
            let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
            let reindexed = self.reindexed.lock().unwrap_or_else(|e| e.into_inner());
            let (mut seen, mut new, mut reindex) = (HashSet::new(), Vec::new(), Vec::new());
            for r in batch {
                let Record::Chat(m) = r else { continue };
                let Some(u) = m.user_id() else { continue };
                let b = m.broadcaster_id;
                if !known.contains(&(u, b)) && seen.insert((u, b)) {
                    new.push((u, b));
                }
                let returned = set.state(OptOutScope::User, u).is_some()
                    || set.state(OptOutScope::Channel, b).is_some();
                let key = (b, u, chat_store::bucket_of(m.sent_timestamp));
                if returned && !reindexed.contains(&key) && !reindex.contains(&key) {
                    reindex.push(key);
                }
            }
            (new, reindex)
        };
        let writes: Vec<(i64, i64, Option<i64>)> = new
            .iter()
            .map(|&(u, b)| (u, b, None))
            .chain(reindex.iter().map(|&(b, u, bucket)| (u, b, Some(bucket))))
            .collect();
        // Up to INDEX_CONCURRENCY at once: a flush of fresh chatters is one write each, and one
        // round trip at a time held ingestion to the latency of Cassandra.
        futures::stream::iter(writes)
            .map(|w| self.write_retrying(w, stop))
            .buffer_unordered(INDEX_CONCURRENCY)
            .try_collect::<()>()
            .await?;
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() + new.len() > KNOWN_LIMIT {
            known.clear();
        }
        known.extend(new);
        let mut reindexed = self.reindexed.lock().unwrap_or_else(|e| e.into_inner());
        if reindexed.len() + reindex.len() > KNOWN_LIMIT {
            reindexed.clear();
        }
        reindexed.extend(reindex);
        Ok(())
    }
}

impl UserChannels {
    /// One index write, through the writer's retries.
    async fn write_retrying(
        &self,
        (u, b, bucket): (i64, i64, Option<i64>),
        stop: &CancellationToken,
    ) -> Result<(), WriteError> {
        match bucket {
            None => {
                self.writer
                    .retry(stop, "user_channels", &self.insert_text, || {
                        self.st.index_user_channel(&self.session, u, b)
                    })
                    .await
            }
            Some(bucket) => {
                self.writer
                    .retry(stop, "user_chat_days", &self.reindex_text, || {
                        self.st.reindex(&self.session, b, u, bucket)
                    })
                    .await
            }
        }
    }
}

/// What the follower does besides updating the set: the live service records and purges; a
/// backfill only filters.
pub struct Purger {
    pub session: Arc<Session>,
    pub st: Arc<OptOutStatements>,
}

/// Follows the opt-out topic into `gate` (ready once read to its end). With a `purger`, every
/// opt-out is also written to `optouts` and its stored chat purged (once: `purged_at`).
pub async fn follow(
    kafka: KafkaConfig,
    codec: AvroCodec,
    topic: String,
    gate: Arc<OptOutGate>,
    ready: watch::Sender<bool>,
    purger: Option<Purger>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::channel(256);
    let reader = tci_common::follow::follow::<OptOut>(
        &kafka,
        codec,
        &topic,
        "chat-ingestor-optouts",
        tx,
        token.clone(),
    );
    let apply = async {
        while let Some(f) = rx.recv().await {
            let e = match f {
                Followed::CaughtUp => {
                    let _ = ready.send(true);
                    continue;
                }
                Followed::Record(e) => e,
            };
            if !gate.apply(&e).await {
                continue;
            }
            info!(
                scope = e.scope.as_str(),
                id = e.id,
                opted_out = e.opted_out,
                source = e.source.as_str(),
                "opt-out applied: no record of this key is written from now on"
            );
            if let Some(p) = &purger {
                if !p.record_and_purge(&e, &token).await {
                    return;
                }
            }
        }
    };
    let (r, ()) = tokio::join!(reader, apply);
    r
}

impl Purger {
    /// Writes the state and, for an opt-out not purged yet, purges; retries until done or
    /// shutdown (false). Every step is idempotent.
    async fn record_and_purge(&self, e: &OptOut, token: &CancellationToken) -> bool {
        let mut backoff = Backoff::default_for_dependencies();
        loop {
            let attempt = async {
                self.st.record(&self.session, e).await?;
                if !e.opted_out {
                    return anyhow::Ok(None);
                }
                let row = self.st.get(&self.session, e.scope, e.id).await?;
                if row.and_then(|r| r.purged_at) == Some(e.at) {
                    return anyhow::Ok(None);
                }
                let counts = match e.scope {
                    OptOutScope::User => self.st.purge_user(&self.session, e.id).await?,
                    OptOutScope::Channel => self.st.purge_channel(&self.session, e.id).await?,
                };
                self.st
                    .mark_purged(&self.session, e.scope, e.id, e.at)
                    .await?;
                anyhow::Ok(Some(counts))
            };
            let res = tokio::select! {
                r = attempt => r,
                _ = token.cancelled() => return false,
            };
            match res {
                Ok(None) => return true,
                Ok(Some(n)) => {
                    report(e, &n);
                    return true;
                }
                Err(err) => {
                    let d = backoff.next_delay();
                    warn!(scope = e.scope.as_str(), id = e.id, error = format!("{err:#}"), retry_in = ?d, attempt = backoff.attempts(), "opt-out purge failed; retrying (it is idempotent)");
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = token.cancelled() => return false,
                    }
                }
            }
        }
    }
}

/// Logs and counts a purge: ids and row counts, never texts.
fn report(e: &OptOut, n: &PurgeCounts) {
    let m = &METRICS;
    for (table, rows) in [
        ("chat_messages", n.chat_messages),
        ("chat_buckets", n.chat_buckets),
        ("user_chat_messages", n.user_chat_messages),
        ("user_chat_buckets", n.user_chat_buckets),
        ("user_channels", n.user_channels),
        ("moderation_events", n.moderation_events),
        ("deleted_messages", n.deleted_messages_partitions),
    ] {
        m.purged_rows.with_label_values(&[table]).inc_by(rows);
    }
    m.purges.with_label_values(&[e.scope.as_str()]).inc();
    info!(
        scope = e.scope.as_str(),
        id = e.id,
        chat_messages = n.chat_messages,
        chat_buckets = n.chat_buckets,
        user_chat_messages = n.user_chat_messages,
        user_chat_buckets = n.user_chat_buckets,
        user_channels = n.user_channels,
        moderation_events = n.moderation_events,
        deleted_messages_partitions = n.deleted_messages_partitions,
        "opt-out purge done"
    );
}

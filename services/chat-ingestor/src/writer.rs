//! Cassandra writes: prepared statements, unlogged batches only within one partition, bounded
//! concurrency, capped-backoff retries that never give up (only shutdown stops them).
//!
//! A flush of decoded records becomes a [`Plan`] (pure, unit-tested): `chat_messages` rows
//! grouped by `(broadcaster_id, bucket)` into single-partition batches, `user_chat_messages` rows
//! grouped by `(broadcaster_id, user_id, bucket)`, the bucket-index rows (`chat_buckets`,
//! `user_chat_buckets`) the process has not written yet, moderation events and deletion marks.
//! Every table's primary key contains the message/event id, so replaying a record rewrites the
//! same row: writes are idempotent and flagged as such to the driver.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{
        atomic::{AtomicI64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use futures::{stream::FuturesUnordered, StreamExt};
use scylla::{
    client::session::Session,
    errors::ExecutionError,
    statement::{
        batch::{Batch, BatchType},
        prepared::PreparedStatement,
    },
};
use tci_common::{
    cassandra::{classify, Failure},
    retry::Backoff,
};
use tci_schemas::{bucket_of, ModerationEvent, ModerationKind};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{decode::Record, metrics::METRICS};

/// Writer settings.
#[derive(Debug, Clone)]
pub struct WriterSettings {
    /// Rows per single-partition unlogged batch.
    pub max_rows_per_batch: usize,
    /// Statements (or batches) in flight at once, over every flush.
    pub max_in_flight: usize,
    pub retry_base: Duration,
    pub retry_cap: Duration,
}

/// One `chat_messages` / `user_chat_messages` row, rendered once.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRow {
    pub broadcaster_id: i64,
    pub bucket: i64,
    pub sent_ts: i64,
    pub message_id: String,
    pub user_id: Option<i64>,
    pub message: String,
    /// When chat-listener read the line.
    pub received_at: i64,
    /// The exact IRC line; `None` for records from before schema version 2.
    pub raw_line: Option<String>,
}

/// One `moderation_events` row.
#[derive(Debug, Clone, PartialEq)]
pub struct ModerationRow {
    pub broadcaster_id: i64,
    pub bucket: i64,
    pub sent_ts: i64,
    pub event_id: String,
    pub kind: &'static str,
    pub target_user_id: Option<i64>,
    pub target_user_login: Option<String>,
    pub target_message_id: Option<String>,
    pub ban_duration_seconds: Option<i32>,
    pub msg_id: Option<String>,
    pub text: Option<String>,
    pub system_msg: Option<String>,
    pub received_at: Option<i64>,
    pub raw_line: Option<String>,
}

/// One `deleted_messages` row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeletionRow {
    pub broadcaster_id: i64,
    pub bucket: i64,
    pub message_id: String,
    pub reason: String,
}

/// Everything one flush writes.
#[derive(Debug, Default)]
pub struct Plan {
    pub rows: Vec<ChatRow>,
    /// Indices into `rows`, one group per `chat_messages` partition (chunked).
    pub chat_groups: Vec<Vec<usize>>,
    /// Indices into `rows`, one group per `user_chat_messages` partition (chunked).
    pub user_groups: Vec<Vec<usize>>,
    pub buckets: Vec<(i64, i64)>,
    pub user_buckets: Vec<(i64, i64, i64)>,
    pub moderation: Vec<ModerationRow>,
    pub deletions: Vec<DeletionRow>,
    /// Chat rows' sent timestamps (for the end-to-end lag histogram).
    pub chat_count: usize,
    pub moderation_count: usize,
}

/// Builds the plan of a flush. Pure.
///
/// CLEARMSG: the deleted message's bucket is not known without a read, and a moderator deletes
/// a message within seconds or minutes of it being sent, so the deletion mark is written under
/// the CLEARMSG's own bucket AND the previous one. A message deleted more than one bucket
/// (5–10 minutes) after it was sent is not marked. CLEARCHAT (ban/timeout/clear) is recorded as
/// an event only; its messages are not marked individually.
pub fn plan<'a>(records: impl IntoIterator<Item = &'a Record>, max_rows_per_batch: usize) -> Plan {
    let max = max_rows_per_batch.max(1);
    let mut p = Plan::default();
    let mut by_partition: BTreeMap<(i64, i64), Vec<usize>> = BTreeMap::new();
    let mut by_user: BTreeMap<(i64, i64, i64), Vec<usize>> = BTreeMap::new();
    for r in records {
        match r {
            Record::Chat(m) => {
                let bucket = bucket_of(m.sent_timestamp);
                let i = p.rows.len();
                let user_id = m.user_id();
                p.rows.push(ChatRow {
                    broadcaster_id: m.broadcaster_id,
                    bucket,
                    sent_ts: m.sent_timestamp,
                    message_id: m.id.clone(),
                    user_id,
                    message: m.to_spec_json(),
                    received_at: m.received_at,
                    raw_line: m.raw_line.clone(),
                });
                by_partition
                    .entry((m.broadcaster_id, bucket))
                    .or_default()
                    .push(i);
                if let Some(u) = user_id {
                    by_user
                        .entry((m.broadcaster_id, u, bucket))
                        .or_default()
                        .push(i);
                }
                p.chat_count += 1;
            }
            Record::Moderation(e) => {
                p.moderation_count += 1;
                let bucket = bucket_of(e.sent_timestamp);
                if e.kind == ModerationKind::ClearMsg {
                    if let Some(target) = e.target_message_id.as_deref().filter(|t| !t.is_empty()) {
                        let reason = deletion_reason(e);
                        for b in [bucket, bucket.saturating_sub(tci_schemas::BUCKET_MS)] {
                            p.deletions.push(DeletionRow {
                                broadcaster_id: e.broadcaster_id,
                                bucket: b,
                                message_id: target.to_string(),
                                reason: reason.clone(),
                            });
                        }
                    }
                }
                p.moderation.push(moderation_row(e, bucket));
            }
        }
    }
    p.buckets = by_partition.keys().copied().collect();
    p.user_buckets = by_user.keys().copied().collect();
    for (_, idx) in by_partition {
        p.chat_groups.extend(idx.chunks(max).map(<[usize]>::to_vec));
    }
    for (_, idx) in by_user {
        p.user_groups.extend(idx.chunks(max).map(<[usize]>::to_vec));
    }
    p
}

fn deletion_reason(e: &ModerationEvent) -> String {
    match e.target_user_login.as_deref() {
        Some(login) if !login.is_empty() => format!("CLEARMSG of a message by {login}"),
        _ => "CLEARMSG".to_string(),
    }
}

fn moderation_row(e: &ModerationEvent, bucket: i64) -> ModerationRow {
    ModerationRow {
        broadcaster_id: e.broadcaster_id,
        bucket,
        sent_ts: e.sent_timestamp,
        event_id: e.event_id.clone(),
        kind: e.kind.as_str(),
        target_user_id: e.target_user_id.as_deref().and_then(|s| s.parse().ok()),
        target_user_login: e.target_user_login.clone(),
        target_message_id: e.target_message_id.clone(),
        ban_duration_seconds: e.ban_duration_seconds,
        msg_id: e.msg_id.clone(),
        text: e.text.clone(),
        system_msg: e.system_msg.clone(),
        received_at: e.received_at,
        raw_line: e.raw_line.clone(),
    }
}

/// Whether Cassandra writes are currently failing.
#[derive(Debug, Default)]
pub struct Health {
    failing: AtomicUsize,
}

impl Health {
    /// True while at least one write is in its retry loop.
    pub fn degraded(&self) -> bool {
        self.failing.load(Ordering::Relaxed) > 0
    }
}

/// Why a flush was not stored; either way nothing of it may be acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The process is stopping.
    #[error("write abandoned: shutting down")]
    Abandoned,
    /// Cassandra refused the write for a reason retrying cannot fix (see
    /// [`tci_common::cassandra::classify`]): a missing table or column, an invalid query, auth.
    #[error("Cassandra refused a write to {table} and retrying cannot help: {error} (statement: {statement})")]
    Permanent {
        table: &'static str,
        statement: String,
        error: Box<ExecutionError>,
    },
}

struct Statements {
    chat: PreparedStatement,
    user_chat: PreparedStatement,
    bucket: PreparedStatement,
    user_bucket: PreparedStatement,
    moderation: PreparedStatement,
    deletion: PreparedStatement,
}

const CACHE_LIMIT: usize = 200_000;

/// Writes plans to Cassandra.
pub struct Writer {
    session: Arc<Session>,
    st: Statements,
    limiter: Arc<Semaphore>,
    settings: WriterSettings,
    pub health: Arc<Health>,
    known_buckets: Mutex<HashSet<(i64, i64)>>,
    known_user_buckets: Mutex<HashSet<(i64, i64, i64)>>,
    last_warn_ms: AtomicI64,
}

impl Writer {
    /// Prepares every statement in `keyspace`.
    pub async fn prepare(
        session: Arc<Session>,
        keyspace: &str,
        settings: WriterSettings,
    ) -> anyhow::Result<Self> {
        let prep = |cql: String| {
            let session = session.clone();
            async move {
                let mut p = session
                    .prepare(cql.clone())
                    .await
                    .map_err(|e| anyhow::anyhow!("preparing {cql}: {e}"))?;
                p.set_is_idempotent(true);
                anyhow::Ok(p)
            }
        };
        let ks = keyspace;
        let st = Statements {
            chat: prep(format!("INSERT INTO {ks}.chat_messages (broadcaster_id, bucket, sent_ts, message_id, user_id, message, received_at, raw_line) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")).await?,
            user_chat: prep(format!("INSERT INTO {ks}.user_chat_messages (broadcaster_id, user_id, bucket, sent_ts, message_id, message, received_at, raw_line) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")).await?,
            bucket: prep(format!("INSERT INTO {ks}.chat_buckets (broadcaster_id, bucket) VALUES (?, ?)")).await?,
            user_bucket: prep(format!("INSERT INTO {ks}.user_chat_buckets (broadcaster_id, user_id, bucket) VALUES (?, ?, ?)")).await?,
            moderation: prep(format!("INSERT INTO {ks}.moderation_events (broadcaster_id, bucket, sent_ts, event_id, kind, target_user_id, target_user_login, target_message_id, ban_duration_seconds, msg_id, text, system_msg, received_at, raw_line) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")).await?,
            deletion: prep(format!("INSERT INTO {ks}.deleted_messages (broadcaster_id, bucket, message_id, reason) VALUES (?, ?, ?, ?)")).await?,
        };
        Ok(Self {
            session,
            st,
            limiter: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
            settings,
            health: Arc::new(Health::default()),
            known_buckets: Mutex::new(HashSet::new()),
            known_user_buckets: Mutex::new(HashSet::new()),
            last_warn_ms: AtomicI64::new(0),
        })
    }

    /// Writes every row of `plan`, retrying each failed statement with capped backoff until it
    /// succeeds or `stop` is cancelled ([`Abandoned`]).
    pub async fn write(&self, plan: &Plan, stop: &CancellationToken) -> Result<(), WriteError> {
        let buckets: Vec<(i64, i64)> = {
            let known = self.known_buckets.lock().unwrap_or_else(|e| e.into_inner());
            plan.buckets
                .iter()
                .copied()
                .filter(|b| !known.contains(b))
                .collect()
        };
        let user_buckets: Vec<(i64, i64, i64)> = {
            let known = self
                .known_user_buckets
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            plan.user_buckets
                .iter()
                .copied()
                .filter(|b| !known.contains(b))
                .collect()
        };
        let mut ops = FuturesUnordered::new();
        let rows = plan.rows.as_slice();
        for g in &plan.chat_groups {
            ops.push(self.retrying(stop, Op::Chat(g, rows)));
        }
        for g in &plan.user_groups {
            ops.push(self.retrying(stop, Op::User(g, rows)));
        }
        for b in &buckets {
            ops.push(self.retrying(stop, Op::Bucket(*b)));
        }
        for b in &user_buckets {
            ops.push(self.retrying(stop, Op::UserBucket(*b)));
        }
        for m in &plan.moderation {
            ops.push(self.retrying(stop, Op::Moderation(m)));
        }
        for d in &plan.deletions {
            ops.push(self.retrying(stop, Op::Deletion(d)));
        }
        let mut result = Ok(());
        while let Some(r) = ops.next().await {
            match r {
                Ok(()) => {}
                // A permanent failure is the more telling of the two.
                Err(e @ WriteError::Permanent { .. }) => result = Err(e),
                Err(e) if result.is_ok() => result = Err(e),
                Err(_) => {}
            }
        }
        drop(ops);
        result?;
        remember(&self.known_buckets, buckets);
        remember(&self.known_user_buckets, user_buckets);
        Ok(())
    }

    async fn retrying(&self, stop: &CancellationToken, op: Op<'_>) -> Result<(), WriteError> {
        let mut backoff = Backoff::new(self.settings.retry_base, self.settings.retry_cap);
        let mut failing = false;
        let result = loop {
            let res = {
                let _permit = tokio::select! {
                    p = self.limiter.acquire() => p.map_err(|_| WriteError::Abandoned)?,
                    _ = stop.cancelled() => break Err(WriteError::Abandoned),
                };
                let started = Instant::now();
                let res = tokio::select! {
                    r = self.execute(&op) => r,
                    _ = stop.cancelled() => break Err(WriteError::Abandoned),
                };
                if res.is_ok() {
                    METRICS
                        .write_latency
                        .observe(started.elapsed().as_secs_f64());
                }
                res
            };
            match res {
                Ok(()) => break Ok(()),
                Err(e) if classify(&e) == Failure::Permanent => {
                    METRICS
                        .write_failures
                        .with_label_values(&[op.table()])
                        .inc();
                    let statement = self.statement_of(&op).to_string();
                    error!(table = op.table(), statement = %statement, error = %e, "Cassandra refused a write and retrying cannot help (schema or query wrong for this cluster); ingestion stops");
                    break Err(WriteError::Permanent {
                        table: op.table(),
                        statement,
                        error: Box::new(e),
                    });
                }
                Err(e) => {
                    if !failing {
                        failing = true;
                        self.health.failing.fetch_add(1, Ordering::Relaxed);
                    }
                    METRICS.write_retries.inc();
                    let delay = backoff.next_delay();
                    let now = tci_common::now_ms();
                    let last = self.last_warn_ms.load(Ordering::Relaxed);
                    if now - last >= 5_000
                        && self
                            .last_warn_ms
                            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                            .is_ok()
                    {
                        warn!(error = %e, table = op.table(), attempt = backoff.attempts(), retry_in = ?delay, "Cassandra write failed; retrying (logged at most every 5 s)");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {},
                        _ = stop.cancelled() => break Err(WriteError::Abandoned),
                    }
                }
            }
        };
        if failing {
            let left = self.health.failing.fetch_sub(1, Ordering::Relaxed) - 1;
            if result.is_ok() && left == 0 {
                info!(
                    attempts = backoff.attempts(),
                    "Cassandra writes succeed again"
                );
            }
        }
        result
    }

    fn statement_of(&self, op: &Op<'_>) -> &str {
        match op {
            Op::Chat(..) => self.st.chat.get_statement(),
            Op::User(..) => self.st.user_chat.get_statement(),
            Op::Bucket(_) => self.st.bucket.get_statement(),
            Op::UserBucket(_) => self.st.user_bucket.get_statement(),
            Op::Moderation(_) => self.st.moderation.get_statement(),
            Op::Deletion(_) => self.st.deletion.get_statement(),
        }
    }

    async fn execute(&self, op: &Op<'_>) -> Result<(), ExecutionError> {
        match *op {
            Op::Chat(g, rows) => {
                let values: Vec<_> = g
                    .iter()
                    .map(|&i| {
                        let r = &rows[i];
                        (
                            r.broadcaster_id,
                            r.bucket,
                            r.sent_ts,
                            r.message_id.as_str(),
                            r.user_id,
                            r.message.as_str(),
                            r.received_at,
                            r.raw_line.as_deref(),
                        )
                    })
                    .collect();
                self.run_grouped(&self.st.chat, values).await
            }
            Op::User(g, rows) => {
                let values: Vec<_> = g
                    .iter()
                    .filter_map(|&i| {
                        let r = &rows[i];
                        let u = r.user_id?;
                        Some((
                            r.broadcaster_id,
                            u,
                            r.bucket,
                            r.sent_ts,
                            r.message_id.as_str(),
                            r.message.as_str(),
                            r.received_at,
                            r.raw_line.as_deref(),
                        ))
                    })
                    .collect();
                self.run_grouped(&self.st.user_chat, values).await
            }
            Op::Bucket(b) => self
                .session
                .execute_unpaged(&self.st.bucket, b)
                .await
                .map(drop),
            Op::UserBucket(b) => self
                .session
                .execute_unpaged(&self.st.user_bucket, b)
                .await
                .map(drop),
            Op::Moderation(m) => self
                .session
                .execute_unpaged(
                    &self.st.moderation,
                    (
                        m.broadcaster_id,
                        m.bucket,
                        m.sent_ts,
                        m.event_id.as_str(),
                        m.kind,
                        m.target_user_id,
                        m.target_user_login.as_deref(),
                        m.target_message_id.as_deref(),
                        m.ban_duration_seconds,
                        m.msg_id.as_deref(),
                        m.text.as_deref(),
                        m.system_msg.as_deref(),
                        m.received_at,
                        m.raw_line.as_deref(),
                    ),
                )
                .await
                .map(drop),
            Op::Deletion(d) => self
                .session
                .execute_unpaged(
                    &self.st.deletion,
                    (
                        d.broadcaster_id,
                        d.bucket,
                        d.message_id.as_str(),
                        d.reason.as_str(),
                    ),
                )
                .await
                .map(drop),
        }
    }

    /// One row: a plain statement; more: an unlogged batch (all rows share one partition).
    async fn run_grouped<V: scylla::serialize::row::SerializeRow>(
        &self,
        stmt: &PreparedStatement,
        values: Vec<V>,
    ) -> Result<(), ExecutionError> {
        match values.len() {
            0 => Ok(()),
            1 => {
                let Some(v) = values.into_iter().next() else {
                    return Ok(());
                };
                self.session.execute_unpaged(stmt, v).await.map(drop)
            }
            n => {
                let mut batch = Batch::new(BatchType::Unlogged);
                for _ in 0..n {
                    batch.append_statement(stmt.clone());
                }
                batch.set_is_idempotent(true);
                self.session.batch(&batch, values).await.map(drop)
            }
        }
    }
}

fn remember<K: std::hash::Hash + Eq>(set: &Mutex<HashSet<K>>, keys: Vec<K>) {
    let mut s = set.lock().unwrap_or_else(|e| e.into_inner());
    if s.len() + keys.len() > CACHE_LIMIT {
        s.clear();
    }
    s.extend(keys);
}

#[derive(Clone, Copy)]
enum Op<'a> {
    Chat(&'a [usize], &'a [ChatRow]),
    User(&'a [usize], &'a [ChatRow]),
    Bucket((i64, i64)),
    UserBucket((i64, i64, i64)),
    Moderation(&'a ModerationRow),
    Deletion(&'a DeletionRow),
}

impl Op<'_> {
    fn table(&self) -> &'static str {
        match self {
            Op::Chat(..) => "chat_messages",
            Op::User(..) => "user_chat_messages",
            Op::Bucket(_) => "chat_buckets",
            Op::UserBucket(_) => "user_chat_buckets",
            Op::Moderation(_) => "moderation_events",
            Op::Deletion(_) => "deleted_messages",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tci_schemas::{ChatMessage, User, BUCKET_MS};

    fn chat(b: i64, id: &str, sent: i64, user: &str) -> Record {
        Record::Chat(Box::new(ChatMessage {
            broadcaster_id: b,
            id: id.into(),
            sent_timestamp: sent,
            user: User {
                id: user.into(),
                ..User::default()
            },
            ..ChatMessage::default()
        }))
    }

    fn clearmsg(b: i64, sent: i64, target: Option<&str>) -> Record {
        Record::Moderation(Box::new(ModerationEvent {
            broadcaster_id: b,
            kind: ModerationKind::ClearMsg,
            event_id: "ev1".into(),
            sent_timestamp: sent,
            channel: "chan".into(),
            target_user_id: None,
            target_user_login: Some("bob".into()),
            target_message_id: target.map(Into::into),
            ban_duration_seconds: None,
            msg_id: None,
            text: Some("bad words".into()),
            system_msg: None,
            raw_tags: vec![],
            received_at: None,
            raw_line: None,
        }))
    }

    #[test]
    fn batches_never_span_two_partitions_and_are_chunked() {
        let t0 = 1_706_400_000_000 - 1_706_400_000_000 % BUCKET_MS;
        let recs = vec![
            chat(1, "a", t0 + 1, "10"),
            chat(1, "b", t0 + 2, "11"),
            chat(2, "c", t0 + 3, "10"),
            chat(1, "d", t0 + BUCKET_MS + 1, "10"),
            chat(1, "e", t0 + 4, "10"),
            chat(1, "f", t0 + 5, "not-a-number"),
        ];
        let p = plan(&recs, 2);
        for g in &p.chat_groups {
            let keys: HashSet<_> = g
                .iter()
                .map(|&i| (p.rows[i].broadcaster_id, p.rows[i].bucket))
                .collect();
            assert_eq!(keys.len(), 1, "one partition per batch");
            assert!(g.len() <= 2);
        }
        let total: usize = p.chat_groups.iter().map(Vec::len).sum();
        assert_eq!(total, 6, "every row in exactly one group");
        // (1, t0) has a, b, e, f -> 2 chunks; (2, t0) c; (1, t0+B) d.
        assert_eq!(p.chat_groups.len(), 4);
        assert_eq!(p.buckets, vec![(1, t0), (1, t0 + BUCKET_MS), (2, t0)]);
        // By-user rows skip the user without a numeric id.
        let user_rows: usize = p.user_groups.iter().map(Vec::len).sum();
        assert_eq!(user_rows, 5);
        assert_eq!(
            p.user_buckets,
            vec![
                (1, 10, t0),
                (1, 10, t0 + BUCKET_MS),
                (1, 11, t0),
                (2, 10, t0)
            ]
        );
        assert_eq!(
            p.rows[0].message,
            match &recs[0] {
                Record::Chat(m) => m.to_spec_json(),
                _ => unreachable!(),
            }
        );
    }

    #[test]
    fn clearmsg_marks_its_bucket_and_the_previous_one() {
        let sent = 1_706_400_123_456;
        let p = plan(&[clearmsg(7, sent, Some("m-1"))], 50);
        assert_eq!(p.moderation.len(), 1);
        assert_eq!(p.moderation[0].kind, "CLEARMSG");
        let mut buckets: Vec<_> = p.deletions.iter().map(|d| d.bucket).collect();
        buckets.sort();
        assert_eq!(buckets, vec![bucket_of(sent) - BUCKET_MS, bucket_of(sent)]);
        assert!(p
            .deletions
            .iter()
            .all(|d| d.message_id == "m-1" && d.broadcaster_id == 7));
        let none = plan(&[clearmsg(7, sent, None)], 50);
        assert!(none.deletions.is_empty(), "no target: event only");
        assert_eq!(none.moderation.len(), 1);
    }
}

//! Opt-outs on the chat tables: the `optouts` and `user_channels` tables (migration
//! `0007_optouts.cql`) and the purge of an opted-out chatter's or channel's stored chat.
//!
//! A chatter's purge finds everything through indexes, never by scanning a table:
//! `user_channels` (user → the channels they wrote in, written by chat-ingestor with the chat)
//! → `user_chat_days` (channel, user → days, one 28-day period per query, from the channel's
//! first chat bucket to its last) → `user_chat_index` (the keys of their messages) → the
//! `chat_messages` rows by full key; and, for rows stored before storage v3, the same through
//! `user_chat_buckets` → `user_chat_messages`. A channel's purge walks `chat_buckets`, reads the
//! chatters of each bucket from `chat_messages` (for their legacy `user_chat_*` rows) and
//! deletes whole partitions, the by-user index's included. Every step is idempotent: a purge
//! interrupted by an error is simply run again.
//!
//! Moderation events are purged as far as an index reaches them: for a channel, its
//! `moderation_events` and `deleted_messages` partitions of every bucket that holds chat; for a
//! chatter, the events naming them (`target_user_id`: their bans, the deletions of their
//! messages with the deleted text, their USERNOTICEs) in the buckets of their chat and the
//! 6 hours after each (how late a deletion can come).

use std::collections::{BTreeSet, HashSet};

use futures::TryStreamExt;
use scylla::{client::session::Session, statement::prepared::PreparedStatement};
use tci_schemas::{OptOut, OptOutScope};

use crate::bucket::{
    bucket_of, day_of, period_of, user_shard, BUCKET_MS, DELETABLE_FOR_MS, PERIOD_MS, USER_SHARDS,
};

/// (channel, chatter) pairs `tci reindex user-logs` works on at once.
const REINDEX_CONCURRENCY: usize = 32;

/// The opt-out tables.
pub mod table {
    pub const OPTOUTS: &str = "optouts";
    pub const USER_CHANNELS: &str = "user_channels";
}

/// The text of every opt-out statement.
pub mod cql {
    pub fn insert_optout(ks: &str) -> String {
        format!("INSERT INTO {ks}.optouts (scope, id, login, opted_out, at, source) VALUES (?, ?, ?, ?, ?, ?)")
    }

    pub fn set_purged(ks: &str) -> String {
        format!("UPDATE {ks}.optouts SET purged_at = ? WHERE scope = ? AND id = ?")
    }

    /// `(opted_out, at, purged_at)` of one key.
    pub fn select_optout(ks: &str) -> String {
        format!("SELECT opted_out, at, purged_at FROM {ks}.optouts WHERE scope = ? AND id = ?")
    }

    /// Every key of one scope: `(id, login, opted_out, at, source, purged_at)`.
    pub fn select_optouts(ks: &str) -> String {
        format!(
            "SELECT id, login, opted_out, at, source, purged_at FROM {ks}.optouts WHERE scope = ?"
        )
    }

    pub fn insert_user_channel(ks: &str) -> String {
        format!("INSERT INTO {ks}.user_channels (user_id, broadcaster_id) VALUES (?, ?)")
    }

    /// The bucket-index rows of chat written after an opt-in: chat-ingestor's writer remembers
    /// the index rows it wrote and would not write again those a purge deleted.
    pub fn reindex_bucket(ks: &str) -> String {
        format!("INSERT INTO {ks}.chat_buckets (broadcaster_id, bucket) VALUES (?, ?)")
    }

    pub fn reindex_user_day(ks: &str) -> String {
        crate::cql::insert_user_day(ks)
    }

    /// A by-user index row, for `tci reindex user-logs` (rows stored before storage v3).
    pub fn reindex_user_index(ks: &str) -> String {
        crate::cql::insert_user_index(ks)
    }

    pub fn select_first_chat_bucket(ks: &str) -> String {
        format!("SELECT bucket FROM {ks}.chat_buckets WHERE broadcaster_id = ? LIMIT 1")
    }

    pub fn select_last_chat_bucket(ks: &str) -> String {
        format!("SELECT bucket FROM {ks}.chat_buckets WHERE broadcaster_id = ? ORDER BY bucket DESC LIMIT 1")
    }

    pub fn select_user_days_all(ks: &str) -> String {
        format!("SELECT day FROM {ks}.user_chat_days WHERE broadcaster_id = ? AND period = ? AND shard = ? AND user_id = ?")
    }

    pub fn select_user_index_keys(ks: &str) -> String {
        format!("SELECT sent_ts, message_id FROM {ks}.user_chat_index WHERE broadcaster_id = ? AND day = ? AND shard = ? AND user_id = ?")
    }

    pub fn delete_user_index_slice(ks: &str) -> String {
        format!("DELETE FROM {ks}.user_chat_index WHERE broadcaster_id = ? AND day = ? AND shard = ? AND user_id = ?")
    }

    pub fn delete_user_day(ks: &str) -> String {
        format!("DELETE FROM {ks}.user_chat_days WHERE broadcaster_id = ? AND period = ? AND shard = ? AND user_id = ? AND day = ?")
    }

    pub fn delete_user_index_partition(ks: &str) -> String {
        format!(
            "DELETE FROM {ks}.user_chat_index WHERE broadcaster_id = ? AND day = ? AND shard = ?"
        )
    }

    pub fn delete_user_days_partition(ks: &str) -> String {
        format!(
            "DELETE FROM {ks}.user_chat_days WHERE broadcaster_id = ? AND period = ? AND shard = ?"
        )
    }

    /// Every (channel, chatter) pair of `user_chat_buckets` (its partition keys: one pass over
    /// the table, for `tci optout reindex` of chat stored before `user_channels` existed).
    pub fn select_user_bucket_partitions(ks: &str) -> String {
        format!("SELECT DISTINCT broadcaster_id, user_id FROM {ks}.user_chat_buckets")
    }

    pub fn select_user_channels(ks: &str) -> String {
        format!("SELECT broadcaster_id FROM {ks}.user_channels WHERE user_id = ?")
    }

    pub fn delete_user_channel(ks: &str) -> String {
        format!("DELETE FROM {ks}.user_channels WHERE user_id = ? AND broadcaster_id = ?")
    }

    pub fn select_user_buckets_all(ks: &str) -> String {
        format!(
            "SELECT bucket FROM {ks}.user_chat_buckets WHERE broadcaster_id = ? AND user_id = ?"
        )
    }

    pub fn select_user_keys(ks: &str) -> String {
        format!("SELECT sent_ts, message_id FROM {ks}.user_chat_messages WHERE broadcaster_id = ? AND user_id = ? AND bucket = ?")
    }

    pub fn delete_chat_row(ks: &str) -> String {
        format!("DELETE FROM {ks}.chat_messages WHERE broadcaster_id = ? AND bucket = ? AND sent_ts = ? AND message_id = ?")
    }

    pub fn delete_user_partition(ks: &str) -> String {
        format!("DELETE FROM {ks}.user_chat_messages WHERE broadcaster_id = ? AND user_id = ? AND bucket = ?")
    }

    pub fn delete_user_bucket(ks: &str) -> String {
        format!("DELETE FROM {ks}.user_chat_buckets WHERE broadcaster_id = ? AND user_id = ? AND bucket = ?")
    }

    pub fn select_chat_buckets_all(ks: &str) -> String {
        format!("SELECT bucket FROM {ks}.chat_buckets WHERE broadcaster_id = ?")
    }

    pub fn select_bucket_users(ks: &str) -> String {
        format!("SELECT user_id FROM {ks}.chat_messages WHERE broadcaster_id = ? AND bucket = ?")
    }

    pub fn delete_chat_partition(ks: &str) -> String {
        format!("DELETE FROM {ks}.chat_messages WHERE broadcaster_id = ? AND bucket = ?")
    }

    pub fn delete_chat_bucket_row(ks: &str) -> String {
        format!("DELETE FROM {ks}.chat_buckets WHERE broadcaster_id = ? AND bucket = ?")
    }

    pub fn select_moderation_targets(ks: &str) -> String {
        format!("SELECT sent_ts, event_id, target_user_id FROM {ks}.moderation_events WHERE broadcaster_id = ? AND bucket = ?")
    }

    pub fn delete_moderation_row(ks: &str) -> String {
        format!("DELETE FROM {ks}.moderation_events WHERE broadcaster_id = ? AND bucket = ? AND sent_ts = ? AND event_id = ?")
    }

    pub fn delete_moderation_partition(ks: &str) -> String {
        format!("DELETE FROM {ks}.moderation_events WHERE broadcaster_id = ? AND bucket = ?")
    }

    pub fn delete_deleted_partition(ks: &str) -> String {
        format!("DELETE FROM {ks}.deleted_messages WHERE broadcaster_id = ? AND bucket = ?")
    }

    /// Every statement above with its name, for the contract test that prepares them all.
    pub fn all(ks: &str) -> Vec<(&'static str, String)> {
        vec![
            ("insert_optout", insert_optout(ks)),
            ("set_purged", set_purged(ks)),
            ("select_optout", select_optout(ks)),
            ("select_optouts", select_optouts(ks)),
            ("insert_user_channel", insert_user_channel(ks)),
            ("reindex_bucket", reindex_bucket(ks)),
            ("reindex_user_day", reindex_user_day(ks)),
            ("reindex_user_index", reindex_user_index(ks)),
            ("select_first_chat_bucket", select_first_chat_bucket(ks)),
            ("select_last_chat_bucket", select_last_chat_bucket(ks)),
            ("select_user_days_all", select_user_days_all(ks)),
            ("select_user_index_keys", select_user_index_keys(ks)),
            ("delete_user_index_slice", delete_user_index_slice(ks)),
            ("delete_user_day", delete_user_day(ks)),
            (
                "delete_user_index_partition",
                delete_user_index_partition(ks),
            ),
            ("delete_user_days_partition", delete_user_days_partition(ks)),
            ("select_user_channels", select_user_channels(ks)),
            (
                "select_user_bucket_partitions",
                select_user_bucket_partitions(ks),
            ),
            ("delete_user_channel", delete_user_channel(ks)),
            ("select_user_buckets_all", select_user_buckets_all(ks)),
            ("select_user_keys", select_user_keys(ks)),
            ("delete_chat_row", delete_chat_row(ks)),
            ("delete_user_partition", delete_user_partition(ks)),
            ("delete_user_bucket", delete_user_bucket(ks)),
            ("select_chat_buckets_all", select_chat_buckets_all(ks)),
            ("select_bucket_users", select_bucket_users(ks)),
            ("delete_chat_partition", delete_chat_partition(ks)),
            ("delete_chat_bucket_row", delete_chat_bucket_row(ks)),
            ("select_moderation_targets", select_moderation_targets(ks)),
            ("delete_moderation_row", delete_moderation_row(ks)),
            (
                "delete_moderation_partition",
                delete_moderation_partition(ks),
            ),
            ("delete_deleted_partition", delete_deleted_partition(ks)),
        ]
    }
}

/// One row of `optouts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptOutRow {
    pub scope: OptOutScope,
    pub id: i64,
    pub login: Option<String>,
    pub opted_out: bool,
    pub at: i64,
    pub source: Option<String>,
    pub purged_at: Option<i64>,
}

/// Rows deleted by a purge, per table (what is logged: counts, never texts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeCounts {
    pub chat_messages: u64,
    pub chat_buckets: u64,
    /// By-user index rows: `user_chat_index` and, for rows stored before storage v3,
    /// `user_chat_messages`.
    pub user_chat_messages: u64,
    /// Rows listing a chatter's days (`user_chat_days`) or, before v3, buckets
    /// (`user_chat_buckets`).
    pub user_chat_buckets: u64,
    pub user_channels: u64,
    pub moderation_events: u64,
    /// `deleted_messages` partitions (a channel purge; their rows hold ids, not text).
    pub deleted_messages_partitions: u64,
}

macro_rules! statements {
    ($($name:ident),* $(,)?) => {
        /// The prepared opt-out statements of one keyspace.
        #[derive(Debug)]
        pub struct OptOutStatements { $($name: PreparedStatement,)* }

        impl OptOutStatements {
            /// Prepares every statement; fails when `0007_optouts.cql` was not applied.
            pub async fn prepare(session: &Session, ks: &str) -> anyhow::Result<Self> {
                Ok(Self { $($name: {
                    let text = cql::$name(ks);
                    let mut p = session
                        .prepare(text.as_str())
                        .await
                        .map_err(|e| anyhow::anyhow!("preparing {text:?}: {e}"))?;
                    p.set_is_idempotent(true);
                    p
                },)* })
            }
        }
    };
}

statements!(
    insert_optout,
    set_purged,
    select_optout,
    select_optouts,
    insert_user_channel,
    reindex_bucket,
    reindex_user_day,
    reindex_user_index,
    select_first_chat_bucket,
    select_last_chat_bucket,
    select_user_days_all,
    select_user_index_keys,
    delete_user_index_slice,
    delete_user_day,
    delete_user_index_partition,
    delete_user_days_partition,
    select_user_bucket_partitions,
    select_user_channels,
    delete_user_channel,
    select_user_buckets_all,
    select_user_keys,
    delete_chat_row,
    delete_user_partition,
    delete_user_bucket,
    select_chat_buckets_all,
    select_bucket_users,
    delete_chat_partition,
    delete_chat_bucket_row,
    select_moderation_targets,
    delete_moderation_row,
    delete_moderation_partition,
    delete_deleted_partition,
);

impl OptOutStatements {
    /// Records the state of an opt-out (the ingestor, from the topic). Keeps `purged_at`.
    pub async fn record(&self, session: &Session, e: &OptOut) -> anyhow::Result<()> {
        session
            .execute_unpaged(
                &self.insert_optout,
                (
                    e.scope.as_str(),
                    e.id,
                    e.login.as_deref(),
                    e.opted_out,
                    e.at,
                    e.source.as_str(),
                ),
            )
            .await?;
        Ok(())
    }

    /// Marks the purge of an opt-out done (`at` of the opt-out it purged for).
    pub async fn mark_purged(
        &self,
        session: &Session,
        scope: OptOutScope,
        id: i64,
        at: i64,
    ) -> anyhow::Result<()> {
        session
            .execute_unpaged(&self.set_purged, (at, scope.as_str(), id))
            .await?;
        Ok(())
    }

    /// One row of `optouts`.
    pub async fn get(
        &self,
        session: &Session,
        scope: OptOutScope,
        id: i64,
    ) -> anyhow::Result<Option<OptOutRow>> {
        let r = session
            .execute_unpaged(&self.select_optout, (scope.as_str(), id))
            .await?
            .into_rows_result()?;
        Ok(
            r.maybe_first_row::<(Option<bool>, Option<i64>, Option<i64>)>()?
                .map(|(o, at, p)| OptOutRow {
                    scope,
                    id,
                    login: None,
                    opted_out: o.unwrap_or(false),
                    at: at.unwrap_or(0),
                    source: None,
                    purged_at: p,
                }),
        )
    }

    /// Every row of `optouts` (a small table: one row per person or channel that ever opted out).
    pub async fn list(&self, session: &Session) -> anyhow::Result<Vec<OptOutRow>> {
        type Row = (
            i64,
            Option<String>,
            Option<bool>,
            Option<i64>,
            Option<String>,
            Option<i64>,
        );
        let mut out = Vec::new();
        for scope in [OptOutScope::User, OptOutScope::Channel] {
            let mut rows = session
                .execute_iter(self.select_optouts.clone(), (scope.as_str(),))
                .await?
                .rows_stream::<Row>()?;
            while let Some((id, login, o, at, source, purged_at)) = rows.try_next().await? {
                out.push(OptOutRow {
                    scope,
                    id,
                    login,
                    opted_out: o.unwrap_or(false),
                    at: at.unwrap_or(0),
                    source,
                    purged_at,
                });
            }
        }
        Ok(out)
    }

    /// Indexes `(user_id, broadcaster_id)` pairs (before their chat rows are written).
    pub async fn index_user_channel(
        &self,
        session: &Session,
        user_id: i64,
        broadcaster_id: i64,
    ) -> Result<(), scylla::errors::ExecutionError> {
        session
            .execute_unpaged(&self.insert_user_channel, (user_id, broadcaster_id))
            .await
            .map(drop)
    }

    /// Writes the bucket- and day-index rows of a message of someone who opted back in (see
    /// [`cql::reindex_bucket`]).
    pub async fn reindex(
        &self,
        session: &Session,
        broadcaster_id: i64,
        user_id: i64,
        bucket: i64,
    ) -> Result<(), scylla::errors::ExecutionError> {
        session
            .execute_unpaged(&self.reindex_bucket, (broadcaster_id, bucket))
            .await?;
        let day = day_of(bucket);
        let row = (
            broadcaster_id,
            period_of(day),
            user_shard(user_id),
            user_id,
            day,
        );
        session
            .execute_unpaged(&self.reindex_user_day, row)
            .await
            .map(drop)
    }

    /// `tci reindex user-logs`: copies the by-user index of rows stored before storage v3
    /// (`user_chat_buckets` → `user_chat_messages`) into `user_chat_index` and `user_chat_days`,
    /// one (channel, chatter) at a time; `progress` gets the pairs and rows done so far.
    /// Idempotent: run again after an error.
    pub async fn reindex_user_logs(
        &self,
        session: &Session,
        mut progress: impl FnMut(u64, u64),
    ) -> anyhow::Result<(u64, u64)> {
        let (mut pairs, mut rows) = (0u64, 0u64);
        let partitions = session
            .execute_iter(self.select_user_bucket_partitions.clone(), ())
            .await?
            .rows_stream::<(i64, i64)>()?
            .map_err(anyhow::Error::from);
        // REINDEX_CONCURRENCY (channel, chatter) pairs at a time: each is a few small reads and
        // writes, and one at a time left Cassandra idle between round trips.
        let mut done = partitions
            .map_ok(|(bc, user_id)| self.reindex_pair(session, bc, user_id))
            .try_buffer_unordered(REINDEX_CONCURRENCY);
        while let Some(n) = done.try_next().await? {
            pairs += 1;
            rows += n;
            progress(pairs, rows);
        }
        Ok((pairs, rows))
    }

    /// [`Self::reindex_user_logs`] of one (channel, chatter): how many messages it indexed.
    async fn reindex_pair(&self, session: &Session, bc: i64, user_id: i64) -> anyhow::Result<u64> {
        let shard = user_shard(user_id);
        let buckets: Vec<i64> = self
            .column(session, &self.select_user_buckets_all, (bc, user_id))
            .await?;
        let (mut days, mut rows) = (BTreeSet::new(), 0u64);
        for bucket in buckets {
            let mut keys = session
                .execute_iter(self.select_user_keys.clone(), (bc, user_id, bucket))
                .await?
                .rows_stream::<(i64, String)>()?;
            while let Some((sent_ts, id)) = keys.try_next().await? {
                let day = day_of(sent_ts);
                session
                    .execute_unpaged(
                        &self.reindex_user_index,
                        (bc, day, shard, user_id, sent_ts, id.as_str()),
                    )
                    .await?;
                days.insert(day);
                rows += 1;
            }
        }
        for day in days {
            session
                .execute_unpaged(
                    &self.reindex_user_day,
                    (bc, period_of(day), shard, user_id, day),
                )
                .await?;
        }
        Ok(rows)
    }

    /// The days chatter `user_id` spoke in channel `bc` (storage v3's `user_chat_days`): one
    /// query per 28-day period from the channel's first chat bucket to its last (the rows of
    /// `chat_buckets` bound where the channel's chat can be).
    async fn user_days(
        &self,
        session: &Session,
        bc: i64,
        user_id: i64,
    ) -> anyhow::Result<Vec<i64>> {
        let first: Vec<i64> = self
            .column(session, &self.select_first_chat_bucket, (bc,))
            .await?;
        let last: Vec<i64> = self
            .column(session, &self.select_last_chat_bucket, (bc,))
            .await?;
        let (Some(&first), Some(&last)) = (first.first(), last.first()) else {
            return Ok(Vec::new());
        };
        let shard = user_shard(user_id);
        let mut days = Vec::new();
        let mut period = period_of(first);
        while period <= last {
            days.extend(
                self.column::<i64>(
                    session,
                    &self.select_user_days_all,
                    (bc, period, shard, user_id),
                )
                .await?,
            );
            period += PERIOD_MS;
        }
        Ok(days)
    }

    async fn column<T>(
        &self,
        session: &Session,
        st: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> anyhow::Result<Vec<T>>
    where
        T: for<'f, 'm> scylla::deserialize::value::DeserializeValue<'f, 'm> + 'static,
    {
        let mut rows = session
            .execute_iter(st.clone(), values)
            .await?
            .rows_stream::<(T,)>()?;
        let mut out = Vec::new();
        while let Some((v,)) = rows.try_next().await? {
            out.push(v);
        }
        Ok(out)
    }

    /// Deletes everything stored of chatter `user_id`, in every channel (see the module docs).
    pub async fn purge_user(&self, session: &Session, user_id: i64) -> anyhow::Result<PurgeCounts> {
        let mut n = PurgeCounts::default();
        let channels: Vec<i64> = self
            .column(session, &self.select_user_channels, (user_id,))
            .await?;
        let shard = user_shard(user_id);
        for bc in channels {
            let mut event_buckets = BTreeSet::new();
            let mut mark_events_after = |bucket: i64| {
                let mut b = bucket;
                while b <= bucket + DELETABLE_FOR_MS {
                    event_buckets.insert(b);
                    b += BUCKET_MS;
                }
            };
            // Storage v3: user_chat_days → user_chat_index → chat_messages.
            for day in self.user_days(session, bc, user_id).await? {
                let mut keys = session
                    .execute_iter(
                        self.select_user_index_keys.clone(),
                        (bc, day, shard, user_id),
                    )
                    .await?
                    .rows_stream::<(i64, String)>()?;
                let mut buckets = BTreeSet::new();
                while let Some((sent_ts, id)) = keys.try_next().await? {
                    let bucket = bucket_of(sent_ts);
                    session
                        .execute_unpaged(&self.delete_chat_row, (bc, bucket, sent_ts, id.as_str()))
                        .await?;
                    n.chat_messages += 1;
                    n.user_chat_messages += 1;
                    buckets.insert(bucket);
                }
                session
                    .execute_unpaged(&self.delete_user_index_slice, (bc, day, shard, user_id))
                    .await?;
                session
                    .execute_unpaged(
                        &self.delete_user_day,
                        (bc, period_of(day), shard, user_id, day),
                    )
                    .await?;
                n.user_chat_buckets += 1;
                buckets.into_iter().for_each(&mut mark_events_after);
            }
            // Rows stored before v3: user_chat_buckets → user_chat_messages → chat_messages.
            let buckets: Vec<i64> = self
                .column(session, &self.select_user_buckets_all, (bc, user_id))
                .await?;
            for &bucket in &buckets {
                let mut keys = session
                    .execute_iter(self.select_user_keys.clone(), (bc, user_id, bucket))
                    .await?
                    .rows_stream::<(i64, String)>()?;
                while let Some((sent_ts, id)) = keys.try_next().await? {
                    session
                        .execute_unpaged(&self.delete_chat_row, (bc, bucket, sent_ts, id.as_str()))
                        .await?;
                    n.chat_messages += 1;
                    n.user_chat_messages += 1;
                }
                session
                    .execute_unpaged(&self.delete_user_partition, (bc, user_id, bucket))
                    .await?;
                session
                    .execute_unpaged(&self.delete_user_bucket, (bc, user_id, bucket))
                    .await?;
                n.user_chat_buckets += 1;
                mark_events_after(bucket);
            }
            for bucket in event_buckets {
                n.moderation_events += self
                    .delete_events_naming(session, bc, bucket, Some(user_id))
                    .await?;
            }
            session
                .execute_unpaged(&self.delete_user_channel, (user_id, bc))
                .await?;
            n.user_channels += 1;
        }
        Ok(n)
    }

    /// Deletes the moderation events of one partition that name `user` (all when `None`);
    /// returns how many.
    async fn delete_events_naming(
        &self,
        session: &Session,
        bc: i64,
        bucket: i64,
        user: Option<i64>,
    ) -> anyhow::Result<u64> {
        let mut rows = session
            .execute_iter(self.select_moderation_targets.clone(), (bc, bucket))
            .await?
            .rows_stream::<(i64, String, Option<i64>)>()?;
        let mut n = 0;
        while let Some((sent_ts, event_id, target)) = rows.try_next().await? {
            if user.is_none() || target == user {
                session
                    .execute_unpaged(
                        &self.delete_moderation_row,
                        (bc, bucket, sent_ts, event_id.as_str()),
                    )
                    .await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Deletes everything stored of channel `broadcaster_id` (see the module docs).
    pub async fn purge_channel(
        &self,
        session: &Session,
        broadcaster_id: i64,
    ) -> anyhow::Result<PurgeCounts> {
        let bc = broadcaster_id;
        let mut n = PurgeCounts::default();
        let buckets: Vec<i64> = self
            .column(session, &self.select_chat_buckets_all, (bc,))
            .await?;
        let mut users = HashSet::new();
        // Storage v3's by-user partitions of every day and period that held chat.
        let days: BTreeSet<i64> = buckets.iter().map(|&b| day_of(b)).collect();
        let periods: BTreeSet<i64> = days.iter().map(|&d| period_of(d)).collect();
        for shard in 0..USER_SHARDS {
            for &day in &days {
                session
                    .execute_unpaged(&self.delete_user_index_partition, (bc, day, shard))
                    .await?;
            }
            for &period in &periods {
                session
                    .execute_unpaged(&self.delete_user_days_partition, (bc, period, shard))
                    .await?;
            }
        }
        for &bucket in &buckets {
            let chatters: Vec<Option<i64>> = self
                .column(session, &self.select_bucket_users, (bc, bucket))
                .await?;
            let bucket_users: HashSet<i64> = chatters.iter().flatten().copied().collect();
            n.chat_messages += chatters.len() as u64;
            for &u in &bucket_users {
                let mut keys = session
                    .execute_iter(self.select_user_keys.clone(), (bc, u, bucket))
                    .await?
                    .rows_stream::<(i64, String)>()?;
                while keys.try_next().await?.is_some() {
                    n.user_chat_messages += 1;
                }
                session
                    .execute_unpaged(&self.delete_user_partition, (bc, u, bucket))
                    .await?;
                session
                    .execute_unpaged(&self.delete_user_bucket, (bc, u, bucket))
                    .await?;
                n.user_chat_buckets += 1;
            }
            users.extend(bucket_users);
            n.moderation_events += self.delete_events_naming(session, bc, bucket, None).await?;
            session
                .execute_unpaged(&self.delete_moderation_partition, (bc, bucket))
                .await?;
            session
                .execute_unpaged(&self.delete_deleted_partition, (bc, bucket))
                .await?;
            n.deleted_messages_partitions += 1;
            session
                .execute_unpaged(&self.delete_chat_partition, (bc, bucket))
                .await?;
            session
                .execute_unpaged(&self.delete_chat_bucket_row, (bc, bucket))
                .await?;
            n.chat_buckets += 1;
        }
        for u in users {
            session
                .execute_unpaged(&self.delete_user_channel, (u, bc))
                .await?;
            n.user_channels += 1;
        }
        Ok(n)
    }
}

//! The Cassandra implementation of [`ChatSource`] and [`StreamerSource`]: prepared statements,
//! one `execute_single_page` per page, paging states passed through as raw bytes.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

use chat_store::{ReadStatements, StoredChatRef, StoredChatRefTuple};
use scylla::{
    client::session::Session,
    errors::ExecutionError,
    response::{query_result::QueryResult, PagingState, PagingStateResponse},
    statement::prepared::PreparedStatement,
    value::CqlTimestamp,
};
use tracing::warn;

use super::{
    Body, ChatRow, ChatSource, Scope, SourcePage, StoreError, StreamerRow, StreamerSource,
};
use crate::metrics::METRICS;

/// Most pages of `deleted_messages` read for one bucket (1000 ids each).
const MAX_DELETED_PAGES: usize = 20;

/// Prepared statements over one session.
pub struct Db {
    session: Session,
    chat: ReadStatements,
    streamers: PreparedStatement,
    timeout: Duration,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Prepares every statement against `keyspace`. Fails when a table is missing (run
    /// `tci migrate` first) or Cassandra is down.
    pub async fn prepare(
        session: Session,
        keyspace: &str,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let ks = keyspace;
        let chat = ReadStatements::prepare(&session, ks, timeout).await?;
        // The streamers table is streamer-ingestion's, not one of the chat tables.
        let mut streamers = session
            .prepare(format!(
                "SELECT broadcaster_id, login, display_name, first_seen, last_seen_live, title, game_name, language \
                 FROM {ks}.streamers"
            ))
            .await
            .map_err(|e| anyhow::anyhow!("preparing the streamers query: {e}"))?;
        streamers.set_request_timeout(Some(timeout));
        streamers.set_is_idempotent(true);
        Ok(Self {
            session,
            chat,
            streamers,
            timeout,
        })
    }

    /// True when Cassandra answers a trivial query.
    pub async fn ping(&self) -> bool {
        tci_common::cassandra::reachable(&self.session).await
    }

    fn fail(&self, what: &'static str, e: ExecutionError) -> StoreError {
        METRICS.cassandra_errors.with_label_values(&[what]).inc();
        warn!(error = %e, query = what, "Cassandra query failed");
        match e {
            ExecutionError::RequestTimeout(_) => StoreError::Timeout {
                what,
                timeout: self.timeout,
            },
            _ => StoreError::Unavailable { what },
        }
    }

    async fn single_page(
        &self,
        what: &'static str,
        stmt: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
        page_size: usize,
        state: Option<&[u8]>,
    ) -> Result<(QueryResult, Option<Vec<u8>>), StoreError> {
        let mut stmt = stmt.clone();
        stmt.set_page_size(i32::try_from(page_size.max(1)).unwrap_or(i32::MAX));
        let state = state.map_or_else(PagingState::start, PagingState::new_from_raw_bytes);
        let timer = METRICS
            .cassandra_seconds
            .with_label_values(&[what])
            .start_timer();
        let res = self.session.execute_single_page(&stmt, values, state).await;
        timer.observe_duration();
        let (qr, resp) = res.map_err(|e| self.fail(what, e))?;
        let next = match resp {
            PagingStateResponse::HasMorePages { state } => {
                state.as_bytes_slice().map(|b| b.to_vec())
            }
            PagingStateResponse::NoMorePages => None,
        };
        Ok((qr, next))
    }
}

impl Db {
    /// The rows' bodies: the stored JSON, the JSON rendered from the raw line (storage v3), or
    /// the raw line. A row without a body (written by something else than chat-ingestor) is
    /// served with an empty `message`, logged and counted, never failing the page.
    fn row(broadcaster_id: i64, body: Body, r: StoredChatRef<'_>) -> ChatRow {
        let message = r.body(broadcaster_id, body).unwrap_or_else(|e| {
            METRICS.render_failures.inc();
            warn!(broadcaster_id, message_id = %r.message_id, error = %e, "stored message has no servable body");
            String::new()
        });
        ChatRow {
            sent_ts: r.sent_ts,
            message_id: r.message_id.to_owned(),
            message,
            user_id: r.user_id,
        }
    }

    /// The messages a page of the by-user index points at, in the index's order: one
    /// `(sent_ts, message_id) IN ?` query per 5-minute chat bucket, run concurrently. A key
    /// whose message is gone (purged) is left out.
    async fn by_keys(
        &self,
        broadcaster_id: i64,
        body: Body,
        keys: Vec<(i64, String)>,
    ) -> Result<Vec<ChatRow>, StoreError> {
        let what = "chat_messages_by_key";
        let mut groups: BTreeMap<i64, Vec<(i64, &str)>> = BTreeMap::new();
        for (ts, id) in &keys {
            groups
                .entry(chat_store::bucket_of(*ts))
                .or_default()
                .push((*ts, id.as_str()));
        }
        let reads = groups.into_iter().map(|(bucket, ks)| async move {
            let n = ks.len();
            let (qr, _) = self
                .single_page(
                    what,
                    &self.chat.chat_by_keys,
                    (broadcaster_id, bucket, ks),
                    n,
                    None,
                )
                .await?;
            qr.into_rows_result().map_err(|e| decode(what, e))
        });
        let results = futures::future::try_join_all(reads).await?;
        let mut found: HashMap<&str, StoredChatRef<'_>> = HashMap::with_capacity(keys.len());
        for result in &results {
            for r in result
                .rows::<StoredChatRefTuple<'_>>()
                .map_err(|e| decode(what, e))?
            {
                let r = StoredChatRef::from(r.map_err(|e| decode(what, e))?);
                found.insert(r.message_id, r);
            }
        }
        Ok(keys
            .iter()
            .filter_map(|(_, id)| found.get(id.as_str()))
            .map(|r| Self::row(broadcaster_id, body, *r))
            .collect())
    }
}

fn decode(what: &'static str, e: impl std::fmt::Display) -> StoreError {
    warn!(error = %e, query = what, "unexpected Cassandra result shape");
    StoreError::Decode { what }
}

fn rows<R>(what: &'static str, qr: QueryResult) -> Result<Vec<R>, StoreError>
where
    R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
{
    let rows = qr.into_rows_result().map_err(|e| decode(what, e))?;
    let it = rows.rows::<R>().map_err(|e| decode(what, e))?;
    it.collect::<Result<Vec<R>, _>>()
        .map_err(|e| decode(what, e))
}

impl Db {
    /// Days chatter `user_id` spoke in channel `broadcaster_id` with `from <= day <= to`, at
    /// most `limit`: one `user_chat_days` query per 28-day period until `limit` are found.
    async fn user_days(
        &self,
        broadcaster_id: i64,
        user_id: i64,
        from: i64,
        to: i64,
        limit: i32,
    ) -> Result<Vec<i64>, StoreError> {
        let what = "user_chat_days";
        let shard = chat_store::user_shard(user_id);
        let mut out = Vec::new();
        let mut period = chat_store::period_of(from);
        while period <= to && (out.len() as i32) < limit {
            let left = limit - out.len() as i32;
            let (lo, hi) = (from.max(period), to.min(period + chat_store::PERIOD_MS - 1));
            let (qr, _) = self
                .single_page(
                    what,
                    &self.chat.user_days,
                    (broadcaster_id, period, shard, user_id, lo, hi, left),
                    left as usize,
                    None,
                )
                .await?;
            out.extend(rows::<(i64,)>(what, qr)?.into_iter().map(|(d,)| d));
            period += chat_store::PERIOD_MS;
        }
        Ok(out)
    }
}

impl ChatSource for Db {
    async fn buckets(
        &self,
        scope: Scope,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<i64>, StoreError> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let (what, res) = match scope {
            Scope::Channel { broadcaster_id } => (
                "chat_buckets",
                self.single_page(
                    "chat_buckets",
                    &self.chat.chat_buckets,
                    (broadcaster_id, from, to, limit),
                    limit as usize,
                    None,
                )
                .await,
            ),
            Scope::User {
                broadcaster_id,
                user_id,
            } => {
                return self
                    .user_days(broadcaster_id, user_id, from, to, limit)
                    .await
            }
        };
        let (qr, _) = res?;
        Ok(rows::<(i64,)>(what, qr)?
            .into_iter()
            .map(|(b,)| b)
            .collect())
    }

    async fn page(
        &self,
        scope: Scope,
        body: Body,
        bucket: i64,
        (start, end): (i64, i64),
        page_size: usize,
        state: Option<&[u8]>,
    ) -> Result<SourcePage<ChatRow>, StoreError> {
        match scope {
            Scope::Channel { broadcaster_id } => {
                let what = "chat_messages";
                let (qr, next) = self
                    .single_page(
                        what,
                        &self.chat.chat_page,
                        (broadcaster_id, bucket, start, end),
                        page_size,
                        state,
                    )
                    .await?;
                let result = qr.into_rows_result().map_err(|e| decode(what, e))?;
                let rows = result
                    .rows::<StoredChatRefTuple<'_>>()
                    .map_err(|e| decode(what, e))?
                    .map(|r| {
                        let r = StoredChatRef::from(r.map_err(|e| decode(what, e))?);
                        Ok(Self::row(broadcaster_id, body, r))
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                Ok((rows, next))
            }
            Scope::User {
                broadcaster_id,
                user_id,
            } => {
                let what = "user_chat_index";
                let shard = chat_store::user_shard(user_id);
                let (qr, next) = self
                    .single_page(
                        what,
                        &self.chat.user_index_page,
                        (broadcaster_id, bucket, shard, user_id, start, end),
                        page_size,
                        state,
                    )
                    .await?;
                let keys = rows::<(i64, String)>(what, qr)?;
                Ok((self.by_keys(broadcaster_id, body, keys).await?, next))
            }
        }
    }

    async fn deleted(
        &self,
        broadcaster_id: i64,
        bucket: i64,
    ) -> Result<HashSet<String>, StoreError> {
        let what = "deleted_messages";
        let mut out = HashSet::new();
        let mut state: Option<Vec<u8>> = None;
        // A bucket's deletions are few; page through them in 1000s all the same, bounded.
        for _ in 0..MAX_DELETED_PAGES {
            let (qr, next) = self
                .single_page(
                    what,
                    &self.chat.deleted,
                    (broadcaster_id, bucket),
                    1000,
                    state.as_deref(),
                )
                .await?;
            out.extend(rows::<(String,)>(what, qr)?.into_iter().map(|(id,)| id));
            match next {
                Some(n) => state = Some(n),
                None => return Ok(out),
            }
        }
        warn!(
            broadcaster_id,
            bucket,
            read = out.len(),
            "more deleted messages in one bucket than read; some stay visible"
        );
        Ok(out)
    }
}

type StreamerTuple = (
    i64,
    Option<String>,
    Option<String>,
    Option<CqlTimestamp>,
    Option<CqlTimestamp>,
    Option<String>,
    Option<String>,
    Option<String>,
);

impl StreamerSource for Db {
    async fn streamers(
        &self,
        page_size: usize,
        state: Option<&[u8]>,
    ) -> Result<SourcePage<StreamerRow>, StoreError> {
        let what = "streamers";
        let (qr, next) = self
            .single_page(what, &self.streamers, (), page_size, state)
            .await?;
        let rows = rows::<StreamerTuple>(what, qr)?
            .into_iter()
            .map(
                |(
                    broadcaster_id,
                    login,
                    display_name,
                    first_seen,
                    last_seen_live,
                    title,
                    game_name,
                    language,
                )| StreamerRow {
                    broadcaster_id,
                    login,
                    display_name,
                    first_seen: first_seen.map(|t| t.0),
                    last_seen_live: last_seen_live.map(|t| t.0),
                    title,
                    game_name,
                    language,
                },
            )
            .collect();
        Ok((rows, next))
    }
}

//! The Cassandra implementation of [`ChatSource`] and [`StreamerSource`]: prepared statements,
//! one `execute_single_page` per page, paging states passed through as raw bytes.

use std::{collections::HashSet, time::Duration};

use chat_store::ReadStatements;
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
    /// The by-user index carries no message since storage v2: reads the bodies of those rows
    /// from `chat_messages` (one query for the page, the messages' keys bound as a list).
    async fn fill_from_chat(
        &self,
        broadcaster_id: i64,
        bucket: i64,
        body: Body,
        found: &mut [(i64, String, Option<String>)],
    ) -> Result<(), StoreError> {
        let keys: Vec<(i64, &str)> = found
            .iter()
            .filter(|(_, _, b)| b.is_none())
            .map(|(ts, id, _)| (*ts, id.as_str()))
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        let what = "chat_messages_by_key";
        let n = keys.len();
        let (qr, _) = self
            .single_page(
                what,
                self.chat.chat_by_keys(body),
                (broadcaster_id, bucket, keys),
                n,
                None,
            )
            .await?;
        // Message ids are unique: the id alone finds the body.
        let mut bodies: std::collections::HashMap<String, Option<String>> =
            rows::<(i64, String, Option<String>)>(what, qr)?
                .into_iter()
                .map(|(_, id, b)| (id, b))
                .collect();
        for (_, id, b) in found.iter_mut().filter(|(_, _, b)| b.is_none()) {
            // A message missing from chat_messages (not written yet, or purged) stays empty.
            *b = bodies.remove(id.as_str()).flatten();
        }
        Ok(())
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
            } => (
                "user_chat_buckets",
                self.single_page(
                    "user_chat_buckets",
                    &self.chat.user_buckets,
                    (broadcaster_id, user_id, from, to, limit),
                    limit as usize,
                    None,
                )
                .await,
            ),
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
        let (what, res) = match scope {
            Scope::Channel { broadcaster_id } => (
                "chat_messages",
                self.single_page(
                    "chat_messages",
                    self.chat.chat_page(body),
                    (broadcaster_id, bucket, start, end),
                    page_size,
                    state,
                )
                .await,
            ),
            Scope::User {
                broadcaster_id,
                user_id,
            } => (
                "user_chat_messages",
                self.single_page(
                    "user_chat_messages",
                    self.chat.user_page(body),
                    (broadcaster_id, user_id, bucket, start, end),
                    page_size,
                    state,
                )
                .await,
            ),
        };
        let (qr, next) = res?;
        let row =
            |(sent_ts, message_id, message): (i64, String, Option<String>), user_id| ChatRow {
                sent_ts,
                message_id,
                message: message.unwrap_or_default(),
                user_id,
            };
        let rows = match scope {
            Scope::Channel { .. } => rows::<(i64, String, Option<String>, Option<i64>)>(what, qr)?
                .into_iter()
                .map(|(ts, id, m, u)| row((ts, id, m), u))
                .collect(),
            Scope::User {
                broadcaster_id,
                user_id,
            } => {
                let mut found = rows::<(i64, String, Option<String>)>(what, qr)?;
                self.fill_from_chat(broadcaster_id, bucket, body, &mut found)
                    .await?;
                found.into_iter().map(|r| row(r, Some(user_id))).collect()
            }
        };
        Ok((rows, next))
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

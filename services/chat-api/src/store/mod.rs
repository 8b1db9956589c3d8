//! Reading pages: the bucket walk (pure logic over a [`ChatSource`]) and its Cassandra
//! implementation ([`cassandra::Db`]).
//!
//! A chat range `[start, end]` spans the buckets `bucket_of(start) ..= bucket_of(end)` of its
//! scope ([`Scope::bucket_of`]): 5-minute buckets of a channel's chat, days of a chatter's.
//! A page is filled by reading the current bucket with page size = the slots still free, going
//! on with Cassandra's paging state while it says there is more, and otherwise moving to the next
//! *non-empty* bucket found in the bucket index (`chat_buckets` / `user_chat_days`), so empty
//! buckets cost nothing. The position after the last row returned is the next cursor:
//! `(bucket, paging state)` when Cassandra has more pages in that bucket, else
//! `(next non-empty bucket, start)` when one exists in range, else none. Each call issues at most
//! `max_queries` message queries; when that cap is reached first, the call returns the rows it has
//! and the position it reached.

pub mod cassandra;

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    time::Duration,
};

use crate::cursor::Position;

/// Cassandra failures. All of them are the server's problem, never the caller's.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The session is not established (yet).
    #[error("the chat archive (Cassandra) is not connected yet; retry shortly")]
    NotConnected,
    /// A query exceeded `query.timeout`.
    #[error(
        "the chat archive (Cassandra) did not answer {what} within {timeout:?}; retry shortly"
    )]
    Timeout {
        what: &'static str,
        timeout: Duration,
    },
    /// Any other failure to run a query.
    #[error("the chat archive (Cassandra) is unavailable ({what}); retry shortly")]
    Unavailable { what: &'static str },
    /// A result that does not have the expected shape (schema drift): a bug, not an outage.
    #[error("unexpected result shape of {what}")]
    Decode { what: &'static str },
}

impl StoreError {
    /// True for outages (503), false for bugs (500).
    pub fn is_unavailable(&self) -> bool {
        !matches!(self, Self::Decode { .. })
    }

    /// The stable API error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotConnected | Self::Unavailable { .. } => "cassandra_unavailable",
            Self::Timeout { .. } => "cassandra_timeout",
            Self::Decode { .. } => "internal_error",
        }
    }
}

/// Whose chat is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A channel's chat (`chat_messages`, `chat_buckets`): 5-minute buckets.
    Channel { broadcaster_id: i64 },
    /// One chatter in a channel (`user_chat_index`, `user_chat_days`): days.
    User { broadcaster_id: i64, user_id: i64 },
}

impl Scope {
    /// The bucket of this scope's index that `ms` falls in: its 5-minute chat bucket for a
    /// channel, its UTC day for a chatter.
    pub fn bucket_of(self, ms: i64) -> i64 {
        match self {
            Self::Channel { .. } => chat_store::bucket_of(ms),
            Self::User { .. } => chat_store::day_of(ms),
        }
    }

    pub fn broadcaster_id(self) -> i64 {
        match self {
            Self::Channel { broadcaster_id } | Self::User { broadcaster_id, .. } => broadcaster_id,
        }
    }
}

/// One stored chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRow {
    pub sent_ts: i64,
    pub message_id: String,
    /// The body asked for ([`Body`]): the API's `message` JSON string (stored, or rendered
    /// from the raw line), or the raw line.
    pub message: String,
    /// The chatter's numeric id as stored (none when Twitch's was not a number).
    pub user_id: Option<i64>,
}

/// One page from Cassandra: rows and, when there are more, the paging state after them.
pub type SourcePage<R> = (Vec<R>, Option<Vec<u8>>);

/// What the bucket walk needs from storage.
pub trait ChatSource {
    /// Non-empty buckets `b` of `scope` with `from <= b <= to`, ascending, at most `limit`.
    fn buckets(
        &self,
        scope: Scope,
        from: i64,
        to: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<i64>, StoreError>> + Send;

    /// One page (at most `page_size` rows) of `bucket` restricted to `start ..= end`, resuming
    /// at `state`; each row's `message` holds the column `body` names.
    fn page(
        &self,
        scope: Scope,
        body: Body,
        bucket: i64,
        range: (i64, i64),
        page_size: usize,
        state: Option<&[u8]>,
    ) -> impl Future<Output = Result<SourcePage<ChatRow>, StoreError>> + Send;

    /// Ids of messages deleted by moderators in `bucket` of `broadcaster_id`.
    fn deleted(
        &self,
        broadcaster_id: i64,
        bucket: i64,
    ) -> impl Future<Output = Result<HashSet<String>, StoreError>> + Send;
}

/// Which stored column a page carries in [`ChatRow::message`] (the json, ndjson and text
/// formats read the `message` JSON; `raw` the line).
pub use chat_store::cql::Body;

/// A chat page request.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub scope: Scope,
    pub body: Body,
    pub start_ms: i64,
    pub end_ms: i64,
    pub limit: usize,
    /// Where to resume (from a verified cursor); `None` = from `start`.
    pub resume: Option<Position>,
    pub hide_deleted: bool,
    /// Most message-page queries this call may issue (at least 1 is used).
    pub max_queries: u32,
    /// Bucket-index rows fetched per index read.
    pub index_batch: u32,
}

/// A page of chat and where the next one starts.
#[derive(Debug, Clone, Default)]
pub struct ChatPage {
    pub rows: Vec<ChatRow>,
    pub next: Option<Position>,
    /// Message-page queries issued (for metrics and tests).
    pub queries: u32,
    /// Bucket-index reads issued.
    pub index_reads: u32,
}

/// The non-empty buckets after the current one, read from the index in batches.
struct BucketIndex {
    pending: std::collections::VecDeque<i64>,
    next_from: i64,
    last: i64,
    exhausted: bool,
    batch: u32,
    reads: u32,
}

impl BucketIndex {
    fn after(current: i64, last: i64, batch: u32) -> Self {
        Self {
            pending: Default::default(),
            next_from: current.saturating_add(1),
            last,
            exhausted: current >= last,
            batch: batch.max(1),
            reads: 0,
        }
    }

    async fn next<S: ChatSource>(
        &mut self,
        src: &S,
        scope: Scope,
    ) -> Result<Option<i64>, StoreError> {
        if self.pending.is_empty() && !self.exhausted {
            let got = src
                .buckets(scope, self.next_from, self.last, self.batch)
                .await?;
            self.reads += 1;
            // Defensive: keep only ascending buckets inside the window.
            let mut prev = self.next_from.saturating_sub(1);
            for b in got.iter().copied() {
                if b > prev && b <= self.last {
                    self.pending.push_back(b);
                    prev = b;
                }
            }
            self.exhausted = got.len() < self.batch as usize || prev >= self.last;
            self.next_from = prev.saturating_add(1);
        }
        Ok(self.pending.pop_front())
    }
}

/// Reads one page of chat. See the module docs for the walk and the cursor rules.
pub async fn read_chat<S: ChatSource>(src: &S, req: &ChatRequest) -> Result<ChatPage, StoreError> {
    let last_bucket = req.scope.bucket_of(req.end_ms);
    let (mut bucket, mut state) = match &req.resume {
        Some(p) => (p.bucket, p.state.clone()),
        None => (req.scope.bucket_of(req.start_ms), None),
    };
    let mut index = BucketIndex::after(bucket, last_bucket, req.index_batch);
    let limit = req.limit.max(1);
    let mut out = ChatPage {
        rows: Vec::with_capacity(limit),
        ..Default::default()
    };
    // Deletion marks by 5-minute chat bucket (a chatter's day spans many), read when a row of
    // the bucket is first seen.
    let mut deleted: HashMap<i64, HashSet<String>> = HashMap::new();
    let max_queries = req.max_queries.max(1);
    let range = (req.start_ms, req.end_ms);
    loop {
        if out.queries >= max_queries {
            out.next = Some(Position { bucket, state });
            break;
        }
        let free = limit - out.rows.len();
        let (rows, more) = src
            .page(req.scope, req.body, bucket, range, free, state.as_deref())
            .await?;
        out.queries += 1;
        if req.hide_deleted {
            for r in &rows {
                let b = chat_store::bucket_of(r.sent_ts);
                if let std::collections::hash_map::Entry::Vacant(e) = deleted.entry(b) {
                    e.insert(src.deleted(req.scope.broadcaster_id(), b).await?);
                }
            }
            out.rows.extend(rows.into_iter().filter(|r| {
                !deleted
                    .get(&chat_store::bucket_of(r.sent_ts))
                    .is_some_and(|d| d.contains(&r.message_id))
            }));
        } else {
            out.rows.extend(rows);
        }
        // Never more than asked, even from a misbehaving source.
        out.rows.truncate(limit);
        if let Some(s) = more {
            state = Some(s);
            if out.rows.len() >= limit {
                out.next = Some(Position { bucket, state });
                break;
            }
            continue;
        }
        // This bucket is exhausted: on to the next non-empty one.
        match index.next(src, req.scope).await? {
            None => break,
            Some(nb) => {
                bucket = nb;
                state = None;
                if out.rows.len() >= limit {
                    out.next = Some(Position {
                        bucket,
                        state: None,
                    });
                    break;
                }
            }
        }
    }
    out.index_reads = index.reads;
    Ok(out)
}

/// One row of the `streamers` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamerRow {
    pub broadcaster_id: i64,
    pub login: Option<String>,
    pub display_name: Option<String>,
    /// ms since the epoch.
    pub first_seen: Option<i64>,
    pub last_seen_live: Option<i64>,
    pub title: Option<String>,
    pub game_name: Option<String>,
    pub language: Option<String>,
}

/// What the streamer list needs from storage.
pub trait StreamerSource {
    /// One page of the `streamers` table (token order).
    fn streamers(
        &self,
        page_size: usize,
        state: Option<&[u8]>,
    ) -> impl Future<Output = Result<SourcePage<StreamerRow>, StoreError>> + Send;
}

/// A page of streamers and the paging state of the next one.
#[derive(Debug, Clone, Default)]
pub struct StreamerPage {
    pub rows: Vec<StreamerRow>,
    pub next: Option<Vec<u8>>,
    pub queries: u32,
}

/// Reads up to `limit` streamers that pass `keep`, scanning at most `max_queries` pages. Each
/// page asks for exactly the free slots, so every row read is either returned or filtered out
/// and the paging state after it is an exact resume point.
pub async fn read_streamers<S: StreamerSource>(
    src: &S,
    limit: usize,
    mut state: Option<Vec<u8>>,
    keep: impl Fn(&StreamerRow) -> bool,
    max_queries: u32,
) -> Result<StreamerPage, StoreError> {
    let limit = limit.max(1);
    let mut out = StreamerPage {
        rows: Vec::with_capacity(limit),
        ..Default::default()
    };
    loop {
        if out.queries >= max_queries.max(1) {
            out.next = state;
            break;
        }
        let (rows, more) = src
            .streamers(limit - out.rows.len(), state.as_deref())
            .await?;
        out.queries += 1;
        out.rows.extend(rows.into_iter().filter(|r| keep(r)));
        out.rows.truncate(limit);
        match more {
            None => break,
            Some(s) => {
                state = Some(s);
                if out.rows.len() >= limit {
                    out.next = state;
                    break;
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

//! Prepared statements on the chat tables, and the binding of each planned row to its write.

use std::time::Duration;

use scylla::{
    client::session::Session,
    errors::ExecutionError,
    statement::{
        batch::{Batch, BatchType},
        prepared::PreparedStatement,
    },
};

use crate::{
    bucket::{day_of, user_shard},
    cql,
    plan::{ChatRow, DeletionRow, ModerationRow, UserDay},
    table,
};

/// Prepares `text`, flagged idempotent (every statement here is: keys contain the ids), with an
/// optional per-request timeout.
async fn prepare(
    session: &Session,
    text: String,
    timeout: Option<Duration>,
) -> anyhow::Result<PreparedStatement> {
    let mut p = session
        .prepare(text.as_str())
        .await
        .map_err(|e| anyhow::anyhow!("preparing {text:?}: {e}"))?;
    p.set_is_idempotent(true);
    if timeout.is_some() {
        p.set_request_timeout(timeout);
    }
    Ok(p)
}

/// One write of a plan: a group of rows of one partition, or one row.
#[derive(Clone, Copy, Debug)]
pub enum Write<'a> {
    /// Rows of one `chat_messages` partition (indices into the plan's rows).
    Chat(&'a [usize], &'a [ChatRow]),
    /// Index rows of one `user_chat_index` partition.
    User(&'a [usize], &'a [ChatRow]),
    Bucket((i64, i64)),
    UserDay(UserDay),
    Moderation(&'a ModerationRow),
    Deletion(&'a DeletionRow),
}

impl Write<'_> {
    /// The table written (for logs and metric labels).
    pub fn table(&self) -> &'static str {
        match self {
            Write::Chat(..) => table::CHAT_MESSAGES,
            Write::User(..) => table::USER_CHAT_INDEX,
            Write::Bucket(_) => table::CHAT_BUCKETS,
            Write::UserDay(_) => table::USER_CHAT_DAYS,
            Write::Moderation(_) => table::MODERATION_EVENTS,
            Write::Deletion(_) => table::DELETED_MESSAGES,
        }
    }
}

/// The write statements of one keyspace.
#[derive(Debug)]
pub struct WriteStatements {
    chat: PreparedStatement,
    user_index: PreparedStatement,
    bucket: PreparedStatement,
    user_day: PreparedStatement,
    moderation: PreparedStatement,
    deletion: PreparedStatement,
}

impl WriteStatements {
    /// Prepares every write in `keyspace`; fails when a table or column is missing (run the
    /// migrations first) or Cassandra is unreachable.
    pub async fn prepare(session: &Session, ks: &str) -> anyhow::Result<Self> {
        Ok(Self {
            chat: prepare(session, cql::insert_chat(ks), None).await?,
            user_index: prepare(session, cql::insert_user_index(ks), None).await?,
            bucket: prepare(session, cql::insert_bucket(ks), None).await?,
            user_day: prepare(session, cql::insert_user_day(ks), None).await?,
            moderation: prepare(session, cql::insert_moderation(ks), None).await?,
            deletion: prepare(session, cql::insert_deletion(ks), None).await?,
        })
    }

    /// The CQL of `w`'s statement (for error reports).
    pub fn statement(&self, w: &Write<'_>) -> &str {
        match w {
            Write::Chat(..) => self.chat.get_statement(),
            Write::User(..) => self.user_index.get_statement(),
            Write::Bucket(_) => self.bucket.get_statement(),
            Write::UserDay(_) => self.user_day.get_statement(),
            Write::Moderation(_) => self.moderation.get_statement(),
            Write::Deletion(_) => self.deletion.get_statement(),
        }
    }

    /// Executes `w` once: a group as one unlogged single-partition batch (one row: a plain
    /// statement). No retry here; the caller decides (see `tci_common::cassandra::classify`).
    pub async fn execute(&self, session: &Session, w: &Write<'_>) -> Result<(), ExecutionError> {
        match *w {
            Write::Chat(g, rows) => {
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
                            r.message.as_deref(),
                            r.received_at,
                            r.raw_line.as_deref(),
                            r.room_state.as_deref(),
                        )
                    })
                    .collect();
                grouped(session, &self.chat, values).await
            }
            Write::User(g, rows) => {
                let values: Vec<_> = g
                    .iter()
                    .filter_map(|&i| {
                        let r = &rows[i];
                        let u = r.user_id?;
                        Some((
                            r.broadcaster_id,
                            day_of(r.sent_ts),
                            user_shard(u),
                            u,
                            r.sent_ts,
                            r.message_id.as_str(),
                        ))
                    })
                    .collect();
                grouped(session, &self.user_index, values).await
            }
            Write::Bucket(b) => session.execute_unpaged(&self.bucket, b).await.map(drop),
            Write::UserDay(d) => session.execute_unpaged(&self.user_day, d).await.map(drop),
            Write::Moderation(m) => session
                .execute_unpaged(
                    &self.moderation,
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
            Write::Deletion(d) => session
                .execute_unpaged(
                    &self.deletion,
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
}

/// One row: a plain statement; more: an unlogged batch (all rows share one partition).
async fn grouped<V: scylla::serialize::row::SerializeRow>(
    session: &Session,
    stmt: &PreparedStatement,
    values: Vec<V>,
) -> Result<(), ExecutionError> {
    match values.len() {
        0 => Ok(()),
        1 => {
            let Some(v) = values.into_iter().next() else {
                return Ok(());
            };
            session.execute_unpaged(stmt, v).await.map(drop)
        }
        n => {
            let mut batch = Batch::new(BatchType::Unlogged);
            for _ in 0..n {
                batch.append_statement(stmt.clone());
            }
            batch.set_is_idempotent(true);
            session.batch(&batch, values).await.map(drop)
        }
    }
}

/// The read statements of one keyspace, each with the request timeout given. Paging is the
/// caller's (chat-api pages one bucket at a time with `execute_single_page`).
#[derive(Debug)]
pub struct ReadStatements {
    /// See [`cql::select_chat_page`].
    pub chat_page: PreparedStatement,
    /// See [`cql::select_user_index_page`].
    pub user_index_page: PreparedStatement,
    /// See [`cql::select_chat_by_keys`].
    pub chat_by_keys: PreparedStatement,
    /// See [`cql::select_chat_buckets`].
    pub chat_buckets: PreparedStatement,
    /// See [`cql::select_user_days`].
    pub user_days: PreparedStatement,
    /// See [`cql::select_deleted`].
    pub deleted: PreparedStatement,
}

impl ReadStatements {
    pub async fn prepare(session: &Session, ks: &str, timeout: Duration) -> anyhow::Result<Self> {
        let t = Some(timeout);
        Ok(Self {
            chat_page: prepare(session, cql::select_chat_page(ks), t).await?,
            user_index_page: prepare(session, cql::select_user_index_page(ks), t).await?,
            chat_by_keys: prepare(session, cql::select_chat_by_keys(ks), t).await?,
            chat_buckets: prepare(session, cql::select_chat_buckets(ks), t).await?,
            user_days: prepare(session, cql::select_user_days(ks), t).await?,
            deleted: prepare(session, cql::select_deleted(ks), t).await?,
        })
    }
}

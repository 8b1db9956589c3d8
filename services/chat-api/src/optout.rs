//! Opt-outs in chat-api: the set of opted-out chatters and channels, read from the `optouts`
//! table (written by chat-ingestor) every `query.optout_refresh`, and the filter over pages.
//!
//! Purges delete the stored rows; this is the guard for the seconds between an opt-out and the
//! end of its purge (and against anything a purge could not reach): a channel that opted out
//! answers 403 on every route, a chatter who opted out answers 403 on their user log, and their
//! messages are left out of every channel page, in every format. Until the set was read once,
//! the chat routes answer 503 rather than risk serving someone who left.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use chat_store::optout::OptOutStatements;
use scylla::client::session::Session;
use tci_common::{cassandra, retry::Backoff, CassandraConfig};
use tci_schemas::{OptOutScope, OptOutSet, OptOutState};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::store::ChatRow;

/// The latest set read (none before the first read).
#[derive(Debug, Clone, Default)]
pub struct OptOutCache(Arc<RwLock<Option<Arc<OptOutSet>>>>);

impl OptOutCache {
    /// The set, or `None` while it was never read.
    pub fn get(&self) -> Option<Arc<OptOutSet>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the set.
    pub fn set(&self, s: OptOutSet) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(s));
    }
}

/// A session of its own and the prepared opt-out statements.
pub struct Reader {
    session: Session,
    st: OptOutStatements,
}

impl Reader {
    /// Connects once and prepares.
    pub async fn connect(cfg: &CassandraConfig) -> anyhow::Result<Self> {
        let session = cassandra::connect_once(cfg).await?;
        let st = OptOutStatements::prepare(&session, &cfg.keyspace).await?;
        Ok(Self { session, st })
    }

    /// Reads the whole `optouts` table.
    pub async fn load(&self) -> anyhow::Result<OptOutSet> {
        let mut set = OptOutSet::new();
        for r in self.st.list(&self.session).await? {
            set.set_state(
                r.scope,
                r.id,
                OptOutState {
                    opted_out: r.opted_out,
                    at: r.at,
                },
            );
        }
        Ok(set)
    }
}

/// Reads the `optouts` table into `cache` every `every` (connecting first unless `reader` is
/// given), until `token` is cancelled. Failures keep the last set and are retried.
pub async fn refresh(
    cfg: CassandraConfig,
    cache: OptOutCache,
    every: Duration,
    reader: Option<Reader>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let mut backoff = Backoff::default_for_dependencies();
    let reader = match reader {
        Some(r) => r,
        None => loop {
            match tokio::select! { r = Reader::connect(&cfg) => r, _ = token.cancelled() => return Ok(()) }
            {
                Ok(r) => break r,
                Err(e) => {
                    let d = backoff.next_delay();
                    warn!(error = format!("{e:#}"), retry_in = ?d, "cannot read the opt-outs yet; retrying (chat routes answer 503 meanwhile)");
                    tokio::select! { _ = tokio::time::sleep(d) => {}, _ = token.cancelled() => return Ok(()) }
                }
            }
        },
    };
    let mut first = cache.get().is_none();
    loop {
        match tokio::select! { r = reader.load() => r, _ = token.cancelled() => return Ok(()) } {
            Ok(set) => {
                if first {
                    info!("opt-outs read");
                    first = false;
                }
                cache.set(set);
            }
            Err(e) => warn!(
                error = format!("{e:#}"),
                "reading the opt-outs failed; keeping the last set"
            ),
        }
        tokio::select! { _ = tokio::time::sleep(every) => {}, _ = token.cancelled() => return Ok(()) }
    }
}

/// Which opt-out refuses a route, if any: the channel's, else (user log) the chatter's.
pub fn refused(
    set: &OptOutSet,
    broadcaster_id: i64,
    user_id: Option<i64>,
) -> Option<(OptOutScope, i64)> {
    if set.is_opted_out(OptOutScope::Channel, broadcaster_id) {
        return Some((OptOutScope::Channel, broadcaster_id));
    }
    user_id
        .filter(|u| set.is_opted_out(OptOutScope::User, *u))
        .map(|u| (OptOutScope::User, u))
}

/// Leaves out the rows of opted-out chatters (and those sent before an opt-in), by the chatter id
/// each row carries from storage (nothing is parsed).
pub fn filter_rows(set: &OptOutSet, broadcaster_id: i64, rows: &mut Vec<ChatRow>) -> usize {
    let before = rows.len();
    let channel_state = set.state(OptOutScope::Channel, broadcaster_id).is_some();
    if !channel_state && !set.has_users() {
        return 0;
    }
    rows.retain(|r| !set.excludes(broadcaster_id, r.user_id, r.sent_ts));
    before - rows.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tci_schemas::{OptOut, OptOutSource};

    fn row(user: i64, ts: i64) -> ChatRow {
        ChatRow {
            sent_ts: ts,
            message_id: format!("m{ts}"),
            message: "{}".into(),
            user_id: Some(user),
        }
    }

    fn set_with(scope: OptOutScope, id: i64) -> OptOutSet {
        let mut s = OptOutSet::new();
        s.apply(&OptOut {
            scope,
            id,
            login: None,
            opted_out: true,
            at: 0,
            source: OptOutSource::Operator,
        });
        s
    }

    #[test]
    fn rows_of_opted_out_chatters_are_left_out() {
        let s = set_with(OptOutScope::User, 42);
        let mut rows = vec![row(42, 1), row(43, 2), row(42, 3)];
        assert_eq!(filter_rows(&s, 1, &mut rows), 2);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].message_id, "m2");
        // A row without a numeric chatter id cannot belong to an opted-out chatter.
        let mut unknown = vec![ChatRow {
            user_id: None,
            ..row(42, 4)
        }];
        assert_eq!(filter_rows(&s, 1, &mut unknown), 0);
        // A channel opt-out leaves out every row of the channel.
        let c = set_with(OptOutScope::Channel, 1);
        let mut all = vec![
            row(42, 1),
            ChatRow {
                user_id: None,
                ..row(5, 2)
            },
        ];
        assert_eq!(filter_rows(&c, 1, &mut all), 2);
    }

    #[test]
    fn routes_of_opted_out_channels_and_user_logs_are_refused() {
        let s = set_with(OptOutScope::Channel, 7);
        assert_eq!(refused(&s, 7, None), Some((OptOutScope::Channel, 7)));
        assert_eq!(refused(&s, 7, Some(1)), Some((OptOutScope::Channel, 7)));
        assert_eq!(refused(&s, 8, Some(1)), None);
        let s = set_with(OptOutScope::User, 1);
        assert_eq!(refused(&s, 8, Some(1)), Some((OptOutScope::User, 1)));
        assert_eq!(refused(&s, 8, None), None);
    }
}

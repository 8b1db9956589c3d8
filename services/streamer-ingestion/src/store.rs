//! The `streamers` table writes. Two prepared statements per channel, both idempotent and
//! order-independent (see [`crate::timestamps`]): the upsert of the descriptive columns and
//! `last_seen_live` at the observation's timestamp, and the `first_seen` write at the
//! "earlier is higher" timestamp. No lightweight transactions, no read-before-write.

use std::collections::HashMap;
use std::time::Instant;

use futures::{stream, StreamExt, TryStreamExt};
use scylla::{
    client::session::Session, statement::prepared::PreparedStatement, value::CqlTimestamp,
};
use tci_common::cassandra::{classify, Failure};
use tci_schemas::LiveStream;

use crate::metrics::METRICS;
use crate::timestamps::{first_seen_write_ts, last_seen_write_ts};

/// What one channel's rows become after collapsing a batch: the newest observation (for the
/// upsert) and the earliest one (for `first_seen`).
#[derive(Debug, Clone, PartialEq)]
pub struct Collapsed {
    pub latest: LiveStream,
    pub earliest_observed_at: i64,
}

/// Collapses a batch by broadcaster id (several polls of a replay in one batch become one write
/// per channel, with the same final result as writing each).
pub fn collapse(records: impl IntoIterator<Item = LiveStream>) -> Vec<Collapsed> {
    let mut by_id: HashMap<i64, Collapsed> = HashMap::new();
    for r in records {
        match by_id.get_mut(&r.broadcaster_id) {
            None => {
                let earliest_observed_at = r.observed_at;
                by_id.insert(
                    r.broadcaster_id,
                    Collapsed {
                        latest: r,
                        earliest_observed_at,
                    },
                );
            }
            Some(c) => {
                c.earliest_observed_at = c.earliest_observed_at.min(r.observed_at);
                if r.observed_at > c.latest.observed_at {
                    c.latest = r;
                }
            }
        }
    }
    let mut v: Vec<_> = by_id.into_values().collect();
    v.sort_by_key(|c| c.latest.broadcaster_id);
    v
}

/// A write that failed; nothing of it is acknowledged to Kafka. [`StoreError::failure`] says
/// whether the caller retries it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("preparing {what}: {source}")]
    Prepare {
        what: &'static str,
        source: scylla::errors::PrepareError,
    },
    #[error("writing broadcaster {broadcaster_id}: {source}")]
    Write {
        broadcaster_id: i64,
        source: scylla::errors::ExecutionError,
    },
}

impl StoreError {
    /// Whether retrying can help ([`tci_common::cassandra::classify`]).
    pub fn failure(&self) -> Failure {
        match self {
            StoreError::Prepare { .. } => Failure::Transient,
            StoreError::Write { source, .. } => classify(source),
        }
    }
}

/// Prepared writes of the `streamers` table.
pub struct StreamerStore {
    session: Session,
    upsert: PreparedStatement,
    first_seen: PreparedStatement,
    concurrency: usize,
}

impl StreamerStore {
    pub async fn new(
        session: Session,
        keyspace: &str,
        concurrency: usize,
    ) -> Result<Self, StoreError> {
        let upsert = session
            .prepare(format!(
                "UPDATE {keyspace}.streamers USING TIMESTAMP ? SET login = ?, display_name = ?, last_seen_live = ?, \
                 title = ?, game_id = ?, game_name = ?, language = ?, viewer_count = ? WHERE broadcaster_id = ?"
            ))
            .await
            .map_err(|source| StoreError::Prepare { what: "the streamers upsert", source })?;
        // See crate::timestamps: the earliest observation has the highest timestamp.
        let first_seen = session
            .prepare(format!("UPDATE {keyspace}.streamers USING TIMESTAMP ? SET first_seen = ? WHERE broadcaster_id = ?"))
            .await
            .map_err(|source| StoreError::Prepare { what: "the first_seen write", source })?;
        Ok(Self {
            session,
            upsert,
            first_seen,
            concurrency: concurrency.max(1),
        })
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Writes every channel of `batch` (already validated: timestamps in range), at most
    /// `concurrency` channels at once. Returns the number of channels written.
    pub async fn write(&self, batch: &[Collapsed]) -> Result<usize, StoreError> {
        let started = Instant::now();
        // Futures collected first: a closure inside the stream type trips the compiler's
        // higher-ranked `Send` check when the whole loop is spawned.
        let writes: Vec<_> = batch.iter().map(|c| self.write_one(c)).collect();
        stream::iter(writes)
            .buffer_unordered(self.concurrency)
            .try_collect::<()>()
            .await?;
        METRICS
            .write_seconds
            .observe(started.elapsed().as_secs_f64());
        METRICS.rows_written.inc_by(batch.len() as u64);
        Ok(batch.len())
    }

    async fn write_one(&self, c: &Collapsed) -> Result<(), StoreError> {
        let r = &c.latest;
        let id = r.broadcaster_id;
        let err = |source| StoreError::Write {
            broadcaster_id: id,
            source,
        };
        // Validated by the consumer before batching; a bad value here is a bug, not input.
        let last_ts = last_seen_write_ts(r.observed_at).unwrap_or(1);
        let first_ts = first_seen_write_ts(c.earliest_observed_at).unwrap_or(1);
        let upsert = self.session.execute_unpaged(
            &self.upsert,
            (
                last_ts,
                &r.broadcaster_login,
                &r.broadcaster_name,
                CqlTimestamp(r.observed_at),
                &r.title,
                &r.game_id,
                &r.game_name,
                &r.language,
                r.viewer_count,
                id,
            ),
        );
        let first = self.session.execute_unpaged(
            &self.first_seen,
            (first_ts, CqlTimestamp(c.earliest_observed_at), id),
        );
        let (a, b) = futures::future::join(upsert, first).await;
        a.map_err(err)?;
        b.map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: i64, observed_at: i64, viewers: i64) -> LiveStream {
        LiveStream {
            broadcaster_id: id,
            observed_at,
            viewer_count: viewers,
            ..LiveStream::default()
        }
    }

    #[test]
    fn collapsing_keeps_the_newest_record_and_the_earliest_time() {
        let out = collapse([
            rec(1, 200, 20),
            rec(2, 100, 5),
            rec(1, 100, 10),
            rec(1, 300, 30),
            rec(1, 150, 15),
        ]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].latest, rec(1, 300, 30));
        assert_eq!(out[0].earliest_observed_at, 100);
        assert_eq!(
            out[1],
            Collapsed {
                latest: rec(2, 100, 5),
                earliest_observed_at: 100
            }
        );
    }
}

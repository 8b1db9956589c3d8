//! Cassandra writes: bounded concurrency and capped-backoff retries of the transient failures
//! (only shutdown stops them); a permanent failure stops with the table and statement named.
//!
//! What is written, and how rows bind to statements, is the chat tables' owner's:
//! [`chat_store::plan`] turns a flush into a [`Plan`] of single-partition batches, and
//! [`chat_store::WriteStatements`] executes each [`Write`] of it once.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicI64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use chat_store::{plan::UserDay, Write, WriteStatements};
use futures::{stream::FuturesUnordered, StreamExt};
use scylla::{client::session::Session, errors::ExecutionError};
use tci_common::{
    cassandra::{classify, Failure},
    retry::Backoff,
};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::metrics::METRICS;

pub use chat_store::{plan, ChatRow, DeletionRow, ModerationRow, Plan};

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

const CACHE_LIMIT: usize = 200_000;

/// Writes plans to Cassandra.
pub struct Writer {
    session: Arc<Session>,
    st: WriteStatements,
    limiter: Arc<Semaphore>,
    settings: WriterSettings,
    pub health: Arc<Health>,
    known_buckets: Mutex<HashSet<(i64, i64)>>,
    known_user_days: Mutex<HashSet<UserDay>>,
    last_warn_ms: AtomicI64,
}

impl Writer {
    /// Prepares every statement in `keyspace`.
    pub async fn prepare(
        session: Arc<Session>,
        keyspace: &str,
        settings: WriterSettings,
    ) -> anyhow::Result<Self> {
        let st = WriteStatements::prepare(&session, keyspace).await?;
        Ok(Self {
            session,
            st,
            limiter: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
            settings,
            health: Arc::new(Health::default()),
            known_buckets: Mutex::new(HashSet::new()),
            known_user_days: Mutex::new(HashSet::new()),
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
        let user_days: Vec<UserDay> = {
            let known = self
                .known_user_days
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            plan.user_days
                .iter()
                .copied()
                .filter(|d| !known.contains(d))
                .collect()
        };
        // Bucket-index rows this process already wrote are left out. The by-user index points
        // at chat_messages rows, so it is written once they are: a reader never finds an index
        // row whose message is not there yet.
        let keep = |w: &Write<'_>| match w {
            Write::Bucket(b) => buckets.contains(b),
            Write::UserDay(d) => user_days.contains(d),
            _ => true,
        };
        let by_user = |w: &Write<'_>| matches!(w, Write::User(..) | Write::UserDay(_));
        for phase in [false, true] {
            let ops: FuturesUnordered<_> = plan
                .writes()
                .filter(|w| keep(w) && by_user(w) == phase)
                .map(|w| self.retrying(stop, w))
                .collect();
            settle(ops).await?;
        }
        remember(&self.known_buckets, buckets);
        remember(&self.known_user_days, user_days);
        Ok(())
    }

    async fn retrying(&self, stop: &CancellationToken, op: Write<'_>) -> Result<(), WriteError> {
        self.retry(stop, op.table(), self.st.statement(&op), || {
            self.st.execute(&self.session, &op)
        })
        .await
    }

    /// Runs `attempt` (one statement or batch on `table`) under the writer's concurrency limit
    /// until it succeeds: transient errors are retried with capped backoff while the writer's
    /// health says degraded (consumption pauses, /readyz reports Cassandra); a permanent one is
    /// logged and counted with `table` and `statement` and returned; `stop` abandons. Every
    /// Cassandra write of the ingestor goes through here (the opt-out index's too).
    pub async fn retry<F, Fut>(
        &self,
        stop: &CancellationToken,
        table: &'static str,
        statement: &str,
        mut attempt: F,
    ) -> Result<(), WriteError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), ExecutionError>>,
    {
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
                    r = attempt() => r,
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
                    METRICS.write_failures.with_label_values(&[table]).inc();
                    error!(table, statement, error = %e, "Cassandra refused a write and retrying cannot help (schema or query wrong for this cluster); ingestion stops");
                    break Err(WriteError::Permanent {
                        table,
                        statement: statement.to_string(),
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
                        warn!(error = %e, table, attempt = backoff.attempts(), retry_in = ?delay, "Cassandra write failed; retrying (logged at most every 5 s)");
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
}

/// Waits for every write; the first error, a permanent one before any other.
async fn settle(
    mut ops: FuturesUnordered<impl std::future::Future<Output = Result<(), WriteError>>>,
) -> Result<(), WriteError> {
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
    result
}

fn remember<K: std::hash::Hash + Eq>(set: &Mutex<HashSet<K>>, keys: Vec<K>) {
    let mut s = set.lock().unwrap_or_else(|e| e.into_inner());
    if s.len() + keys.len() > CACHE_LIMIT {
        s.clear();
    }
    s.extend(keys);
}

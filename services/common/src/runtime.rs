//! One shutdown path: a [`Shutdown`] token tree fed by SIGINT/SIGTERM, and [`Tasks`], a set of
//! named tasks where the unexpected end of any one cancels the rest and makes the process fail.

use std::{future::Future, time::Duration};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// The root cancellation token of a process.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    /// A token not yet tied to signals (tests).
    pub fn new() -> Self {
        Self::default()
    }

    /// A token cancelled on SIGINT or SIGTERM.
    pub fn with_signals() -> Self {
        let s = Self::new();
        let token = s.token.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            info!("shutdown signal received; stopping intake, flushing and committing");
            token.cancel();
        });
        s
    }

    /// The token to pass down (child tokens via `child_token()`).
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Starts shutdown.
    pub fn cancel(&self) {
        self.token.cancel();
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot install SIGTERM handler; only Ctrl-C stops the process");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Named, supervised tasks. Every task gets the same token; a task that returns (Ok or Err)
/// before shutdown was asked for is an unexpected exit: the token is cancelled and
/// [`Tasks::join`] returns an error naming it.
pub struct Tasks {
    set: JoinSet<(&'static str, anyhow::Result<()>)>,
    token: CancellationToken,
}

impl Tasks {
    /// An empty set bound to `token`.
    pub fn new(token: CancellationToken) -> Self {
        Self {
            set: JoinSet::new(),
            token,
        }
    }

    /// Spawns `fut` under `name`.
    pub fn spawn<F>(&mut self, name: &'static str, fut: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        info!(task = name, "task started");
        self.set.spawn(async move { (name, fut.await) });
    }

    /// Waits for every task. Returns the first failure (an error, a panic, or an exit before
    /// shutdown). After shutdown starts, all tasks together get `grace` to finish (one deadline,
    /// not one per task) before the rest are aborted.
    pub async fn join(mut self, grace: Duration) -> anyhow::Result<()> {
        let mut first_err: Option<anyhow::Error> = None;
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let next = if self.token.is_cancelled() {
                let until = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + grace);
                match tokio::time::timeout_at(until, self.set.join_next()).await {
                    Ok(n) => n,
                    Err(_) => {
                        error!(
                            remaining = self.set.len(),
                            "tasks did not stop within the grace period; aborting them"
                        );
                        self.set.abort_all();
                        first_err.get_or_insert_with(|| {
                            anyhow::anyhow!("tasks did not stop within {grace:?}")
                        });
                        while self.set.join_next().await.is_some() {}
                        break;
                    }
                }
            } else {
                tokio::select! {
                    n = self.set.join_next() => n,
                    _ = self.token.cancelled() => continue,
                }
            };
            let Some(res) = next else { break };
            let cancelled = self.token.is_cancelled();
            match res {
                Ok((name, Ok(()))) if cancelled => info!(task = name, "task stopped"),
                Ok((name, Ok(()))) => {
                    error!(task = name, "task exited unexpectedly; shutting down");
                    first_err
                        .get_or_insert_with(|| anyhow::anyhow!("task {name} exited unexpectedly"));
                    self.token.cancel();
                }
                Ok((name, Err(e))) => {
                    error!(
                        task = name,
                        error = format!("{e:#}"),
                        "task failed; shutting down"
                    );
                    first_err.get_or_insert_with(|| e.context(format!("task {name} failed")));
                    self.token.cancel();
                }
                Err(join_err) => {
                    error!(error = %join_err, "task panicked; shutting down");
                    first_err.get_or_insert_with(|| anyhow::anyhow!("a task panicked: {join_err}"));
                    self.token.cancel();
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unexpected_exit_cancels_the_others_and_fails() {
        let token = CancellationToken::new();
        let mut tasks = Tasks::new(token.clone());
        let t = token.clone();
        tasks.spawn("waits", async move {
            t.cancelled().await;
            Ok(())
        });
        tasks.spawn("quits", async { Ok(()) });
        let err = tasks
            .join(Duration::from_secs(5))
            .await
            .expect_err("must fail");
        assert!(err.to_string().contains("quits"), "{err}");
        assert!(token.is_cancelled());
    }

    #[tokio::test]
    async fn a_requested_shutdown_is_clean() {
        let token = CancellationToken::new();
        let mut tasks = Tasks::new(token.clone());
        let t = token.clone();
        tasks.spawn("waits", async move {
            t.cancelled().await;
            Ok(())
        });
        token.cancel();
        tasks.join(Duration::from_secs(5)).await.expect("clean");
    }

    #[tokio::test(start_paused = true)]
    async fn the_grace_is_one_deadline_for_all_tasks() {
        let token = CancellationToken::new();
        let mut tasks = Tasks::new(token.clone());
        for (name, ms) in [("a", 60u64), ("b", 120), ("c", 180)] {
            let t = token.clone();
            tasks.spawn(name, async move {
                t.cancelled().await;
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(())
            });
        }
        token.cancel();
        let started = tokio::time::Instant::now();
        // Each task alone fits in 100 ms, but not all three one after the other.
        let err = tasks
            .join(Duration::from_millis(100))
            .await
            .expect_err("must time out");
        assert!(err.to_string().contains("within"), "{err}");
        assert!(
            started.elapsed() < Duration::from_millis(150),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_task_that_ignores_shutdown_is_aborted_after_the_grace() {
        let token = CancellationToken::new();
        let mut tasks = Tasks::new(token.clone());
        tasks.spawn("stubborn", async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        });
        token.cancel();
        let err = tasks
            .join(Duration::from_millis(50))
            .await
            .expect_err("must fail");
        assert!(
            err.to_string().contains("grace") || err.to_string().contains("within"),
            "{err}"
        );
    }
}

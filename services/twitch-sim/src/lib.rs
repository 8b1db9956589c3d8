//! # twitch-sim
//!
//! A local stand-in for Twitch, for machines without internet access and for tests:
//!
//! * an **IRC-over-WebSocket** server speaking enough of Twitch chat (CAP/PASS/NICK/JOIN/PART,
//!   PING/PONG, tags, ROOMSTATE, PRIVMSG, USERNOTICE, CLEARCHAT, CLEARMSG, RECONNECT) with
//!   generated or replayed traffic;
//! * a **Helix** HTTP server (`POST /oauth2/token`, `GET /helix/streams`) with Twitch's token
//!   bucket rate limiting;
//! * **test hooks** under `/sim/*` on the Helix server (and as methods on [`SimHandle`]).
//!
//! Both sides read one deterministic, seeded [`world::World`] of live channels.
//!
//! ```no_run
//! # async fn demo() -> Result<(), twitch_sim::SimError> {
//! use twitch_sim::{Sim, SimConfig};
//! let sim = Sim::start(SimConfig { channels: 100, ..SimConfig::default() }).await?;
//! println!("irc at {}, helix at {}", sim.irc_url(), sim.helix_url());
//! sim.pause();
//! let sent = sim.sent(true);
//! # let _ = sent;
//! sim.shutdown().await
//! # }
//! ```
#![recursion_limit = "256"] // warp's nested filter types need it in release builds

pub mod config;
mod helix;
mod irc;
pub mod sent;
pub mod world;

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

pub use config::SimConfig;
pub use sent::{ChannelSentReport, LedgerEntry, SentReport};
pub use world::Channel;

/// Errors starting or running the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Binding a listening socket failed.
    #[error("binding {what} on {addr} failed: {source}")]
    Bind {
        /// Which server.
        what: &'static str,
        /// Requested address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Reading the replay file failed.
    #[error("reading replay file {path} failed: {source}")]
    ReadReplay {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A core task stopped before shutdown was requested.
    #[error("task {name} failed: {message}")]
    TaskFailed {
        /// Task name.
        name: &'static str,
        /// What happened.
        message: String,
    },
}

/// State shared by every task.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) cfg: SimConfig,
    pub(crate) world: world::World,
    pub(crate) hub: irc::hub::Hub,
    pub(crate) sent: sent::SentLog,
    pub(crate) helix: helix::HelixState,
    pub(crate) joins: irc::joins::JoinLimits,
    paused: AtomicBool,
    /// Aggregate lines per second, as `f64` bits (changed at run time by `/sim/rate`).
    rate: AtomicU64,
    /// Lines generated so far (every command, duplicate deliveries included).
    generated_lines: AtomicU64,
    /// PRIVMSGs generated so far (first deliveries only).
    generated_privmsgs: AtomicU64,
}

impl Shared {
    pub(crate) fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    pub(crate) fn set_paused(&self, p: bool) {
        self.paused.store(p, Ordering::Release);
        info!(paused = p, "traffic pause state changed");
    }

    /// The aggregate rate the generator aims at now (lines per second).
    pub(crate) fn rate(&self) -> f64 {
        f64::from_bits(self.rate.load(Ordering::Acquire))
    }

    /// Changes the aggregate rate; refuses a negative or non-finite value.
    pub(crate) fn set_rate(&self, per_second: f64) -> Result<(), SimError> {
        if !per_second.is_finite() || per_second < 0.0 {
            return Err(SimError::Config(format!(
                "rate must be a finite number >= 0, got {per_second}"
            )));
        }
        let old = f64::from_bits(self.rate.swap(per_second.to_bits(), Ordering::AcqRel));
        info!(from = old, to = per_second, "traffic rate changed");
        Ok(())
    }

    pub(crate) fn count_generated(&self, lines: u64, privmsgs: u64) {
        self.generated_lines.fetch_add(lines, Ordering::Relaxed);
        self.generated_privmsgs
            .fetch_add(privmsgs, Ordering::Relaxed);
    }

    /// (lines, PRIVMSGs) generated so far.
    pub(crate) fn generated(&self) -> (u64, u64) {
        (
            self.generated_lines.load(Ordering::Relaxed),
            self.generated_privmsgs.load(Ordering::Relaxed),
        )
    }
}

/// Cheap, cloneable control surface of a running simulator (the library form of the
/// `/sim/*` admin endpoints).
#[derive(Debug, Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
    token: CancellationToken,
}

impl SimHandle {
    /// Stops generating traffic (already queued lines are still delivered).
    pub fn pause(&self) {
        self.shared.set_paused(true);
    }

    /// Resumes traffic.
    pub fn resume(&self) {
        self.shared.set_paused(false);
    }

    /// Whether traffic is paused.
    pub fn is_paused(&self) -> bool {
        self.shared.is_paused()
    }

    /// Changes the aggregate chat rate (lines per second over all chatting channels) at run
    /// time; the library form of `POST /sim/rate?per_second=N`.
    pub fn set_rate(&self, per_second: f64) -> Result<(), SimError> {
        self.shared.set_rate(per_second)
    }

    /// The aggregate chat rate in force (lines per second).
    pub fn rate(&self) -> f64 {
        self.shared.rate()
    }

    /// Lines generated so far (every command, duplicate deliveries included) and PRIVMSGs
    /// generated so far (first deliveries only).
    pub fn generated(&self) -> (u64, u64) {
        self.shared.generated()
    }

    /// JOIN attempts ignored so far because a login exceeded `joins_per_window`.
    pub fn joins_refused(&self) -> u64 {
        self.shared.joins.refused()
    }

    /// Channels at least one IRC client has joined.
    pub fn joined_channels(&self) -> usize {
        self.shared.hub.joined().len()
    }

    /// Channel memberships summed over IRC clients: two clients each in six channels are 12.
    pub fn memberships(&self) -> usize {
        self.shared.hub.memberships()
    }

    /// Sends `RECONNECT` to every IRC client and closes them after `reconnect_grace`.
    /// Returns the number of connections told.
    pub fn reconnect_all(&self) -> usize {
        self.shared.hub.control_all(irc::hub::Control::Reconnect)
    }

    /// Abruptly closes every IRC socket (TCP reset, no close frame).
    pub fn drop_all(&self) -> usize {
        self.shared.hub.control_all(irc::hub::Control::Drop)
    }

    /// Makes every IRC connection go silent with its socket open (a half-open connection):
    /// what is sent to it is lost, and only the client's PING timeout notices. Returns the
    /// number of connections stalled.
    pub fn stall_all(&self) -> usize {
        self.shared.hub.control_all(irc::hub::Control::Stall)
    }

    /// PRIVMSG ids written so far, per broadcaster id (ids listed when `with_ids`).
    pub fn sent(&self, with_ids: bool) -> SentReport {
        self.shared.sent.report(with_ids)
    }

    /// Every PRIVMSG generated so far, delivered to a socket or not (with
    /// `chat_while_unjoined`, also those of channels nobody had joined), in order.
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        self.shared.sent.ledger()
    }

    /// Forgets the sent record.
    pub fn reset_sent(&self) {
        self.shared.sent.reset()
    }

    /// The current live set, most viewers first.
    pub fn live(&self) -> Vec<Channel> {
        self.shared
            .world
            .snapshot()
            .streams
            .iter()
            .map(|c| (**c).clone())
            .collect()
    }

    /// Runs one churn step now with `fraction`; returns (went offline, came live) logins.
    pub fn churn_now(&self, fraction: f64) -> (Vec<String>, Vec<String>) {
        self.shared.world.churn(fraction.clamp(0.0, 1.0))
    }

    /// Makes the next `n` Helix stream requests answer 503.
    pub fn fail_helix(&self, n: u64) {
        self.shared.helix.fail_next(n)
    }

    /// Lets the next `ok` Helix stream requests that pass the rate limit through, then makes
    /// `n` answer 503.
    pub fn fail_helix_after(&self, ok: u64, n: u64) {
        self.shared.helix.fail_after(ok, n)
    }

    /// Makes the next `n` Helix stream requests find the rate-limit bucket empty (a neighbour
    /// with the same client id took every point): each is answered 429 with a real
    /// `Ratelimit-Reset`.
    pub fn empty_helix_bucket(&self, n: u64) {
        self.shared.helix.empty_next(n)
    }

    /// Invalidates every issued Helix token.
    pub fn expire_tokens(&self) -> usize {
        self.shared.helix.expire_all()
    }

    /// Connected IRC clients.
    pub fn connections(&self) -> usize {
        self.shared.hub.connections()
    }

    /// Requests shutdown of the whole simulator.
    pub fn cancel(&self) {
        self.token.cancel()
    }
}

type TaskResult = (&'static str, anyhow::Result<()>);

/// A running simulator. Dropping it cancels every task.
#[derive(Debug)]
pub struct Sim {
    handle: SimHandle,
    irc_addr: SocketAddr,
    helix_addr: SocketAddr,
    tasks: JoinSet<TaskResult>,
    conns: TaskTracker,
}

impl Deref for Sim {
    type Target = SimHandle;
    fn deref(&self) -> &SimHandle {
        &self.handle
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.handle.token.cancel();
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<(TcpListener, SocketAddr), SimError> {
    let err = |source| SimError::Bind { what, addr, source };
    let l = TcpListener::bind(addr).await.map_err(err)?;
    let local = l.local_addr().map_err(err)?;
    Ok((l, local))
}

impl Sim {
    /// Binds both servers and starts every task.
    pub async fn start(cfg: SimConfig) -> Result<Self, SimError> {
        Self::start_with_shutdown(cfg, CancellationToken::new()).await
    }

    /// Like [`Sim::start`], stopping when `shutdown` (or a child of it) is cancelled.
    pub async fn start_with_shutdown(
        cfg: SimConfig,
        shutdown: CancellationToken,
    ) -> Result<Self, SimError> {
        cfg.validate()?;
        let replay = match &cfg.replay {
            Some(path) => {
                let text = tokio::fs::read_to_string(path).await.map_err(|source| {
                    SimError::ReadReplay {
                        path: path.display().to_string(),
                        source,
                    }
                })?;
                Some(irc::replay::parse_file(&text))
            }
            None => None,
        };
        let (irc_listener, irc_addr) = bind("irc", cfg.irc_addr).await?;
        let (helix_listener, helix_addr) = bind("helix", cfg.helix_addr).await?;
        let token = shutdown.child_token();
        let shared = Arc::new(Shared {
            world: world::World::new(cfg.seed, cfg.channels),
            hub: irc::hub::Hub::default(),
            sent: sent::SentLog::new(cfg.record_ids),
            helix: helix::HelixState::new(
                cfg.ratelimit_bucket,
                cfg.ratelimit_refill,
                cfg.token_lifetime,
            ),
            joins: irc::joins::JoinLimits::new(cfg.joins_per_window, cfg.join_window),
            paused: AtomicBool::new(false),
            rate: AtomicU64::new(cfg.rate.to_bits()),
            generated_lines: AtomicU64::new(0),
            generated_privmsgs: AtomicU64::new(0),
            cfg,
        });
        let conns = TaskTracker::new();
        let mut tasks: JoinSet<TaskResult> = JoinSet::new();

        let (s, t, c) = (shared.clone(), token.clone(), conns.clone());
        tasks.spawn(async move { ("irc-accept", irc::accept_loop(s, irc_listener, c, t).await) });

        let t = token.clone();
        let routes = helix::routes(shared.clone());
        tasks.spawn(async move {
            warp::serve(routes)
                .incoming(helix_listener)
                .graceful(async move { t.cancelled().await })
                .run()
                .await;
            ("helix-http", Ok(()))
        });

        let (s, t) = (shared.clone(), token.clone());
        match replay {
            Some(lines) => {
                tasks.spawn(async move { ("replay", irc::replay::run(s, lines, t).await) })
            }
            None => tasks.spawn(async move { ("traffic", irc::traffic::run(s, t).await) }),
        };

        if shared.cfg.churn > 0.0 {
            let (s, t) = (shared.clone(), token.clone());
            tasks.spawn(async move { ("churn", run_churn(s, t).await) });
        }

        info!(
            irc = %irc_addr,
            helix = %helix_addr,
            channels = shared.cfg.channels,
            rate = shared.cfg.rate,
            joins_per_window = shared.cfg.joins_per_window,
            join_window = ?shared.cfg.join_window,
            seed = shared.cfg.seed,
            "twitch-sim started"
        );
        Ok(Self {
            handle: SimHandle { shared, token },
            irc_addr,
            helix_addr,
            tasks,
            conns,
        })
    }

    /// The bound IRC WebSocket address.
    pub fn irc_addr(&self) -> SocketAddr {
        self.irc_addr
    }

    /// The bound Helix/admin HTTP address.
    pub fn helix_addr(&self) -> SocketAddr {
        self.helix_addr
    }

    /// `ws://127.0.0.1:PORT`
    pub fn irc_url(&self) -> String {
        format!("ws://{}", self.irc_addr)
    }

    /// `http://127.0.0.1:PORT`
    pub fn helix_url(&self) -> String {
        format!("http://{}", self.helix_addr)
    }

    /// A cloneable control handle.
    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }

    /// Runs until shutdown is requested or a core task stops unexpectedly (which cancels
    /// the rest and is returned as an error). Waits up to 5s for tasks to finish.
    pub async fn run_until_stopped(mut self) -> Result<(), SimError> {
        let token = self.handle.token.clone();
        let mut tasks = std::mem::take(&mut self.tasks);
        let mut failure = None;
        // `biased`: when shutdown was already requested (`shutdown()` cancels, then calls this),
        // a task that has finished *because* of it must not be mistaken for one that stopped on
        // its own. Unbiased, `select!` picked either ready branch at random, and a Helix server
        // that had already shut down gracefully was reported as "exited unexpectedly": the
        // flaky `task helix-http failed` of the listener tests.
        let next = tokio::select! {
            biased;
            _ = token.cancelled() => None,
            r = tasks.join_next() => r,
        };
        if let Some(res) = next {
            let (name, message) = match res {
                Ok((name, Ok(()))) if token.is_cancelled() => (name, String::new()),
                Ok((name, Ok(()))) => (
                    name,
                    "exited unexpectedly (returned without error before shutdown was requested)"
                        .to_string(),
                ),
                Ok((name, Err(e))) => (name, format!("{e:#}")),
                Err(e) => ("unknown", format!("panicked or was aborted: {e}")),
            };
            if message.is_empty() {
                info!(task = name, "task stopped: shutdown requested");
            } else {
                error!(task = name, %message, "core task stopped; shutting down");
                failure = Some(SimError::TaskFailed { name, message });
            }
        }
        token.cancel();
        self.conns.close();
        let conns = self.conns.clone();
        let drained = tokio::time::timeout(Duration::from_secs(5), async move {
            while let Some(res) = tasks.join_next().await {
                match res {
                    Ok((name, Ok(()))) => info!(task = name, "task stopped: shutdown requested"),
                    Ok((name, Err(e))) => {
                        warn!(
                            task = name,
                            error = format!("{e:#}"),
                            "task failed while stopping"
                        )
                    }
                    Err(e) => warn!(error = %e, "a task panicked or was aborted while stopping"),
                }
            }
            conns.wait().await;
        })
        .await;
        if drained.is_err() {
            error!("tasks did not stop within 5s");
        }
        info!("twitch-sim stopped");
        failure.map_or(Ok(()), Err)
    }

    /// Cancels everything and waits for the tasks to finish.
    pub async fn shutdown(self) -> Result<(), SimError> {
        self.handle.token.cancel();
        self.run_until_stopped().await
    }
}

async fn run_churn(shared: Arc<Shared>, token: CancellationToken) -> anyhow::Result<()> {
    let every = shared.cfg.churn_interval;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = token.cancelled() => return Ok(()),
            _ = ticker.tick() => {
                let (off, on) = shared.world.churn(shared.cfg.churn);
                info!(offline = off.len(), online = on.len(), "churn step");
            }
        }
    }
}

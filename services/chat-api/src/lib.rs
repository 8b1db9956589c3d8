//! chat-api: the `/v1.0` query API over the chat archive.
//!
//! - `GET /v1.0/{broadcaster_id}/chat?start&end[&limit][&after][&format][&hide_deleted]`: a
//!   channel's chat in `[start, end]`, ascending by (timestamp, message id), paged by opaque
//!   cursors built from Cassandra paging states ([`cursor`], [`store`]).
//! - `GET /v1.0/{broadcaster_id}/users/{user_id}/chat`: the same for one chatter (user logs).
//! - `GET /v1.0/streamers?live&limit&after`: every channel seen live.
//! - `GET /openapi.json`: the OpenAPI 3 document; `GET /healthz`.
//!
//! Opted-out chatters and channels ([`optout`]) are never served: 403 on their routes, left out
//! of channel pages.
//!
//! The admin server (`/healthz`, `/readyz`, `/metrics`) runs on its own port. The API starts
//! serving at once; until Cassandra is connected, queries answer 503 and `/readyz` is not ready.

pub mod config;
pub mod cursor;
pub mod error;
pub mod http;
pub mod metrics;
pub mod optout;
pub mod params;
pub mod store;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use secrecy::ExposeSecret;
use tci_common::{admin, admin::Readiness, cassandra, retry::Backoff, Tasks};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use crate::config::Config;
use crate::{cursor::CursorCodec, http::ApiState, optout::OptOutCache, store::cassandra::Db};

/// A built, not yet running, chat API.
pub struct App {
    cfg: Config,
    token: CancellationToken,
    http_listener: tokio::net::TcpListener,
    http_addr: SocketAddr,
    admin_addr: SocketAddr,
    admin: futures::future::BoxFuture<'static, anyhow::Result<()>>,
    state: Arc<ApiState>,
    readiness: Readiness,
    /// The opt-out reader, when it connected at build.
    optouts: Option<optout::Reader>,
}

impl App {
    /// Binds the API and admin listeners and tries to connect to Cassandra once (a failure is
    /// not fatal: `run` keeps retrying in the background and queries answer 503 meanwhile).
    pub async fn build(cfg: Config, token: CancellationToken) -> anyhow::Result<Self> {
        // Every metric is registered before /metrics can be scraped, not at its first use.
        std::sync::LazyLock::force(&crate::metrics::METRICS);
        let secret = match &cfg.cursor.secret {
            Some(s) if !s.expose_secret().is_empty() => s.expose_secret().as_bytes().to_vec(),
            _ => {
                warn!("cursor.secret (TCI__CURSOR__SECRET) is not set: signing cursors with the built-in development key; set a shared secret in production");
                config::DEV_CURSOR_SECRET.as_bytes().to_vec()
            }
        };
        let readiness = Readiness::new(&["cassandra"]);
        let (admin_addr, admin) =
            admin::serve(&cfg.common.admin.addr, readiness.clone(), token.clone()).await?;
        let http_listener = listen(&cfg.http.addr)
            .await
            .with_context(|| format!("http.addr: cannot listen on {}", cfg.http.addr))?;
        let http_addr = http_listener.local_addr()?;
        let state = Arc::new(ApiState {
            db: Arc::new(OnceCell::new()),
            codec: CursorCodec::new(&secret),
            query: cfg.query.clone(),
            live_window_ms: i64::try_from(cfg.streamers.live_window.as_millis())
                .unwrap_or(i64::MAX),
            optouts: OptOutCache::default(),
        });
        match connect(&cfg).await {
            Ok(db) => {
                let _ = state.db.set(db);
                readiness.set("cassandra", true, "connected");
            }
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "Cassandra not available at start; answering 503 until it is"
                );
                readiness.set("cassandra", false, format!("{e:#}"));
            }
        }
        // The opt-outs are read once here too, so a started API serves at once (the chat routes
        // answer 503 until they were read).
        let optouts = match optout::Reader::connect(&cfg.common.cassandra).await {
            Ok(r) => match r.load().await {
                Ok(set) => {
                    state.optouts.set(set);
                    Some(r)
                }
                Err(e) => {
                    warn!(
                        error = format!("{e:#}"),
                        "cannot read the opt-outs at start; retrying in the background"
                    );
                    Some(r)
                }
            },
            Err(_) => None,
        };
        info!(http = %http_addr, admin = %admin_addr, keyspace = %cfg.common.cassandra.keyspace, "chat-api built");
        Ok(Self {
            cfg,
            token,
            http_listener,
            http_addr,
            admin_addr,
            admin,
            state,
            readiness,
            optouts,
        })
    }

    /// Address of the public API.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Address of the admin server.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Serves until the token is cancelled; in-flight requests get `http.shutdown_grace`.
    pub async fn run(self) -> anyhow::Result<()> {
        let Self {
            cfg,
            token,
            http_listener,
            admin,
            state,
            readiness,
            optouts,
            ..
        } = self;
        let mut tasks = Tasks::new(token.clone());
        tasks.spawn("admin", admin);
        let routes = http::routes(state.clone());
        let t = token.clone();
        tasks.spawn("http", async move {
            warp::serve(routes)
                .incoming(http_listener)
                .graceful(t.cancelled_owned())
                .run()
                .await;
            Ok(())
        });
        tasks.spawn(
            "optouts",
            optout::refresh(
                cfg.common.cassandra.clone(),
                state.optouts.clone(),
                cfg.query.optout_refresh,
                optouts,
                token.clone(),
            ),
        );
        let t = token.clone();
        let c = cfg.clone();
        tasks.spawn("cassandra", async move {
            keep_connected(c, state.db.clone(), readiness, t).await
        });
        tasks
            .join(cfg.http.shutdown_grace + Duration::from_secs(1))
            .await
    }
}

/// Binds the API listener with `TCP_NODELAY`, which Linux passes on to accepted connections:
/// without it, the small last segment of a page waits for the client's delayed ACK (Nagle),
/// adding up to 40 ms to a response.
async fn listen(addr: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let sa = tokio::net::lookup_host(addr)
        .await?
        .next()
        .context("the address resolves to nothing")?;
    let socket = if sa.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(sa)?;
    Ok(socket.listen(1024)?)
}

async fn connect(cfg: &Config) -> anyhow::Result<Db> {
    let session = cassandra::connect_once(&cfg.common.cassandra).await?;
    Db::prepare(session, &cfg.common.cassandra.keyspace, cfg.query.timeout).await
}

/// Connects (with backoff) when not connected, then probes Cassandra every
/// `query.readiness_interval` for `/readyz`, until shutdown.
async fn keep_connected(
    cfg: Config,
    db: Arc<OnceCell<Db>>,
    readiness: Readiness,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let mut backoff = Backoff::default_for_dependencies();
    loop {
        let delay = match db.get() {
            Some(d) => {
                let ok = tokio::select! {
                    ok = d.ping() => ok,
                    _ = token.cancelled() => return Ok(()),
                };
                readiness.set(
                    "cassandra",
                    ok,
                    if ok { "reachable" } else { "not answering" },
                );
                cfg.query.readiness_interval
            }
            None => {
                let res = tokio::select! {
                    r = connect(&cfg) => r,
                    _ = token.cancelled() => return Ok(()),
                };
                match res {
                    Ok(d) => {
                        let _ = db.set(d);
                        backoff.reset();
                        readiness.set("cassandra", true, "connected");
                        info!("connected to Cassandra");
                        cfg.query.readiness_interval
                    }
                    Err(e) => {
                        let delay = backoff.next_delay();
                        warn!(error = format!("{e:#}"), retry_in = ?delay, "Cassandra unavailable; retrying");
                        readiness.set("cassandra", false, format!("{e:#}"));
                        delay
                    }
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {},
            _ = token.cancelled() => return Ok(()),
        }
    }
}

//! The IRC-over-WebSocket side of the simulator (`wss://irc-ws.chat.twitch.tv` stand-in).

pub(crate) mod conn;
pub(crate) mod hub;
pub(crate) mod joins;
pub(crate) mod privmsg;
pub(crate) mod proto;
pub(crate) mod replay;
pub(crate) mod traffic;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::Shared;

/// Accepts WebSocket clients until `token` is cancelled; each runs on `conns`.
pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    conns: TaskTracker,
    token: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            _ = token.cancelled() => return Ok(()),
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    conns.spawn(conn::handle(shared.clone(), stream, peer, token.child_token()));
                }
                Err(error) => {
                    warn!(%error, "irc accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

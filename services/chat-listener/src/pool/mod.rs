//! The pool of chat connections: spreads joined channels over WebSocket connections of at most
//! `channels_per_connection` channels each, opening connections as needed.

mod conn;
mod limiter;

use std::{collections::HashMap, sync::Arc};

use tokio::{sync::mpsc, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use conn::{ConnCmd, OutRecord, Outgoing};
pub use limiter::JoinLimiter;

use crate::{channels::PoolCmd, config::IrcConfig, metrics::M};

struct Conn {
    tx: mpsc::Sender<ConnCmd>,
    channels: usize,
}

/// Runs the pool until `token` is cancelled: applies joins/parts from `cmds`, sends records to
/// `out`.
pub async fn run(
    cfg: IrcConfig,
    mut cmds: mpsc::Receiver<PoolCmd>,
    out: mpsc::Sender<Outgoing>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let limiter = Arc::new(JoinLimiter::new(cfg.joins_per_window, cfg.join_window));
    let per_conn = cfg.channels_per_connection.max(1);
    let mut conns: Vec<Conn> = Vec::new();
    let mut placed: HashMap<String, usize> = HashMap::new();
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            Some(done) = tasks.join_next() => {
                // Connections only end on shutdown; anything else is a bug worth stopping for.
                match done {
                    Ok(Ok(())) if token.is_cancelled() => {}
                    Ok(Ok(())) => anyhow::bail!("a chat connection task ended unexpectedly"),
                    Ok(Err(e)) => return Err(e.context("chat connection failed")),
                    Err(e) => anyhow::bail!("a chat connection task panicked: {e}"),
                }
            }
            cmd = cmds.recv() => {
                let Some(cmd) = cmd else { break };
                match cmd {
                    PoolCmd::Join { channel: ch, room_id } => {
                        if placed.contains_key(&ch) {
                            continue;
                        }
                        let idx = match conns.iter().position(|c| c.channels < per_conn) {
                            Some(i) => i,
                            None => {
                                let (tx, rx) = mpsc::channel(per_conn * 2 + 16);
                                let id = conns.len();
                                tasks.spawn(conn::run(id, cfg.clone(), rx, out.clone(), limiter.clone(), token.child_token()));
                                conns.push(Conn { tx, channels: 0 });
                                info!(connection = id, "opened a chat connection");
                                id
                            }
                        };
                        conns[idx].channels += 1;
                        placed.insert(ch.clone(), idx);
                        if conns[idx].tx.send(ConnCmd::Join(ch, room_id)).await.is_err() {
                            break;
                        }
                    }
                    PoolCmd::Part(ch) => {
                        if let Some(idx) = placed.remove(&ch) {
                            conns[idx].channels -= 1;
                            if conns[idx].tx.send(ConnCmd::Part(ch)).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                M.joined_channels.set(placed.len() as i64);
            }
        }
    }
    token.cancel();
    while tasks.join_next().await.is_some() {}
    Ok(())
}

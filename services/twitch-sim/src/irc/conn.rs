//! One IRC-over-WebSocket client connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::hub::{ConnId, Control, Frame};
use super::proto::{command_of, parse, valid_login};
use crate::Shared;

type Ws = WebSocketStream<TcpStream>;

/// Capabilities Twitch understands.
const KNOWN_CAPS: [&str; 3] = [
    "twitch.tv/tags",
    "twitch.tv/commands",
    "twitch.tv/membership",
];
/// Commands delivered only with `twitch.tv/commands`.
const COMMANDS_ONLY: [&str; 7] = [
    "USERNOTICE",
    "CLEARCHAT",
    "CLEARMSG",
    "ROOMSTATE",
    "USERSTATE",
    "RECONNECT",
    "HOSTTARGET",
];

enum Flow {
    Continue,
    Close,
}

#[derive(Debug, Default)]
struct State {
    nick: Option<String>,
    pass: Option<String>,
    tags: bool,
    commands: bool,
    membership: bool,
    pong_deadline: Option<Instant>,
    close_at: Option<Instant>,
    /// [`Control::Stall`]: nothing is written or answered any more.
    stalled: bool,
}

/// Serves one accepted TCP connection until it closes or `token` is cancelled.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    token: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let ws = match tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::accept_async(stream),
    )
    .await
    {
        Ok(Ok(ws)) => ws,
        Ok(Err(error)) => {
            debug!(%peer, %error, "websocket handshake failed");
            return;
        }
        Err(_) => {
            debug!(%peer, "websocket handshake timed out");
            return;
        }
    };
    let (out_tx, out_rx) = mpsc::channel(shared.cfg.client_queue);
    let (ctl_tx, ctl_rx) = mpsc::channel(4);
    let id = shared.hub.register(out_tx, ctl_tx);
    debug!(conn = id, %peer, "irc client connected");
    let mut conn = Conn {
        shared: shared.clone(),
        id,
        st: State::default(),
    };
    let reason = conn.run(ws, out_rx, ctl_rx, token).await;
    shared.hub.unregister(id);
    debug!(conn = id, %peer, reason, "irc client disconnected");
}

struct Conn {
    shared: Arc<Shared>,
    id: ConnId,
    st: State,
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Conn {
    fn nick(&self) -> &str {
        self.st.nick.as_deref().unwrap_or("*")
    }

    /// Applies the connection's capabilities: strips tags, drops commands-only lines.
    fn filter(&self, text: &str) -> Option<String> {
        if self.st.tags && self.st.commands {
            return Some(text.to_string());
        }
        let mut out = String::with_capacity(text.len());
        for line in text.split_inclusive("\r\n") {
            if !self.st.commands && COMMANDS_ONLY.contains(&command_of(line)) {
                continue;
            }
            if !self.st.tags && line.starts_with('@') {
                out.push_str(line.split_once(' ').map_or("", |x| x.1));
            } else {
                out.push_str(line);
            }
        }
        (!out.is_empty()).then_some(out)
    }

    async fn send(&self, ws: &mut Ws, text: &str) -> Result<(), WsError> {
        match self.filter(text) {
            Some(t) => ws.send(Message::text(t)).await,
            None => Ok(()),
        }
    }

    async fn write_frame(&self, ws: &mut Ws, frame: Frame) -> Result<(), WsError> {
        if !self.st.stalled {
            self.send(ws, &frame.text).await?;
        }
        self.shared.sent.record(&frame.sent);
        Ok(())
    }

    async fn run(
        &mut self,
        mut ws: Ws,
        mut out_rx: mpsc::Receiver<Frame>,
        mut ctl_rx: mpsc::Receiver<Control>,
        token: CancellationToken,
    ) -> &'static str {
        let every = self.shared.cfg.ping_interval;
        let mut ping = tokio::time::interval_at(Instant::now() + every, every);
        loop {
            let pong = sleep_opt(self.st.pong_deadline);
            let close = sleep_opt(self.st.close_at);
            let step: Result<Option<&'static str>, WsError> = tokio::select! {
                _ = token.cancelled() => {
                    let _ = ws.close(None).await;
                    Ok(Some("shutdown"))
                }
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(_))) if self.st.stalled => Ok(None),
                    Some(Ok(Message::Text(t))) => self.on_text(&mut ws, t.as_str()).await,
                    Some(Ok(Message::Binary(_))) => {
                        warn!(conn = self.id, "binary frame from client ignored");
                        Ok(None)
                    }
                    Some(Ok(Message::Close(_))) | None => Ok(Some("client closed")),
                    Some(Ok(_)) => Ok(None),
                    Some(Err(e)) => Err(e),
                },
                Some(frame) = out_rx.recv() => self.write_frame(&mut ws, frame).await.map(|_| None),
                Some(ctl) = ctl_rx.recv() => match ctl {
                    Control::Reconnect => {
                        if self.st.close_at.is_none() {
                            self.st.close_at = Some(Instant::now() + self.shared.cfg.reconnect_grace);
                            self.send(&mut ws, ":tmi.twitch.tv RECONNECT\r\n").await.map(|_| None)
                        } else {
                            Ok(None)
                        }
                    }
                    Control::Drop => {
                        // RST instead of a close handshake: as abrupt as it gets.
                        #[allow(deprecated)]
                        let _ = ws.get_ref().set_linger(Some(Duration::ZERO));
                        return "dropped by test hook";
                    }
                    Control::Stall => {
                        self.st.stalled = true;
                        self.st.pong_deadline = None;
                        self.st.close_at = None;
                        Ok(None)
                    }
                },
                _ = ping.tick() => {
                    if self.st.pong_deadline.is_none() && !self.st.stalled {
                        self.st.pong_deadline = Some(Instant::now() + self.shared.cfg.pong_timeout);
                        ws.send(Message::text("PING :tmi.twitch.tv\r\n")).await.map(|_| None)
                    } else {
                        Ok(None)
                    }
                }
                _ = pong => {
                    info!(conn = self.id, "client did not answer PING, dropping it");
                    return "ping timeout";
                }
                _ = close => {
                    let _ = ws.close(None).await;
                    Ok(Some("closed after RECONNECT"))
                }
            };
            match step {
                Ok(None) => {}
                Ok(Some(reason)) => return reason,
                Err(error) => {
                    debug!(conn = self.id, %error, "websocket error");
                    return "websocket error";
                }
            }
        }
    }

    async fn on_text(&mut self, ws: &mut Ws, text: &str) -> Result<Option<&'static str>, WsError> {
        for line in text.split('\n') {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            if let Flow::Close = self.on_line(ws, line).await? {
                let _ = ws.close(None).await;
                return Ok(Some("closed by server after client command"));
            }
        }
        Ok(None)
    }

    async fn on_line(&mut self, ws: &mut Ws, line: &str) -> Result<Flow, WsError> {
        let Some(msg) = parse(line) else {
            let shown: String = line.chars().take(120).collect();
            warn!(conn = self.id, line = %shown, "malformed IRC line from client ignored");
            return Ok(Flow::Continue);
        };
        let p = |i: usize| msg.params.get(i).copied().unwrap_or("");
        match msg.command.as_str() {
            "CAP" => match p(0).to_ascii_uppercase().as_str() {
                "REQ" => {
                    let req = p(1);
                    let caps: Vec<&str> = req.split_whitespace().collect();
                    if !caps.is_empty() && caps.iter().all(|c| KNOWN_CAPS.contains(c)) {
                        for c in &caps {
                            match *c {
                                "twitch.tv/tags" => self.st.tags = true,
                                "twitch.tv/commands" => self.st.commands = true,
                                _ => self.st.membership = true,
                            }
                        }
                        self.send(ws, &format!(":tmi.twitch.tv CAP * ACK :{req}\r\n"))
                            .await?;
                    } else {
                        self.send(ws, &format!(":tmi.twitch.tv CAP * NAK :{req}\r\n"))
                            .await?;
                    }
                }
                "LS" => {
                    self.send(
                        ws,
                        &format!(":tmi.twitch.tv CAP * LS :{}\r\n", KNOWN_CAPS.join(" ")),
                    )
                    .await?
                }
                "END" => {}
                other => debug!(
                    conn = self.id,
                    sub = other,
                    "unsupported CAP subcommand ignored"
                ),
            },
            "PASS" => self.st.pass = Some(p(0).to_string()),
            "NICK" => {
                if self.st.nick.is_some() {
                    return Ok(Flow::Continue);
                }
                let nick = p(0).to_ascii_lowercase();
                let anonymous = nick.starts_with("justinfan");
                let has_oauth = self
                    .st
                    .pass
                    .as_deref()
                    .is_some_and(|p| p.starts_with("oauth:"));
                if !valid_login(&nick) || (!anonymous && !has_oauth) {
                    warn!(conn = self.id, nick = %nick, "login rejected");
                    self.send(
                        ws,
                        ":tmi.twitch.tv NOTICE * :Login authentication failed\r\n",
                    )
                    .await?;
                    return Ok(Flow::Close);
                }
                let n = &nick;
                let welcome = format!(
                    ":tmi.twitch.tv 001 {n} :Welcome, GLHF!\r\n\
                     :tmi.twitch.tv 002 {n} :Your host is tmi.twitch.tv\r\n\
                     :tmi.twitch.tv 003 {n} :This server is rather new\r\n\
                     :tmi.twitch.tv 004 {n} :-\r\n\
                     :tmi.twitch.tv 375 {n} :-\r\n\
                     :tmi.twitch.tv 372 {n} :You are in a maze of twisty passages, all alike.\r\n\
                     :tmi.twitch.tv 376 {n} :>\r\n"
                );
                self.st.nick = Some(nick);
                self.send(ws, &welcome).await?;
            }
            "USER" => {}
            "JOIN" => {
                let Some(nick) = self.st.nick.clone() else {
                    warn!(conn = self.id, "JOIN before NICK ignored");
                    return Ok(Flow::Continue);
                };
                for ch in p(0).split(',') {
                    let login = ch.trim().trim_start_matches('#').to_ascii_lowercase();
                    if !valid_login(&login) {
                        warn!(conn = self.id, channel = %ch, "JOIN of invalid channel ignored");
                        continue;
                    }
                    // Twitch ignores a JOIN over the login's rate limit: no echo, no ROOMSTATE.
                    if !self.shared.joins.allow(&nick) {
                        let refused = self.shared.joins.refused();
                        if refused.is_power_of_two() {
                            warn!(
                                conn = self.id,
                                nick = %nick,
                                channel = %login,
                                limit = self.shared.joins.limit(),
                                window = ?self.shared.joins.window(),
                                refused_total = refused,
                                "JOIN over the rate limit ignored (as Twitch does: no answer)"
                            );
                        }
                        continue;
                    }
                    let room_id = self.shared.world.room_id(&login);
                    let Some(room) = self.shared.hub.join(self.id, &login) else {
                        continue;
                    };
                    let text = format!(
                        ":{nick}!{nick}@{nick}.tmi.twitch.tv JOIN #{login}\r\n\
                         :{nick}.tmi.twitch.tv 353 {nick} = #{login} :{nick}\r\n\
                         :{nick}.tmi.twitch.tv 366 {nick} #{login} :End of /NAMES list\r\n{}",
                        room.full_line(&room_id, &login)
                    );
                    self.send(ws, &text).await?;
                }
            }
            "PART" => {
                let nick = self.nick().to_string();
                for ch in p(0).split(',') {
                    let login = ch.trim().trim_start_matches('#').to_ascii_lowercase();
                    if self.shared.hub.part(self.id, &login) {
                        self.send(
                            ws,
                            &format!(":{nick}!{nick}@{nick}.tmi.twitch.tv PART #{login}\r\n"),
                        )
                        .await?;
                    }
                }
            }
            "PING" => {
                let arg = msg.params.last().copied().unwrap_or("tmi.twitch.tv");
                self.send(ws, &format!(":tmi.twitch.tv PONG tmi.twitch.tv :{arg}\r\n"))
                    .await?;
            }
            "PONG" => self.st.pong_deadline = None,
            "PRIVMSG" => debug!(
                conn = self.id,
                "client PRIVMSG ignored (simulator is read-only)"
            ),
            "QUIT" => return Ok(Flow::Close),
            other => {
                let text = format!(
                    ":tmi.twitch.tv 421 {} {other} :Unknown command\r\n",
                    self.nick()
                );
                self.send(ws, &text).await?;
            }
        }
        Ok(Flow::Continue)
    }
}

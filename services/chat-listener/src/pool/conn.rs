//! One chat connection: IRC over WebSocket, login, rate-limited JOINs, keep-alive, and
//! reconnection with capped exponential backoff and jitter (re-joining its channels).

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, LazyLock},
    time::Duration,
};

use futures::{SinkExt, StreamExt};
use secrecy::ExposeSecret;
use tci_common::{retry::Backoff, telemetry::LogLimiter};
use tci_schemas::{ChatMessage, ModerationEvent};
use tokio::{sync::mpsc, time::Instant};
use tokio_tungstenite::tungstenite::{protocol::WebSocketConfig, Message as WsMessage, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::limiter::JoinLimiter;
use crate::{
    config::IrcConfig,
    irc,
    metrics::{command_label, M},
    record::{self, Derived, Record, RoomStates},
};

static LOG: LazyLock<LogLimiter> = LazyLock::new(|| LogLimiter::new(Duration::from_secs(10)));

/// A change for one connection.
#[derive(Debug)]
pub enum ConnCmd {
    /// Join a channel: its login and its room id from the live-stream record (for lines that
    /// arrive with an empty `room-id` tag).
    Join(String, i64),
    Part(String),
}

/// What a connection hands to the publisher.
#[derive(Debug)]
pub enum OutRecord {
    Chat(Box<ChatMessage>),
    Moderation(Box<ModerationEvent>),
}

/// A record and when its line was read (for the publish latency histogram).
#[derive(Debug)]
pub struct Outgoing {
    pub record: OutRecord,
    pub read_at: std::time::Instant,
}

enum End {
    Cancelled,
    Reconnect(&'static str),
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Runs connection `id` until `token` is cancelled.
pub async fn run(
    id: usize,
    cfg: IrcConfig,
    mut cmds: mpsc::Receiver<ConnCmd>,
    out: mpsc::Sender<Outgoing>,
    limiter: Arc<JoinLimiter>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let mut channels: BTreeMap<String, i64> = BTreeMap::new();
    // Channels whose capture stopped (the connection went down), and since when (ms): Twitch
    // does not replay what was said meanwhile, so the window is reported once the channel is
    // joined again.
    let mut gaps: HashMap<String, i64> = HashMap::new();
    let mut backoff = Backoff::new(cfg.reconnect_min, cfg.reconnect_max);
    let nick = cfg
        .nick
        .clone()
        .unwrap_or_else(|| format!("justinfan{}", 10_000 + rand::random::<u32>() % 89_999));
    loop {
        let ws = tokio::select! {
            _ = token.cancelled() => return Ok(()),
            r = connect(&cfg.url) => r,
        };
        let end = match ws {
            Ok(ws) => {
                info!(connection = id, url = %cfg.url, channels = channels.len(), "chat connection open");
                let mut s = Session {
                    id,
                    cfg: &cfg,
                    nick: &nick,
                    channels: &mut channels,
                    gaps: &mut gaps,
                    out: &out,
                    limiter: &limiter,
                    last_read_ms: tci_common::now_ms(),
                };
                M.connections.inc();
                let end = s.run(ws, &mut cmds, &token, &mut backoff).await;
                M.connections.dec();
                (end, Some(s.last_read_ms))
            }
            Err(e) => {
                warn!(connection = id, url = %cfg.url, error = %e, "cannot connect to chat");
                (End::Reconnect("connect_failed"), None)
            }
        };
        match end {
            (End::Cancelled, _) => return Ok(()),
            (End::Reconnect(cause), last_read_ms) => {
                // Capture stopped when the connection last delivered anything, not when its end
                // was noticed: a half-open connection is noticed only by the PING timeout, and
                // what Twitch sent in between is lost too.
                let since = last_read_ms.unwrap_or_else(tci_common::now_ms);
                for channel in channels.keys() {
                    gaps.entry(channel.clone()).or_insert(since);
                }
                M.reconnects.with_label_values(&[cause]).inc();
                let delay = backoff.next_delay();
                info!(connection = id, cause, retry_in = ?delay, "reconnecting to chat");
                // Keep applying joins/parts while waiting, so the pool never blocks on us.
                let deadline = Instant::now() + delay;
                loop {
                    tokio::select! {
                        _ = token.cancelled() => return Ok(()),
                        _ = tokio::time::sleep_until(deadline) => break,
                        cmd = cmds.recv() => match cmd {
                            Some(ConnCmd::Join(c, id)) => { channels.insert(c, id); }
                            Some(ConnCmd::Part(c)) => { gaps.remove(&c); channels.remove(&c); }
                            None => return Ok(()),
                        },
                    }
                }
            }
        }
    }
}

async fn connect(url: &str) -> anyhow::Result<Ws> {
    let cfg = WebSocketConfig::default()
        .max_message_size(Some(4 << 20))
        .max_frame_size(Some(4 << 20));
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async_with_config(url, Some(cfg), true),
    )
    .await
    .map_err(|_| anyhow::anyhow!("timed out after 10s"))??;
    Ok(ws)
}

struct Session<'a> {
    id: usize,
    cfg: &'a IrcConfig,
    nick: &'a str,
    channels: &'a mut BTreeMap<String, i64>,
    gaps: &'a mut HashMap<String, i64>,
    out: &'a mpsc::Sender<Outgoing>,
    limiter: &'a JoinLimiter,
    /// When the connection last delivered a frame (ms): the start of a capture gap if it ends.
    last_read_ms: i64,
}

enum LineAction {
    None,
    /// The channel's ROOMSTATE: the server answered our JOIN.
    Joined(String),
    Pong(String),
    PongReceived,
    Reconnect,
    Closed,
}

impl Session<'_> {
    async fn run(
        &mut self,
        ws: Ws,
        cmds: &mut mpsc::Receiver<ConnCmd>,
        token: &CancellationToken,
        backoff: &mut Backoff,
    ) -> End {
        let (mut sink, mut stream) = ws.split();
        let mut login =
            vec!["CAP REQ :twitch.tv/tags twitch.tv/commands twitch.tv/membership".to_string()];
        if let Some(t) = &self.cfg.token {
            login.push(format!("PASS {}", t.expose_secret()));
        }
        login.push(format!("NICK {}", self.nick));
        for l in login {
            if sink.send(WsMessage::Text(l.into())).await.is_err() {
                return End::Reconnect("send_failed");
            }
        }
        let mut rooms = RoomStates::new();
        for (channel, room_id) in self.channels.iter() {
            rooms.learn_room_id(channel, &room_id.to_string());
        }
        let mut pending: VecDeque<String> = self.channels.keys().cloned().collect();
        // JOINs sent and not yet answered by the channel's ROOMSTATE, and when they were sent.
        let mut unanswered: HashMap<String, Instant> = HashMap::new();
        let mut join_check =
            tokio::time::interval((self.cfg.join_timeout / 4).max(Duration::from_millis(100)));
        join_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_join = Instant::now();
        let mut ping = tokio::time::interval_at(
            Instant::now() + self.cfg.ping_interval,
            self.cfg.ping_interval,
        );
        let mut pong_deadline: Option<Instant> = None;
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        let mut healthy_since: Option<Instant> = None;
        // After a RECONNECT, keep reading until the server closes (bounded), so nothing it sends
        // before closing is lost.
        let mut draining_until: Option<Instant> = None;
        loop {
            // A connection that stayed up for a minute resets the reconnect backoff.
            if healthy_since.is_some_and(|t| t.elapsed() > Duration::from_secs(60)) {
                backoff.reset();
                healthy_since = None;
            }
            tokio::select! {
                _ = token.cancelled() => {
                    let _ = sink.send(WsMessage::Close(None)).await;
                    return End::Cancelled;
                }
                frame = stream.next() => {
                    // An orderly end (close frame, end of stream) shows the connection delivered
                    // until now; an error or a PING timeout leaves the last frame's time.
                    if matches!(frame, None | Some(Ok(WsMessage::Close(_)))) {
                        self.last_read_ms = tci_common::now_ms();
                    }
                    let text = match frame {
                        None if draining_until.is_some() => return End::Reconnect("reconnect_requested"),
                        None => return End::Reconnect("closed"),
                        Some(Err(_)) if draining_until.is_some() => return End::Reconnect("reconnect_requested"),
                        Some(Err(e)) => {
                            debug!(connection = self.id, error = %e, "chat socket error");
                            return End::Reconnect("socket_error");
                        }
                        // The frame's bytes are borrowed as they are: no copy per frame.
                        Some(Ok(WsMessage::Text(t))) => t,
                        Some(Ok(WsMessage::Binary(b))) => match Utf8Bytes::try_from(b) {
                            Ok(s) => s,
                            Err(e) => {
                                M.parse_errors.with_label_values(&["invalid_utf8"]).inc();
                                if let Some(n) = LOG.allow("invalid_utf8") {
                                    warn!(connection = self.id, error = %e, suppressed = n, "binary frame is not UTF-8; skipped");
                                }
                                continue;
                            }
                        },
                        Some(Ok(WsMessage::Close(_))) if draining_until.is_some() => return End::Reconnect("reconnect_requested"),
                        Some(Ok(WsMessage::Close(_))) => return End::Reconnect("server_close"),
                        Some(Ok(_)) => continue,
                    };
                    self.last_read_ms = tci_common::now_ms();
                    if healthy_since.is_none() {
                        healthy_since = Some(Instant::now());
                    }
                    for line in text.as_str().split(['\r', '\n']).filter(|l| !l.is_empty()) {
                        match self.handle_line(line, &mut rooms).await {
                            LineAction::None => {}
                            LineAction::Joined(channel) => {
                                unanswered.remove(&channel);
                            }
                            LineAction::Pong(arg) => {
                                if sink.send(WsMessage::Text(format!("PONG :{arg}").into())).await.is_err() {
                                    return End::Reconnect("send_failed");
                                }
                            }
                            LineAction::PongReceived => pong_deadline = None,
                            LineAction::Reconnect => {
                                info!(connection = self.id, "server asked to reconnect; draining the old connection");
                                draining_until.get_or_insert(Instant::now() + Duration::from_secs(5));
                            }
                            LineAction::Closed => return End::Cancelled,
                        }
                    }
                }
                cmd = cmds.recv() => match cmd {
                    None => return End::Cancelled,
                    Some(ConnCmd::Join(c, room_id)) => {
                        rooms.learn_room_id(&c, &room_id.to_string());
                        if self.channels.insert(c.clone(), room_id).is_none() {
                            pending.push_back(c);
                        }
                    }
                    Some(ConnCmd::Part(c)) => {
                        self.gaps.remove(&c);
                        self.channels.remove(&c);
                        unanswered.remove(&c);
                        pending.retain(|p| p != &c);
                        rooms.remove(&c);
                        if sink.send(WsMessage::Text(format!("PART #{c}").into())).await.is_err() {
                            return End::Reconnect("send_failed");
                        }
                    }
                },
                _ = tokio::time::sleep_until(next_join), if !pending.is_empty() => {
                    match self.limiter.try_acquire() {
                        Ok(()) => {
                            if let Some(c) = pending.pop_front() {
                                if sink.send(WsMessage::Text(format!("JOIN #{c}").into())).await.is_err() {
                                    return End::Reconnect("send_failed");
                                }
                                unanswered.insert(c, Instant::now());
                            }
                        }
                        Err(wait) => next_join = Instant::now() + wait,
                    }
                }
                _ = join_check.tick(), if !unanswered.is_empty() => {
                    let timeout = self.cfg.join_timeout;
                    let late: Vec<String> = unanswered
                        .iter()
                        .filter(|(_, sent)| sent.elapsed() >= timeout)
                        .map(|(c, _)| c.clone())
                        .collect();
                    for c in late {
                        unanswered.remove(&c);
                        if !self.channels.contains_key(&c) || pending.contains(&c) {
                            continue;
                        }
                        M.join_timeouts.inc();
                        if let Some(n) = LOG.allow("join_timeout") {
                            warn!(connection = self.id, channel = %c, ?timeout, suppressed = n, "JOIN not answered (no ROOMSTATE); sending it again (over Twitch's JOIN rate limit? see tci_chat_listener_join_timeouts_total)");
                        }
                        pending.push_back(c);
                    }
                }
                _ = ping.tick() => {
                    if sink.send(WsMessage::Text("PING :tci".into())).await.is_err() {
                        return End::Reconnect("send_failed");
                    }
                    pong_deadline.get_or_insert(Instant::now() + self.cfg.pong_timeout);
                }
                _ = tokio::time::sleep_until(draining_until.unwrap_or(far)), if draining_until.is_some() => {
                    return End::Reconnect("reconnect_requested");
                }
                _ = tokio::time::sleep_until(pong_deadline.unwrap_or(far)), if pong_deadline.is_some() => {
                    warn!(connection = self.id, timeout = ?self.cfg.pong_timeout, "no PONG from chat server; reconnecting");
                    return End::Reconnect("pong_timeout");
                }
            }
        }
    }

    /// A channel was not captured from `since` until now: what Twitch sent meanwhile is not in
    /// the archive (Twitch does not replay chat). One warning per gap, with the window.
    fn report_gap(&self, channel: &str, since: i64) {
        let now = tci_common::now_ms();
        let seconds = (now - since).max(0) as f64 / 1000.0;
        M.capture_gaps.inc();
        M.capture_gap_seconds.inc_by(seconds);
        warn!(
            connection = self.id,
            channel,
            from_ms = since,
            to_ms = now,
            seconds,
            "chat capture gap: the connection was down; Twitch does not replay what was said in this window (a second capture lane closes such gaps)"
        );
    }

    async fn handle_line(&mut self, line: &str, rooms: &mut RoomStates) -> LineAction {
        let msg = match irc::parse(line) {
            Ok(m) => m,
            Err(e) => {
                M.parse_errors.with_label_values(&[e.label()]).inc();
                if let Some(n) = LOG.allow(e.label()) {
                    let head: String = line.chars().take(200).collect();
                    warn!(connection = self.id, error = %e, line = %head, suppressed = n, "unparseable IRC line; skipped");
                }
                return LineAction::None;
            }
        };
        let cmd = msg.command();
        M.lines.with_label_values(&[command_label(cmd)]).inc();
        match cmd {
            "PING" => {
                return LineAction::Pong(
                    msg.trailing()
                        .or_else(|| msg.params().next())
                        .unwrap_or("tmi.twitch.tv")
                        .to_string(),
                )
            }
            "PONG" => return LineAction::PongReceived,
            "RECONNECT" => return LineAction::Reconnect,
            // Twitch answers every JOIN with the channel's full ROOMSTATE: capture is back.
            "ROOMSTATE" => {
                if let Some(since) = msg.channel().and_then(|c| self.gaps.remove(c)) {
                    self.report_gap(msg.channel().unwrap_or_default(), since);
                }
            }
            "NOTICE" => {
                if let Some(n) = LOG.allow("notice") {
                    info!(
                        connection = self.id,
                        notice = msg.trailing().unwrap_or(""),
                        channel = msg.channel().unwrap_or(""),
                        suppressed = n,
                        "NOTICE from chat server"
                    );
                }
                return LineAction::None;
            }
            _ => {}
        }
        let mut derived = Derived::default();
        let processed = record::process(&msg, rooms, tci_common::now_ms(), &mut derived);
        for field in derived.labels() {
            M.derived_fields.with_label_values(&[field]).inc();
        }
        if derived.id || derived.sent_timestamp {
            if let Some(n) = LOG.allow("derived") {
                let head: String = line.chars().take(300).collect();
                info!(connection = self.id, command = cmd, channel = msg.channel().unwrap_or(""), id_derived = derived.id, sent_ts_derived = derived.sent_timestamp, line = %head, suppressed = n, "line without id or tmi-sent-ts: derived (see tci_chat_listener_derived_fields_total)");
            }
        }
        let record = match processed {
            Ok(Record::Chat(m)) => OutRecord::Chat(m),
            Ok(Record::Moderation(e)) => OutRecord::Moderation(e),
            // The channel's ROOMSTATE answers our JOIN.
            Ok(Record::RoomState(_)) => {
                return match msg.channel() {
                    Some(c) => LineAction::Joined(c.to_string()),
                    None => LineAction::None,
                }
            }
            Ok(Record::Other) => return LineAction::None,
            Err(e) => {
                M.record_errors.with_label_values(&[e.label()]).inc();
                if let Some(n) = LOG.allow(e.label()) {
                    let head: String = line.chars().take(300).collect();
                    warn!(connection = self.id, error = %e, command = cmd, line = %head, suppressed = n, "line lacks what a record needs; skipped");
                }
                return LineAction::None;
            }
        };
        // Backpressure: when the publish buffer is full this waits, and we stop reading the socket.
        match self
            .out
            .send(Outgoing {
                record,
                read_at: std::time::Instant::now(),
            })
            .await
        {
            Ok(()) => LineAction::None,
            Err(_) => LineAction::Closed,
        }
    }
}

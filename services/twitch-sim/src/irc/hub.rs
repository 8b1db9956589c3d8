//! Who is connected and who joined which channel. The traffic generator fans lines out
//! through here; connections register, join and part through here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::sent::SentRef;

/// Identifies one IRC connection.
pub(crate) type ConnId = u64;

/// A batch of `\r\n`-terminated lines for one WebSocket text frame.
#[derive(Debug, Default)]
pub(crate) struct Frame {
    pub text: String,
    pub lines: usize,
    pub sent: Vec<SentRef>,
}

/// Out-of-band commands for a connection (test hooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    /// Send `RECONNECT`, then close after the grace period.
    Reconnect,
    /// Close the socket abruptly (no close frame).
    Drop,
    /// Go silent and keep the socket open, as a half-open TCP connection looks from the client:
    /// nothing more reaches the client (what Twitch sends is lost, and counted as sent), PINGs
    /// are neither sent nor answered. Only the client's own PING timeout notices.
    Stall,
}

/// A room-state field change (`ROOMSTATE` partial update).
#[derive(Debug, Clone, Copy)]
pub(crate) enum RoomField {
    EmoteOnly,
    FollowersOnly,
    R9k,
    Slow,
    SubsOnly,
}

/// Twitch room state of one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RoomState {
    pub emote_only: i64,
    pub followers_only: i64,
    pub r9k: i64,
    pub slow: i64,
    pub subs_only: i64,
}

impl Default for RoomState {
    fn default() -> Self {
        Self {
            emote_only: 0,
            followers_only: -1,
            r9k: 0,
            slow: 0,
            subs_only: 0,
        }
    }
}

impl RoomState {
    pub(crate) fn set(&mut self, f: RoomField, v: i64) {
        match f {
            RoomField::EmoteOnly => self.emote_only = v,
            RoomField::FollowersOnly => self.followers_only = v,
            RoomField::R9k => self.r9k = v,
            RoomField::Slow => self.slow = v,
            RoomField::SubsOnly => self.subs_only = v,
        }
    }

    /// The full `ROOMSTATE` line sent on JOIN.
    pub(crate) fn full_line(&self, room_id: &str, login: &str) -> String {
        format!(
            "@emote-only={};followers-only={};r9k={};room-id={room_id};slow={};subs-only={} :tmi.twitch.tv ROOMSTATE #{login}\r\n",
            self.emote_only, self.followers_only, self.r9k, self.slow, self.subs_only
        )
    }
}

impl RoomField {
    pub(crate) fn tag(self) -> &'static str {
        match self {
            RoomField::EmoteOnly => "emote-only",
            RoomField::FollowersOnly => "followers-only",
            RoomField::R9k => "r9k",
            RoomField::Slow => "slow",
            RoomField::SubsOnly => "subs-only",
        }
    }
}

/// A generated (or replayed) line addressed to a channel.
#[derive(Debug)]
pub(crate) struct OutLine {
    pub login: Arc<str>,
    pub text: String,
    pub sent: Option<SentRef>,
    pub room_update: Option<(RoomField, i64)>,
}

#[derive(Debug)]
struct ConnEntry {
    out: mpsc::Sender<Frame>,
    ctl: mpsc::Sender<Control>,
}

#[derive(Debug)]
struct ChannelEntry {
    members: Vec<ConnId>,
    room: RoomState,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: ConnId,
    conns: HashMap<ConnId, ConnEntry>,
    channels: HashMap<Arc<str>, ChannelEntry>,
    /// Connections told to [`Control::Stall`]: their memberships no longer deliver chat.
    stalled: std::collections::HashSet<ConnId>,
}

/// Registry of connections and channel memberships.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    inner: Mutex<Inner>,
    /// Bumped on every join/part/disconnect so the generator can cache its channel list.
    version: AtomicU64,
    dropped_frames: AtomicU64,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Frames dropped because a client's queue was full.
    pub(crate) fn dropped_frames(&self) -> u64 {
        self.dropped_frames.load(Ordering::Relaxed)
    }

    pub(crate) fn register(&self, out: mpsc::Sender<Frame>, ctl: mpsc::Sender<Control>) -> ConnId {
        let mut g = self.lock();
        g.next_id += 1;
        let id = g.next_id;
        g.conns.insert(id, ConnEntry { out, ctl });
        id
    }

    pub(crate) fn unregister(&self, id: ConnId) {
        let mut g = self.lock();
        g.conns.remove(&id);
        g.stalled.remove(&id);
        g.channels.retain(|_, ch| {
            ch.members.retain(|m| *m != id);
            !ch.members.is_empty()
        });
        drop(g);
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Adds `id` to `login`; returns the room state to announce, or `None` if already joined.
    pub(crate) fn join(&self, id: ConnId, login: &str) -> Option<RoomState> {
        let mut g = self.lock();
        let ch = g
            .channels
            .entry(Arc::from(login))
            .or_insert_with(|| ChannelEntry {
                members: Vec::new(),
                room: RoomState::default(),
            });
        if ch.members.contains(&id) {
            return None;
        }
        ch.members.push(id);
        let room = ch.room;
        drop(g);
        self.version.fetch_add(1, Ordering::AcqRel);
        Some(room)
    }

    /// Removes `id` from `login`; `false` if it was not joined.
    pub(crate) fn part(&self, id: ConnId, login: &str) -> bool {
        let mut g = self.lock();
        let Some(ch) = g.channels.get_mut(login) else {
            return false;
        };
        let before = ch.members.len();
        ch.members.retain(|m| *m != id);
        let removed = ch.members.len() != before;
        if ch.members.is_empty() {
            g.channels.remove(login);
        }
        drop(g);
        if removed {
            self.version.fetch_add(1, Ordering::AcqRel);
        }
        removed
    }

    /// Logins joined by at least one connection.
    pub(crate) fn joined(&self) -> Vec<Arc<str>> {
        self.lock().channels.keys().cloned().collect()
    }

    /// (connection, channel) memberships of connections that deliver chat (not stalled): with
    /// two clients each in six channels, 12.
    pub(crate) fn memberships(&self) -> usize {
        let g = self.lock();
        g.channels
            .values()
            .flat_map(|c| &c.members)
            .filter(|m| !g.stalled.contains(m))
            .count()
    }

    pub(crate) fn is_joined(&self, login: &str) -> bool {
        self.lock().channels.contains_key(login)
    }

    pub(crate) fn connections(&self) -> usize {
        self.lock().conns.len()
    }

    /// Sends a control command to every connection.
    pub(crate) fn control_all(&self, c: Control) -> usize {
        let mut g = self.lock();
        let mut told = Vec::new();
        for (id, e) in &g.conns {
            if e.ctl.try_send(c).is_ok() {
                told.push(*id);
            }
        }
        if matches!(c, Control::Stall) {
            g.stalled.extend(told.iter().copied());
        }
        told.len()
    }

    /// Fans lines out to every member of their channel, batching per connection into
    /// frames of at most `max_lines` lines. Frames for a full queue are dropped (logged).
    pub(crate) fn distribute(&self, lines: Vec<OutLine>, max_lines: usize) {
        if lines.is_empty() {
            return;
        }
        let mut per_conn: HashMap<ConnId, Vec<Frame>> = HashMap::new();
        let senders: Vec<(ConnId, mpsc::Sender<Frame>)> = {
            let mut g = self.lock();
            for line in lines {
                let Some(ch) = g.channels.get_mut(&*line.login) else {
                    continue; // everyone parted since the line was generated
                };
                if let Some((f, v)) = line.room_update {
                    ch.room.set(f, v);
                }
                for m in &ch.members {
                    let frames = per_conn.entry(*m).or_default();
                    if frames.last().is_none_or(|f| f.lines >= max_lines) {
                        frames.push(Frame::default());
                    }
                    if let Some(f) = frames.last_mut() {
                        f.text.push_str(&line.text);
                        f.lines += 1;
                        if let Some(s) = &line.sent {
                            f.sent.push(s.clone());
                        }
                    }
                }
            }
            per_conn
                .keys()
                .filter_map(|id| g.conns.get(id).map(|c| (*id, c.out.clone())))
                .collect()
        };
        for (id, tx) in senders {
            for frame in per_conn.remove(&id).unwrap_or_default() {
                match tx.try_send(frame) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(f)) => {
                        let n = self.dropped_frames.fetch_add(1, Ordering::Relaxed);
                        if n.is_power_of_two() {
                            warn!(
                                conn = id,
                                lines = f.lines,
                                dropped_total = n + 1,
                                "client too slow, dropping frame"
                            );
                        }
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        debug!(conn = id, "connection closed while distributing");
                    }
                }
            }
        }
    }
}

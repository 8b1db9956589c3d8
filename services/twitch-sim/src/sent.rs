//! What was actually written to IRC sockets, so tests can compare "sent" with "stored".

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// A PRIVMSG carried by an outbound frame.
#[derive(Debug, Clone)]
pub(crate) struct SentRef {
    /// Broadcaster id (`room-id`).
    pub room_id: Arc<str>,
    /// Message id as a u128 (from its UUID).
    pub id: u128,
    /// This line is a deliberate duplicate delivery of `id`.
    pub duplicate: bool,
}

#[derive(Debug, Default)]
struct ChannelSent {
    count: u64,
    ids: HashSet<u128>,
    dup_ids: HashSet<u128>,
}

/// Per-channel record of PRIVMSG ids written to at least one socket, and the ledger of every
/// PRIVMSG generated (whether or not any socket got it).
#[derive(Debug)]
pub(crate) struct SentLog {
    record_ids: bool,
    inner: Mutex<HashMap<Arc<str>, ChannelSent>>,
    ledger: Mutex<Vec<(Arc<str>, u128, u64)>>,
}

/// One PRIVMSG the simulated Twitch sent into a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LedgerEntry {
    /// Broadcaster id (`room-id`).
    pub room_id: String,
    /// Message id.
    pub id: String,
    /// `tmi-sent-ts`, ms since the epoch.
    pub sent_ms: u64,
}

/// `GET /sim/sent` body.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct SentReport {
    /// Distinct PRIVMSG ids written, over all channels.
    pub total: u64,
    /// Distinct ids that were deliberately delivered twice.
    pub duplicates: u64,
    /// Per broadcaster id.
    pub channels: BTreeMap<String, ChannelSentReport>,
}

/// One channel's entry in a [`SentReport`].
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ChannelSentReport {
    /// Distinct PRIVMSG ids written.
    pub count: u64,
    /// Distinct ids delivered twice on purpose.
    pub duplicates: u64,
    /// The ids (only with `?ids=true`), sorted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
}

impl SentLog {
    pub(crate) fn new(record_ids: bool) -> Self {
        Self {
            record_ids,
            inner: Mutex::new(HashMap::new()),
            ledger: Mutex::new(Vec::new()),
        }
    }

    /// Adds generated PRIVMSGs (first deliveries only) to the ledger, when ids are recorded.
    pub(crate) fn generated(&self, refs: impl Iterator<Item = (Arc<str>, u128)>, ts: u64) {
        if !self.record_ids {
            return;
        }
        let mut l = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        l.extend(refs.map(|(room, id)| (room, id, ts)));
    }

    /// The ledger: every PRIVMSG generated, in order.
    pub(crate) fn ledger(&self) -> Vec<LedgerEntry> {
        let l = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        l.iter()
            .map(|(room, id, ts)| LedgerEntry {
                room_id: room.to_string(),
                id: format_uuid(*id),
                sent_ms: *ts,
            })
            .collect()
    }

    /// Records the PRIVMSGs of a frame that was just written to a socket.
    pub(crate) fn record(&self, refs: &[SentRef]) {
        if refs.is_empty() {
            return;
        }
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for r in refs {
            let ch = map.entry(r.room_id.clone()).or_default();
            if self.record_ids {
                if ch.ids.insert(r.id) {
                    ch.count += 1;
                }
                if r.duplicate {
                    ch.dup_ids.insert(r.id);
                }
            } else if !r.duplicate {
                // Without the id set, count first deliveries only (may over-count when a
                // channel is joined by several connections).
                ch.count += 1;
            }
        }
    }

    /// Forgets everything recorded so far.
    pub(crate) fn reset(&self) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub(crate) fn report(&self, with_ids: bool) -> SentReport {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = SentReport {
            total: 0,
            duplicates: 0,
            channels: BTreeMap::new(),
        };
        for (room, ch) in map.iter() {
            out.total += ch.count;
            out.duplicates += ch.dup_ids.len() as u64;
            let ids = with_ids.then(|| {
                let mut v: Vec<String> = ch.ids.iter().map(|i| format_uuid(*i)).collect();
                v.sort();
                v
            });
            out.channels.insert(
                room.to_string(),
                ChannelSentReport {
                    count: ch.count,
                    duplicates: ch.dup_ids.len() as u64,
                    ids,
                },
            );
        }
        out
    }
}

/// Hyphenated lowercase UUID text of a u128.
pub(crate) fn format_uuid(id: u128) -> String {
    uuid::Uuid::from_u128(id).hyphenated().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_and_duplicates() {
        let log = SentLog::new(true);
        let room: Arc<str> = Arc::from("123");
        let r = |id, duplicate| SentRef {
            room_id: room.clone(),
            id,
            duplicate,
        };
        log.record(&[r(1, false), r(2, false), r(2, true)]);
        log.record(&[r(1, false)]); // second connection
        let rep = log.report(true);
        assert_eq!(rep.total, 2);
        assert_eq!(rep.duplicates, 1);
        assert_eq!(rep.channels["123"].ids.as_ref().map(Vec::len), Some(2));
        log.reset();
        assert_eq!(log.report(false).total, 0);
    }
}

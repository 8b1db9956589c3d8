//! Decoded records → the rows of one flush (pure): `chat_messages` rows grouped by
//! `(broadcaster_id, bucket)` into single-partition batches, `user_chat_index` rows grouped by
//! `(broadcaster_id, day, shard)`, the bucket and day index rows, moderation events and deletion
//! marks. Every table's primary key contains the message/event id, so replaying a record
//! rewrites the same row: writes are idempotent.
//!
//! A chat row keeps the raw line and the room's settings, and its `message` JSON only when the
//! line does not render that JSON byte for byte ([`tci_irc::record::render_message_json`]; a
//! record without a raw line, or a room the settings text cannot say).

use std::collections::BTreeMap;

use tci_irc::record::render_message_json;
use tci_schemas::{ChatMessage, ModerationEvent, ModerationKind, PyJson, RoomSettings};

use crate::{
    bucket::{bucket_of, day_of, deletion_buckets, period_of, user_shard},
    statements::Write,
};

/// A decoded record of the chat or moderation topic.
#[derive(Debug, Clone)]
pub enum Record {
    Chat(Box<ChatMessage>),
    Moderation(Box<ModerationEvent>),
}

impl Record {
    pub fn broadcaster_id(&self) -> i64 {
        match self {
            Record::Chat(m) => m.broadcaster_id,
            Record::Moderation(e) => e.broadcaster_id,
        }
    }

    pub fn sent_timestamp(&self) -> i64 {
        match self {
            Record::Chat(m) => m.sent_timestamp,
            Record::Moderation(e) => e.sent_timestamp,
        }
    }
}

/// One `chat_messages` row (and, with a numeric chatter id, its `user_chat_index` row).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRow {
    pub broadcaster_id: i64,
    pub bucket: i64,
    pub sent_ts: i64,
    pub message_id: String,
    pub user_id: Option<i64>,
    /// The API's `message` JSON, kept only when the raw line and room state do not render it
    /// exactly (see the module docs); `None` otherwise.
    pub message: Option<String>,
    /// When chat-listener read the line.
    pub received_at: i64,
    /// The exact IRC line; `None` for records from before schema version 2.
    pub raw_line: Option<String>,
    /// [`RoomSettings::encode`] of the record's room.
    pub room_state: Option<String>,
}

/// One `user_chat_days` row: `(broadcaster_id, period, shard, user_id, day)`.
pub type UserDay = (i64, i64, i32, i64, i64);

/// One `moderation_events` row.
#[derive(Debug, Clone, PartialEq)]
pub struct ModerationRow {
    pub broadcaster_id: i64,
    pub bucket: i64,
    pub sent_ts: i64,
    pub event_id: String,
    pub kind: &'static str,
    pub target_user_id: Option<i64>,
    pub target_user_login: Option<String>,
    pub target_message_id: Option<String>,
    pub ban_duration_seconds: Option<i32>,
    pub msg_id: Option<String>,
    pub text: Option<String>,
    pub system_msg: Option<String>,
    pub received_at: Option<i64>,
    pub raw_line: Option<String>,
}

/// One `deleted_messages` row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeletionRow {
    pub broadcaster_id: i64,
    pub bucket: i64,
    pub message_id: String,
    pub reason: String,
}

/// Everything one flush writes.
#[derive(Debug, Default)]
pub struct Plan {
    pub rows: Vec<ChatRow>,
    /// Indices into `rows`, one group per `chat_messages` partition (chunked).
    pub chat_groups: Vec<Vec<usize>>,
    /// Indices into `rows`, one group per `user_chat_index` partition (chunked).
    pub user_groups: Vec<Vec<usize>>,
    pub buckets: Vec<(i64, i64)>,
    pub user_days: Vec<UserDay>,
    pub moderation: Vec<ModerationRow>,
    pub deletions: Vec<DeletionRow>,
    /// Chat rows' sent timestamps (for the end-to-end lag histogram).
    pub chat_count: usize,
    pub moderation_count: usize,
    /// Chat rows that keep their `message` JSON (their line does not render it, or they have
    /// none): for the metric.
    pub kept_json: usize,
}

impl Plan {
    /// Every write of the plan, each executed on its own by
    /// [`crate::WriteStatements::execute`]: chat and by-user partitions, the bucket-index rows,
    /// moderation events, deletion marks. A writer that remembers the bucket rows it already
    /// wrote may leave those out.
    pub fn writes(&self) -> impl Iterator<Item = Write<'_>> {
        let rows = self.rows.as_slice();
        (self.chat_groups.iter().map(move |g| Write::Chat(g, rows)))
            .chain(self.user_groups.iter().map(move |g| Write::User(g, rows)))
            .chain(self.buckets.iter().map(|b| Write::Bucket(*b)))
            .chain(self.user_days.iter().map(|d| Write::UserDay(*d)))
            .chain(self.moderation.iter().map(Write::Moderation))
            .chain(self.deletions.iter().map(Write::Deletion))
    }
}

/// Builds the plan of a flush. Pure.
///
/// CLEARMSG: a deletion mark in every bucket its target can be in ([`deletion_buckets`]).
/// CLEARCHAT (ban/timeout/clear) is recorded as an event only; the user's messages are not
/// marked (see the crate's documentation).
pub fn plan<'a>(records: impl IntoIterator<Item = &'a Record>, max_rows_per_batch: usize) -> Plan {
    let max = max_rows_per_batch.max(1);
    let mut p = Plan::default();
    let mut by_partition: BTreeMap<(i64, i64), Vec<usize>> = BTreeMap::new();
    let mut by_user: BTreeMap<(i64, i64, i32), Vec<usize>> = BTreeMap::new();
    let mut days = std::collections::BTreeSet::new();
    // The record's JSON and the line's rendering, compared in place: a String is made only for
    // a row that keeps its JSON.
    let (mut record_json, mut rendered) =
        (PyJson::with_capacity(2048), PyJson::with_capacity(2048));
    for r in records {
        match r {
            Record::Chat(m) => {
                let bucket = bucket_of(m.sent_timestamp);
                let i = p.rows.len();
                let user_id = m.user_id();
                let room_state = RoomSettings::encode(&m.room, m.broadcaster_id);
                record_json.clear();
                m.write_spec_json(&mut record_json);
                let renders = match (m.raw_line.as_deref(), room_state.as_deref()) {
                    (Some(line), Some(room)) => {
                        rendered.clear();
                        let (b, at) = (m.broadcaster_id, m.received_at);
                        render_message_json(line, b, at, room, &mut rendered).is_ok()
                            && rendered.as_str() == record_json.as_str()
                    }
                    _ => false,
                };
                if !renders {
                    p.kept_json += 1;
                }
                p.rows.push(ChatRow {
                    broadcaster_id: m.broadcaster_id,
                    bucket,
                    sent_ts: m.sent_timestamp,
                    message_id: m.id.clone(),
                    user_id,
                    message: (!renders).then(|| record_json.as_str().to_owned()),
                    received_at: m.received_at,
                    raw_line: m.raw_line.clone(),
                    room_state,
                });
                by_partition
                    .entry((m.broadcaster_id, bucket))
                    .or_default()
                    .push(i);
                if let Some(u) = user_id {
                    let day = day_of(m.sent_timestamp);
                    let shard = user_shard(u);
                    by_user
                        .entry((m.broadcaster_id, day, shard))
                        .or_default()
                        .push(i);
                    days.insert((m.broadcaster_id, period_of(day), shard, u, day));
                }
                p.chat_count += 1;
            }
            Record::Moderation(e) => {
                p.moderation_count += 1;
                let bucket = bucket_of(e.sent_timestamp);
                if e.kind == ModerationKind::ClearMsg {
                    if let Some(target) = e.target_message_id.as_deref().filter(|t| !t.is_empty()) {
                        let reason = deletion_reason(e);
                        for b in deletion_buckets(e.sent_timestamp) {
                            p.deletions.push(DeletionRow {
                                broadcaster_id: e.broadcaster_id,
                                bucket: b,
                                message_id: target.to_string(),
                                reason: reason.clone(),
                            });
                        }
                    }
                }
                p.moderation.push(moderation_row(e, bucket));
            }
        }
    }
    p.buckets = by_partition.keys().copied().collect();
    p.user_days = days.into_iter().collect();
    for (_, idx) in by_partition {
        p.chat_groups.extend(idx.chunks(max).map(<[usize]>::to_vec));
    }
    for (_, idx) in by_user {
        p.user_groups.extend(idx.chunks(max).map(<[usize]>::to_vec));
    }
    p
}

fn deletion_reason(e: &ModerationEvent) -> String {
    match e.target_user_login.as_deref() {
        Some(login) if !login.is_empty() => format!("CLEARMSG of a message by {login}"),
        _ => "CLEARMSG".to_string(),
    }
}

fn moderation_row(e: &ModerationEvent, bucket: i64) -> ModerationRow {
    ModerationRow {
        broadcaster_id: e.broadcaster_id,
        bucket,
        sent_ts: e.sent_timestamp,
        event_id: e.event_id.clone(),
        kind: e.kind.as_str(),
        target_user_id: e.target_user_id.as_deref().and_then(|s| s.parse().ok()),
        target_user_login: e.target_user_login.clone(),
        target_message_id: e.target_message_id.clone(),
        ban_duration_seconds: e.ban_duration_seconds,
        msg_id: e.msg_id.clone(),
        text: e.text.clone(),
        system_msg: e.system_msg.clone(),
        received_at: e.received_at,
        raw_line: e.raw_line.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::BUCKET_MS;
    use std::collections::HashSet;
    use tci_schemas::User;

    fn chat(b: i64, id: &str, sent: i64, user: &str) -> Record {
        Record::Chat(Box::new(ChatMessage {
            broadcaster_id: b,
            id: id.into(),
            sent_timestamp: sent,
            user: User {
                id: user.into(),
                ..User::default()
            },
            ..ChatMessage::default()
        }))
    }

    fn clearmsg(b: i64, sent: i64, target: Option<&str>) -> Record {
        Record::Moderation(Box::new(ModerationEvent {
            broadcaster_id: b,
            kind: ModerationKind::ClearMsg,
            event_id: "ev1".into(),
            sent_timestamp: sent,
            channel: "chan".into(),
            target_user_id: None,
            target_user_login: Some("bob".into()),
            target_message_id: target.map(Into::into),
            ban_duration_seconds: None,
            msg_id: None,
            text: Some("bad words".into()),
            system_msg: None,
            raw_tags: vec![],
            received_at: None,
            raw_line: None,
        }))
    }

    #[test]
    fn batches_never_span_two_partitions_and_are_chunked() {
        let t0 = 1_706_400_000_000 - 1_706_400_000_000 % BUCKET_MS;
        let recs = vec![
            chat(1, "a", t0 + 1, "10"),
            chat(1, "b", t0 + 2, "11"),
            chat(2, "c", t0 + 3, "10"),
            chat(1, "d", t0 + BUCKET_MS + 1, "10"),
            chat(1, "e", t0 + 4, "10"),
            chat(1, "f", t0 + 5, "not-a-number"),
        ];
        let p = plan(&recs, 2);
        for g in &p.chat_groups {
            let keys: HashSet<_> = g
                .iter()
                .map(|&i| (p.rows[i].broadcaster_id, p.rows[i].bucket))
                .collect();
            assert_eq!(keys.len(), 1, "one partition per batch");
            assert!(g.len() <= 2);
        }
        let total: usize = p.chat_groups.iter().map(Vec::len).sum();
        assert_eq!(total, 6, "every row in exactly one group");
        // (1, t0) has a, b, e, f -> 2 chunks; (2, t0) c; (1, t0+B) d.
        assert_eq!(p.chat_groups.len(), 4);
        assert_eq!(p.buckets, vec![(1, t0), (1, t0 + BUCKET_MS), (2, t0)]);
        // By-user rows skip the user without a numeric id; one index partition per channel,
        // day and shard (10 and 11 are in shards 2 and 3).
        let user_rows: usize = p.user_groups.iter().map(Vec::len).sum();
        assert_eq!(user_rows, 5);
        let day = day_of(t0);
        let period = period_of(day);
        assert_eq!(
            p.user_days,
            vec![
                (1, period, 2, 10, day),
                (1, period, 3, 11, day),
                (2, period, 2, 10, day)
            ]
        );
        for g in &p.user_groups {
            let keys: HashSet<_> = g
                .iter()
                .map(|&i| {
                    let r = &p.rows[i];
                    (
                        r.broadcaster_id,
                        day_of(r.sent_ts),
                        user_shard(r.user_id.unwrap()),
                    )
                })
                .collect();
            assert_eq!(keys.len(), 1, "one index partition per batch");
        }
        // No raw line: the JSON is kept.
        assert_eq!(p.kept_json, 6);
        assert_eq!(
            p.rows[0].message.as_deref(),
            Some(match &recs[0] {
                Record::Chat(m) => m.to_spec_json(),
                _ => unreachable!(),
            })
            .as_deref()
        );
    }

    /// A record built from its line keeps the line and the room state, not the JSON; the same
    /// record whose room the line cannot say (another room id is fine, a followers-only delay
    /// while off is not) keeps its JSON.
    #[test]
    fn the_json_is_kept_only_when_the_line_does_not_render_it() {
        let line = "@badge-info=;badges=;color=#FF0000;display-name=Al;emotes=;id=m-1;mod=0;room-id=7;subscriber=0;tmi-sent-ts=1706400123456;turbo=0;user-id=10;user-type= :al!al@al.tmi.twitch.tv PRIVMSG #chan :hello there";
        let rooms = tci_irc::record::RoomStates::new();
        let msg = tci_irc::irc::parse(line).unwrap();
        let mut d = tci_irc::record::Derived::default();
        let rec = tci_irc::record::build_chat_message(&msg, &rooms, 5, &mut d).unwrap();
        let p = plan(&[Record::Chat(Box::new(rec.clone()))], 50);
        assert_eq!(p.kept_json, 0);
        let row = &p.rows[0];
        assert_eq!(row.message, None);
        assert_eq!(row.raw_line.as_deref(), Some(line));
        assert_eq!(
            row.room_state.as_deref(),
            Some("emote-only=0;followers-only=-1;r9k=0;slow=0;subs-only=0")
        );
        // A record that says something else than its line: the JSON is kept.
        let mut edited = rec.clone();
        edited.text = "edited".into();
        let p = plan(&[Record::Chat(Box::new(edited.clone()))], 50);
        assert_eq!(p.kept_json, 1);
        assert_eq!(
            p.rows[0].message.as_deref(),
            Some(edited.to_spec_json().as_str())
        );
        let mut odd = rec;
        odd.room.follower_only_delay = 3;
        let p = plan(&[Record::Chat(Box::new(odd.clone()))], 50);
        assert_eq!((p.kept_json, p.rows[0].room_state.as_deref()), (1, None));
    }

    #[test]
    fn clearmsg_marks_every_bucket_its_target_can_be_in() {
        let sent = 1_706_400_123_456;
        let p = plan(&[clearmsg(7, sent, Some("m-1"))], 50);
        assert_eq!(p.moderation.len(), 1);
        assert_eq!(p.moderation[0].kind, "CLEARMSG");
        let mut buckets: Vec<_> = p.deletions.iter().map(|d| d.bucket).collect();
        buckets.sort();
        assert_eq!(buckets, deletion_buckets(sent).collect::<Vec<_>>());
        // A message sent five hours before its deletion is marked in its own bucket.
        assert!(buckets.contains(&bucket_of(sent - 5 * 3_600_000)));
        assert!(p
            .deletions
            .iter()
            .all(|d| d.message_id == "m-1" && d.broadcaster_id == 7));
        let none = plan(&[clearmsg(7, sent, None)], 50);
        assert!(none.deletions.is_empty(), "no target: event only");
        assert_eq!(none.moderation.len(), 1);
    }
}

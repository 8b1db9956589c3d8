//! `chat-listener parse`: an operator tool that turns raw IRC lines into JSON, one object per
//! input line, through the very code the listener runs ([`crate::irc`], [`crate::record`]).
//!
//! Output, one JSON object per input line (so output line *n* always describes input line *n*):
//!
//! * PRIVMSG → `{"kind": "privmsg", "broadcaster_id": 1, "message_id": "..", "timestamp": ms,
//!   "message": {..}}`, where `message` is the object [`ChatMessage::to_spec_json`] renders,
//!   byte for byte, nested (not a string).
//! * ROOMSTATE → `{"kind": "roomstate", "channel": .., <the merged room fields>}`; later
//!   PRIVMSGs of that channel carry the merged state.
//! * CLEARCHAT / CLEARMSG / USERNOTICE → the generic fields below plus `"event": {..}`, the
//!   moderation event that would be published.
//! * Any other command → `{"kind": "<command in lower case>", "channel": .., "nick": ..,
//!   "tags": {key: unescaped value}, "params": [..], "trailing": ..}`.
//! * A line that does not parse, is not UTF-8, is empty, is longer than
//!   [`MAX_LINE_LEN`](crate::irc::MAX_LINE_LEN), or whose record cannot be built →
//!   `{"kind": "error", "line": n, "error": "why"}` (plus `"command"` when it parsed). Empty
//!   lines are reported too rather than skipped, to keep the line-for-line correspondence.
//!
//! A trailing `\r` is stripped. JSON is written in the API's style (Python `json.dumps`:
//! `", "` / `": "` separators, non-ASCII as `\uXXXX`). Never panics on any input; only I/O
//! errors stop it. Memory stays bounded: the part of an overlong line beyond the limit is
//! discarded while reading.

use std::io::{self, BufRead, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use tci_schemas::{ChatMessage, ModerationEvent, PyJson, Room};

use crate::irc::{self, unescape, Message, ParseError, MAX_LINE_LEN};
use crate::record::{self, Derived, Record, RoomStates};

/// Counts of one run of [`parse_lines`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseSummary {
    /// Input lines read (= JSON lines written).
    pub lines: u64,
    /// Lines reported as `"kind": "error"`.
    pub errors: u64,
}

/// Reads raw IRC lines from `input` until EOF and writes one JSON object per line to `output`
/// (see the module docs for the format). Returns the counts; fails only on I/O errors.
pub fn parse_lines(input: impl BufRead, output: impl Write) -> io::Result<ParseSummary> {
    parse_lines_with(input, output, &[])
}

/// [`parse_lines`] with channels' room ids known beforehand (`(login, id)`), as the running
/// listener knows them from the live-stream records of the channels it joins.
pub fn parse_lines_with(
    mut input: impl BufRead,
    mut output: impl Write,
    room_ids: &[(String, i64)],
) -> io::Result<ParseSummary> {
    let mut rooms = RoomStates::new();
    for (login, id) in room_ids {
        rooms.learn_room_id(login, &id.to_string());
    }
    let mut summary = ParseSummary::default();
    let mut buf = Vec::with_capacity(1024);
    while let Some(total_len) = read_line_bounded(&mut input, &mut buf, MAX_LINE_LEN + 1)? {
        summary.lines += 1;
        let described = if total_len > buf.len() {
            Err(ErrorJson(error_json(
                summary.lines,
                None,
                &ParseError::LineTooLong { len: total_len },
            )))
        } else {
            let line = buf.strip_suffix(b"\r").unwrap_or(&buf);
            describe_line(summary.lines, line, &mut rooms, now_ms())
        };
        let json = described.unwrap_or_else(|ErrorJson(error_object)| {
            summary.errors += 1;
            error_object
        });
        output.write_all(json.as_bytes())?;
        output.write_all(b"\n")?;
    }
    output.flush()?;
    Ok(summary)
}

/// The JSON error object (without newline) describing why an input line was refused.
struct ErrorJson(String);

/// The JSON object (without newline) describing input line number `n`, or its error object.
fn describe_line(
    n: u64,
    line: &[u8],
    rooms: &mut RoomStates,
    received_at_ms: i64,
) -> Result<String, ErrorJson> {
    let msg = irc::parse_bytes(line).map_err(|e| ErrorJson(error_json(n, None, &e)))?;
    let mut derived = Derived::default();
    Ok(
        match record::process(&msg, rooms, received_at_ms, &mut derived) {
            Ok(Record::Chat(chat)) => privmsg_json(&chat, derived),
            Ok(Record::RoomState(room)) => roomstate_json(&room),
            Ok(Record::Moderation(event)) => generic_json(&msg, Some((&event, derived))),
            Ok(Record::Other) => generic_json(&msg, None),
            Err(e) => return Err(ErrorJson(error_json(n, Some(msg.command()), &e))),
        },
    )
}

fn error_json(n: u64, command: Option<&str>, error: &dyn std::error::Error) -> String {
    let mut j = PyJson::with_capacity(96);
    j.begin_object();
    j.key("kind").string("error");
    j.key("line").int(i64::try_from(n).unwrap_or(i64::MAX));
    if let Some(c) = command {
        j.key("command").string(c);
    }
    j.key("error").string(&error.to_string());
    j.end_object();
    j.finish()
}

/// `"derived": ["id", ...]` when the record needed a derived or resolved value.
fn derived_json(j: &mut PyJson, derived: Derived) {
    if derived == Derived::default() {
        return;
    }
    j.key("derived").begin_array();
    for label in derived.labels() {
        j.string(label);
    }
    j.end_array();
}

fn privmsg_json(chat: &ChatMessage, derived: Derived) -> String {
    let mut j = PyJson::with_capacity(1024 + chat.text.len() * 2);
    j.begin_object();
    j.key("kind").string("privmsg");
    j.key("broadcaster_id").int(chat.broadcaster_id);
    j.key("message_id").string(&chat.id);
    j.key("timestamp").int(chat.sent_timestamp);
    derived_json(&mut j, derived);
    j.key("message");
    chat.write_spec_json(&mut j);
    j.end_object();
    j.finish()
}

fn roomstate_json(room: &Room) -> String {
    let mut j = PyJson::with_capacity(256);
    j.begin_object();
    j.key("kind").string("roomstate");
    j.key("channel").string(&room.name);
    j.key("is_emote_only").bool(room.is_emote_only);
    j.key("is_subs_only").bool(room.is_subs_only);
    j.key("is_followers_only").bool(room.is_followers_only);
    j.key("is_unique_only").bool(room.is_unique_only);
    j.key("follower_only_delay")
        .int(i64::from(room.follower_only_delay));
    j.key("room_id").string(&room.room_id);
    j.key("slow").int(i64::from(room.slow));
    j.end_object();
    j.finish()
}

fn generic_json(msg: &Message<'_>, event: Option<(&ModerationEvent, Derived)>) -> String {
    let mut j = PyJson::with_capacity(msg.raw().len() + 128);
    j.begin_object();
    j.key("kind").string(&msg.command().to_ascii_lowercase());
    j.key("channel").opt_string(msg.channel());
    j.key("nick").opt_string(msg.nick());
    j.key("tags").begin_object();
    for (k, v) in msg.tags() {
        j.key(k).string(&unescape(v));
    }
    j.end_object();
    j.key("params").begin_array();
    for p in msg.params() {
        j.string(p);
    }
    j.end_array();
    j.key("trailing").opt_string(msg.trailing());
    if let Some((e, derived)) = event {
        derived_json(&mut j, derived);
        j.key("event");
        event_json(&mut j, e);
    }
    j.end_object();
    j.finish()
}

fn event_json(j: &mut PyJson, e: &ModerationEvent) {
    j.begin_object();
    j.key("broadcaster_id").int(e.broadcaster_id);
    j.key("kind").string(e.kind.as_str());
    j.key("event_id").string(&e.event_id);
    j.key("sent_timestamp").int(e.sent_timestamp);
    j.key("channel").string(&e.channel);
    j.key("target_user_id")
        .opt_string(e.target_user_id.as_deref());
    j.key("target_user_login")
        .opt_string(e.target_user_login.as_deref());
    j.key("target_message_id")
        .opt_string(e.target_message_id.as_deref());
    j.key("ban_duration_seconds");
    match e.ban_duration_seconds {
        Some(d) => {
            j.int(i64::from(d));
        }
        None => j.null(),
    }
    j.key("msg_id").opt_string(e.msg_id.as_deref());
    j.key("text").opt_string(e.text.as_deref());
    j.key("system_msg").opt_string(e.system_msg.as_deref());
    j.end_object();
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Reads one `\n`-terminated line into `buf` (without the `\n`), keeping at most `limit` bytes
/// of it and discarding the rest. Returns the line's full length, which exceeds `buf.len()`
/// exactly when the line was cut, or `None` at end of input.
fn read_line_bounded(
    input: &mut impl BufRead,
    buf: &mut Vec<u8>,
    limit: usize,
) -> io::Result<Option<usize>> {
    buf.clear();
    let mut total = 0usize;
    let mut read_any = false;
    loop {
        let chunk = match input.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(read_any.then_some(total));
        }
        read_any = true;
        let (len, newline) = match memchr::memchr(b'\n', chunk) {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        let room = limit.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..len.min(room)]);
        total = total.saturating_add(len);
        input.consume(len + usize::from(newline));
        if newline {
            return Ok(Some(total));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../twitch-irc/tests/fixtures/twitch_lines.txt");

    fn run(input: &[u8]) -> (Vec<serde_json::Value>, ParseSummary) {
        let mut out = Vec::new();
        let summary = parse_lines(input, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let values = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        (values, summary)
    }

    #[test]
    fn one_json_object_per_fixture_line() {
        let (out, summary) = run(FIXTURE.as_bytes());
        assert_eq!(out.len(), FIXTURE.lines().count());
        assert_eq!(
            summary,
            ParseSummary {
                lines: out.len() as u64,
                errors: 1
            }
        );
        let kinds: Vec<&str> = out.iter().map(|v| v["kind"].as_str().unwrap()).collect();
        assert_eq!(&kinds[..5], ["001", "cap", "join", "roomstate", "privmsg"]);
        assert!(
            kinds.contains(&"usernotice")
                && kinds.contains(&"ping")
                && kinds.contains(&"reconnect")
        );
        let err = out.iter().find(|v| v["kind"] == "error").unwrap();
        assert_eq!(err["command"], "CLEARMSG");
        assert_eq!(err["error"], "missing tag room-id");
    }

    #[test]
    fn privmsg_embeds_the_spec_message_object_byte_for_byte() {
        let mut out = Vec::new();
        parse_lines(FIXTURE.as_bytes(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let first_privmsg = text
            .lines()
            .find(|l| l.contains(r#""kind": "privmsg""#))
            .unwrap();
        let sample: serde_json::Value = serde_json::from_str(include_str!(
            "../../../schemas/tests/fixtures/spec_sample_response.json"
        ))
        .unwrap();
        let expected_message = sample["messages"][0]["message"].as_str().unwrap();
        let expected = format!(
            r#"{{"kind": "privmsg", "broadcaster_id": 24538518, "message_id": "0a232bf9-2e6a-4bd4-85e3-c9800b68fedb", "timestamp": 1706408359963, "message": {expected_message}}}"#
        );
        assert_eq!(first_privmsg, expected);
    }

    #[test]
    fn roomstate_merges_and_feeds_later_messages() {
        let input = "@room-id=5;slow=0;followers-only=-1 :tmi.twitch.tv ROOMSTATE #c\r\n\
                     @slow=10 :tmi.twitch.tv ROOMSTATE #c\n\
                     @id=m;room-id=5;tmi-sent-ts=9 :u!u@u PRIVMSG #c :hi\n";
        let (out, _) = run(input.as_bytes());
        assert_eq!(out[1]["kind"], "roomstate");
        assert_eq!(out[1]["slow"], 10);
        assert_eq!(out[1]["room_id"], "5");
        assert_eq!(out[1]["is_followers_only"], false);
        assert_eq!(out[2]["message"]["room"]["slow"], 10);
        assert_eq!(out[2]["broadcaster_id"], 5);
        assert_eq!(out[2]["message"]["text"], "hi");
    }

    #[test]
    fn generic_and_moderation_lines() {
        let input = "@login=ronni;room-id=1;target-msg-id=t;tmi-sent-ts=2 :tmi.twitch.tv CLEARMSG #dallas :bye\n\
                     @msg-id=slow_off :tmi.twitch.tv NOTICE #dallas :This room is no longer in slow mode.\n";
        let (out, _) = run(input.as_bytes());
        assert_eq!(out[0]["kind"], "clearmsg");
        assert_eq!(out[0]["event"]["target_message_id"], "t");
        assert_eq!(out[0]["event"]["kind"], "CLEARMSG");
        assert_eq!(
            out[0]["event"]["ban_duration_seconds"],
            serde_json::Value::Null
        );
        assert_eq!(out[1]["kind"], "notice");
        assert_eq!(out[1]["channel"], "dallas");
        assert_eq!(out[1]["nick"], "tmi.twitch.tv");
        assert_eq!(out[1]["tags"]["msg-id"], "slow_off");
        assert_eq!(out[1]["params"], serde_json::json!(["#dallas"]));
        assert_eq!(out[1]["trailing"], "This room is no longer in slow mode.");
    }

    #[test]
    fn bad_lines_become_error_objects_and_processing_continues() {
        let mut input =
            b"\n\r\n@tags-only\nPRIVMSG #a :\xff\xfe\n@id=x :u!u@u PRIVMSG #c :hi\nPING :x"
                .to_vec();
        input.extend_from_slice(b"\nPING :");
        input.extend(std::iter::repeat_n(b'x', MAX_LINE_LEN + 10));
        input.extend_from_slice(b"\nPING :end\n");
        let (out, summary) = run(&input);
        let errors: Vec<&str> = out
            .iter()
            .map(|v| v["error"].as_str().unwrap_or("-"))
            .collect();
        assert_eq!(
            errors,
            [
                "empty line",
                "empty line",
                "tags are not followed by a space",
                "invalid UTF-8 after 12 bytes",
                "missing tag room-id",
                "-",
                &format!(
                    "line too long: {} bytes (limit {MAX_LINE_LEN})",
                    MAX_LINE_LEN + 16
                ),
                "-",
            ]
        );
        assert_eq!(out[4]["line"], 5);
        assert_eq!(out[7]["trailing"], "end");
        assert_eq!(
            summary,
            ParseSummary {
                lines: 8,
                errors: 6
            }
        );
    }

    #[test]
    fn last_line_without_newline_and_empty_input() {
        let (out, _) = run(b"PING :a\nPING :b");
        assert_eq!(out.len(), 2);
        assert_eq!(out[1]["trailing"], "b");
        let (out, summary) = run(b"");
        assert!(out.is_empty());
        assert_eq!(summary, ParseSummary::default());
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_keeps_line_count(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let mut out = Vec::new();
            let summary = parse_lines(&bytes[..], &mut out).unwrap();
            let expected = bytes.split(|b| *b == b'\n').count() - usize::from(bytes.is_empty() || bytes.ends_with(b"\n"));
            proptest::prop_assert_eq!(summary.lines as usize, expected);
            proptest::prop_assert_eq!(out.iter().filter(|b| **b == b'\n').count(), expected);
        }
    }
}

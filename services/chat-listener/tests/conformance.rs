//! The real-Twitch-lines conformance test: every line of the shared corpus (680 lines from the
//! test fixtures of eight public Twitch clients, `../shared/conformance/twitch-irc/`, see its
//! README) through the very parser and record builders the listener runs.
//!
//! * No line panics, and each gets exactly one outcome.
//! * Every valid content line (PRIVMSG, USERNOTICE, CLEARCHAT, CLEARMSG to a `#channel`) becomes
//!   a record that keeps the exact line.
//! * For a sample of lines, field values are asserted from what Twitch's documentation and the
//!   lines themselves say (worked out by hand below), not from this parser's output.
//!
//! The corpus is read where it lives, never copied into the project: `TCI_CONFORMANCE_DIR`, else
//! `../shared/conformance/twitch-irc` next to the project root. A missing corpus fails the test
//! with the paths it tried.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use chat_listener::{
    irc,
    record::{self, Derived, Record, RecordError, RoomStates},
};
use tci_schemas::{ChatMessage, ModerationEvent, ModerationKind};

/// The receive time every line is given in this test.
const RECEIVED_AT: i64 = 1_700_000_000_000;

struct Corpus {
    lines: Vec<String>,
    categories: Vec<String>,
}

fn corpus_dir() -> PathBuf {
    let mut tried = Vec::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidates = std::env::var_os("TCI_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([root.join("../shared/conformance/twitch-irc")]);
    for dir in candidates {
        if dir.join("lines.irc").is_file() {
            return dir;
        }
        tried.push(dir.display().to_string());
    }
    panic!(
        "the Twitch IRC conformance corpus is missing (tried {tried:?}); set TCI_CONFORMANCE_DIR \
         to the folder holding lines.irc and sources.jsonl"
    );
}

fn corpus() -> Corpus {
    let dir = corpus_dir();
    let text = std::fs::read_to_string(dir.join("lines.irc")).expect("lines.irc is UTF-8");
    // Split on \n only: some lines have spaces at either end that matter, or \x01.
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    if lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    let categories: Vec<String> = std::fs::read_to_string(dir.join("sources.jsonl"))
        .expect("sources.jsonl")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("sources.jsonl line");
            v["category"].as_str().expect("category").to_owned()
        })
        .collect();
    assert_eq!(lines.len(), 680, "the corpus README says 680 lines");
    assert_eq!(lines.len(), categories.len());
    Corpus { lines, categories }
}

/// The line's command and first parameter, found by plain splitting (independent of the parser).
fn command_and_target(line: &str) -> Option<(&str, &str)> {
    let mut rest = line;
    if rest.starts_with('@') {
        rest = rest.split_once(' ')?.1.trim_start();
    }
    if rest.starts_with(':') {
        rest = rest.split_once(' ')?.1.trim_start();
    }
    let mut words = rest.split(' ').filter(|w| !w.is_empty());
    Some((words.next()?, words.next().unwrap_or("")))
}

/// A tag's raw value, found by plain splitting (independent of the parser).
fn raw_tag<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let tags = line.strip_prefix('@')?.split_once(' ')?.0;
    tags.split(';').find_map(|t| {
        let (k, v) = t.split_once('=').unwrap_or((t, ""));
        (k == key).then_some(v)
    })
}

fn is_content_line(line: &str) -> bool {
    command_and_target(line).is_some_and(|(c, target)| {
        matches!(c, "PRIVMSG" | "USERNOTICE" | "CLEARCHAT" | "CLEARMSG")
            && target.len() > 1
            && target.starts_with('#')
    })
}

/// What the running listener knows before the first line of a channel: the room id from the
/// channel's live-stream record. Here: the id any line of the corpus gives the channel, else a
/// made-up one (the corpus holds hand-written lines of channels that never name their id).
fn live_stream_room_ids(c: &Corpus) -> HashMap<String, i64> {
    let mut ids: HashMap<String, i64> = HashMap::new();
    for line in &c.lines {
        let Some((_, target)) = command_and_target(line) else {
            continue;
        };
        let Some(channel) = target.strip_prefix('#') else {
            continue;
        };
        if let Some(id) = raw_tag(line, "room-id").and_then(|v| v.parse().ok()) {
            ids.entry(channel.to_owned()).or_insert(id);
        }
    }
    let mut next = 900_000_000;
    for line in &c.lines {
        if let Some((_, target)) = command_and_target(line) {
            if let Some(channel) = target.strip_prefix('#') {
                ids.entry(channel.to_owned()).or_insert_with(|| {
                    next += 1;
                    next
                });
            }
        }
    }
    ids
}

#[derive(Debug)]
enum Outcome {
    NotIrc(irc::ParseError),
    Refused(RecordError),
    Chat(Box<ChatMessage>, Derived),
    Moderation(Box<ModerationEvent>, Derived),
    RoomState,
    Other,
}

/// Runs the corpus in order through one connection's state, as the listener would.
fn run(c: &Corpus) -> Vec<Outcome> {
    let mut rooms = RoomStates::new();
    for (channel, id) in live_stream_room_ids(c) {
        rooms.learn_room_id(&channel, &id.to_string());
    }
    c.lines
        .iter()
        .map(|line| match irc::parse_bytes(line.as_bytes()) {
            Err(e) => Outcome::NotIrc(e),
            Ok(m) => {
                let mut d = Derived::default();
                match record::process(&m, &mut rooms, RECEIVED_AT, &mut d) {
                    Ok(Record::Chat(chat)) => Outcome::Chat(chat, d),
                    Ok(Record::Moderation(e)) => Outcome::Moderation(e, d),
                    Ok(Record::RoomState(_)) => Outcome::RoomState,
                    Ok(Record::Other) => Outcome::Other,
                    Err(e) => Outcome::Refused(e),
                }
            }
        })
        .collect()
}

fn strip_line_ending(l: &str) -> &str {
    let l = l.strip_suffix('\n').unwrap_or(l);
    l.strip_suffix('\r').unwrap_or(l)
}

#[test]
fn every_valid_content_line_becomes_a_record_that_keeps_the_line() {
    let c = corpus();
    let outcomes = run(&c);
    assert_eq!(outcomes.len(), c.lines.len(), "one outcome per line");

    let mut refused = Vec::new();
    let mut content = 0;
    for (i, (line, outcome)) in c.lines.iter().zip(&outcomes).enumerate() {
        let n = i + 1;
        match outcome {
            Outcome::Chat(m, _) => {
                assert_eq!(
                    m.raw_line.as_deref(),
                    Some(strip_line_ending(line)),
                    "line {n}"
                );
                assert_eq!(m.received_at, RECEIVED_AT, "line {n}");
                assert!(!m.id.is_empty(), "line {n}: empty id");
                // Emote positions are kept as Twitch sent them, even when they run past the end
                // of the text (line 27, captured by twitch-irc-rs, ends at 51 of 51 code points).
                for e in m.emotes.iter().flatten() {
                    for p in &e.positions {
                        assert!(0 <= p.start && p.start <= p.end, "line {n}: {e:?}");
                    }
                }
            }
            Outcome::Moderation(e, _) => {
                assert_eq!(
                    e.raw_line.as_deref(),
                    Some(strip_line_ending(line)),
                    "line {n}"
                );
                assert_eq!(e.received_at, Some(RECEIVED_AT), "line {n}");
                assert!(!e.event_id.is_empty(), "line {n}: empty event id");
            }
            _ => {}
        }
        if c.categories[i] == "valid" && is_content_line(line) {
            content += 1;
            if !matches!(outcome, Outcome::Chat(..) | Outcome::Moderation(..)) {
                refused.push(format!("line {n}: {outcome:?}: {line}"));
            }
        }
    }
    assert!(content > 400, "only {content} valid content lines found");
    assert!(
        refused.is_empty(),
        "{} valid content lines refused:\n{}",
        refused.len(),
        refused.join("\n")
    );
}

/// Storage keeps a chat message as its raw line and room settings only, and the API renders the
/// `message` JSON from those (`tci_irc::record::render_message_json`). On every real chat line
/// of the corpus that rendering must be byte for byte the record's own JSON; chat-ingestor
/// checks the same for every message before it drops the JSON, so this count is what the
/// archive would have to keep as JSON (expected: none). The same holds for the rendering
/// escaped for embedding in the API's pages, and for the text format's log line.
#[test]
fn every_chat_record_renders_from_its_stored_line_exactly() {
    let c = corpus();
    let outcomes = run(&c);
    let (mut chats, mut differ) = (0, Vec::new());
    let mut j = tci_schemas::PyJson::default();
    for (i, outcome) in outcomes.iter().enumerate() {
        let Outcome::Chat(m, _) = outcome else {
            continue;
        };
        chats += 1;
        j.clear();
        let line = m.raw_line.as_deref().expect("raw line kept");
        let settings = tci_schemas::RoomSettings::encode(&m.room, m.broadcaster_id).unwrap();
        let mut embedded = tci_schemas::PyJson::embedded(0);
        let embedded_ok = record::render_message_json(
            line,
            m.broadcaster_id,
            m.received_at,
            &settings,
            &mut embedded,
        )
        .is_ok();
        let mut escaped = Vec::new();
        tci_schemas::escape_json_content(&mut escaped, &m.to_spec_json());
        if !embedded_ok || embedded.as_str().as_bytes() != escaped.as_slice() {
            differ.push(format!("line {}: the embedded rendering differs", i + 1));
        }
        match record::render_message_json(line, m.broadcaster_id, m.received_at, &settings, &mut j)
        {
            Ok(()) if j.as_str() == m.to_spec_json() => {}
            Ok(()) => differ.push(format!(
                "line {}:\n  record  {}\n  render  {}",
                i + 1,
                m.to_spec_json(),
                j.as_str()
            )),
            Err(e) => differ.push(format!("line {}: {e}", i + 1)),
        }
        // The text format's log line, read from the line alone.
        let mut log = String::new();
        let me = if m.is_me { "/me " } else { "" };
        let want = format!("#{} {}: {me}{}", m.room.name, m.user.name, m.text);
        if record::write_log_text(line, &mut log).is_err() || log != want {
            differ.push(format!("line {}: log text {log:?}, record {want:?}", i + 1));
        }
    }
    assert!(chats > 200, "only {chats} chat records");
    assert!(
        differ.is_empty(),
        "{} of {chats} differ:\n{}",
        differ.len(),
        differ.join("\n")
    );
}

/// The other side: the corpus's deliberately broken lines (`edge`) that are not IRC at all are
/// refused with a reason, not turned into records, and nothing refused is a valid content line.
#[test]
fn broken_lines_are_refused_and_only_those() {
    let c = corpus();
    let mut refused_edge = Vec::new();
    for (i, outcome) in run(&c).iter().enumerate() {
        let why = match outcome {
            Outcome::NotIrc(e) => e.to_string(),
            Outcome::Refused(e) => e.to_string(),
            _ => continue,
        };
        assert!(
            c.categories[i] != "valid" || !is_content_line(&c.lines[i]),
            "line {}: {why}",
            i + 1
        );
        if c.categories[i] == "edge" {
            refused_edge.push(format!("line {}: {why}", i + 1));
        }
    }
    // The corpus has 28 `edge` lines; the ones that are not IRC (empty prefix, P!NG, tags
    // without a space, ...) must be refused (10 when this test was written).
    assert!(
        refused_edge.len() >= 10,
        "only {} broken lines refused: {refused_edge:#?}",
        refused_edge.len()
    );
}

/// The first line of the corpus that contains every needle (several clients keep the same
/// line; every copy must be identical).
fn find<'a>(c: &'a Corpus, needles: &[&str]) -> (usize, &'a str) {
    let found: Vec<(usize, &str)> = c
        .lines
        .iter()
        .enumerate()
        .filter(|(_, l)| needles.iter().all(|n| l.contains(n)))
        .map(|(i, l)| (i, l.as_str()))
        .collect();
    assert!(!found.is_empty(), "no line matches {needles:?}");
    assert!(
        found.iter().all(|(_, l)| *l == found[0].1),
        "{needles:?} matches different lines"
    );
    found[0]
}

fn chat_at(outcomes: &[Outcome], i: usize) -> (&ChatMessage, Derived) {
    match &outcomes[i] {
        Outcome::Chat(m, d) => (m, *d),
        o => panic!("line {}: expected a chat record, got {o:?}", i + 1),
    }
}

fn event_at(outcomes: &[Outcome], i: usize) -> (&ModerationEvent, Derived) {
    match &outcomes[i] {
        Outcome::Moderation(e, d) => (e, *d),
        o => panic!("line {}: expected a moderation event, got {o:?}", i + 1),
    }
}

/// The code points `start..=end` of `text`: what an emote position covers.
fn covered(text: &str, start: i32, end: i32) -> String {
    text.chars()
        .skip(start as usize)
        .take((end - start + 1) as usize)
        .collect()
}

#[test]
fn sampled_lines_carry_what_twitch_sent() {
    let c = corpus();
    let outcomes = run(&c);
    let ids = live_stream_room_ids(&c);

    // Shared chat, captured 2024: a one-word cheer without the ':' before the text.
    let (i, _) = find(&c, &["PRIVMSG #pajlada Cheer1", "id=886028cc"]);
    let (m, d) = chat_at(&outcomes, i);
    assert_eq!(d, Derived::default());
    assert_eq!(m.text, "Cheer1");
    assert_eq!(m.bits, 1);
    assert_eq!(m.broadcaster_id, 11148817);
    assert_eq!(m.id, "886028cc-9985-47b9-a273-8164c6d59a76");
    assert_eq!(m.sent_timestamp, 1727304317562);
    assert_eq!(m.user.name, "lahoooo");
    assert_eq!(m.user.id, "612865661");
    assert_eq!(m.user.user_type.as_deref(), Some("staff"));
    let badges: Vec<(&str, &str)> = m
        .user
        .badges
        .iter()
        .flatten()
        .map(|b| (b.name.as_str(), b.version.as_str()))
        .collect();
    assert_eq!(badges, [("staff", "1"), ("raging-wolf-helm", "1")]);
    // The shared-chat tags this schema does not model survive in the raw line.
    let raw = m.raw_line.as_deref().unwrap_or_default();
    assert!(
        raw.contains("source-room-id=1025594235")
            && raw.contains("source-badges=staff/1,moderator/1,twitch-recap-2023/1")
    );

    // The same emote id twice, after an emoji: positions count code points, both ranges kept.
    let (i, _) = find(&c, &["emotes=25:1-5/25:9-13"]);
    let (m, _) = chat_at(&outcomes, i);
    assert_eq!(m.text, "😂Kappa😂 &Kappa a  b");
    let emotes = m.emotes.as_deref().unwrap_or_default();
    assert_eq!(emotes.len(), 1);
    assert_eq!(emotes[0].id, "25");
    let words: Vec<String> = emotes[0]
        .positions
        .iter()
        .map(|p| covered(&m.text, p.start, p.end))
        .collect();
    assert_eq!(words, ["Kappa", "Kappa"]);
    let json: serde_json::Value = serde_json::from_str(&m.to_spec_json()).expect("message JSON");
    assert_eq!(
        json["emotes"]["25"],
        serde_json::json!([
            {"start_position": "1", "end_position": "5"},
            {"start_position": "9", "end_position": "13"}
        ])
    );

    // An emote id containing '/', after an invisible tag character.
    let (i, _) = find(&c, &["emotes=80481_/3:7-14"]);
    let (m, _) = chat_at(&outcomes, i);
    let emotes = m.emotes.as_deref().unwrap_or_default();
    assert_eq!(emotes.len(), 1);
    assert_eq!(emotes[0].id, "80481_/3");
    assert_eq!(covered(&m.text, 7, 14), "pajaW_/3");

    // Hype chat: the pinned-chat-paid-* tags are kept.
    let (i, _) = find(&c, &["pinned-chat-paid-amount=500", "SnoopyTheBot"]);
    let (m, _) = chat_at(&outcomes, i);
    assert_eq!(m.text, "-$5");
    assert_eq!(m.broadcaster_id, 36340781);
    assert!(m
        .raw_tags
        .iter()
        .any(|t| t.key == "pinned-chat-paid-currency" && t.value == "USD"));

    // Twitch's documented CLEARMSG with `room-id=`: filed under the channel's known id.
    let (i, _) = find(
        &c,
        &["room-id=;tmi-sent-ts=1642860513538", "CLEARMSG #dallas"],
    );
    let (e, d) = event_at(&outcomes, i);
    assert_eq!(
        d,
        Derived {
            room_id: true,
            ..Derived::default()
        },
        "CLEARMSG has no id tag by design"
    );
    assert_eq!(e.event_id, record::line_digest(&c.lines[i]));
    assert_eq!(e.kind, ModerationKind::ClearMsg);
    assert_eq!(e.broadcaster_id, ids["dallas"]);
    assert_eq!(e.sent_timestamp, 1642860513538);
    assert_eq!(e.target_message_id.as_deref(), Some("abc-123-def"));
    assert_eq!(e.target_user_login.as_deref(), Some("ronni"));
    assert_eq!(e.text.as_deref(), Some("HeyGuys"));

    // A CLEARMSG with neither room-id nor tmi-sent-ts: both resolved.
    let (i, _) = find(
        &c,
        &["@login=ronni;target-msg-id=abc-123-def :tmi.twitch.tv CLEARMSG"],
    );
    let (e, d) = event_at(&outcomes, i);
    assert_eq!(
        d,
        Derived {
            sent_timestamp: true,
            room_id: true,
            ..Derived::default()
        }
    );
    assert_eq!(e.sent_timestamp, RECEIVED_AT);
    assert_eq!(e.event_id, record::line_digest(&c.lines[i]));

    // A timeout: duration and target from the line.
    let (i, _) = find(
        &c,
        &["@ban-duration=3600 :tmi.twitch.tv CLEARCHAT #goodvibes :toxicity"],
    );
    let (e, _) = event_at(&outcomes, i);
    assert_eq!(e.kind, ModerationKind::ClearChat);
    assert_eq!(e.channel, "goodvibes");
    assert_eq!(e.ban_duration_seconds, Some(3600));
    assert_eq!(e.target_user_login.as_deref(), Some("toxicity"));

    // A /me without any tag: id and time derived, the ACTION wrapper removed.
    let (i, _) = find(
        &c,
        &[":tmi.twitch.tv PRIVMSG #local7000 :\u{1}ACTION Hello :)\u{1}"],
    );
    let (m, d) = chat_at(&outcomes, i);
    assert_eq!(
        d,
        Derived {
            id: true,
            sent_timestamp: true,
            room_id: true
        }
    );
    assert!(m.is_me);
    assert_eq!(m.text, "Hello :)");
    assert_eq!(m.sent_timestamp, RECEIVED_AT);
    assert!(m.id.starts_with("tci-"));
    assert_eq!(m.broadcaster_id, ids["local7000"]);

    // A Prime sub (USERNOTICE): msg-id, login, system-msg unescaped.
    let (i, _) = find(&c, &["id=2a9bea11-a80a-49a0-a498-1642d457f775"]);
    let (e, _) = event_at(&outcomes, i);
    assert_eq!(e.kind, ModerationKind::UserNotice);
    assert_eq!(e.broadcaster_id, 71092938);
    assert_eq!(e.event_id, "2a9bea11-a80a-49a0-a498-1642d457f775");
    assert_eq!(e.msg_id.as_deref(), Some("sub"));
    assert_eq!(e.target_user_login.as_deref(), Some("fallenseraphhh"));
    assert_eq!(e.target_user_id.as_deref(), Some("224005980"));
    assert_eq!(
        e.system_msg.as_deref(),
        Some("fallenseraphhh subscribed with Twitch Prime.")
    );
    assert_eq!(e.sent_timestamp, 1582685713242);
}

#[test]
fn the_parse_tool_refuses_no_valid_content_line_given_the_live_stream_ids() {
    let c = corpus();
    let ids: Vec<(String, i64)> = live_stream_room_ids(&c).into_iter().collect();
    let input = c.lines.join("\n");
    let mut out = Vec::new();
    let summary =
        chat_listener::bin_parse::parse_lines_with(input.as_bytes(), &mut out, &ids).expect("io");
    assert_eq!(summary.lines as usize, c.lines.len());
    let text = String::from_utf8(out).expect("utf8");
    for (i, json) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(json).expect("one JSON object per line");
        if c.categories[i] == "valid" && is_content_line(&c.lines[i]) {
            assert_ne!(v["kind"], "error", "line {}: {json}", i + 1);
        }
    }
}

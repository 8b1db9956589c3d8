//! Deterministic, realistic synthetic chat for the ingest and storage benchmarks (shared by the
//! `ingest_bench` and `storage` examples through `#[path]`).

use tci_schemas::{Badge, ChatMessage, Emote, EmotePosition, Room, Tag, User};

const WORDS: &[&str] = &[
    "LUL",
    "KEKW",
    "pog",
    "gg",
    "what",
    "is",
    "this",
    "play",
    "lets",
    "go",
    "chat",
    "no",
    "way",
    "that",
    "was",
    "insane",
    "monkaS",
    "OMEGALUL",
    "true",
    "based",
    "clip",
    "it",
    "@streamer",
    "hello",
    "from",
    "germany",
    "wp",
];

/// A deterministic, realistic chat message number `i` (channels, users, emotes, badges, replies).
pub fn synth(i: u64, channels: u64, sent_ts: i64) -> ChatMessage {
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let broadcaster_id = 10_000 + (h % channels) as i64;
    let user = 1_000_000 + (h >> 20) % 50_000;
    let n_words = 3 + (h >> 8) % 15;
    let mut text = String::new();
    for k in 0..n_words {
        if k > 0 {
            text.push(' ');
        }
        text.push_str(WORDS[((h >> (k % 50)) as usize + k as usize) % WORDS.len()]);
    }
    let emotes = h.is_multiple_of(4).then(|| {
        vec![Emote {
            id: "emotesv2_a439839fd0a34aceb1712e348bf22cb8".into(),
            positions: vec![EmotePosition { start: 0, end: 2 }],
        }]
    });
    let reply = h.is_multiple_of(10);
    let mut m = ChatMessage {
        broadcaster_id,
        id: format!(
            "{:08x}-{:04x}-4000-8000-{:012x}",
            (h >> 32) as u32,
            (h >> 16) as u16,
            i
        ),
        sent_timestamp: sent_ts,
        received_at: sent_ts + 3,
        text,
        is_me: h.is_multiple_of(50),
        bits: if h.is_multiple_of(100) { 100 } else { 0 },
        reply_parent_msg_id: reply.then(|| "178293f6-b521-4d25-b808-9d36cc373069".into()),
        reply_parent_user_id: reply.then(|| "39988164".into()),
        reply_parent_user_login: reply.then(|| "uhblivean24".into()),
        reply_parent_display_name: reply.then(|| "Uhblivean24".into()),
        reply_parent_msg_body: reply.then(|| "@cakebud figure it out".into()),
        reply_thread_parent_msg_id: reply.then(|| "178293f6-b521-4d25-b808-9d36cc373069".into()),
        reply_thread_parent_user_login: reply.then(|| "uhblivean24".into()),
        emotes,
        room: Room {
            name: format!("channel{broadcaster_id}"),
            is_followers_only: true,
            room_id: broadcaster_id.to_string(),
            ..Room::default()
        },
        user: User {
            name: format!("user{user}"),
            badge_info: h.is_multiple_of(3).then(|| {
                vec![Badge {
                    name: "subscriber".into(),
                    version: "38".into(),
                }]
            }),
            badges: h.is_multiple_of(2).then(|| {
                vec![
                    Badge {
                        name: "subscriber".into(),
                        version: "36".into(),
                    },
                    Badge {
                        name: "premium".into(),
                        version: "1".into(),
                    },
                ]
            }),
            color: Some("#8A2BE2".into()),
            display_name: format!("User{user}"),
            subscriber: h.is_multiple_of(3),
            id: user.to_string(),
            ..User::default()
        },
        raw_tags: vec![
            Tag {
                key: "badge-info".into(),
                value: "subscriber/38".into(),
            },
            Tag {
                key: "client-nonce".into(),
                value: format!("{h:032x}"),
            },
            Tag {
                key: "flags".into(),
                value: String::new(),
            },
            Tag {
                key: "tmi-sent-ts".into(),
                value: sent_ts.to_string(),
            },
        ],
        raw_line: None,
    };
    if std::env::var_os("TCI_BENCH_NO_RAW_LINE").is_none() {
        m.raw_line = Some(raw_line_of(&m));
    }
    m
}

/// A PRIVMSG line as Twitch would send it for `m` (tags in Twitch's order), so the benchmark
/// carries raw lines of a realistic size. `TCI_BENCH_NO_RAW_LINE=1` leaves them out, to measure
/// what keeping them costs.
pub fn raw_line_of(m: &ChatMessage) -> String {
    use std::fmt::Write as _;
    let badges = |b: &Option<Vec<Badge>>| {
        b.iter()
            .flatten()
            .map(|b| format!("{}/{}", b.name, b.version))
            .collect::<Vec<_>>()
            .join(",")
    };
    let emotes = m
        .emotes
        .iter()
        .flatten()
        .map(|e| {
            let ranges: Vec<String> = e
                .positions
                .iter()
                .map(|p| format!("{}-{}", p.start, p.end))
                .collect();
            format!("{}:{}", e.id, ranges.join(","))
        })
        .collect::<Vec<_>>()
        .join("/");
    let u = &m.user;
    let bits = if m.bits > 0 {
        format!("bits={};", m.bits)
    } else {
        String::new()
    };
    // Reply tags, IRC-escaped, in Twitch's (alphabetical) order.
    let reply = match (&m.reply_parent_msg_id, &m.reply_parent_msg_body) {
        (Some(id), Some(body)) => format!(
            "reply-parent-display-name={};reply-parent-msg-body={};reply-parent-msg-id={id};reply-parent-user-id={};reply-parent-user-login={};reply-thread-parent-msg-id={};reply-thread-parent-user-login={};",
            m.reply_parent_display_name.as_deref().unwrap_or(""),
            body.replace('\\', "\\\\").replace(' ', "\\s").replace(';', "\\:"),
            m.reply_parent_user_id.as_deref().unwrap_or(""),
            m.reply_parent_user_login.as_deref().unwrap_or(""),
            m.reply_thread_parent_msg_id.as_deref().unwrap_or(""),
            m.reply_thread_parent_user_login.as_deref().unwrap_or(""),
        ),
        _ => String::new(),
    };
    let mut line = String::with_capacity(512);
    let _ = write!(
        line,
        "@badge-info={};badges={};{bits}client-nonce={};color={};display-name={};emotes={};first-msg=0;flags=;id={};mod={};{reply}returning-chatter=0;room-id={};subscriber={};tmi-sent-ts={};turbo=0;user-id={};user-type= :{}!{}@{}.tmi.twitch.tv PRIVMSG #{} :{}{}",
        badges(&u.badge_info),
        badges(&u.badges),
        m.raw_tags.iter().find(|t| t.key == "client-nonce").map_or("", |t| t.value.as_str()),
        u.color.as_deref().unwrap_or(""),
        u.display_name,
        emotes,
        m.id,
        u8::from(u.is_mod),
        m.broadcaster_id,
        u8::from(u.subscriber),
        m.sent_timestamp,
        u.id,
        u.name,
        u.name,
        u.name,
        m.room.name,
        if m.is_me { "\u{1}ACTION " } else { "" },
        m.text,
    );
    line
}

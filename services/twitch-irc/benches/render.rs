//! Rendering the API's `message` JSON from a stored line (what chat-api does per row), against
//! the way it was served before storage v3: the record's JSON, built once at ingest, escaped for
//! embedding on read. Both produce the same bytes (checked before measuring).
//!
//! `cargo bench -p tci-irc --bench render`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tci_irc::{
    irc,
    record::{build_chat_message, render_message_json, Derived, RoomStates},
};
use tci_schemas::{escape_json_content, PyJson, RoomSettings};

/// Lines as the API benchmark seeds them, and the spec sample's reply.
const LINES: &[&str] = &[
    "@badge-info=subscriber/38;badges=vip/1,subscriber/36;client-nonce=9e3779b97f4a7c15f39cc0605cedc835;color=#8A2BE2;display-name=User100007;emotes=emotesv2_a439839fd0a34aceb1712e348bf22cb8:29-34;first-msg=0;flags=;id=9e3779b9-2e6a-4bd4-85e3-000000000007;mod=0;returning-chatter=0;room-id=24538518;subscriber=1;tmi-sent-ts=1706400000021;turbo=0;user-id=100007;user-type=;vip=1 :user100007!user100007@user100007.tmi.twitch.tv PRIVMSG #sneakylol :@uhblivean24 ofc in the game eavShy 7",
    "@badge-info=subscriber/38;badges=vip/1,subscriber/36;color=#FF69B4;display-name=CakeBud;emotes=;first-msg=0;flags=;id=435c1723-5d6f-4aee-927d-6f9f50889e0f;mod=0;reply-parent-display-name=Uhblivean24;reply-parent-msg-body=@cakebud\\sironmouseACTUALLY\\sfigure\\sit\\sout;reply-parent-msg-id=178293f6-b521-4d25-b808-9d36cc373069;reply-parent-user-id=39988164;reply-parent-user-login=uhblivean24;reply-thread-parent-msg-id=178293f6-b521-4d25-b808-9d36cc373069;reply-thread-parent-user-login=uhblivean24;returning-chatter=0;room-id=24538518;subscriber=1;tmi-sent-ts=1706408361811;turbo=0;user-id=94880631;user-type=;vip=1 :cakebud!cakebud@cakebud.tmi.twitch.tv PRIVMSG #sneakylol :@Uhblivean24 trying my best Suffering",
];

fn bench(c: &mut Criterion) {
    let mut rooms = RoomStates::new();
    let roomstate = "@emote-only=0;followers-only=0;r9k=0;room-id=24538518;slow=0;subs-only=0 :tmi.twitch.tv ROOMSTATE #sneakylol";
    rooms
        .apply(&irc::parse(roomstate).expect("ROOMSTATE"))
        .expect("ROOMSTATE");
    let stored: Vec<(&str, String, String)> = LINES
        .iter()
        .map(|l| {
            let m = build_chat_message(
                &irc::parse(l).expect("line"),
                &rooms,
                5,
                &mut Derived::default(),
            )
            .expect("record");
            let room = RoomSettings::encode(&m.room, m.broadcaster_id).expect("room");
            (*l, room, m.to_spec_json())
        })
        .collect();
    for (line, room, json) in &stored {
        let mut j = PyJson::embedded(2048);
        render_message_json(line, 24538518, 5, room, &mut j).expect("render");
        let mut escaped = Vec::new();
        escape_json_content(&mut escaped, json);
        assert_eq!(j.as_str().as_bytes(), escaped.as_slice(), "same bytes");
    }
    let mut g = c.benchmark_group("message_json_for_a_page_row");
    g.throughput(Throughput::Elements(stored.len() as u64));
    g.bench_function("render_from_raw_line", |b| {
        b.iter(|| {
            let mut n = 0;
            for (line, room, _) in &stored {
                let mut j = PyJson::embedded(line.len() * 3);
                render_message_json(line, 24538518, 5, room, &mut j).expect("render");
                n += j.finish().len();
            }
            n
        })
    });
    g.bench_function("baseline_escape_stored_json", |b| {
        b.iter(|| {
            let mut n = 0;
            for (_, _, json) in &stored {
                let mut v = Vec::with_capacity(json.len() + json.len() / 4);
                escape_json_content(&mut v, json);
                n += v.len();
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

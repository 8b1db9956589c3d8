use tci_schemas::{Badge, Emote, EmotePosition, ModerationKind, Room, Tag};

use super::*;
use crate::irc::parse;

const FIXTURE: &str = include_str!("../../tests/fixtures/twitch_lines.txt");
const SPEC_SAMPLE: &str =
    include_str!("../../../../schemas/tests/fixtures/spec_sample_response.json");

/// The fixture line containing `needle` (panics when there is none: a broken fixture).
fn line(needle: &str) -> &'static str {
    FIXTURE
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no fixture line with {needle}"))
}

fn sneakylol_rooms() -> RoomStates {
    let mut rooms = RoomStates::new();
    rooms
        .apply(&parse(line("ROOMSTATE #sneakylol")).unwrap())
        .unwrap();
    rooms
}

fn chat(l: &str, rooms: &RoomStates) -> ChatMessage {
    build_chat_message(&parse(l).unwrap(), rooms, 42, &mut Derived::default()).unwrap()
}

fn chat_derived(l: &str, rooms: &RoomStates) -> (ChatMessage, Derived) {
    let mut d = Derived::default();
    let m = build_chat_message(&parse(l).unwrap(), rooms, 42, &mut d).unwrap();
    (m, d)
}

fn chat_err(l: &str) -> RecordError {
    build_chat_message(
        &parse(l).unwrap(),
        &RoomStates::new(),
        0,
        &mut Derived::default(),
    )
    .unwrap_err()
}

fn spec_messages() -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(SPEC_SAMPLE).unwrap();
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn spec_sample_message_is_reproduced_byte_for_byte() {
    let msg = chat(
        line("cutie_amelka.tmi.twitch.tv PRIVMSG"),
        &sneakylol_rooms(),
    );
    assert_eq!(msg.to_spec_json(), spec_messages()[0]);
    assert_eq!(msg.broadcaster_id, 24538518);
    assert_eq!(msg.received_at, 42);
}

#[test]
fn spec_sample_reply_matches_except_the_unescaped_body() {
    let msg = chat(line("cakebud.tmi.twitch.tv PRIVMSG"), &sneakylol_rooms());
    // The original service left IRC escapes in reply-parent-msg-body; the schema says unescaped.
    let expected = spec_messages()[1].replace(
        r#""@cakebud\\sironmouseACTUALLY\\sfigure\\sit\\sout""#,
        r#""@cakebud ironmouseACTUALLY figure it out""#,
    );
    assert_eq!(msg.to_spec_json(), expected);
    assert_eq!(
        msg.reply_parent_msg_id.as_deref(),
        Some("178293f6-b521-4d25-b808-9d36cc373069")
    );
    assert_eq!(
        msg.reply_thread_parent_user_login.as_deref(),
        Some("uhblivean24")
    );
    assert!(msg.user.vip);
    assert_eq!(
        msg.user.badges,
        Some(vec![
            Badge {
                name: "vip".into(),
                version: "1".into()
            },
            Badge {
                name: "subscriber".into(),
                version: "36".into()
            },
        ])
    );
}

#[test]
fn plain_message_fields() {
    let msg = chat(line("ronni.tmi.twitch.tv PRIVMSG"), &RoomStates::new());
    assert_eq!(msg.text, "cheer100 great stream!");
    assert_eq!(msg.bits, 100);
    assert_eq!(msg.sent_timestamp, 1507246572675);
    assert_eq!(msg.id, "b34ccfc7-4977-403a-8a94-33c6bac34fb8");
    assert!(!msg.is_me);
    assert_eq!(msg.emotes, None, "empty emotes tag");
    assert_eq!(msg.reply_parent_msg_id, None, "absent reply tags");
    let u = &msg.user;
    assert_eq!(u.name, "ronni");
    assert_eq!(u.display_name, "ronni");
    assert_eq!(u.id, "1337");
    assert_eq!(u.color.as_deref(), Some("#1E90FF"));
    assert_eq!(u.user_type.as_deref(), Some("global_mod"));
    assert!(!u.is_mod && u.subscriber && u.turbo && !u.vip);
    assert_eq!(
        u.badge_info,
        Some(vec![Badge {
            name: "subscriber".into(),
            version: "15".into()
        }])
    );
    // No ROOMSTATE seen for #ronni: name and room-id only.
    assert_eq!(
        msg.room,
        Room {
            name: "ronni".into(),
            room_id: "1337".into(),
            ..Room::default()
        }
    );
}

#[test]
fn empty_tags_become_none() {
    let msg = chat(line("display-name=quiet"), &RoomStates::new());
    assert_eq!(msg.user.badge_info, None);
    assert_eq!(msg.user.badges, None);
    assert_eq!(msg.user.color, None);
    assert_eq!(msg.user.user_type, None);
    assert_eq!(msg.emotes, None);
    assert_eq!(msg.bits, 0);
}

#[test]
fn emotes_keep_tag_order() {
    let msg = chat(line("display-name=ModBot"), &RoomStates::new());
    assert_eq!(
        msg.emotes,
        Some(vec![
            Emote {
                id: "25".into(),
                positions: vec![
                    EmotePosition { start: 0, end: 4 },
                    EmotePosition { start: 12, end: 16 }
                ],
            },
            Emote {
                id: "1902".into(),
                positions: vec![EmotePosition { start: 6, end: 10 }]
            },
        ])
    );
    assert!(msg.user.is_mod);
}

/// The text an emote position covers, counting code points as Twitch does.
fn covered(text: &str, p: &EmotePosition) -> String {
    text.chars()
        .skip(p.start as usize)
        .take((p.end - p.start + 1) as usize)
        .collect()
}

#[test]
fn emote_positions_count_code_points_with_emoji_and_cjk() {
    let msg = chat(line("yukirin_jp.tmi.twitch.tv PRIVMSG"), &RoomStates::new());
    assert_eq!(msg.user.display_name, "ゆきりん");
    let e = &msg.emotes.as_ref().unwrap()[0];
    assert_eq!(covered(&msg.text, &e.positions[0]), "Kappa");

    let msg = chat(line("emojifan.tmi.twitch.tv PRIVMSG"), &RoomStates::new());
    assert_eq!(msg.user.display_name, "Emoji Fan", "display-name unescaped");
    let names: Vec<String> = msg
        .emotes
        .unwrap()
        .iter()
        .map(|e| covered(&msg.text, &e.positions[0]))
        .collect();
    assert_eq!(names, ["Keepo", "Kappa"]);
}

#[test]
fn every_fixture_emote_covers_a_word() {
    let mut rooms = RoomStates::new();
    for l in FIXTURE.lines() {
        let m = parse(l).unwrap();
        match process(&m, &mut rooms, 0, &mut Derived::default()) {
            Ok(Record::Chat(msg)) => {
                for e in msg.emotes.iter().flatten() {
                    for p in &e.positions {
                        let word = covered(&msg.text, p);
                        assert_eq!(word.chars().count() as i32, p.end - p.start + 1, "{l}");
                        assert!(!word.contains(' '), "{l}: {word:?}");
                    }
                }
            }
            Ok(_) => {}
            // Twitch's documented CLEARMSG with `room-id=`, of a channel no earlier line names.
            Err(e) => assert!(l.contains("CLEARMSG #bar"), "{l}: {e}"),
        }
    }
}

#[test]
fn action_messages() {
    let msg = chat(line("waver.tmi.twitch.tv PRIVMSG"), &RoomStates::new());
    assert!(msg.is_me);
    assert_eq!(msg.text, "waves at everyone");
    assert_eq!(strip_action("\u{1}ACTION dances"), ("dances", true));
    assert_eq!(strip_action("\u{1}ACTION\u{1}"), ("", true));
    assert_eq!(
        strip_action("\u{1}ACTIONS x\u{1}"),
        ("\u{1}ACTIONS x\u{1}", false)
    );
    assert_eq!(strip_action("ACTION x"), ("ACTION x", false));
}

#[test]
fn trailing_text_is_not_unescaped_but_tags_are() {
    let msg = chat(line("display-name=Predictor"), &RoomStates::new());
    assert_eq!(msg.text, r"semi\:colon; and back\\slash test");
    assert_eq!(
        msg.user.badge_info,
        Some(vec![Badge {
            name: "predictions".into(),
            version: "blue-1".into()
        }])
    );
    assert_eq!(
        msg.raw_tags
            .iter()
            .find(|t| t.key == "flags")
            .map(|t| t.value.as_str()),
        Some("5-9:P.3")
    );
}

#[test]
fn raw_tags_are_all_tags_unescaped_in_order() {
    let l = "@a=x\\sy;b=;c;room-id=1;id=m1;tmi-sent-ts=5 :u!u@u PRIVMSG #c :hi";
    let msg = chat(l, &RoomStates::new());
    let tag = |k: &str, v: &str| Tag {
        key: k.into(),
        value: v.into(),
    };
    assert_eq!(
        msg.raw_tags,
        [
            tag("a", "x y"),
            tag("b", ""),
            tag("c", ""),
            tag("room-id", "1"),
            tag("id", "m1"),
            tag("tmi-sent-ts", "5")
        ]
    );
    assert_eq!(msg.user.display_name, "");
    assert_eq!(msg.user.id, "");
}

#[test]
fn room_comes_from_the_merged_roomstate() {
    let mut rooms = RoomStates::new();
    for l in FIXTURE.lines().filter(|l| l.contains("ROOMSTATE #twitch")) {
        rooms.apply(&parse(l).unwrap()).unwrap();
    }
    let msg = chat(line("display-name=ModBot"), &rooms);
    assert_eq!(
        msg.room,
        Room {
            name: "twitch".into(),
            is_emote_only: false,
            is_subs_only: true,
            is_followers_only: false,
            is_unique_only: true,
            follower_only_delay: 0,
            room_id: "12826".into(),
            slow: 0,
        }
    );
}

#[test]
fn missing_tags_are_resolved_or_derived() {
    let base = "room-id=1;id=m;tmi-sent-ts=5";
    let without = |tag: &str| {
        let tags: Vec<&str> = base.split(';').filter(|t| !t.starts_with(tag)).collect();
        format!("@{} :u!u@u PRIVMSG #c :hi", tags.join(";"))
    };
    // No id: a deterministic id from room, sender, timestamp and text.
    let (m, d) = chat_derived(&without("id="), &RoomStates::new());
    assert_eq!(
        d,
        Derived {
            id: true,
            ..Derived::default()
        }
    );
    assert_eq!(m.id, derived_message_id(&["1", "u", "5", "hi"]));
    assert!(m.id.starts_with("tci-") && m.id.len() == 20, "{}", m.id);
    let (again, _) = chat_derived(&without("id="), &RoomStates::new());
    assert_eq!(again.id, m.id, "a replay gets the same id");
    let other_text = without("id=").replace(":hi", ":hey");
    assert_ne!(chat_derived(&other_text, &RoomStates::new()).0.id, m.id);
    // The user-id tag, when present, names the sender in the hash.
    let (with_uid, _) = chat_derived(
        "@room-id=1;user-id=99;tmi-sent-ts=5 :u!u@u PRIVMSG #c :hi",
        &RoomStates::new(),
    );
    assert_eq!(with_uid.id, derived_message_id(&["1", "99", "5", "hi"]));

    // No tmi-sent-ts: the receive time (42 in these tests).
    let (m, d) = chat_derived(&without("tmi-sent-ts="), &RoomStates::new());
    assert_eq!(
        d,
        Derived {
            sent_timestamp: true,
            ..Derived::default()
        }
    );
    assert_eq!(
        (m.sent_timestamp, m.received_at, m.id.as_str()),
        (42, 42, "m")
    );

    // Empty or absent room-id: the channel's known id, else refused (no channel to file it under).
    assert_eq!(
        chat_err(&without("room-id=")),
        RecordError::MissingTag { tag: "room-id" }
    );
    assert_eq!(
        chat_err("@room-id=;id=m;tmi-sent-ts=5 :u!u@u PRIVMSG #c :hi"),
        RecordError::MissingTag { tag: "room-id" }
    );
    let mut rooms = RoomStates::new();
    rooms.learn_room_id("c", "77");
    let (m, d) = chat_derived("@room-id=;id=m;tmi-sent-ts=5 :u!u@u PRIVMSG #c :hi", &rooms);
    assert_eq!(
        d,
        Derived {
            room_id: true,
            ..Derived::default()
        }
    );
    assert_eq!((m.broadcaster_id, m.room.room_id.as_str()), (77, "77"));

    // Present but malformed: refused, naming the tag.
    assert!(matches!(
        chat_err("@room-id=abc;id=m;tmi-sent-ts=5 :u!u@u PRIVMSG #c :hi"),
        RecordError::InvalidTag { tag: "room-id", .. }
    ));
    assert!(matches!(
        chat_err("@room-id=1;id=m;tmi-sent-ts=soon :u!u@u PRIVMSG #c :hi"),
        RecordError::InvalidTag {
            tag: "tmi-sent-ts",
            ..
        }
    ));
}

#[test]
fn room_id_learned_from_an_earlier_line_of_the_channel() {
    let mut rooms = RoomStates::new();
    let mut d = Derived::default();
    process(
        &parse("@room-id=11148817;id=a;tmi-sent-ts=1 :u!u@u PRIVMSG #pajlada :first").unwrap(),
        &mut rooms,
        0,
        &mut d,
    )
    .unwrap();
    assert_eq!(rooms.room_id("pajlada"), Some("11148817"));
    let Ok(Record::Moderation(e)) = process(
        &parse("@login=u;room-id=;target-msg-id=a;tmi-sent-ts=2 :tmi.twitch.tv CLEARMSG #pajlada :first").unwrap(),
        &mut rooms,
        0,
        &mut d,
    ) else {
        panic!("CLEARMSG with an empty room-id after a line of the channel")
    };
    assert_eq!(e.broadcaster_id, 11148817);
    assert!(d.room_id);
}

#[test]
fn one_word_message_without_the_colon() {
    let l = "@id=x1;room-id=11148817;tmi-sent-ts=1727304317562;bits=1 :lahoooo!lahoooo@lahoooo.tmi.twitch.tv PRIVMSG #pajlada Cheer1";
    let m = chat(l, &RoomStates::new());
    assert_eq!((m.text.as_str(), m.bits), ("Cheer1", 1));
    assert_eq!(m.raw_line.as_deref(), Some(l));
}

#[test]
fn repeated_emote_ids_keep_every_position() {
    let e = parse_emotes("25:1-5/25:9-13").unwrap();
    assert_eq!(
        e,
        [Emote {
            id: "25".into(),
            positions: vec![
                EmotePosition { start: 1, end: 5 },
                EmotePosition { start: 9, end: 13 }
            ]
        }]
    );
    // Ids may contain '/': the group runs to the next ':'.
    let e = parse_emotes("80481_/3:7-14/25:0-4").unwrap();
    let ids: Vec<&str> = e.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["80481_/3", "25"]);
    assert_eq!(e[0].positions, [EmotePosition { start: 7, end: 14 }]);
    // And the message JSON has one key per id, holding every range.
    let m = chat(
        "@emotes=25:0-4/25:6-10;room-id=1;id=m;tmi-sent-ts=5 :u!u@u PRIVMSG #c :Kappa Kappa",
        &RoomStates::new(),
    );
    let json: serde_json::Value = serde_json::from_str(&m.to_spec_json()).unwrap();
    assert_eq!(json["emotes"]["25"].as_array().map(Vec::len), Some(2));
}

#[test]
fn malformed_metadata_degrades() {
    // Malformed metadata degrades (bits 0, emotes none) instead of losing the message; the raw
    // tag is kept verbatim.
    for bits in ["lots", "-5", "1.5", "99999999999"] {
        let m = chat(
            &format!("@bits={bits};room-id=1;id=m;tmi-sent-ts=5 :u!u@u PRIVMSG #c :hi"),
            &RoomStates::new(),
        );
        assert_eq!(m.bits, 0, "{bits}");
        assert!(
            m.raw_tags
                .iter()
                .any(|t| t.key == "bits" && t.value == bits),
            "{bits}"
        );
    }
    for emotes in ["25", "25:", "25:1", "25:a-b", "25:5-1", ":0-1", "25:0-1,"] {
        let m = chat(
            &format!("@emotes={emotes};room-id=1;id=m;tmi-sent-ts=5 :u!u@u PRIVMSG #c :hi"),
            &RoomStates::new(),
        );
        assert_eq!(m.emotes, None, "{emotes}");
        assert!(
            m.raw_tags
                .iter()
                .any(|t| t.key == "emotes" && t.value == emotes),
            "{emotes}"
        );
    }
    assert_eq!(
        chat_err("@room-id=1;id=m;tmi-sent-ts=5 PRIVMSG #c :hi"),
        RecordError::MissingPrefix
    );
    assert_eq!(
        chat_err("@room-id=1;id=m;tmi-sent-ts=5 :u!u@u PRIVMSG #c"),
        RecordError::MissingText
    );
    assert_eq!(
        chat_err("@room-id=1;id=m;tmi-sent-ts=5 :u!u@u PRIVMSG :hi"),
        RecordError::MissingChannel
    );
    assert!(matches!(
        chat_err("PING :x"),
        RecordError::WrongCommand {
            expected: "PRIVMSG",
            ..
        }
    ));
    assert_eq!(
        RecordError::MissingTag { tag: "id" }.to_string(),
        "missing tag id"
    );
}

fn moderation(l: &str) -> ModerationEvent {
    build_moderation_event(
        &parse(l).unwrap(),
        &RoomStates::new(),
        42,
        &mut Derived::default(),
    )
    .unwrap()
}

#[test]
fn clearchat_timeout_ban_and_full_clear() {
    let e = moderation(line("ban-duration=350"));
    assert_eq!(e.kind, ModerationKind::ClearChat);
    assert_eq!(e.broadcaster_id, 12345678);
    assert_eq!(e.channel, "dallas");
    assert_eq!(e.sent_timestamp, 1642719320727);
    assert_eq!(e.target_user_id.as_deref(), Some("87654321"));
    assert_eq!(e.target_user_login.as_deref(), Some("ronni"));
    assert_eq!(e.ban_duration_seconds, Some(350));

    let ban = moderation(line("target-user-id=87654321;tmi-sent-ts=1642715756806"));
    assert_eq!(ban.ban_duration_seconds, None, "permanent ban");
    assert_eq!(ban.target_user_login.as_deref(), Some("ronni"));

    let clear = moderation(line(
        "tmi-sent-ts=1642715695392 :tmi.twitch.tv CLEARCHAT #dallas",
    ));
    assert_eq!(
        (
            clear.target_user_id,
            clear.target_user_login,
            clear.ban_duration_seconds
        ),
        (None, None, None)
    );
    // No id tag: the event id is the line's digest, stable across deliveries.
    assert_eq!(
        clear.event_id,
        line_digest(line(
            "tmi-sent-ts=1642715695392 :tmi.twitch.tv CLEARCHAT #dallas"
        ))
    );
    assert_eq!(clear.event_id.len(), 16);
    assert_ne!(clear.event_id, ban.event_id);
}

#[test]
fn clearmsg_and_empty_room_id_fallback() {
    let e = moderation(line("CLEARMSG #dallas"));
    assert_eq!(e.kind, ModerationKind::ClearMsg);
    assert_eq!(e.target_message_id.as_deref(), Some("abc-123-def"));
    assert_eq!(e.target_user_login.as_deref(), Some("ronni"));
    assert_eq!(e.text.as_deref(), Some("HeyGuys"));

    // `room-id=` is empty in Twitch's documented example: fall back to the ROOMSTATE.
    let m = parse(line("CLEARMSG #bar")).unwrap();
    let mut d = Derived::default();
    assert_eq!(
        build_moderation_event(&m, &RoomStates::new(), 0, &mut d),
        Err(RecordError::MissingTag { tag: "room-id" })
    );
    let mut rooms = RoomStates::new();
    rooms
        .apply(&parse("@room-id=777;slow=0 :tmi.twitch.tv ROOMSTATE #bar").unwrap())
        .unwrap();
    let mut d = Derived::default();
    let e = build_moderation_event(&m, &rooms, 0, &mut d).unwrap();
    assert!(d.room_id);
    assert_eq!(e.raw_line.as_deref(), Some(line("CLEARMSG #bar")));
    assert_eq!(e.broadcaster_id, 777);
    assert_eq!(e.text.as_deref(), Some("what a great day"));
    assert_eq!(e.target_user_login.as_deref(), Some("foo"));
}

#[test]
fn usernotice_sub_resub_raid() {
    let sub = moderation(line("msg-id=sub;"));
    assert_eq!(sub.kind, ModerationKind::UserNotice);
    assert_eq!(sub.event_id, "229ecd51-1ec2-4dda-ae43-6ac4058a25a3");
    assert_eq!(sub.msg_id.as_deref(), Some("sub"));
    assert_eq!(
        sub.system_msg.as_deref(),
        Some("burago18 subscribed at Tier 1.")
    );
    assert_eq!(sub.target_user_login.as_deref(), Some("burago18"));
    assert_eq!(sub.target_user_id.as_deref(), Some("44812924"));
    assert_eq!(sub.text, None);
    let plan = sub
        .raw_tags
        .iter()
        .find(|t| t.key == "msg-param-sub-plan-name")
        .unwrap();
    assert_eq!(plan.value, "Channel Subscription (dallas)");

    let resub = moderation(line("msg-id=resub;"));
    assert_eq!(
        resub.system_msg.as_deref(),
        Some("ronni has subscribed for 6 months!")
    );
    assert_eq!(resub.text.as_deref(), Some("Great stream -- keep it up!"));

    let raid = moderation(line("msg-id=raid;"));
    assert_eq!(raid.channel, "othertestchannel");
    assert_eq!(
        raid.system_msg.as_deref(),
        Some("15 raiders from TestChannel have joined\n!")
    );
    assert_eq!(raid.broadcaster_id, 33332222);
}

#[test]
fn moderation_errors() {
    let err = |l: &str| {
        build_moderation_event(
            &parse(l).unwrap(),
            &RoomStates::new(),
            0,
            &mut Derived::default(),
        )
        .unwrap_err()
    };
    assert!(matches!(err("PING :x"), RecordError::WrongCommand { .. }));
    assert!(matches!(
        err("@room-id=1;tmi-sent-ts=1;ban-duration=forever :tmi.twitch.tv CLEARCHAT #a :x"),
        RecordError::InvalidTag {
            tag: "ban-duration",
            ..
        }
    ));
    assert_eq!(
        err("@room-id=1;tmi-sent-ts=1 :tmi.twitch.tv CLEARCHAT"),
        RecordError::MissingChannel
    );
}

#[test]
fn process_dispatches_every_fixture_line() {
    let mut rooms = RoomStates::new();
    let (mut chats, mut mods, mut states, mut other, mut errors) = (0, 0, 0, 0, 0);
    for l in FIXTURE.lines() {
        match process(&parse(l).unwrap(), &mut rooms, 0, &mut Derived::default()) {
            Ok(Record::Chat(_)) => chats += 1,
            Ok(Record::Moderation(_)) => mods += 1,
            Ok(Record::RoomState(_)) => states += 1,
            Ok(Record::Other) => other += 1,
            Err(_) => errors += 1,
        }
    }
    // The one error: CLEARMSG #bar with `room-id=` and no earlier line of #bar.
    assert_eq!((chats, mods, states, other, errors), (14, 8, 5, 11, 1));
    assert_eq!(rooms.len(), 2);
}

#[test]
fn every_fixture_chat_line_renders_its_record_json_and_log_text_from_the_line_alone() {
    let mut rooms = RoomStates::new();
    let mut j = tci_schemas::PyJson::default();
    let mut checked = 0;
    for l in FIXTURE.lines() {
        let Ok(Record::Chat(m)) =
            process(&parse(l).unwrap(), &mut rooms, 7, &mut Derived::default())
        else {
            continue;
        };
        j.clear();
        let settings = tci_schemas::RoomSettings::encode(&m.room, m.broadcaster_id).unwrap();
        render_message_json(l, m.broadcaster_id, 7, &settings, &mut j).unwrap();
        assert_eq!(j.as_str(), m.to_spec_json(), "{l}");
        let mut log = String::new();
        write_log_text(l, &mut log).unwrap();
        let me = if m.is_me { "/me " } else { "" };
        assert_eq!(
            log,
            format!("#{} {}: {me}{}", m.room.name, m.user.name, m.text),
            "{l}"
        );
        checked += 1;
    }
    assert_eq!(checked, 14);
}

#[test]
fn rendering_uses_the_stored_room_settings_and_refuses_what_is_not_a_privmsg() {
    let l = line("PRIVMSG #sneakylol");
    let settings = "emote-only=0;followers-only=10;r9k=0;slow=30;subs-only=0";
    let mut j = tci_schemas::PyJson::default();
    render_message_json(l, 24538518, 0, settings, &mut j).unwrap();
    assert!(
        j.as_str().contains(
            "\"is_followers_only\": true, \"is_unique_only\": false, \"follower_only_delay\": 10"
        ),
        "{}",
        j.as_str()
    );
    assert!(j.as_str().contains("\"slow\": 30}"), "{}", j.as_str());
    let mut j = tci_schemas::PyJson::default();
    assert_eq!(
        render_message_json(":tmi.twitch.tv PING", 1, 0, settings, &mut j)
            .unwrap_err()
            .label(),
        "wrong_command"
    );
    assert_eq!(
        render_message_json("", 1, 0, settings, &mut j)
            .unwrap_err()
            .label(),
        "unparsable"
    );
}

proptest::proptest! {
    #[test]
    fn builders_never_panic(s in "@[a-z=;0-9\\-:,/ ]{0,60} :u!u@u (PRIVMSG|CLEARCHAT|CLEARMSG|USERNOTICE|ROOMSTATE) #c( :.{0,10})?") {
        if let Ok(m) = parse(&s) {
            let mut rooms = RoomStates::new();
            let _ = process(&m, &mut rooms, 0, &mut Derived::default());
        }
    }
}

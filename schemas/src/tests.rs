#![allow(deprecated)] // apache-avro 0.22 deprecates the datum helpers; fine for a test
use super::*;
use apache_avro::{from_value, to_value, Schema};

fn spec_sample() -> serde_json::Value {
    serde_json::from_str(include_str!("../tests/fixtures/spec_sample_response.json"))
        .expect("fixture")
}

/// The first message of the spec's sample response, as our record.
pub(crate) fn sample_one() -> ChatMessage {
    ChatMessage {
        broadcaster_id: 24538518,
        id: "0a232bf9-2e6a-4bd4-85e3-c9800b68fedb".into(),
        sent_timestamp: 1706408359963,
        received_at: 1706408359990,
        text: "@uhblivean24 ofc in the game eavShy".into(),
        is_me: false,
        bits: 0,
        emotes: Some(vec![Emote {
            id: "emotesv2_a439839fd0a34aceb1712e348bf22cb8".into(),
            positions: vec![EmotePosition { start: 29, end: 34 }],
        }]),
        room: Room {
            name: "sneakylol".into(),
            is_followers_only: true,
            room_id: "24538518".into(),
            ..Room::default()
        },
        user: User {
            name: "cutie_amelka".into(),
            badges: Some(vec![Badge {
                name: "premium".into(),
                version: "1".into(),
            }]),
            color: Some("#8A2BE2".into()),
            display_name: "Cutie_amelka".into(),
            id: "212750661".into(),
            ..User::default()
        },
        raw_tags: vec![Tag {
            key: "id".into(),
            value: "0a232bf9-2e6a-4bd4-85e3-c9800b68fedb".into(),
        }],
        ..ChatMessage::default()
    }
}

#[test]
fn spec_json_matches_the_spec_sample_byte_for_byte() {
    let doc = spec_sample();
    let expected = doc["messages"][0]["message"]
        .as_str()
        .expect("message string");
    assert_eq!(sample_one().to_spec_json(), expected);
}

#[test]
fn spec_json_of_a_reply_matches_the_sample_except_the_unescaped_body() {
    let doc = spec_sample();
    let expected = doc["messages"][1]["message"]
        .as_str()
        .expect("message string");
    let m = ChatMessage {
        broadcaster_id: 24538518,
        id: "435c1723-5d6f-4aee-927d-6f9f50889e0f".into(),
        sent_timestamp: 1706408361811,
        text: "@Uhblivean24 trying my best Suffering".into(),
        reply_parent_msg_id: Some("178293f6-b521-4d25-b808-9d36cc373069".into()),
        reply_parent_user_id: Some("39988164".into()),
        reply_parent_user_login: Some("uhblivean24".into()),
        reply_parent_display_name: Some("Uhblivean24".into()),
        // The original left IRC escapes in the body; we unescape.
        reply_parent_msg_body: Some("@cakebud ironmouseACTUALLY figure it out".into()),
        reply_thread_parent_msg_id: Some("178293f6-b521-4d25-b808-9d36cc373069".into()),
        reply_thread_parent_user_login: Some("uhblivean24".into()),
        room: sample_one().room,
        user: User {
            name: "cakebud".into(),
            badge_info: Some(vec![Badge {
                name: "subscriber".into(),
                version: "38".into(),
            }]),
            badges: Some(vec![
                Badge {
                    name: "vip".into(),
                    version: "1".into(),
                },
                Badge {
                    name: "subscriber".into(),
                    version: "36".into(),
                },
            ]),
            color: Some("#FF69B4".into()),
            display_name: "CakeBud".into(),
            subscriber: true,
            id: "94880631".into(),
            vip: true,
            ..User::default()
        },
        ..ChatMessage::default()
    };
    let ours = m.to_spec_json();
    let original_body = r#""@cakebud\\sironmouseACTUALLY\\sfigure\\sit\\sout""#;
    let ours_body = r#""@cakebud ironmouseACTUALLY figure it out""#;
    assert_eq!(ours, expected.replace(original_body, ours_body));
    // and it is valid JSON whose values match
    let parsed: serde_json::Value = serde_json::from_str(&ours).expect("valid json");
    assert_eq!(parsed["user"]["badges"]["subscriber"], "36");
}

#[test]
fn spec_json_escapes_like_python_ensure_ascii() {
    let mut m = sample_one();
    m.text = "héllo \"q\" \\ \u{1F600}\n\u{7f}".into();
    let json = m.to_spec_json();
    assert!(
        json.starts_with(r#"{"text": "h\u00e9llo \"q\" \\ \ud83d\ude00\n\u007f", "#),
        "{json}"
    );
    let back: serde_json::Value = serde_json::from_str(&json).expect("valid json");
    assert_eq!(back["text"], m.text);
}

#[test]
fn avro_schemas_parse_and_records_round_trip() {
    for avsc in [
        CHAT_MESSAGE_AVSC,
        LIVE_STREAM_AVSC,
        MODERATION_EVENT_AVSC,
        OPTOUT_AVSC,
    ] {
        Schema::parse_str(avsc).expect("schema parses");
    }
    let schema = Schema::parse_str(CHAT_MESSAGE_AVSC).expect("schema");
    let m = sample_one();
    let value = to_value(&m)
        .expect("to value")
        .resolve(&schema)
        .expect("resolves");
    let bytes = apache_avro::to_avro_datum(&schema, value).expect("encode");
    let back_value = apache_avro::from_avro_datum(&schema, &mut &bytes[..], None).expect("decode");
    let back: ChatMessage = from_value(&back_value).expect("from value");
    assert_eq!(back, m);

    let schema = Schema::parse_str(MODERATION_EVENT_AVSC).expect("schema");
    let ev = ModerationEvent {
        broadcaster_id: 1,
        kind: ModerationKind::ClearMsg,
        event_id: "e".into(),
        sent_timestamp: 5,
        channel: "c".into(),
        target_user_id: None,
        target_user_login: Some("bob".into()),
        target_message_id: Some("m".into()),
        ban_duration_seconds: Some(600),
        msg_id: None,
        text: Some("bad words".into()),
        system_msg: None,
        raw_tags: vec![ModTag {
            key: "k".into(),
            value: "v".into(),
        }],
        received_at: Some(7),
        raw_line: Some("@k=v :tmi.twitch.tv CLEARCHAT #c".into()),
    };
    let value = to_value(&ev)
        .expect("to value")
        .resolve(&schema)
        .expect("resolves");
    let bytes = apache_avro::to_avro_datum(&schema, value).expect("encode");
    let back_value = apache_avro::from_avro_datum(&schema, &mut &bytes[..], None).expect("decode");
    assert_eq!(
        from_value::<ModerationEvent>(&back_value).expect("from value"),
        ev
    );
}

#[test]
fn optout_records_round_trip() {
    let schema = Schema::parse_str(OPTOUT_AVSC).expect("schema");
    for ev in [
        OptOut {
            scope: OptOutScope::User,
            id: 42,
            login: Some("alice".into()),
            opted_out: true,
            at: 1_700_000_000_000,
            source: OptOutSource::Chat,
        },
        OptOut {
            scope: OptOutScope::Channel,
            id: 7,
            login: None,
            opted_out: false,
            at: 5,
            source: OptOutSource::Operator,
        },
    ] {
        let value = to_value(&ev)
            .expect("to value")
            .resolve(&schema)
            .expect("resolves");
        let bytes = apache_avro::to_avro_datum(&schema, value).expect("encode");
        let back_value =
            apache_avro::from_avro_datum(&schema, &mut &bytes[..], None).expect("decode");
        assert_eq!(from_value::<OptOut>(&back_value).expect("from value"), ev);
    }
}

proptest::proptest! {
    #[test]
    fn the_fast_escaper_writes_what_the_reference_writes(s in "(?s).{0,40}", ascii in "[ -~]{0,40}") {
        for text in [s.as_str(), ascii.as_str(), "\u{7f}\u{0}\u{1f}\u{1f438}é\\\"\n\r\t\u{8}\u{c}"] {
            let (mut fast, mut reference) = (String::new(), String::new());
            json::escape_str(&mut fast, text, false);
            json::escape_reference(&mut reference, text);
            proptest::prop_assert_eq!(fast, reference);
        }
    }

    #[test]
    fn spec_json_is_valid_json_for_any_text(text in ".*", name in "\\PC*") {
        let mut m = sample_one();
        m.text = text.clone();
        m.user.display_name = name.clone();
        let parsed: serde_json::Value = serde_json::from_str(&m.to_spec_json()).expect("valid");
        proptest::prop_assert_eq!(parsed["text"].as_str(), Some(text.as_str()));
        proptest::prop_assert_eq!(parsed["user"]["display_name"].as_str(), Some(name.as_str()));
    }
}

#[test]
fn room_settings_round_trip_through_their_stored_text() {
    let mut room = Room {
        name: "c".into(),
        room_id: "42".into(),
        ..Room::default()
    };
    assert_eq!(
        RoomSettings::encode(&room, 42).as_deref(),
        Some("emote-only=0;followers-only=-1;r9k=0;slow=0;subs-only=0")
    );
    room.is_emote_only = true;
    room.is_followers_only = true;
    room.follower_only_delay = 10;
    room.is_unique_only = true;
    room.slow = 120;
    room.is_subs_only = true;
    let text = RoomSettings::encode(&room, 7).unwrap();
    assert_eq!(
        text,
        "emote-only=1;followers-only=10;r9k=1;slow=120;subs-only=1;room-id=42"
    );
    assert_eq!(
        RoomSettings::decode(&text),
        Some((RoomSettings::of(&room), Some("42")))
    );
    // No text form: storage keeps the JSON.
    room.is_followers_only = false;
    assert_eq!(RoomSettings::encode(&room, 42), None);
    for bad in [
        "",
        "emote-only=2;followers-only=-1;r9k=0;slow=0;subs-only=0",
        "emote-only=0;followers-only=-2;r9k=0;slow=0;subs-only=0",
        "emote-only=0;followers-only=-1;r9k=0;slow=01;subs-only=0",
        "emote-only=0;followers-only=-1;r9k=0;slow=0",
        "emote-only=0;followers-only=-1;r9k=0;slow=0;subs-only=0;x=1",
        "emote-only=0;followers-only=-1;r9k=0;slow=0;subs-only=0;room-id=1;y",
    ] {
        assert_eq!(RoomSettings::decode(bad), None, "{bad}");
    }
}

proptest::proptest! {
    /// The embedded writer writes in one pass what escaping the plain document gives.
    #[test]
    fn embedded_documents_are_the_escaped_plain_ones(key in "(?s).{0,12}", value in "(?s).{0,40}", n in proptest::prelude::any::<i64>()) {
        let write = |j: &mut PyJson| {
            j.begin_object();
            j.key(&key).string(&value);
            j.key("list").begin_array();
            j.bool(true);
            j.int(n);
            j.opt_string(None);
            j.end_array();
            j.end_object();
        };
        let (mut plain, mut embedded) = (PyJson::default(), PyJson::embedded(0));
        write(&mut plain);
        write(&mut embedded);
        let mut escaped = Vec::new();
        escape_json_content(&mut escaped, plain.as_str());
        proptest::prop_assert_eq!(embedded.as_str().as_bytes(), escaped.as_slice());
        let mut pushed = PyJson::embedded(0);
        pushed.push_document(plain.as_str());
        proptest::prop_assert_eq!(pushed.as_str(), embedded.as_str());
    }

    /// The message JSON's fixed-layout writer, on any text in every string field: the plain
    /// document is JSON holding those values, and the embedded one is exactly the plain one
    /// escaped (what the API serves).
    #[test]
    fn message_json_embedded_is_the_escaped_plain_one(
        s in proptest::collection::vec("(?s).{0,8}", 6),
        reply in proptest::option::of("(?s).{0,8}"),
        n in proptest::prelude::any::<i32>(),
    ) {
        let mut m = sample_one();
        m.text = s[0].clone();
        m.room.name = s[1].clone();
        m.user.display_name = s[2].clone();
        m.user.badges = Some(vec![Badge { name: s[3].clone(), version: s[4].clone() }]);
        m.emotes = Some(vec![Emote { id: s[5].clone(), positions: vec![EmotePosition { start: n, end: n }] }]);
        m.reply_parent_msg_body = reply.clone();
        m.user.color = reply.clone();
        m.bits = n;
        let plain = m.to_spec_json();
        let v: serde_json::Value = serde_json::from_str(&plain).expect("valid JSON");
        proptest::prop_assert_eq!(v["text"].as_str(), Some(s[0].as_str()));
        proptest::prop_assert_eq!(v["room"]["name"].as_str(), Some(s[1].as_str()));
        proptest::prop_assert_eq!(v["user"]["display_name"].as_str(), Some(s[2].as_str()));
        proptest::prop_assert_eq!(v["user"]["badges"][&s[3]].as_str(), Some(s[4].as_str()));
        let end = n.to_string();
        proptest::prop_assert_eq!(v["emotes"][&s[5]][0]["end_position"].as_str(), Some(end.as_str()));
        proptest::prop_assert_eq!(v["reply_parent_msg_body"].as_str(), reply.as_deref());
        proptest::prop_assert_eq!(v["user"]["color"].as_str(), reply.as_deref());
        proptest::prop_assert_eq!(v["bits"].as_i64(), Some(i64::from(n)));
        let mut embedded = PyJson::embedded(0);
        m.view().write_spec_json(&mut embedded);
        let mut escaped = Vec::new();
        escape_json_content(&mut escaped, &plain);
        proptest::prop_assert_eq!(embedded.as_str().as_bytes(), escaped.as_slice());
    }

    /// escape_json_content is serde_json's string escaping.
    #[test]
    fn content_escaping_is_serde_jsons(s in proptest::prelude::any::<String>()) {
        let mut v = vec![b'"'];
        escape_json_content(&mut v, &s);
        v.push(b'"');
        proptest::prop_assert_eq!(String::from_utf8(v).unwrap(), serde_json::to_string(&s).unwrap());
    }
}

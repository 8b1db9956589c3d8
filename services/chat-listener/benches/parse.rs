//! Parsing throughput on realistic Twitch lines (`services/twitch-irc/tests/fixtures/twitch_lines.txt`), in lines/s.
//!
//! * `ours/parse`: [`irc::parse`] alone (lazy: finds the parts, splits nothing).
//! * `ours/parse+tags`: parse, then walk every tag and unescape its value, the work a consumer
//!   of all tags does; comparable to what `twitch-irc` does eagerly.
//! * `twitch-irc/parse`: `twitch_irc::message::IRCMessage::parse` (tags into a `HashMap`).
//! * `ours/parse+record+avro`: parse, [`record::process`] (PRIVMSG → `ChatMessage`, ROOMSTATE
//!   merge, moderation events), and Avro-encode every chat message
//!   (`to_value` → `resolve` → `to_avro_datum`).
//! * `privmsg/ours/parse+build+avro_write_ser`: the same encoding through
//!   `GenericDatumWriter::write_ser` (serde straight to Avro, no `Value`); checked to give the
//!   same bytes.
//!
//! Run: `cargo bench -p chat-listener --bench parse -- --warm-up-time 1 --measurement-time 3`.
#![allow(deprecated)] // apache-avro 0.22 deprecates to_avro_datum; it is what the brief measures

use std::hint::black_box;

use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use chat_listener::irc;
use chat_listener::record::{self, Derived, Record, RoomStates};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const FIXTURE: &str = include_str!("../../twitch-irc/tests/fixtures/twitch_lines.txt");

fn lines() -> Vec<&'static str> {
    FIXTURE.lines().collect()
}

fn encode(schema: &Schema, msg: &tci_schemas::ChatMessage) -> Vec<u8> {
    let value = apache_avro::to_value(msg)
        .expect("to_value")
        .resolve(schema)
        .expect("resolve");
    apache_avro::to_avro_datum(schema, value).expect("encode")
}

fn bench_all_lines(c: &mut Criterion) {
    let lines = lines();
    let schema = Schema::parse_str(tci_schemas::CHAT_MESSAGE_AVSC).expect("schema");
    let mut g = c.benchmark_group("all_lines");
    g.throughput(Throughput::Elements(lines.len() as u64));

    g.bench_function("ours/parse", |b| {
        b.iter(|| {
            for l in &lines {
                let _ = black_box(irc::parse(black_box(l)));
            }
        })
    });

    g.bench_function("ours/parse+tags", |b| {
        b.iter(|| {
            for l in &lines {
                if let Ok(m) = irc::parse(black_box(l)) {
                    for (k, v) in m.tags() {
                        black_box((k, irc::unescape(v)));
                    }
                }
            }
        })
    });

    g.bench_function("twitch-irc/parse", |b| {
        b.iter(|| {
            for l in &lines {
                let _ = black_box(twitch_irc::message::IRCMessage::parse(black_box(l)));
            }
        })
    });

    g.bench_function("ours/parse+record+avro", |b| {
        b.iter(|| {
            let mut rooms = RoomStates::new();
            for l in &lines {
                let Ok(m) = irc::parse(black_box(l)) else {
                    continue;
                };
                if let Ok(Record::Chat(msg)) =
                    record::process(&m, &mut rooms, 0, &mut Derived::default())
                {
                    black_box(encode(&schema, &msg));
                }
            }
        })
    });
    g.finish();
}

fn bench_privmsg(c: &mut Criterion) {
    let lines: Vec<&str> = lines()
        .into_iter()
        .filter(|l| l.contains(" PRIVMSG #"))
        .collect();
    let schema = Schema::parse_str(tci_schemas::CHAT_MESSAGE_AVSC).expect("schema");
    let rooms = RoomStates::new();
    let mut g = c.benchmark_group("privmsg");
    g.throughput(Throughput::Elements(lines.len() as u64));

    g.bench_function("ours/parse", |b| {
        b.iter(|| {
            for l in &lines {
                let _ = black_box(irc::parse(black_box(l)));
            }
        })
    });
    g.bench_function("twitch-irc/parse", |b| {
        b.iter(|| {
            for l in &lines {
                let _ = black_box(twitch_irc::message::IRCMessage::parse(black_box(l)));
            }
        })
    });
    g.bench_function("ours/parse+build", |b| {
        b.iter(|| {
            for l in &lines {
                if let Ok(m) = irc::parse(black_box(l)) {
                    let _ = black_box(record::build_chat_message(
                        &m,
                        &rooms,
                        0,
                        &mut Derived::default(),
                    ));
                }
            }
        })
    });
    g.bench_function("ours/parse+build+avro", |b| {
        b.iter(|| {
            for l in &lines {
                if let Ok(m) = irc::parse(black_box(l)) {
                    if let Ok(msg) =
                        record::build_chat_message(&m, &rooms, 0, &mut Derived::default())
                    {
                        black_box(encode(&schema, &msg));
                    }
                }
            }
        })
    });
    let writer = GenericDatumWriter::builder(&schema)
        .build()
        .expect("datum writer");
    // The direct serde path must give the very bytes of the Value path.
    for l in &lines {
        let msg = record::build_chat_message(
            &irc::parse(l).expect("parse"),
            &rooms,
            0,
            &mut Derived::default(),
        )
        .expect("build");
        assert_eq!(
            writer.write_ser_to_vec(&msg).expect("write_ser"),
            encode(&schema, &msg),
            "{l}"
        );
    }
    let mut buf = Vec::with_capacity(2048);
    g.bench_function("ours/parse+build+avro_write_ser", |b| {
        b.iter(|| {
            for l in &lines {
                if let Ok(m) = irc::parse(black_box(l)) {
                    if let Ok(msg) =
                        record::build_chat_message(&m, &rooms, 0, &mut Derived::default())
                    {
                        buf.clear();
                        writer.write_ser(&mut buf, &msg).expect("write_ser");
                        black_box(&buf);
                    }
                }
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_all_lines, bench_privmsg);
criterion_main!(benches);

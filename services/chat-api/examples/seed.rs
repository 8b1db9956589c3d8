//! Seeds a keyspace for the API benchmark and the schemathesis run: migrates it, then writes
//! chat with the chat tables' own plan and statements (`chat-store`: messages, bucket index, user
//! logs, CLEARMSG deletions) and streamers. Every message is built from a realistic IRC line by
//! the listener's own record builder (`tci-irc`), so it is stored as the live system stores it:
//! the line and the room state, the JSON rendered on read.
//!
//! `cargo run --release -p chat-api --example seed -- --keyspace tci_bench_api`

use std::time::Instant;

use chat_store::{bucket_of, plan, Record, Write, WriteStatements, BUCKET_MS};
use clap::Parser;
use futures::{stream, StreamExt, TryStreamExt};
use tci_common::{cassandra, CassandraConfig};
use tci_irc::record::{build_chat_message, Derived, RoomStates};
use tci_schemas::{ModerationEvent, ModerationKind};

#[derive(Debug, Parser)]
struct Args {
    /// Keyspace to create and fill.
    #[arg(long, default_value = "tci_bench_api")]
    keyspace: String,
    /// Cassandra contact point.
    #[arg(long, default_value = "127.0.0.1:9042")]
    node: String,
    /// Channel to fill.
    #[arg(long, default_value_t = 24538518)]
    broadcaster: i64,
    /// Buckets (5 minutes each) with chat, starting at --start-ms.
    #[arg(long, default_value_t = 12)]
    buckets: i64,
    /// Messages per bucket.
    #[arg(long, default_value_t = 2000)]
    per_bucket: i64,
    /// Start of the chat, ms since the epoch (a bucket boundary is used).
    #[arg(long, default_value_t = 1_706_400_000_000)]
    start_ms: i64,
    /// Writes in flight.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg = CassandraConfig {
        nodes: vec![args.node.clone()],
        keyspace: args.keyspace.clone(),
        consistency: "one".into(),
        ..CassandraConfig::default()
    };
    let s = cassandra::connect_once(&cfg).await?;
    cassandra::migrate(&s, &cfg).await?;
    let ks = &args.keyspace;
    // Chat is planned and bound by the chat tables' owner, so the rows (messages, bucket index,
    // user logs, deletion marks) are exactly what the live system writes.
    let writes = WriteStatements::prepare(&s, ks).await?;
    let max_rows = 50;
    let t0 = bucket_of(args.start_ms);
    let b = args.broadcaster;
    let total = args.buckets * args.per_bucket;
    let started = Instant::now();
    let mut records = Vec::with_capacity(1000);
    let mut rooms = RoomStates::new();
    let roomstate = format!(
        "@emote-only=0;followers-only=0;r9k=0;room-id={b};slow=0;subs-only=0 :tmi.twitch.tv ROOMSTATE #sneakylol"
    );
    rooms.apply(&tci_irc::irc::parse(&roomstate).map_err(|e| anyhow::anyhow!("{e}"))?)?;
    for n in 0..total {
        let bucket_no = n / args.per_bucket;
        // Several messages per millisecond, like a busy channel.
        let ts = t0
            + bucket_no * BUCKET_MS
            + (n % args.per_bucket) * (BUCKET_MS / args.per_bucket) / 3 * 3;
        let user = 100_000 + (n % 97);
        let id = format!(
            "{:08x}-2e6a-4bd4-85e3-{n:012}",
            (n as u32).wrapping_mul(2_654_435_761)
        );
        // "@uhblivean24 ofc in the game " is 29 code points: the emote covers eavShy.
        let line = format!(
            "@badge-info=subscriber/38;badges=vip/1,subscriber/36;client-nonce={:032x};color=#8A2BE2;display-name=User{user};emotes=emotesv2_a439839fd0a34aceb1712e348bf22cb8:29-34;first-msg=0;flags=;id={id};mod=0;returning-chatter=0;room-id={b};subscriber=1;tmi-sent-ts={ts};turbo=0;user-id={user};user-type=;vip=1 :user{user}!user{user}@user{user}.tmi.twitch.tv PRIVMSG #sneakylol :@uhblivean24 ofc in the game eavShy {n}",
            u128::from(n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
        );
        let parsed = tci_irc::irc::parse(&line).map_err(|e| anyhow::anyhow!("{e}: {line}"))?;
        let m = build_chat_message(&parsed, &rooms, ts + 3, &mut Derived::default())?;
        if n % 50 == 7 {
            // A moderator deletes it a moment later.
            records.push(Record::Moderation(Box::new(ModerationEvent {
                broadcaster_id: b,
                kind: ModerationKind::ClearMsg,
                event_id: format!("clearmsg-{}", m.id),
                sent_timestamp: ts,
                channel: "sneakylol".into(),
                target_user_id: None,
                target_user_login: Some(m.user.name.clone()),
                target_message_id: Some(m.id.clone()),
                ban_duration_seconds: None,
                msg_id: None,
                text: Some(m.text.clone()),
                system_msg: None,
                raw_tags: Vec::new(),
                received_at: None,
                raw_line: None,
            })));
        }
        records.push(Record::Chat(Box::new(m)));
        if records.len() >= 1000 || n + 1 == total {
            let p = plan(&records, max_rows);
            let all: Vec<Write<'_>> = p.writes().collect();
            stream::iter(all.iter().map(|w| writes.execute(&s, w)))
                .buffer_unordered(args.concurrency)
                .try_collect::<Vec<()>>()
                .await?;
            records.clear();
        }
    }
    let st = s.prepare(format!("INSERT INTO {ks}.streamers (broadcaster_id, login, display_name, first_seen, last_seen_live, title, game_name, language) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")).await?;
    let now = tci_common::now_ms();
    for i in 0..50_i64 {
        let seen = if i % 3 == 0 {
            now - 30_000
        } else {
            now - 86_400_000
        };
        s.execute_unpaged(
            &st,
            (
                b + i,
                format!("streamer{i}"),
                format!("Streamer{i}"),
                scylla::value::CqlTimestamp(now - 30 * 86_400_000),
                scylla::value::CqlTimestamp(seen),
                "title",
                "Just Chatting",
                "en",
            ),
        )
        .await?;
    }
    println!(
        "seeded {ks}: broadcaster {b}, {total} messages in {} buckets from {t0} (first bucket {t0}..{}), 50 streamers, in {:.1}s",
        args.buckets,
        t0 + BUCKET_MS - 1,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

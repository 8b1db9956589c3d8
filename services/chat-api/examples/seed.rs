//! Seeds a keyspace for the API benchmark and the schemathesis run: migrates it, then writes
//! chat (messages, bucket index, user logs) with the ingestor's CQL, a few deletions and
//! streamers.
//!
//! `cargo run --release -p chat-api --example seed -- --keyspace tci_bench_api`

use std::time::Instant;

use anyhow::Context as _;
use clap::Parser;
use futures::{stream, StreamExt, TryStreamExt};
use tci_common::{cassandra, CassandraConfig};
use tci_schemas::{bucket_of, ChatMessage, Room, User, BUCKET_MS};

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
    let msg = s.prepare(format!("INSERT INTO {ks}.chat_messages (broadcaster_id, bucket, sent_ts, message_id, user_id, message) VALUES (?, ?, ?, ?, ?, ?)")).await?;
    let idx = s
        .prepare(format!(
            "INSERT INTO {ks}.chat_buckets (broadcaster_id, bucket) VALUES (?, ?)"
        ))
        .await?;
    let umsg = s.prepare(format!("INSERT INTO {ks}.user_chat_messages (broadcaster_id, user_id, bucket, sent_ts, message_id, message) VALUES (?, ?, ?, ?, ?, ?)")).await?;
    let uidx = s
        .prepare(format!(
            "INSERT INTO {ks}.user_chat_buckets (broadcaster_id, user_id, bucket) VALUES (?, ?, ?)"
        ))
        .await?;
    let del = s.prepare(format!("INSERT INTO {ks}.deleted_messages (broadcaster_id, bucket, message_id, reason) VALUES (?, ?, ?, ?)")).await?;
    let t0 = bucket_of(args.start_ms);
    let b = args.broadcaster;
    let total = args.buckets * args.per_bucket;
    let started = Instant::now();
    stream::iter(0..total)
        .map(|n| {
            let (s, msg, idx, umsg, uidx, del) = (&s, &msg, &idx, &umsg, &uidx, &del);
            async move {
                let bucket_no = n / args.per_bucket;
                // Several messages per millisecond, like a busy channel.
                let ts = t0
                    + bucket_no * BUCKET_MS
                    + (n % args.per_bucket) * (BUCKET_MS / args.per_bucket) / 3 * 3;
                let user = 100_000 + (n % 97);
                let m = ChatMessage {
                    broadcaster_id: b,
                    id: format!(
                        "{:08x}-2e6a-4bd4-85e3-{n:012}",
                        (n as u32).wrapping_mul(2_654_435_761)
                    ),
                    sent_timestamp: ts,
                    received_at: ts + 3,
                    text: format!("@uhblivean24 message number {n} in the game eavShy"),
                    room: Room {
                        name: "sneakylol".into(),
                        is_followers_only: true,
                        room_id: b.to_string(),
                        ..Room::default()
                    },
                    user: User {
                        name: format!("user{user}"),
                        display_name: format!("User{user}"),
                        color: Some("#8A2BE2".into()),
                        id: user.to_string(),
                        ..User::default()
                    },
                    ..ChatMessage::default()
                };
                let json = m.to_spec_json();
                let bucket = m.bucket();
                s.execute_unpaged(msg, (b, bucket, ts, &m.id, Some(user), &json))
                    .await?;
                s.execute_unpaged(idx, (b, bucket)).await?;
                s.execute_unpaged(umsg, (b, user, bucket, ts, &m.id, &json))
                    .await?;
                s.execute_unpaged(uidx, (b, user, bucket)).await?;
                if n % 50 == 7 {
                    s.execute_unpaged(del, (b, bucket, &m.id, "CLEARMSG"))
                        .await?;
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<()>()
        .await
        .context("writing chat")?;
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

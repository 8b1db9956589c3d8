//! The ingest benchmark (hidden `bench` subcommand, driven by `bench/ingest/run.sh`): produces
//! N realistic chat records, writes the same rows with a raw CQL writer (no Kafka) as the
//! baseline, then ingests the topic with the real pipeline and compares sustained rates; finally
//! measures the end-to-end lag (sent timestamp → row written) at a steady live rate.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use futures::{stream, StreamExt};
use rdkafka::{
    admin::{AdminClient, AdminOptions},
    client::DefaultClientContext,
    producer::FutureRecord,
};
use tci_common::{cassandra, kafka, registry::AvroCodec};
use tci_schemas::{Badge, ChatMessage, Emote, EmotePosition, Room, Tag, User};
use tokio_util::sync::CancellationToken;

use crate::{decode::Record, metrics::METRICS, writer::Writer, App, Config};

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
fn raw_line_of(m: &ChatMessage) -> String {
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
    let mut line = String::with_capacity(512);
    let _ = write!(
        line,
        "@badge-info={};badges={};client-nonce={};color={};display-name={};emotes={};first-msg=0;flags=;id={};mod={};returning-chatter=0;room-id={};subscriber={};tmi-sent-ts={};turbo=0;user-id={};user-type= :{}!{}@{}.tmi.twitch.tv PRIVMSG #{} :{}{}",
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

/// Produces `count` messages numbered from `first` to `topic`; `rate` limits messages per second
/// (live phase, sent timestamp = now) or, when `None`, sends as fast as possible with sent
/// timestamps spread over the last `count / 5000` seconds. Kafka timestamp = sent timestamp.
pub async fn produce(
    cfg: &Config,
    first: u64,
    count: u64,
    channels: u64,
    rate: Option<u64>,
) -> anyhow::Result<Duration> {
    let topic = cfg.common.topics.chat.clone();
    let codec = AvroCodec::new(&cfg.common.registry)?;
    codec
        .register_value_schema(&topic, tci_schemas::CHAT_MESSAGE_AVSC)
        .await?;
    let producer = kafka::producer(
        &cfg.common.kafka,
        "chat-ingestor-bench",
        &[("linger.ms", "20")],
    )?;
    let started = Instant::now();
    let base = tci_common::now_ms() - (count as i64 / 5);
    let sends = stream::iter(first..first + count)
        .then(|i| {
            let codec = codec.clone();
            let topic = topic.clone();
            async move {
                if let Some(r) = rate {
                    let due = started + Duration::from_secs_f64((i - first) as f64 / r as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent = if rate.is_some() {
                    tci_common::now_ms()
                } else {
                    base + ((i - first) / 5) as i64
                };
                let m = synth(i, channels, sent);
                let payload = codec.encode(&topic, &m).await?;
                anyhow::Ok((m.broadcaster_id.to_string(), payload, sent))
            }
        })
        .map(|r| {
            let producer = producer.clone();
            let topic = topic.clone();
            async move {
                let (key, payload, ts) = r?;
                producer
                    .send(
                        FutureRecord::to(&topic)
                            .key(&key)
                            .payload(&payload)
                            .timestamp(ts),
                        Duration::from_secs(60),
                    )
                    .await
                    .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(10_000);
    futures::pin_mut!(sends);
    while let Some(r) = sends.next().await {
        r?;
    }
    Ok(started.elapsed())
}

/// The baseline: the same rows written straight to Cassandra with the same prepared statements
/// and single-partition batches, but no Kafka, no Avro decode, no JSON rendering and no offset
/// tracking: every row is built *before* the clock starts, then `parallel` chunks of `chunk`
/// records are kept in flight continuously. Returns messages per second.
pub async fn baseline(
    cfg: &Config,
    count: u64,
    channels: u64,
    chunk: usize,
    parallel: usize,
) -> anyhow::Result<f64> {
    let token = CancellationToken::new();
    let writer = crate::connect_writer(cfg, &token).await?;
    let base = tci_common::now_ms() - (count as i64 / 5);
    let max_rows = cfg.ingest.max_rows_per_batch;
    let plans: Vec<crate::writer::Plan> = (0..count)
        .step_by(chunk)
        .map(|s| {
            let recs: Vec<Record> = (s..(s + chunk as u64).min(count))
                .map(|i| Record::Chat(Box::new(synth(i, channels, base + (i / 5) as i64))))
                .collect();
            crate::writer::plan(&recs, max_rows)
        })
        .collect();
    let started = Instant::now();
    stream::iter(plans.iter())
        .map(|p| {
            let writer: Arc<Writer> = writer.clone();
            let token = token.clone();
            async move {
                writer
                    .write(p, &token)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))
            }
        })
        .buffer_unordered(parallel)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::error!(error = %e, "baseline write");
            }
        })
        .await;
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

fn written() -> u64 {
    METRICS.written.with_label_values(&["chat"]).get()
}

fn lag_buckets() -> Vec<(f64, u64)> {
    use prometheus::core::Collector;
    let mut out = Vec::new();
    for mf in METRICS.end_to_end_lag.collect() {
        for m in mf.get_metric() {
            for b in m.get_histogram().get_bucket() {
                out.push((b.upper_bound(), b.cumulative_count()));
            }
        }
    }
    out
}

fn quantile(before: &[(f64, u64)], after: &[(f64, u64)], q: f64) -> f64 {
    let deltas: Vec<(f64, u64)> = after
        .iter()
        .zip(before)
        .map(|((ub, a), (_, b))| (*ub, a - b))
        .collect();
    let total = deltas.last().map(|d| d.1).unwrap_or(0);
    let want = (total as f64 * q).ceil() as u64;
    deltas
        .iter()
        .find(|(_, c)| *c >= want && *c > 0)
        .map(|(ub, _)| *ub)
        .unwrap_or(f64::INFINITY)
}

/// Runs the whole benchmark and prints the table.
pub async fn run(
    mut cfg: Config,
    count: u64,
    channels: u64,
    live_rate: u64,
    live_secs: u64,
) -> anyhow::Result<()> {
    let id = format!("{}", tci_common::now_ms() % 1_000_000_000);
    cfg.common.topics.chat = format!("bench.{id}.chat");
    cfg.common.topics.moderation = format!("bench.{id}.moderation");
    cfg.common.topics.dead_letter = format!("bench.{id}.dlq");
    cfg.common.topics.live_streams = format!("bench.{id}.live");
    cfg.ingest.group_id = format!("bench.{id}.ingestor");
    cfg.common.admin.addr = "127.0.0.1:0".into();
    let specs = kafka::topic_specs()?;
    kafka::ensure_topics(&cfg.common.kafka, &cfg.common.topics, &specs, Some(1), None).await?;
    let base_ks = format!("bench_{id}_baseline");
    let ingest_ks = format!("bench_{id}_ingest");
    let session = cassandra::connect_once(&cfg.common.cassandra).await?;
    for ks in [&base_ks, &ingest_ks] {
        let mut c = cfg.common.cassandra.clone();
        c.keyspace = ks.clone();
        cassandra::migrate(&session, &c).await?;
    }

    eprintln!(
        "producing {count} messages to {} ...",
        cfg.common.topics.chat
    );
    let produce_time = produce(&cfg, 0, count, channels, None).await?;
    eprintln!(
        "produced in {produce_time:.1?} ({:.0}/s)",
        count as f64 / produce_time.as_secs_f64()
    );

    let mut bcfg = cfg.clone();
    bcfg.common.cassandra.keyspace = base_ks.clone();
    eprintln!("baseline: raw CQL writes of the same rows ...");
    // Warm Cassandra up first (the ingestor runs after the baseline, on a warm node), then try
    // two concurrency levels and keep the better: the baseline gets its best shot.
    baseline(&bcfg, count / 10, channels, cfg.ingest.batch_size, 8).await?;
    let mut base_rate = 0.0f64;
    for (in_flight, parallel) in [(128, 16), (512, 32)] {
        bcfg.ingest.max_in_flight_writes = in_flight;
        let r = baseline(&bcfg, count, channels, cfg.ingest.batch_size, parallel).await?;
        eprintln!("baseline: {r:.0} msg/s with {in_flight} writes in flight");
        base_rate = base_rate.max(r);
    }

    let mut icfg = cfg.clone();
    icfg.common.cassandra.keyspace = ingest_ks.clone();
    let token = CancellationToken::new();
    let w0 = written();
    let app = App::build(icfg.clone(), token.clone()).await?;
    let started = Instant::now();
    let handle = tokio::spawn(app.run());
    let mut first: Option<Instant> = None;
    let mut peak_window = 0.0f64;
    let mut last = (Instant::now(), w0);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let w = written() - w0;
        if w > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if last.0.elapsed() >= Duration::from_secs(5) {
            let r = (written() - last.1) as f64 / last.0.elapsed().as_secs_f64();
            peak_window = peak_window.max(r);
            eprintln!("  ingest: {w}/{count} written, {r:.0}/s over the last 5 s");
            last = (Instant::now(), written());
        }
        if w >= count {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            anyhow::bail!("ingest did not finish in 30 min ({w}/{count})");
        }
    }
    let done = Instant::now();
    let first = first.unwrap_or(started);
    let sustained = count as f64 / done.duration_since(first).as_secs_f64();
    let with_startup = count as f64 / done.duration_since(started).as_secs_f64();

    eprintln!("live phase: {live_rate} msg/s for {live_secs} s ...");
    let before = lag_buckets();
    let w1 = written();
    produce(
        &icfg,
        count,
        live_rate * live_secs,
        channels,
        Some(live_rate),
    )
    .await?;
    let n_live = live_rate * live_secs;
    let deadline = Instant::now() + Duration::from_secs(120);
    while written() - w1 < n_live && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = lag_buckets();
    token.cancel();
    handle.await.context("ingestor task")??;

    println!();
    println!("| measure                                   | value          |");
    println!("|-------------------------------------------|----------------|");
    println!("| messages                                  | {count:>14} |");
    println!("| baseline: raw CQL writer (msg/s)          | {base_rate:>14.0} |");
    println!("| chat-ingestor sustained (msg/s)           | {sustained:>14.0} |");
    println!("| chat-ingestor incl. start-up (msg/s)      | {with_startup:>14.0} |");
    println!("| chat-ingestor best 5 s window (msg/s)     | {peak_window:>14.0} |");
    println!(
        "| ratio ingestor / baseline                 | {:>14.2} |",
        sustained / base_rate
    );
    println!(
        "| live rate (msg/s) x seconds               | {:>14} |",
        format!("{live_rate} x {live_secs}")
    );
    println!(
        "| end-to-end lag p50 (s, bucket upper bound)| {:>14} |",
        quantile(&before, &after, 0.5)
    );
    println!(
        "| end-to-end lag p99 (s, bucket upper bound)| {:>14} |",
        quantile(&before, &after, 0.99)
    );
    println!();

    for ks in [&base_ks, &ingest_ks] {
        let _ = session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
            .await;
    }
    let admin: AdminClient<DefaultClientContext> =
        kafka::base_config(&cfg.common.kafka).create()?;
    let t = &cfg.common.topics;
    let _ = admin
        .delete_topics(
            &[&t.chat, &t.moderation, &t.dead_letter, &t.live_streams],
            &AdminOptions::new(),
        )
        .await;
    Ok(())
}

//! The ingest benchmark (`make bench-ingest`, driven by `bench/ingest/run.sh`): produces N
//! realistic chat records, writes the same rows with an independent raw CQL writer (no Kafka) as
//! the baseline, then ingests the topic with the real chat-ingestor pipeline and compares
//! sustained rates; finally measures the end-to-end lag (sent timestamp → row written) at a
//! steady live rate.
//!
//! ```text
//! cargo run --release -p chat-ingestor --example ingest_bench -- --count 1200000
//! ```
//!
//! The baseline shares nothing with the ingestor but the statements' text (`chat_store::cql` and
//! `chat_store::optout::cql` for the `user_channels` index,
//! the tables' contract): its own row building, its own grouping into single-partition unlogged
//! batches, its own concurrency, no retries. Everything the run creates (topics, keyspaces) is
//! deleted at the end, also when it fails.

#[path = "support/synth.rs"]
mod synth;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use chat_ingestor::{metrics::METRICS, App, Config};
use clap::Parser;
use futures::{stream, StreamExt, TryStreamExt};
use rdkafka::{
    admin::{AdminClient, AdminOptions},
    client::DefaultClientContext,
    producer::FutureRecord,
};
use scylla::{
    client::session::Session,
    statement::{
        batch::{Batch, BatchType},
        prepared::PreparedStatement,
    },
};
use synth::synth;
use tci_common::{cassandra, config, kafka, registry::AvroCodec, telemetry};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 1_200_000)]
    count: u64,
    #[arg(long, default_value_t = 200)]
    channels: u64,
    #[arg(long, default_value_t = 5_000)]
    live_rate: u64,
    #[arg(long, default_value_t = 20)]
    live_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg: Config = config::load(None)?;
    telemetry::init(&cfg.common.log);
    run(
        cfg,
        args.count,
        args.channels,
        args.live_rate,
        args.live_secs,
    )
    .await
}

/// Produces `count` messages numbered from `first` to `topic`; `rate` limits messages per second
/// (live phase, sent timestamp = now) or, when `None`, sends as fast as possible with sent
/// timestamps spread over the last `count / 5000` seconds. Kafka timestamp = sent timestamp.
async fn produce(
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

/// One row of the baseline, built before the clock starts.
struct Row {
    broadcaster_id: i64,
    bucket: i64,
    sent_ts: i64,
    message_id: String,
    user_id: Option<i64>,
    message: Option<String>,
    received_at: i64,
    raw_line: Option<String>,
    room_state: Option<String>,
}

/// The baseline's own write unit: rows of one partition of one table, or one index row.
enum Unit<'a> {
    Chat(Vec<&'a Row>),
    /// Index rows of one `user_chat_index` partition: (channel, day, shard).
    User((i64, i64, i32), Vec<&'a Row>),
    Bucket(i64, i64),
    /// A `user_chat_days` row: (channel, period, shard, user, day).
    UserDay((i64, i64, i32, i64, i64)),
    /// A `user_channels` row (user, channel): the opt-out purge's index, once per pair.
    UserChannel(i64, i64),
}

struct Statements {
    chat: PreparedStatement,
    user: PreparedStatement,
    bucket: PreparedStatement,
    user_day: PreparedStatement,
    user_channel: PreparedStatement,
}

const DAY: i64 = 86_400_000;

async fn execute(s: &Session, st: &Statements, unit: &Unit<'_>) -> anyhow::Result<()> {
    match unit {
        Unit::Chat(rows) => {
            let mut batch = Batch::new(BatchType::Unlogged);
            let values: Vec<_> = rows
                .iter()
                .map(|r| {
                    batch.append_statement(st.chat.clone());
                    (
                        r.broadcaster_id,
                        r.bucket,
                        r.sent_ts,
                        r.message_id.as_str(),
                        r.user_id,
                        r.message.as_deref(),
                        r.received_at,
                        r.raw_line.as_deref(),
                        r.room_state.as_deref(),
                    )
                })
                .collect();
            s.batch(&batch, values).await?;
        }
        Unit::User((b, day, shard), rows) => {
            let mut batch = Batch::new(BatchType::Unlogged);
            let values: Vec<_> = rows
                .iter()
                .map(|r| {
                    batch.append_statement(st.user.clone());
                    (
                        *b,
                        *day,
                        *shard,
                        r.user_id,
                        r.sent_ts,
                        r.message_id.as_str(),
                    )
                })
                .collect();
            s.batch(&batch, values).await?;
        }
        Unit::Bucket(b, k) => {
            s.execute_unpaged(&st.bucket, (*b, *k)).await?;
        }
        Unit::UserDay(row) => {
            s.execute_unpaged(&st.user_day, *row).await?;
        }
        Unit::UserChannel(u, b) => {
            s.execute_unpaged(&st.user_channel, (*u, *b)).await?;
        }
    }
    Ok(())
}

/// The baseline: the same rows written straight to Cassandra with plain prepared statements and
/// this function's own batching (rows grouped per partition, `chunk` records at a time, batches
/// of at most `max_rows`), `parallel` units in flight; no Kafka, no Avro, no offset tracking.
/// Rows (JSON included) are built *before* the clock starts. Returns messages per second.
async fn baseline(cfg: &Config, count: u64, channels: u64, parallel: usize) -> anyhow::Result<f64> {
    let s = cassandra::connect_once(&cfg.common.cassandra).await?;
    let ks = &cfg.common.cassandra.keyspace;
    let prep = |text: String| {
        let s = &s;
        async move {
            let mut p = s.prepare(text).await?;
            p.set_is_idempotent(true);
            anyhow::Ok(p)
        }
    };
    let st = Statements {
        chat: prep(chat_store::cql::insert_chat(ks)).await?,
        user: prep(chat_store::cql::insert_user_index(ks)).await?,
        bucket: prep(chat_store::cql::insert_bucket(ks)).await?,
        user_day: prep(chat_store::cql::insert_user_day(ks)).await?,
        user_channel: prep(chat_store::optout::cql::insert_user_channel(ks)).await?,
    };
    let mut scratch = tci_schemas::PyJson::default();
    let base = tci_common::now_ms() - (count as i64 / 5);
    let rows: Vec<Row> = (0..count)
        .map(|i| {
            let m = synth(i, channels, base + (i / 5) as i64);
            // The stored form: the line and room state, the JSON only when they do not
            // render it.
            let json = m.to_spec_json();
            let room_state = tci_schemas::RoomSettings::encode(&m.room, m.broadcaster_id);
            let renders = match (&m.raw_line, &room_state) {
                (Some(line), Some(room)) => {
                    scratch.clear();
                    let (b, at) = (m.broadcaster_id, m.received_at);
                    tci_irc::record::render_message_json(line, b, at, room, &mut scratch).is_ok()
                        && scratch.as_str() == json
                }
                _ => false,
            };
            Row {
                broadcaster_id: m.broadcaster_id,
                bucket: m.sent_timestamp.div_euclid(300_000) * 300_000,
                sent_ts: m.sent_timestamp,
                user_id: m.user.id.parse().ok(),
                message: (!renders).then_some(json),
                received_at: m.received_at,
                raw_line: m.raw_line.clone(),
                room_state,
                message_id: m.id,
            }
        })
        .collect();
    let (chunk, max_rows) = (
        cfg.ingest.batch_size.max(1),
        cfg.ingest.max_rows_per_batch.max(1),
    );
    let mut units: Vec<Unit<'_>> = Vec::new();
    let mut pairs = std::collections::HashSet::new();
    for part in rows.chunks(chunk) {
        let mut chat: BTreeMap<(i64, i64), Vec<&Row>> = BTreeMap::new();
        let mut user: BTreeMap<(i64, i64, i32), Vec<&Row>> = BTreeMap::new();
        let mut days = std::collections::BTreeSet::new();
        for r in part {
            chat.entry((r.broadcaster_id, r.bucket))
                .or_default()
                .push(r);
            if let Some(u) = r.user_id {
                if pairs.insert((u, r.broadcaster_id)) {
                    units.push(Unit::UserChannel(u, r.broadcaster_id));
                }
                let day = r.sent_ts.div_euclid(DAY) * DAY;
                let shard = u.rem_euclid(8) as i32;
                user.entry((r.broadcaster_id, day, shard))
                    .or_default()
                    .push(r);
                days.insert((
                    r.broadcaster_id,
                    day.div_euclid(28 * DAY) * 28 * DAY,
                    shard,
                    u,
                    day,
                ));
            }
        }
        for ((b, k), rs) in chat {
            units.push(Unit::Bucket(b, k));
            units.extend(rs.chunks(max_rows).map(|c| Unit::Chat(c.to_vec())));
        }
        for (key, rs) in user {
            units.extend(rs.chunks(max_rows).map(|c| Unit::User(key, c.to_vec())));
        }
        units.extend(days.into_iter().map(Unit::UserDay));
    }
    let started = Instant::now();
    stream::iter(units.iter().map(|u| execute(&s, &st, u)))
        .buffer_unordered(parallel)
        .try_collect::<Vec<()>>()
        .await
        .context("baseline write")?;
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

/// Runs the whole benchmark and prints the table; deletes what it created, also on failure.
async fn run(
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
    cfg.common.topics.optouts = format!("bench.{id}.optouts");
    cfg.ingest.group_id = format!("bench.{id}.ingestor");
    cfg.common.admin.addr = "127.0.0.1:0".into();
    let base_ks = format!("bench_{id}_baseline");
    let ingest_ks = format!("bench_{id}_ingest");
    let session = cassandra::connect_once(&cfg.common.cassandra).await?;
    let result = measure(
        &cfg,
        &session,
        [&base_ks, &ingest_ks],
        count,
        channels,
        live_rate,
        live_secs,
    )
    .await;
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
            &[
                &t.chat,
                &t.moderation,
                &t.dead_letter,
                &t.live_streams,
                &t.optouts,
            ],
            &AdminOptions::new(),
        )
        .await;
    result
}

/// Everything between creating the run's topics and keyspaces and deleting them.
async fn measure(
    cfg: &Config,
    session: &Session,
    [base_ks, ingest_ks]: [&String; 2],
    count: u64,
    channels: u64,
    live_rate: u64,
    live_secs: u64,
) -> anyhow::Result<()> {
    let specs = kafka::topic_specs()?;
    kafka::ensure_topics(&cfg.common.kafka, &cfg.common.topics, &specs, Some(1), None).await?;
    for ks in [base_ks, ingest_ks] {
        let mut c = cfg.common.cassandra.clone();
        c.keyspace = ks.clone();
        cassandra::migrate(session, &c).await?;
    }

    eprintln!(
        "producing {count} messages to {} ...",
        cfg.common.topics.chat
    );
    let produce_time = produce(cfg, 0, count, channels, None).await?;
    eprintln!(
        "produced in {produce_time:.1?} ({:.0}/s)",
        count as f64 / produce_time.as_secs_f64()
    );

    let mut bcfg = cfg.clone();
    bcfg.common.cassandra.keyspace = base_ks.clone();
    eprintln!("baseline: raw CQL writes of the same rows ...");
    // Warm Cassandra up first (the ingestor runs after the baseline, on a warm node), then try
    // two concurrency levels and keep the better: the baseline gets its best shot.
    baseline(&bcfg, count / 10, channels, 64).await?;
    let mut base_rate = 0.0f64;
    for in_flight in [128, 512] {
        let r = baseline(&bcfg, count, channels, in_flight).await?;
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

    Ok(())
}

//! chat-ingestor against the real Kafka, registry and Cassandra:
//! - `kill -9` mid-stream and restart: the ids in Cassandra are exactly the ids produced;
//! - Cassandra unreachable for 30 s (a TCP proxy that drops and refuses connections): same;
//! - poison records are dead-lettered with their reason, the rest is written;
//! - deleting partitions and backfilling their time range restores exactly those rows and leaves
//!   the live group's committed offsets alone;
//! - against a secured Kafka (TLS + SCRAM-SHA-512, the stack's second listener): the same
//!   exactly-once result, the commits included.
//!
//! The kill -9 test runs the built binary: `cargo build -p chat-ingestor` first (`make test`
//! builds every binary before the integration tests).

use std::{
    collections::{BTreeMap, HashSet},
    path::PathBuf,
    process::Stdio,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use anyhow::Context as _;
use chat_ingestor::{backfill, metrics::METRICS, App, Config};
use chat_store::{bucket_of, BUCKET_MS};
use futures::StreamExt;
use integration_tests::{eventually, read_records, TestEnv};
use rdkafka::{
    producer::{FutureProducer, FutureRecord},
    Offset,
};
use scylla::client::session::Session;
use tci_common::{
    kafka::{self, dlq_headers},
    registry::AvroCodec,
};
use tci_schemas::{ChatMessage, Room, User};
use tokio::{
    net::{TcpListener, TcpStream},
    task::AbortHandle,
};
use tokio_util::sync::CancellationToken;

fn message(broadcaster_id: i64, n: u64, sent: i64) -> ChatMessage {
    ChatMessage {
        broadcaster_id,
        id: format!("{broadcaster_id:08}-0000-4000-8000-{n:012}"),
        sent_timestamp: sent,
        received_at: sent + 5,
        text: format!("message number {n} Kappa"),
        room: Room {
            name: format!("chan{broadcaster_id}"),
            room_id: broadcaster_id.to_string(),
            ..Room::default()
        },
        user: User {
            name: format!("u{}", n % 97),
            display_name: format!("U{}", n % 97),
            id: (5000 + n % 97).to_string(),
            ..User::default()
        },
        ..ChatMessage::default()
    }
}

fn ingestor_config(env: &TestEnv) -> Config {
    let mut cfg = Config {
        common: env.cfg.clone(),
        ..Config::default()
    };
    cfg.ingest.group_id = env.group("ingestor");
    cfg.ingest.batch_size = 200;
    cfg.common.admin.addr = "127.0.0.1:0".into();
    cfg
}

struct Feed {
    codec: AvroCodec,
    producer: FutureProducer,
    topic: String,
}

impl Feed {
    async fn new(env: &TestEnv) -> anyhow::Result<Self> {
        let codec = AvroCodec::new(&env.cfg.registry)?;
        let topic = env.cfg.topics.chat.clone();
        codec
            .register_value_schema(&topic, tci_schemas::CHAT_MESSAGE_AVSC)
            .await?;
        let producer = kafka::producer(&env.cfg.kafka, "it-ingestor", &[])?;
        Ok(Self {
            codec,
            producer,
            topic,
        })
    }

    async fn send(&self, m: &ChatMessage) -> anyhow::Result<()> {
        let payload = self.codec.encode(&self.topic, m).await?;
        self.send_raw(
            &m.broadcaster_id.to_string(),
            &payload,
            Some(m.sent_timestamp),
        )
        .await
    }

    async fn send_raw(&self, key: &str, payload: &[u8], ts: Option<i64>) -> anyhow::Result<()> {
        let mut rec = FutureRecord::to(&self.topic).key(key).payload(payload);
        if let Some(ts) = ts {
            rec = rec.timestamp(ts);
        }
        self.producer
            .send(rec, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)?;
        Ok(())
    }

    /// Sends `count` messages at about `per_sec`, ids `first..first+count`, round robin over
    /// three channels. Returns the ids.
    async fn stream(&self, first: u64, count: u64, per_sec: u64) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::new();
        let started = tokio::time::Instant::now();
        for n in first..first + count {
            let m = message(100 + (n % 3) as i64, n, tci_common::now_ms());
            self.send(&m).await?;
            ids.push(m.id);
            let due = started + Duration::from_secs_f64((n - first + 1) as f64 / per_sec as f64);
            tokio::time::sleep_until(due).await;
        }
        Ok(ids)
    }
}

/// Every `message_id` in `chat_messages` (with repetitions, if any).
async fn ids_in_cassandra(session: &Session, ks: &str) -> anyhow::Result<Vec<String>> {
    let mut rows = session
        .query_iter(chat_store::cql::scan_chat(ks), ())
        .await?
        .rows_stream::<chat_store::ScanChatTuple>()?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().await {
        out.push(r?.2);
    }
    Ok(out)
}

/// Waits until Cassandra holds `expected.len()` rows, then asserts the sets are equal and no id
/// is repeated. What this proves: nothing lost, and the row key is deterministic (a replayed
/// record lands on the same row). A *re-delivery* itself is invisible here by design (it
/// overwrites the same row): the at-least-once re-reads are what the idempotent key absorbs.
async fn assert_exactly(
    session: &Session,
    ks: &str,
    expected: &[String],
    timeout: Duration,
) -> anyhow::Result<()> {
    let want = expected.len();
    let got = eventually(timeout, || async {
        let ids = ids_in_cassandra(session, ks).await.ok()?;
        (ids.len() >= want).then_some(ids)
    })
    .await;
    let ids = match got {
        Some(ids) => ids,
        None => ids_in_cassandra(session, ks).await?,
    };
    let distinct: HashSet<&String> = ids.iter().collect();
    let produced: HashSet<&String> = expected.iter().collect();
    assert_eq!(produced.len(), want, "the test produced distinct ids");
    let missing: Vec<_> = produced.difference(&distinct).take(5).collect();
    let extra: Vec<_> = distinct.difference(&produced).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} ids lost, e.g. {missing:?}",
        produced.difference(&distinct).count()
    );
    assert!(extra.is_empty(), "unexpected ids, e.g. {extra:?}");
    assert_eq!(
        ids.len(),
        distinct.len(),
        "a message id appears in more than one row"
    );
    assert_eq!(ids.len(), want);
    Ok(())
}

fn ingestor_binary() -> anyhow::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug").join("chat-ingestor");
    anyhow::ensure!(
        bin.exists(),
        "{} not found: run `cargo build -p chat-ingestor` first",
        bin.display()
    );
    Ok(bin)
}

fn spawn_binary(env: &TestEnv, cfg: &Config) -> anyhow::Result<tokio::process::Child> {
    let t = &env.cfg.topics;
    tokio::process::Command::new(ingestor_binary()?)
        .arg("run")
        .env("TCI__KAFKA__BROKERS", &env.cfg.kafka.brokers)
        .env("TCI__TOPICS__CHAT", &t.chat)
        .env("TCI__TOPICS__MODERATION", &t.moderation)
        .env("TCI__TOPICS__DEAD_LETTER", &t.dead_letter)
        .env("TCI__TOPICS__OPTOUTS", &t.optouts)
        .env("TCI__CASSANDRA__KEYSPACE", &env.cfg.cassandra.keyspace)
        .env("TCI__CASSANDRA__CONSISTENCY", "one")
        .env("TCI__REGISTRY__URL", &env.cfg.registry.url)
        .env("TCI__INGEST__GROUP_ID", &cfg.ingest.group_id)
        .env("TCI__INGEST__BATCH_SIZE", cfg.ingest.batch_size.to_string())
        .env("TCI__LOG__FORMAT", "text")
        .env("TCI__LOG__FILTER", "warn,chat_ingestor=info")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("spawning chat-ingestor")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_restart_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let env = TestEnv::new("ingest_kill");
    env.create_topics(3).await?;
    let session = env.migrate().await?;
    let ks = env.cfg.cassandra.keyspace.clone();
    let cfg = ingestor_config(&env);
    let feed = Arc::new(Feed::new(&env).await?);

    let mut first = spawn_binary(&env, &cfg)?;
    let f = feed.clone();
    let producing = tokio::spawn(async move { f.stream(0, 12_000, 1_500).await });
    // Kill once the ingestor is demonstrably mid-stream: some rows written, the stream not over.
    // A read that fails under load is retried; a first process that exits on its own fails
    // the test at once, with its status (its log is on this test's stderr).
    let some_written = eventually(Duration::from_secs(90), || {
        let (session, ks) = (&session, &ks);
        let exited = first.try_wait();
        async move {
            match exited {
                Ok(Some(status)) => Some(Err(anyhow::anyhow!(
                    "chat-ingestor exited on its own before the kill: {status}"
                ))),
                _ => match ids_in_cassandra(session, ks).await {
                    Ok(ids) if !ids.is_empty() => Some(Ok(())),
                    _ => None,
                },
            }
        }
    })
    .await;
    if let Some(Err(e)) = some_written {
        return Err(e);
    }
    first.start_kill()?; // SIGKILL
    first.wait().await?;
    let at_kill = eventually(Duration::from_secs(30), || async {
        ids_in_cassandra(&session, &ks)
            .await
            .ok()
            .map(|ids| ids.len())
    })
    .await
    .context("reading Cassandra after the kill")?;
    eprintln!("killed with -9 after {at_kill} rows were written");
    assert!(
        at_kill > 0,
        "the ingestor wrote nothing before the kill: the test would prove nothing"
    );
    assert!(
        !producing.is_finished() || at_kill < 12_000,
        "the kill came after everything was written"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut second = spawn_binary(&env, &cfg)?;
    let ids = producing.await??;
    assert_exactly(&session, &ks, &ids, Duration::from_secs(120)).await?;

    // SIGTERM: flushes, commits synchronously, exits 0; everything is committed.
    let pid = second.id().context("pid")?;
    let status = tokio::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .await?;
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(60), second.wait()).await??;
    assert!(exit.success(), "chat-ingestor exited with {exit}");
    // After SIGTERM everything is committed.
    env.committed_all(&cfg.ingest.group_id, &env.cfg.topics.chat, 3)?;
    env.drop_keyspace(&session).await;
    Ok(())
}

/// A TCP proxy that can drop every connection and refuse new ones.
struct Proxy {
    addr: std::net::SocketAddr,
    blocked: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn start(target: String) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let blocked = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (b, c) = (blocked.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if b.load(Ordering::SeqCst) {
                    drop(inbound); // refused: closed at once
                    continue;
                }
                let target = target.clone();
                let h = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                c.lock().expect("lock").push(h.abort_handle());
            }
        });
        Ok(Self {
            addr,
            blocked,
            conns,
        })
    }

    fn block(&self) {
        self.blocked.store(true, Ordering::SeqCst);
        for h in self.conns.lock().expect("lock").drain(..) {
            h.abort(); // drops both sockets
        }
    }

    fn unblock(&self) {
        self.blocked.store(false, Ordering::SeqCst);
    }
}

/// A managed Kafka asks for TLS and SASL. Here every Kafka call of the test and of the service
/// (creating the topics, producing, the consumer group, its commits, deleting the topics) goes
/// to the stack's SASL_SSL listener: the broker's certificate checked against the stack's CA
/// file (`ssl.ca.location`), the SCRAM-SHA-512 password from the secret (`sasl_password`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingests_over_sasl_ssl_with_scram_as_a_managed_cluster_asks() -> anyhow::Result<()> {
    let mut env = TestEnv::new("ingest_sasl_ssl");
    env.cfg.kafka = integration_tests::sasl_ssl(&env.cfg.kafka)?;
    env.create_topics(3).await?;
    let session = env.migrate().await?;
    let ks = env.cfg.cassandra.keyspace.clone();
    let feed = Feed::new(&env).await?;
    let cfg = ingestor_config(&env);

    let token = CancellationToken::new();
    let app = App::build(cfg.clone(), token.clone()).await?;
    let running = tokio::spawn(app.run());
    let ids = feed.stream(0, 900, 900).await?;
    assert_exactly(&session, &ks, &ids, Duration::from_secs(60)).await?;
    token.cancel();
    running.await??;
    // After shutdown everything is committed.
    env.committed_all(&cfg.ingest.group_id, &env.cfg.topics.chat, 3)?;
    env.drop_keyspace(&session).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cassandra_unreachable_for_30s_mid_stream_loses_nothing() -> anyhow::Result<()> {
    let env = TestEnv::new("ingest_outage");
    env.create_topics(3).await?;
    let session = env.migrate().await?;
    let ks = env.cfg.cassandra.keyspace.clone();
    let proxy = Proxy::start(env.cfg.cassandra.nodes[0].clone()).await?;
    let mut cfg = ingestor_config(&env);
    cfg.common.cassandra.nodes = vec![proxy.addr.to_string()];
    cfg.common.cassandra.request_timeout = Duration::from_secs(2);
    cfg.ingest.retry_cap = Duration::from_secs(2);
    let feed = Arc::new(Feed::new(&env).await?);

    let token = CancellationToken::new();
    let app = App::build(cfg, token.clone()).await?;
    // This instance's own readiness: the metrics are process-wide, shared with the tests
    // running beside this one.
    // /readyz's `cassandra` check is the pipeline's own (from the outcome of its writes): not
    // ok while it retries with consumption paused. `None` while /readyz does not answer.
    let readyz = format!("http://{}/readyz", app.admin_addr());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let cassandra_ok = || async {
        let body: serde_json::Value = http.get(&readyz).send().await.ok()?.json().await.ok()?;
        body["checks"]["cassandra"]["ok"].as_bool()
    };
    let running = tokio::spawn(app.run());
    let retries_before = METRICS.write_retries.get();
    let f = feed.clone();
    let producing = tokio::spawn(async move { f.stream(0, 8_000, 200).await });
    tokio::time::sleep(Duration::from_secs(5)).await;

    proxy.block();
    let mut paused_seen = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        paused_seen |= cassandra_ok().await == Some(false);
    }
    proxy.unblock();

    let ids = producing.await??;
    assert_exactly(&session, &ks, &ids, Duration::from_secs(120)).await?;
    assert!(
        paused_seen,
        "/readyz's cassandra check failed (writes retried, consumption paused) during the outage"
    );
    assert!(
        METRICS.write_retries.get() > retries_before,
        "writes were retried"
    );
    assert!(
        eventually(Duration::from_secs(30), || async {
            (cassandra_ok().await == Some(true)).then_some(())
        })
        .await
        .is_some(),
        "ready again after the outage"
    );
    token.cancel();
    running.await??;
    env.drop_keyspace(&session).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_are_dead_lettered_and_the_rest_written() -> anyhow::Result<()> {
    let env = TestEnv::new("ingest_poison");
    env.create_topics(1).await?;
    let session = env.migrate().await?;
    let ks = env.cfg.cassandra.keyspace.clone();
    let feed = Feed::new(&env).await?;
    let now = tci_common::now_ms();
    let mut ids = Vec::new();
    for n in 0..50 {
        let m = message(7, n, now + n as i64);
        feed.send(&m).await?;
        ids.push(m.id);
    }
    let random: Vec<u8> = (0..64).map(|_| rand::random::<u8>() | 0x80).collect(); // bad magic
    feed.send_raw("7", &random, None).await?;
    let unknown_id = [0u8, 0x7f, 0xff, 0xff, 0x01, 2, 4, 6, 8];
    feed.send_raw("7", &unknown_id, None).await?;
    let empty_id = feed
        .codec
        .encode(
            &feed.topic,
            &ChatMessage {
                id: String::new(),
                ..message(7, 999, now)
            },
        )
        .await?;
    feed.send_raw("7", &empty_id, None).await?;
    for n in 50..100 {
        let m = message(7, n, now + n as i64);
        feed.send(&m).await?;
        ids.push(m.id);
    }

    let token = CancellationToken::new();
    let app = App::build(ingestor_config(&env), token.clone()).await?;
    let running = tokio::spawn(app.run());
    assert_exactly(&session, &ks, &ids, Duration::from_secs(60)).await?;

    let dlq = read_with_headers(
        &env,
        &env.cfg.topics.dead_letter,
        3,
        Duration::from_secs(30),
    )
    .await?;
    assert_eq!(dlq.len(), 3, "three poison records dead-lettered");
    let by_payload: BTreeMap<Vec<u8>, String> = dlq.into_iter().collect();
    let reason = |p: &[u8]| by_payload.get(p).cloned().unwrap_or_default();
    assert!(
        reason(&random).starts_with("framing:"),
        "{}",
        reason(&random)
    );
    assert!(
        reason(&unknown_id).starts_with("unknown_schema:"),
        "{}",
        reason(&unknown_id)
    );
    assert!(
        reason(&empty_id).starts_with("invalid:"),
        "{}",
        reason(&empty_id)
    );

    token.cancel();
    running.await??;
    // Their offsets count as done: everything is committed.
    env.committed_all(&env.group("ingestor"), &env.cfg.topics.chat, 1)?;
    env.drop_keyspace(&session).await;
    Ok(())
}

/// (payload, reason header) of the first `expected` records of `topic`.
async fn read_with_headers(
    env: &TestEnv,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<(Vec<u8>, String)>> {
    Ok(read_records(&env.cfg, topic, expected, timeout)
        .await?
        .into_iter()
        .map(|r| {
            let reason = r.header(dlq_headers::REASON).unwrap_or_default();
            (r.payload, reason)
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_restores_deleted_partitions_without_touching_the_live_group() -> anyhow::Result<()>
{
    let env = TestEnv::new("ingest_backfill");
    env.create_topics(3).await?;
    let session = env.migrate().await?;
    let ks = env.cfg.cassandra.keyspace.clone();
    let cfg = ingestor_config(&env);
    let feed = Feed::new(&env).await?;

    // 600 messages over the last 40 minutes, two channels; Kafka timestamp = sent timestamp.
    let start = bucket_of(tci_common::now_ms()) - 8 * BUCKET_MS;
    let mut sent = Vec::new();
    for n in 0..600u64 {
        let m = message(
            if n % 2 == 0 { 501 } else { 502 },
            n,
            start + n as i64 * 4_000,
        );
        feed.send(&m).await?;
        sent.push(m);
    }
    let ids: Vec<String> = sent.iter().map(|m| m.id.clone()).collect();

    let token = CancellationToken::new();
    let app = App::build(cfg.clone(), token.clone()).await?;
    let running = tokio::spawn(app.run());
    assert_exactly(&session, &ks, &ids, Duration::from_secs(60)).await?;
    token.cancel();
    running.await??;
    let live_offsets = env.committed(&cfg.ingest.group_id, &env.cfg.topics.chat, 3)?;

    // Delete two buckets of channel 501.
    let (b1, b2) = (start + 2 * BUCKET_MS, start + 3 * BUCKET_MS);
    for b in [b1, b2] {
        session
            .query_unpaged(chat_store::cql::delete_chat_bucket(&ks), (501i64, b))
            .await?;
    }
    let deleted: Vec<&ChatMessage> = sent
        .iter()
        .filter(|m| {
            m.broadcaster_id == 501
                && (bucket_of(m.sent_timestamp) == b1 || bucket_of(m.sent_timestamp) == b2)
        })
        .collect();
    assert!(!deleted.is_empty());
    assert_eq!(
        ids_in_cassandra(&session, &ks).await?.len(),
        ids.len() - deleted.len()
    );

    let args = backfill::BackfillArgs {
        from_ms: b1,
        to_ms: b2 + BUCKET_MS - 1,
        broadcaster_id: Some(501),
    };
    let summary = backfill::run(cfg.clone(), args, CancellationToken::new()).await?;
    eprintln!("{summary}");
    assert_exactly(&session, &ks, &ids, Duration::from_secs(10)).await?;
    assert_eq!(
        summary.written,
        deleted.len() as u64,
        "exactly the range's records were written"
    );
    assert!(
        summary.skipped > 0,
        "records outside the range or of channel 502 were skipped"
    );
    assert_eq!(summary.dead_lettered, 0);
    assert_eq!(summary.read, summary.written + summary.skipped);

    // The restored rows are the originals, byte for byte.
    let mut scratch = tci_schemas::PyJson::default();
    for m in &deleted {
        let row = session
            .query_unpaged(
                chat_store::cql::select_chat_row(&ks),
                (
                    m.broadcaster_id,
                    bucket_of(m.sent_timestamp),
                    m.sent_timestamp,
                    &m.id,
                ),
            )
            .await?
            .into_rows_result()?
            .single_row::<chat_store::StoredChatTuple>()?;
        chat_store::StoredChatRef::from(&row).message_json(m.broadcaster_id, &mut scratch)?;
        assert_eq!(scratch.as_str(), m.to_spec_json());
    }
    assert_eq!(
        env.committed(&cfg.ingest.group_id, &env.cfg.topics.chat, 3)?,
        live_offsets,
        "the backfill did not move the live group's offsets"
    );
    env.drop_keyspace(&session).await;
    Ok(())
}

/// A write Cassandra refuses for good (here: a column the statements name was dropped) stops
/// ingestion with the table and the statement in the log, the metric and `/readyz`, and
/// acknowledges nothing after it; transient failures are retried instead (see
/// `cassandra_unreachable_for_30s_mid_stream_loses_nothing`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_cassandra_error_stops_ingestion_naming_table_and_statement(
) -> anyhow::Result<()> {
    let env = TestEnv::new("ingest_permanent");
    env.create_topics(1).await?;
    let session = env.migrate().await?;
    let ks = env.cfg.cassandra.keyspace.clone();
    let cfg = ingestor_config(&env);
    let group = cfg.ingest.group_id.clone();
    let feed = Feed::new(&env).await?;
    let token = CancellationToken::new();
    let app = App::build(cfg, token.clone()).await?;
    let admin = app.admin_addr();
    let running = tokio::spawn(app.run());

    let first = feed.stream(0, 50, 500).await?;
    assert_exactly(&session, &ks, &first, Duration::from_secs(60)).await?;
    let committed_before = eventually(Duration::from_secs(30), || async {
        match env.committed(&group, &env.cfg.topics.chat, 1).ok()?.get(&0) {
            Some(Offset::Offset(o)) if *o >= 50 => Some(*o),
            _ => None,
        }
    })
    .await
    .context("the first 50 records were never committed")?;

    let failures_before = METRICS
        .write_failures
        .with_label_values(&["chat_messages"])
        .get();
    session
        .query_unpaged(format!("ALTER TABLE {ks}.chat_messages DROP raw_line"), ())
        .await?;
    feed.stream(50, 50, 500).await?;

    let url = format!("http://{admin}/readyz");
    let body = eventually(Duration::from_secs(60), || async {
        let r = reqwest::get(&url).await.ok()?;
        let status = r.status();
        let body = r.text().await.ok()?;
        (status == 503 && body.contains("ingestion stopped")).then_some(body)
    })
    .await
    .context("/readyz never reported the stop")?;
    assert!(
        body.contains("chat_messages") && body.contains("INSERT INTO"),
        "/readyz names the table and the statement: {body}"
    );
    assert!(
        METRICS
            .write_failures
            .with_label_values(&["chat_messages"])
            .get()
            > failures_before,
        "counted in tci_chat_ingestor_write_failures_total"
    );
    // Nothing after the failure is acknowledged: the records wait for the fix.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let committed_after = match env.committed(&group, &env.cfg.topics.chat, 1)?.get(&0) {
        Some(Offset::Offset(o)) => *o,
        other => anyhow::bail!("no committed offset: {other:?}"),
    };
    assert_eq!(
        committed_after, committed_before,
        "offsets moved past records that were not written"
    );
    token.cancel();
    let end = running.await?;
    let err = end.expect_err("the run ends with the permanent error");
    assert!(
        format!("{err:#}").contains("chat_messages"),
        "the error names the table: {err:#}"
    );
    env.drop_keyspace(&session).await;
    Ok(())
}

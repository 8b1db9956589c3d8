//! streamer-listener and streamer-ingestion against the real Kafka, registry and Cassandra, with
//! twitch-sim in-process standing in for Twitch (OAuth + Helix).
//!
//! - 10 000 live channels over 100 pages land in `streamers` once each (and the walk is measured);
//! - a 429 in the middle of a walk is waited out, not skipped;
//! - an expired (or about-to-expire) token is refreshed;
//! - channels that go offline stay, and their last_seen_live stops advancing;
//! - a Helix outage publishes nothing for the failed poll;
//! - ingestion: replays in any order keep first_seen earliest / last_seen_live latest, and
//!   undecodable records go to the dead-letter topic while consumption goes on;
//! - ingestion: a Cassandra outage longer than `max.poll.interval.ms` pauses consumption without
//!   leaving the group (no rebalance), and everything is written once Cassandra is back.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use integration_tests::{eventually, read_topic, TestEnv};
use rdkafka::producer::FutureRecord;
use scylla::{client::session::Session, value::CqlTimestamp};
use secrecy::SecretString;
use streamer_listener::{PollReport, Stats};
use tci_common::{kafka, registry::AvroCodec};
use tci_schemas::LiveStream;
use tokio_util::sync::CancellationToken;
use twitch_sim::{Sim, SimConfig};

type Row = (
    i64,
    Option<String>,
    Option<String>,
    Option<CqlTimestamp>,
    Option<CqlTimestamp>,
    Option<i64>,
);

fn sim_config(channels: usize) -> SimConfig {
    SimConfig {
        channels,
        rate: 0.0,
        record_ids: false,
        duplicate_probability: 0.0,
        ..SimConfig::default()
    }
}

fn listener_config(env: &TestEnv, sim: &Sim, sim_cfg: &SimConfig) -> streamer_listener::Config {
    let mut cfg = streamer_listener::Config {
        common: env.cfg.clone(),
        ..Default::default()
    };
    cfg.twitch.client_id = sim_cfg.client_id.clone();
    cfg.twitch.client_secret = Some(SecretString::from(sim_cfg.client_secret.clone()));
    cfg.twitch.auth_url = sim.helix_url();
    cfg.twitch.helix_url = sim.helix_url();
    cfg.poll.interval = Duration::from_secs(3600);
    cfg.poll.page_retries = 2;
    cfg.poll.backoff_base = Duration::from_millis(50);
    cfg.poll.backoff_cap = Duration::from_millis(200);
    cfg
}

fn ingestion_config(env: &TestEnv) -> streamer_ingestion::Config {
    let mut cfg = streamer_ingestion::Config {
        common: env.cfg.clone(),
        ..Default::default()
    };
    cfg.ingest.group_id = env.group("streamer-ingestion");
    cfg.ingest.linger = Duration::from_millis(100);
    cfg
}

/// Every record of the live-streams topic (waits up to `timeout` for `expected`, then returns
/// what it has: pass `expected + 1` to check that nothing more arrives).
async fn live_records(
    env: &TestEnv,
    expected: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<LiveStream>> {
    let codec = AvroCodec::new(&env.cfg.registry)?;
    let raw = read_topic(&env.cfg, &env.cfg.topics.live_streams, expected, timeout).await?;
    let mut out = Vec::with_capacity(raw.len());
    for (key, payload) in raw {
        let r: LiveStream = codec.decode(Some(&payload)).await?;
        assert_eq!(
            key.as_deref(),
            Some(r.broadcaster_id.to_string().as_bytes()),
            "key = broadcaster id as decimal text"
        );
        out.push(r);
    }
    Ok(out)
}

fn by_poll(records: &[LiveStream]) -> BTreeMap<String, Vec<&LiveStream>> {
    let mut m: BTreeMap<String, Vec<&LiveStream>> = BTreeMap::new();
    for r in records {
        m.entry(r.poll_id.clone()).or_default().push(r);
    }
    m
}

async fn streamers(session: &Session, ks: &str) -> anyhow::Result<HashMap<i64, Row>> {
    let rows: Vec<Row> = session
        .query_iter(
            format!("SELECT broadcaster_id, login, display_name, first_seen, last_seen_live, viewer_count FROM {ks}.streamers"),
            (),
        )
        .await?
        .rows_stream::<Row>()?
        .try_collect()
        .await?;
    Ok(rows.into_iter().map(|r| (r.0, r)).collect())
}

/// Waits until `pred` holds for the streamers table; returns the table.
async fn wait_for_table<F>(
    session: &Session,
    ks: &str,
    what: &str,
    pred: F,
) -> anyhow::Result<HashMap<i64, Row>>
where
    F: Fn(&HashMap<i64, Row>) -> bool,
{
    let got = eventually(Duration::from_secs(120), || async {
        match streamers(session, ks).await {
            Ok(t) if pred(&t) => Some(t),
            _ => None,
        }
    })
    .await;
    match got {
        Some(t) => Ok(t),
        None => {
            let t = streamers(session, ks).await?;
            anyhow::bail!(
                "streamers table never satisfied: {what} (has {} rows)",
                t.len()
            )
        }
    }
}

fn ts(ms: i64) -> Option<CqlTimestamp> {
    Some(CqlTimestamp(ms))
}

fn spawn_ingestion(app: streamer_ingestion::App) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(app.run())
}

async fn poll(poller: &streamer_listener::Poller) -> PollReport {
    poller.poll_once(&CancellationToken::new()).await
}

#[tokio::test]
async fn ten_thousand_live_channels_over_100_pages_land_once_each() -> anyhow::Result<()> {
    let env = TestEnv::new("streamers_10k");
    env.create_topics(6).await?;
    let session = env.migrate().await?;
    let ks = env.cfg.cassandra.keyspace.clone();
    let sim_cfg = sim_config(10_000);
    let sim = Sim::start(sim_cfg.clone()).await?;
    let token = CancellationToken::new();

    let ingestion = streamer_ingestion::App::build(ingestion_config(&env), token.clone()).await?;
    let ingest_stats = ingestion.stats();
    let ingest_task = spawn_ingestion(ingestion);
    // The whole service loop this time (the first poll runs at once).
    let listener =
        streamer_listener::App::build(listener_config(&env, &sim, &sim_cfg), token.clone()).await?;
    let admin = listener.admin_addr();
    let stats = listener.stats();
    let listener_task = tokio::spawn(listener.run());

    let report = eventually(Duration::from_secs(180), || {
        let stats = stats.clone();
        async move {
            (Stats::get(&stats.polls_ok) >= 1)
                .then(|| stats.last())
                .flatten()
        }
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("no successful poll; last: {:?}", stats.last()))?;
    println!(
        "MEASURED 10k walk: channels=10000 pages={} published={} walk={:.2}s total(walk+publish)={:.2}s \
         rate_limit_waits={} waited={:.2}s 429s={} retries={} duplicates={}",
        report.pages,
        report.published,
        report.walk.as_secs_f64(),
        report.total.as_secs_f64(),
        report.rate_limit_waits,
        report.rate_limit_waited.as_secs_f64(),
        report.rate_limited_429,
        report.retries,
        report.duplicates,
    );
    assert!(report.ok);
    assert_eq!(report.pages, 100);
    assert_eq!(report.published, 10_000);

    // The topic holds exactly one record per live channel, all of that poll (the next poll is an
    // hour away, so these are all the records).
    let records = live_records(&env, 10_000, Duration::from_secs(60)).await?;
    assert_eq!(records.len(), 10_000);
    let keys: HashSet<i64> = records.iter().map(|r| r.broadcaster_id).collect();
    assert_eq!(keys.len(), 10_000);
    assert!(records
        .iter()
        .all(|r| r.poll_id == report.poll_id && r.observed_at == report.observed_at));

    // And the table holds every live channel once, with the sim's data.
    let live = sim.live();
    let table = wait_for_table(&session, &ks, "10 000 rows", |t| t.len() >= 10_000).await?;
    println!(
        "MEASURED 10k ingestion: {} records written in {} batches, table complete {:.2}s after the poll started",
        streamer_ingestion::Stats::get(&ingest_stats.records_written),
        streamer_ingestion::Stats::get(&ingest_stats.batches),
        (tci_common::now_ms() - report.observed_at) as f64 / 1000.0,
    );
    assert_eq!(table.len(), 10_000);
    for c in &live {
        let id: i64 = c.user_id.parse()?;
        let row = table
            .get(&id)
            .ok_or_else(|| anyhow::anyhow!("channel {id} missing"))?;
        assert_eq!(row.1.as_deref(), Some(c.user_login.as_str()));
        assert_eq!(row.2.as_deref(), Some(c.user_name.as_str()));
        assert_eq!(row.3, ts(report.observed_at), "first_seen of {id}");
        assert_eq!(row.4, ts(report.observed_at), "last_seen_live of {id}");
        assert_eq!(row.5, Some(c.viewer_count as i64));
    }
    assert_eq!(
        streamer_ingestion::Stats::get(&ingest_stats.dead_lettered),
        0
    );

    // The admin server answers, with the listener's metrics.
    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("tci_streamer_listener_polls_total"),
        "{metrics}"
    );
    let ready = reqwest::get(format!("http://{admin}/readyz"))
        .await?
        .text()
        .await?;
    assert!(ready.contains("\"twitch\""), "{ready}");

    token.cancel();
    listener_task.await??;
    ingest_task.await??;
    env.drop_keyspace(&session).await;
    Ok(())
}

#[tokio::test]
async fn a_429_mid_walk_is_waited_out_not_skipped() -> anyhow::Result<()> {
    let env = TestEnv::new("streamers_429");
    env.create_topics(3).await?;
    // 30 pages against a bucket of 10 points refilling at 5/s.
    let sim_cfg = SimConfig {
        ratelimit_bucket: 10,
        ratelimit_refill: Duration::from_secs(2),
        ..sim_config(3_000)
    };
    let sim = Sim::start(sim_cfg.clone()).await?;
    let listener = streamer_listener::App::build(
        listener_config(&env, &sim, &sim_cfg),
        CancellationToken::new(),
    )
    .await?;
    let poller = listener.poller();
    let stats = listener.stats();

    // Once the walk is under way, a neighbour with the same client id takes every point, so
    // the listener's next request is answered 429, whatever its last answer showed. The sim
    // empties the real bucket at that request: the 429 carries the real
    // Ratelimit-Reset of an empty bucket, which refills from zero. (A neighbour task racing
    // the listener for points was tried first; whether it caused a 429 depended on timing.)
    let inject = {
        let (sim, stats) = (sim.handle(), stats.clone());
        tokio::spawn(async move {
            let at = eventually(Duration::from_secs(60), || {
                let stats = stats.clone();
                async move {
                    let pages = Stats::get(&stats.pages);
                    (pages >= 3).then_some(pages)
                }
            })
            .await;
            sim.empty_helix_bucket(1);
            at
        })
    };
    let report = poll(&poller).await;
    let injected_after = inject.await?;
    println!(
        "MEASURED rate-limited walk: channels=3000 bucket=10 refill=2s pages={} walk={:.2}s rate_limit_waits={} \
         waited={:.2}s 429s={} bucket_emptied_after_page={injected_after:?}",
        report.pages,
        report.walk.as_secs_f64(),
        report.rate_limit_waits,
        report.rate_limit_waited.as_secs_f64(),
        report.rate_limited_429,
    );
    assert!(report.ok, "{report:?}");
    assert_eq!(
        report.rate_limited_429, 1,
        "the emptied bucket is one 429, and the listener's own pacing causes none: {report:?}"
    );
    assert!(
        report.rate_limit_waits >= report.rate_limited_429,
        "{report:?}"
    );
    assert_eq!(report.pages, 30);
    assert_eq!(report.published, 3_000);

    // No page was skipped: every live channel is in the poll, once.
    let records = live_records(&env, 3_001, Duration::from_secs(30)).await?;
    let ids: HashSet<i64> = records.iter().map(|r| r.broadcaster_id).collect();
    let live: HashSet<i64> = sim
        .live()
        .iter()
        .map(|c| c.user_id.parse().unwrap_or(0))
        .collect();
    assert_eq!(records.len(), 3_000);
    assert_eq!(ids, live);
    Ok(())
}

#[tokio::test]
async fn an_expired_token_is_refreshed_and_a_short_lived_one_before_expiry() -> anyhow::Result<()> {
    let env = TestEnv::new("streamers_token");
    env.create_topics(3).await?;
    // The listener refreshes a token at 90% of its lifetime (the margin is at most a tenth):
    // here after 18 s of 20. Long enough that a slow poll on a loaded machine does not reach
    // that point before the test asks for it.
    let lifetime = Duration::from_secs(20);
    let sim_cfg = SimConfig {
        token_lifetime: lifetime,
        ..sim_config(300)
    };
    let sim = Sim::start(sim_cfg.clone()).await?;
    let listener = streamer_listener::App::build(
        listener_config(&env, &sim, &sim_cfg),
        CancellationToken::new(),
    )
    .await?;
    let poller = listener.poller();
    let stats = listener.stats();

    let first = poll(&poller).await;
    assert!(first.ok, "{first:?}");
    assert_eq!(Stats::get(&stats.token_refreshes), 1);

    // Twitch revokes every token: the next request gets 401, the listener fetches a new token
    // and the poll still succeeds.
    assert!(sim.expire_tokens() >= 1);
    let second = poll(&poller).await;
    assert!(second.ok, "{second:?}");
    assert_eq!(second.published, 300);
    assert_eq!(Stats::get(&stats.unauthorized), 1);
    assert_eq!(Stats::get(&stats.token_refreshes), 2);

    // A token near its end of life is replaced before Helix refuses it (no 401 this time).
    // The second poll's token was issued during that poll, so 18.5 s after it ended the token
    // is past its refresh point (18 s) and, unless that poll took over 1.5 s after fetching
    // it, still valid (20 s): a listener that only refreshed after a 401, or only once it had
    // expired, would make no request for a new token here.
    tokio::time::sleep(Duration::from_millis(18_500)).await;
    let third = poll(&poller).await;
    assert!(third.ok, "{third:?}");
    assert_eq!(
        Stats::get(&stats.unauthorized),
        1,
        "refreshed proactively, not after a 401"
    );
    assert_eq!(Stats::get(&stats.token_refreshes), 3);
    Ok(())
}

#[tokio::test]
async fn offline_channels_stay_and_their_last_seen_stops_advancing() -> anyhow::Result<()> {
    let env = TestEnv::new("streamers_offline");
    env.create_topics(3).await?;
    let session = env.migrate().await?;
    let ks = env.cfg.cassandra.keyspace.clone();
    let sim_cfg = sim_config(200);
    let sim = Sim::start(sim_cfg.clone()).await?;
    let token = CancellationToken::new();
    let ingestion = streamer_ingestion::App::build(ingestion_config(&env), token.clone()).await?;
    let ingest_task = spawn_ingestion(ingestion);
    let listener =
        streamer_listener::App::build(listener_config(&env, &sim, &sim_cfg), token.clone()).await?;
    let poller = listener.poller();

    let p1 = poll(&poller).await;
    assert!(p1.ok && p1.published == 200, "{p1:?}");
    wait_for_table(&session, &ks, "200 rows seen at poll 1", |t| {
        t.len() == 200 && t.values().all(|r| r.4 == ts(p1.observed_at))
    })
    .await?;

    let (offline, online) = sim.churn_now(0.1);
    assert!(!offline.is_empty() && !online.is_empty());
    tokio::time::sleep(Duration::from_millis(5)).await; // distinct observed_at
    let p2 = poll(&poller).await;
    assert!(p2.ok && p2.published == 200, "{p2:?}");
    let live_now: HashSet<i64> = sim
        .live()
        .iter()
        .map(|c| c.user_id.parse().unwrap_or(0))
        .collect();
    let t = wait_for_table(&session, &ks, "the live set seen at poll 2", |t| {
        t.values().filter(|r| r.4 == ts(p2.observed_at)).count() == 200
    })
    .await?;
    assert_eq!(
        t.len(),
        200 + online.len(),
        "offline channels are not deleted"
    );
    let offline: HashSet<&str> = offline.iter().map(String::as_str).collect();
    let online: HashSet<&str> = online.iter().map(String::as_str).collect();
    for r in t.values() {
        let login = r.1.as_deref().unwrap_or_default();
        if offline.contains(login) {
            assert!(!live_now.contains(&r.0));
            assert_eq!(
                r.4,
                ts(p1.observed_at),
                "{login} went offline: last_seen_live stays at poll 1"
            );
            assert_eq!(r.3, ts(p1.observed_at));
        } else if online.contains(login) {
            assert_eq!(r.3, ts(p2.observed_at), "{login} came online at poll 2");
            assert_eq!(r.4, ts(p2.observed_at));
        } else {
            assert_eq!(r.3, ts(p1.observed_at), "{login}: first_seen never moves");
            assert_eq!(r.4, ts(p2.observed_at), "{login}: last_seen_live advances");
        }
    }

    token.cancel();
    ingest_task.await??;
    env.drop_keyspace(&session).await;
    Ok(())
}

#[tokio::test]
async fn a_helix_outage_publishes_nothing_for_the_failed_poll() -> anyhow::Result<()> {
    let env = TestEnv::new("streamers_outage");
    env.create_topics(3).await?;
    let sim_cfg = sim_config(500);
    let sim = Sim::start(sim_cfg.clone()).await?;
    let listener = streamer_listener::App::build(
        listener_config(&env, &sim, &sim_cfg),
        CancellationToken::new(),
    )
    .await?;
    let poller = listener.poller();
    let stats = listener.stats();

    let good1 = poll(&poller).await;
    assert!(good1.ok && good1.published == 500, "{good1:?}");

    // Helix starts failing after two pages of the next walk (of five), for longer than the
    // retries.
    sim.fail_helix_after(2, 1_000);
    let bad = poll(&poller).await;
    assert!(!bad.ok, "{bad:?}");
    assert_eq!(bad.published, 0);
    assert_eq!(
        bad.pages, 2,
        "the failure came mid-walk, at page 3: {bad:?}"
    );
    assert_eq!(Stats::get(&stats.polls_failed), 1);

    // Helix recovers; the next poll is published whole.
    sim.fail_helix(0);
    let good2 = poll(&poller).await;
    assert!(good2.ok && good2.published == 500, "{good2:?}");

    let records = live_records(&env, 1_001, Duration::from_secs(10)).await?;
    let polls = by_poll(&records);
    assert_eq!(
        records.len(),
        1_000,
        "only the two good polls were published"
    );
    assert_eq!(
        polls.keys().cloned().collect::<HashSet<_>>(),
        HashSet::from([good1.poll_id, good2.poll_id])
    );
    assert!(!polls.contains_key(&bad.poll_id));
    assert!(polls.values().all(|v| v.len() == 500));
    Ok(())
}

fn record(id: i64, observed_at: i64, viewers: i64, title: &str) -> LiveStream {
    LiveStream {
        broadcaster_id: id,
        broadcaster_login: format!("chan{id}"),
        broadcaster_name: format!("Chan{id}"),
        stream_id: format!("{id}0"),
        game_id: "21779".into(),
        game_name: "League of Legends".into(),
        title: title.into(),
        viewer_count: viewers,
        language: "en".into(),
        started_at: 1_706_400_000_000,
        observed_at,
        poll_id: format!("poll-{observed_at}"),
    }
}

#[tokio::test]
async fn ingestion_is_order_independent_and_dead_letters_bad_records() -> anyhow::Result<()> {
    let env = TestEnv::new("streamers_ingest");
    env.create_topics(1).await?;
    let session = env.migrate().await?;
    let ks = env.cfg.cassandra.keyspace.clone();
    let topic = env.cfg.topics.live_streams.clone();
    let codec = AvroCodec::new(&env.cfg.registry)?;
    codec
        .register_value_schema(&topic, tci_schemas::LIVE_STREAM_AVSC)
        .await?;
    let producer = kafka::producer(&env.cfg.kafka, "it-streamers", &[])?;
    let send = |key: String, payload: Vec<u8>| {
        let producer = producer.clone();
        let topic = topic.clone();
        async move {
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
        }
    };
    let (t1, t2, t3) = (
        1_706_408_359_963i64,
        1_706_408_419_963i64,
        1_706_408_479_963i64,
    );
    // Channel 7 observed three times, delivered newest first; garbage and an unkeyable record
    // in between; channel 8 after them proves consumption goes on.
    send(
        "7".into(),
        codec.encode(&topic, &record(7, t3, 30, "third")).await?,
    )
    .await?;
    send("7".into(), b"definitely not avro".to_vec()).await?;
    send(
        "7".into(),
        codec.encode(&topic, &record(7, t1, 10, "first")).await?,
    )
    .await?;
    send(
        "0".into(),
        codec.encode(&topic, &record(0, t2, 1, "no id")).await?,
    )
    .await?;
    send(
        "7".into(),
        codec.encode(&topic, &record(7, t2, 20, "second")).await?,
    )
    .await?;
    send(
        "8".into(),
        codec.encode(&topic, &record(8, t2, 5, "later")).await?,
    )
    .await?;

    let token = CancellationToken::new();
    let app = streamer_ingestion::App::build(ingestion_config(&env), token.clone()).await?;
    let stats = app.stats();
    let task = spawn_ingestion(app);
    let t = wait_for_table(&session, &ks, "channels 7 and 8", |t| {
        t.contains_key(&7) && t.contains_key(&8)
    })
    .await?;
    assert_eq!(t.len(), 2, "the record without an id was not written");
    let r7 = &t[&7];
    assert_eq!(
        r7.3,
        ts(t1),
        "first_seen is the earliest observation though it arrived later"
    );
    assert_eq!(
        r7.4,
        ts(t3),
        "last_seen_live did not go back when older records were replayed"
    );
    assert_eq!(
        r7.5,
        Some(30),
        "descriptive columns are the newest observation's"
    );
    let title: (Option<String>,) = session
        .query_unpaged(
            format!("SELECT title FROM {ks}.streamers WHERE broadcaster_id = 7"),
            (),
        )
        .await?
        .into_rows_result()?
        .single_row()?;
    assert_eq!(title.0.as_deref(), Some("third"));

    let dlq = read_topic(
        &env.cfg,
        &env.cfg.topics.dead_letter,
        3,
        Duration::from_secs(10),
    )
    .await?;
    assert_eq!(dlq.len(), 2, "garbage and the unkeyable record");
    assert!(dlq.iter().any(|(_, p)| p == b"definitely not avro"));
    assert_eq!(streamer_ingestion::Stats::get(&stats.dead_lettered), 2);

    // Replaying the same records (a new group from the beginning) changes nothing.
    token.cancel();
    task.await??;
    let token = CancellationToken::new();
    let mut cfg = ingestion_config(&env);
    cfg.ingest.group_id = env.group("replay");
    let replay = streamer_ingestion::App::build(cfg, token.clone()).await?;
    let replay_stats = replay.stats();
    let task = spawn_ingestion(replay);
    eventually(Duration::from_secs(60), || {
        let s = replay_stats.clone();
        async move { (streamer_ingestion::Stats::get(&s.records_written) >= 4).then_some(()) }
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("replay did not consume"))?;
    let again = streamers(&session, &ks).await?;
    assert_eq!(again, t);
    token.cancel();
    task.await??;
    env.drop_keyspace(&session).await;
    Ok(())
}

/// A TCP proxy to Cassandra that can drop every connection and refuse new ones.
struct Proxy {
    addr: std::net::SocketAddr,
    blocked: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(target: String) -> anyhow::Result<Self> {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let blocked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (b, c) = (blocked.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if b.load(Ordering::SeqCst) {
                    drop(inbound); // refused: closed at once
                    continue;
                }
                let target = target.clone();
                let h = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
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
        self.blocked
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for h in self.conns.lock().expect("lock").drain(..) {
            h.abort(); // drops both sockets
        }
    }

    fn unblock(&self) {
        self.blocked
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The group's state and member ids, as the broker sees them.
fn group_members(env: &TestEnv, group: &str) -> anyhow::Result<(String, Vec<String>)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let mut c = kafka::base_config(&env.cfg.kafka);
    c.set("group.id", env.group("observer"));
    let observer: BaseConsumer = c.create()?;
    let list = observer.fetch_group_list(Some(group), Duration::from_secs(10))?;
    let g = list
        .groups()
        .first()
        .ok_or_else(|| anyhow::anyhow!("group {group} unknown"))?;
    let mut ids: Vec<String> = g.members().iter().map(|m| m.id().to_string()).collect();
    ids.sort();
    Ok((g.state().to_string(), ids))
}

/// Cassandra unreachable for longer than `max.poll.interval.ms`: streamer-ingestion pauses its
/// partitions and keeps polling (before, it retried inside the poll loop and was thrown out of
/// the group, then rejoined: a rebalance per outage and per member), says so on `/readyz`, and
/// writes every record once Cassandra answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_pauses_consumption_and_keeps_the_group_membership() -> anyhow::Result<()> {
    let env = TestEnv::new("streamers_outage");
    env.create_topics(1).await?;
    let session = env.migrate().await?;
    let ks = env.cfg.cassandra.keyspace.clone();
    let topic = env.cfg.topics.live_streams.clone();
    let codec = AvroCodec::new(&env.cfg.registry)?;
    codec
        .register_value_schema(&topic, tci_schemas::LIVE_STREAM_AVSC)
        .await?;
    let producer = kafka::producer(&env.cfg.kafka, "it-streamers-outage", &[])?;
    let send = |r: LiveStream| {
        let (producer, topic, codec) = (producer.clone(), topic.clone(), codec.clone());
        async move {
            let payload = codec.encode(&topic, &r).await?;
            let key = r.broadcaster_id.to_string();
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)?;
            anyhow::Ok(())
        }
    };
    let proxy = Proxy::start(env.cfg.cassandra.nodes[0].clone()).await?;
    let mut cfg = ingestion_config(&env);
    let group = cfg.ingest.group_id.clone();
    cfg.common.cassandra.nodes = vec![proxy.addr.to_string()];
    cfg.common.cassandra.request_timeout = Duration::from_secs(2);
    cfg.ingest.session_timeout = Duration::from_secs(6);
    cfg.ingest.max_poll_interval = Duration::from_secs(8);
    let token = CancellationToken::new();
    let app = streamer_ingestion::App::build(cfg, token.clone()).await?;
    let (stats, admin) = (app.stats(), app.admin_addr());
    let task = spawn_ingestion(app);

    let t0 = 1_706_408_359_963i64;
    send(record(1, t0, 1, "before")).await?;
    wait_for_table(&session, &ks, "channel 1", |t| t.contains_key(&1)).await?;
    let (state, members) = group_members(&env, &group)?;
    assert_eq!(
        (state.as_str(), members.len()),
        ("Stable", 1),
        "{members:?}"
    );

    proxy.block();
    for id in 2..=5 {
        send(record(id, t0 + id * 1000, id, "during")).await?;
    }
    eventually(Duration::from_secs(30), || {
        let s = stats.clone();
        async move { (streamer_ingestion::Stats::get(&s.pauses) >= 1).then_some(()) }
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("consumption never paused"))?;
    let ready = reqwest::get(format!("http://{admin}/readyz")).await?;
    assert_eq!(ready.status(), 503, "/readyz reports the failing writes");
    // Twice max.poll.interval.ms with the store down.
    tokio::time::sleep(Duration::from_secs(16)).await;
    let during = group_members(&env, &group)?;
    assert_eq!(
        during,
        (state.clone(), members.clone()),
        "the member kept its membership through the outage (no rebalance)"
    );
    assert!(streamer_ingestion::Stats::get(&stats.write_retries) > 0);

    proxy.unblock();
    let t = wait_for_table(&session, &ks, "channels 1 to 5", |t| {
        (1..=5).all(|id| t.contains_key(&id))
    })
    .await?;
    assert_eq!(t.len(), 5);
    assert_eq!(
        group_members(&env, &group)?,
        (state, members),
        "still the same member after the outage"
    );
    eventually(Duration::from_secs(30), || async {
        let r = reqwest::get(format!("http://{admin}/readyz")).await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("/readyz never recovered"))?;
    token.cancel();
    task.await??;
    env.drop_keyspace(&session).await;
    Ok(())
}

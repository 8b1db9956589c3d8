//! chat-listener against the real Kafka and registry and the Twitch simulator: every PRIVMSG the
//! simulator sent is in Kafka exactly once by message id — across a forced RECONNECT and an
//! abrupt socket drop — and two replicas split the channels without capturing one twice.

use std::{
    collections::{BTreeSet, HashMap},
    time::Duration,
};

use integration_tests::{eventually, read_all, TestEnv};
use rdkafka::producer::FutureRecord;
use tci_common::{kafka, registry::AvroCodec};
use tci_schemas::{ChatMessage, LiveStream};
use tokio_util::sync::CancellationToken;
use twitch_sim::{Sim, SimConfig};

/// Publishes the simulator's live channels to the live-streams topic, as streamer-listener does.
async fn publish_live(env: &TestEnv, sim: &Sim) -> anyhow::Result<usize> {
    let codec = AvroCodec::new(&env.cfg.registry)?;
    let topic = &env.cfg.topics.live_streams;
    codec
        .register_value_schema(topic, tci_schemas::LIVE_STREAM_AVSC)
        .await?;
    let producer = kafka::producer(&env.cfg.kafka, "it-live", &[])?;
    let live = sim.live();
    let now = tci_common::now_ms();
    for ch in &live {
        let rec = LiveStream {
            broadcaster_id: ch.user_id.parse()?,
            broadcaster_login: ch.user_login.clone(),
            broadcaster_name: ch.user_name.clone(),
            stream_id: ch.id.clone(),
            observed_at: now,
            poll_id: "it".into(),
            ..LiveStream::default()
        };
        let payload = codec.encode(topic, &rec).await?;
        let key = rec.broadcaster_id.to_string();
        producer
            .send(
                FutureRecord::to(topic).key(&key).payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    Ok(live.len())
}

fn listener_config(env: &TestEnv, sim: &Sim, group: &str) -> chat_listener::Config {
    let mut cfg = chat_listener::Config::default();
    cfg.common = env.cfg.clone();
    cfg.irc.url = sim.irc_url();
    cfg.irc.joins_per_window = 1000;
    cfg.irc.channels_per_connection = 4; // several connections even for a few channels
    cfg.irc.reconnect_min = Duration::from_millis(50);
    cfg.irc.reconnect_max = Duration::from_millis(500);
    cfg.channels.group_id = group.to_string();
    cfg.channels.check_interval = Duration::from_millis(200);
    cfg
}

/// Every chat message on the topic now (with repeats).
async fn chat_in_kafka(env: &TestEnv) -> anyhow::Result<Vec<ChatMessage>> {
    let codec = AvroCodec::new(&env.cfg.registry)?;
    let records = read_all(&env.cfg, &env.cfg.topics.chat).await?;
    let mut out = Vec::with_capacity(records.len());
    for (_, payload) in records {
        out.push(codec.decode(Some(&payload)).await?);
    }
    Ok(out)
}

/// Ids of every chat message on the topic now (with repeats).
async fn ids_in_kafka(env: &TestEnv) -> anyhow::Result<Vec<String>> {
    Ok(chat_in_kafka(env)
        .await?
        .into_iter()
        .map(|m| m.id)
        .collect())
}

/// The `emotes` tag of a raw line.
fn emotes_tag(raw: &str) -> &str {
    raw.split(' ')
        .next()
        .unwrap_or_default()
        .split(';')
        .find_map(|t| t.strip_prefix("emotes="))
        .unwrap_or_default()
}

/// The real-Twitch shapes the simulator mixes in arrive as records like any other: one-word
/// messages without the ':' (text intact), emote ids listed once per occurrence (all ranges
/// under one id), and CLEARMSGs with an empty `room-id` (filed under the channel's id).
async fn real_line_shapes_are_captured(env: &TestEnv, sim: &Sim) -> anyhow::Result<()> {
    let chat = chat_in_kafka(env).await?;
    let mut no_colon = 0;
    let mut split_emotes = 0;
    for m in &chat {
        let raw = m.raw_line.as_deref().unwrap_or_default();
        assert!(!raw.is_empty(), "every record keeps its line: {}", m.id);
        let after_channel = raw
            .split_once(&format!(" PRIVMSG #{} ", m.room.name))
            .map(|(_, t)| t)
            .unwrap_or_default();
        if !after_channel.starts_with(':') {
            no_colon += 1;
            assert_eq!(m.text, after_channel, "one-word message without ':'");
        }
        let tag = emotes_tag(raw);
        let groups: Vec<&str> = tag.split('/').filter(|g| !g.is_empty()).collect();
        let ids: BTreeSet<&str> = groups.iter().filter_map(|g| g.split(':').next()).collect();
        if ids.len() < groups.len() {
            split_emotes += 1;
            let emotes = m.emotes.as_deref().unwrap_or_default();
            assert_eq!(emotes.len(), ids.len(), "one entry per emote id: {raw}");
            let ranges: usize = emotes.iter().map(|e| e.positions.len()).sum();
            let sent_ranges: usize = groups.iter().map(|g| g.split(',').count()).sum();
            assert_eq!(ranges, sent_ranges, "every range kept: {raw}");
        }
    }
    assert!(
        no_colon > 0,
        "no one-word message without ':' among {}",
        chat.len()
    );
    assert!(
        split_emotes > 0,
        "no repeated emote id among {}",
        chat.len()
    );

    let ids: HashMap<String, i64> = sim
        .live()
        .iter()
        .map(|c| (c.user_login.clone(), c.user_id.parse().unwrap_or_default()))
        .collect();
    let codec = AvroCodec::new(&env.cfg.registry)?;
    let mut empty_room_id = 0;
    for (_, payload) in read_all(&env.cfg, &env.cfg.topics.moderation).await? {
        let e: tci_schemas::ModerationEvent = codec.decode(Some(&payload)).await?;
        if e.raw_line
            .as_deref()
            .unwrap_or_default()
            .contains(";room-id=;")
        {
            empty_room_id += 1;
            assert_eq!(Some(&e.broadcaster_id), ids.get(&e.channel), "{e:?}");
        }
    }
    assert!(
        empty_room_id > 0,
        "no CLEARMSG with an empty room-id captured"
    );
    Ok(())
}

fn sent_ids(sim: &Sim) -> BTreeSet<String> {
    sim.sent(true)
        .channels
        .into_values()
        .flat_map(|c| c.ids.unwrap_or_default())
        .collect()
}

/// The ids sent, once a paused sim has stopped sending: its traffic task may have passed
/// the pause check with one more batch when `pause` returns.
async fn paused_sent_ids(sim: &Sim) -> anyhow::Result<BTreeSet<String>> {
    let mut total = sim.sent(false).total;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = sim.sent(false).total;
        if now == total {
            return Ok(sent_ids(sim));
        }
        total = now;
    }
    anyhow::bail!("the paused sim was still sending after 10 s ({total} lines)")
}

/// Waits until every id in `sent` is in the chat topic (the listener has read and published
/// all of it); fails after 60 s with how many are missing.
async fn wait_published(env: &TestEnv, sent: &BTreeSet<String>) -> anyhow::Result<()> {
    let missing = std::sync::atomic::AtomicUsize::new(sent.len());
    let done = eventually(Duration::from_secs(60), || {
        let missing = &missing;
        async move {
            let got: BTreeSet<String> = ids_in_kafka(env).await.ok()?.into_iter().collect();
            let n = sent.difference(&got).count();
            missing.store(n, std::sync::atomic::Ordering::Relaxed);
            (n == 0).then_some(())
        }
    })
    .await;
    anyhow::ensure!(
        done.is_some(),
        "{} of {} ids sent are not in Kafka after 60 s",
        missing.into_inner(),
        sent.len()
    );
    Ok(())
}

async fn wait_joined(sim: &Sim, connections: usize) {
    for _ in 0..100 {
        if sim.connections() >= connections && sim.sent(false).total > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_privmsg_reaches_kafka_exactly_once_across_reconnect_and_drop() -> anyhow::Result<()>
{
    let env = TestEnv::new("listener");
    env.create_topics(3).await?;
    let sim = Sim::start(SimConfig {
        channels: 12,
        rate: 400.0,
        duplicate_probability: 0.02,
        ..SimConfig::default()
    })
    .await?;
    let channels = publish_live(&env, &sim).await?;
    assert_eq!(channels, 12);

    let token = CancellationToken::new();
    let app = chat_listener::App::build(
        listener_config(&env, &sim, &env.group("listener")),
        token.clone(),
    )
    .await?;
    let run = tokio::spawn(app.run());
    wait_joined(&sim, 3).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The server asks every client to reconnect, then closes them.
    sim.reconnect_all();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Abrupt drop (TCP reset, no close frame). Traffic is paused around it: bytes already in
    // flight on a reset socket are lost for any client, ours or Twitch's own.
    // The drop waits until everything sent so far is in Kafka: a listener slowed by a busy
    // machine would otherwise lose, in the reset, lines the sim has counted as sent.
    sim.pause();
    wait_published(&env, &paused_sent_ids(&sim).await?).await?;
    sim.drop_all();
    tokio::time::sleep(Duration::from_millis(200)).await;
    sim.resume();
    tokio::time::sleep(Duration::from_secs(3)).await;
    sim.pause();
    tokio::time::sleep(Duration::from_secs(2)).await; // let the listener drain

    let sent = sent_ids(&sim);
    let report = sim.sent(false);
    assert!(
        sent.len() > 500,
        "the simulator sent too little to prove anything: {}",
        sent.len()
    );
    assert!(
        report.duplicates > 0,
        "the simulator should have delivered some ids twice"
    );

    token.cancel();
    run.await??;

    real_line_shapes_are_captured(&env, &sim).await?;
    let ids = ids_in_kafka(&env).await?;
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in &ids {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(
        repeated.is_empty(),
        "ids published more than once: {repeated:?}"
    );
    let in_kafka: BTreeSet<String> = ids.into_iter().collect();
    let missing: Vec<_> = sent.difference(&in_kafka).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} of {} sent ids missing from Kafka, e.g. {missing:?}",
        sent.difference(&in_kafka).count(),
        sent.len()
    );
    let extra: Vec<_> = in_kafka.difference(&sent).take(5).collect();
    assert!(
        extra.is_empty(),
        "ids in Kafka the simulator did not send: {extra:?}"
    );
    sim.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_split_the_channels_without_double_capture() -> anyhow::Result<()> {
    let env = TestEnv::new("replicas");
    env.create_topics(6).await?;
    let sim = Sim::start(SimConfig {
        channels: 24,
        rate: 300.0,
        ..SimConfig::default()
    })
    .await?;
    publish_live(&env, &sim).await?;
    let group = env.group("listener");

    let token = CancellationToken::new();
    // Without the handover grace: this test is about the split itself (with the grace, a
    // replica that loses channels keeps them for a while, and the copies merge by id).
    let cfg = || {
        let mut c = listener_config(&env, &sim, &group);
        c.channels.handover_grace = Duration::ZERO;
        c
    };
    let a = chat_listener::App::build(cfg(), token.clone()).await?;
    let b = chat_listener::App::build(cfg(), token.clone()).await?;
    let (owned_a, owned_b) = (a.owned_channels(), b.owned_channels());
    let ra = tokio::spawn(a.run());
    let rb = tokio::spawn(b.run());
    // Let the group settle (both replicas assigned, parts/joins done), then count from zero.
    let owned = || {
        (
            owned_a.load(std::sync::atomic::Ordering::Relaxed),
            owned_b.load(std::sync::atomic::Ordering::Relaxed),
        )
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        let (na, nb) = owned();
        if na + nb == 24 && na > 0 && nb > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // joins sent, parts of moved channels done
    let (na, nb) = owned();
    assert_eq!(
        na + nb,
        24,
        "every live channel owned by exactly one replica ({na} + {nb})"
    );
    assert!(na > 0 && nb > 0, "both replicas own channels ({na} + {nb})");
    sim.pause();
    wait_published(&env, &paused_sent_ids(&sim).await?).await?; // drained: nothing in flight
    let before = ids_in_kafka(&env)
        .await?
        .into_iter()
        .collect::<BTreeSet<_>>();
    sim.reset_sent();
    sim.resume();
    tokio::time::sleep(Duration::from_secs(4)).await;
    sim.pause();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = sent_ids(&sim);
    assert!(sent.len() > 300, "too little traffic: {}", sent.len());
    token.cancel();
    ra.await??;
    rb.await??;

    let all = ids_in_kafka(&env).await?;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for id in all.into_iter().filter(|id| !before.contains(id)) {
        *counts.entry(id).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "captured by both replicas: {twice:?}");
    let got: BTreeSet<String> = counts.into_keys().collect();
    let missing = sent.difference(&got).count();
    let extra = got.difference(&sent).count();
    assert!(
        missing == 0 && extra == 0,
        "after the group settled Kafka must hold exactly what was sent: {} sent, {} in Kafka, {missing} missing, {extra} unexpected",
        sent.len(),
        got.len()
    );
    sim.shutdown().await?;
    Ok(())
}

/// Twitch ignores JOINs over its rate limit without an answer; the listener sends a JOIN again
/// when the channel's ROOMSTATE does not come, so every channel ends up joined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_ignored_over_the_rate_limit_are_sent_again() -> anyhow::Result<()> {
    let env = TestEnv::new("rejoin");
    env.create_topics(2).await?;
    let sim = Sim::start(SimConfig {
        channels: 16,
        rate: 50.0,
        joins_per_window: 10,
        join_window: Duration::from_secs(2),
        ..SimConfig::default()
    })
    .await?;
    publish_live(&env, &sim).await?;
    let token = CancellationToken::new();
    let mut cfg = listener_config(&env, &sim, &env.group("listener"));
    // One login for every connection, as a bot account: the simulator's limit is per login.
    cfg.irc.nick = Some("justinfan4242".into());
    cfg.irc.channels_per_connection = 100;
    cfg.irc.join_timeout = Duration::from_secs(3);
    let app = chat_listener::App::build(cfg, token.clone()).await?;
    let run = tokio::spawn(app.run());

    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    while sim.joined_channels() < 16 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let joined = sim.joined_channels();
    let refused = sim.joins_refused();
    token.cancel();
    run.await??;
    sim.shutdown().await?;
    assert!(
        refused >= 6,
        "the simulator should have ignored the JOINs over its limit: {refused} ignored"
    );
    assert_eq!(
        joined, 16,
        "channels joined in the end ({refused} JOINs ignored)"
    );
    Ok(())
}

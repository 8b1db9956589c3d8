//! Opt-out (issue #14) on the real stack: chat-listener, chat-ingestor and chat-api run
//! in-process against the real Kafka, Cassandra and registry, and chat comes from a scripted IRC
//! server (WebSocket, the lines Twitch would send), so each message's sender, user id and time
//! are chosen by the test.
//!
//! A chatter chats in two channels, opts out in chat, chats again: their old messages are gone
//! from every table and every API route and format, the new ones never reach Kafka, a replay
//! of the topic (backfill) brings none back, and everyone else's rows are the same before and
//! after. A command typed under someone else's name (login and display name of the victim, the
//! sender's own user id) acts for the sender only; the channel form counts only from the
//! broadcaster; opting back in keeps only later chat.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{SinkExt, StreamExt, TryStreamExt};
use integration_tests::{eventually, read_all, TestEnv};
use rdkafka::producer::FutureRecord;
use scylla::client::session::Session;
use tci_common::{kafka, registry::AvroCodec};
use tci_schemas::{ChatMessage, LiveStream, OptOut};
use tokio::{net::TcpListener, sync::broadcast};
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_util::sync::CancellationToken;

const CHAN_A: (&str, i64) = ("chana", 9001);
const CHAN_B: (&str, i64) = ("chanb", 9002);
const CHAN_C: (&str, i64) = ("chanc", 9003);
const ALICE: (&str, i64) = ("alice", 101);
const BOB: (&str, i64) = ("bob", 102);
const MALLORY: (&str, i64) = ("mallory", 103);
const DAVE: (&str, i64) = ("dave", 104);

/// A scripted chat server: answers JOINs with the channel's ROOMSTATE and sends the lines the
/// test says to every connection that joined the channel.
struct Irc {
    url: String,
    lines: broadcast::Sender<(String, String)>,
    joined: Arc<Mutex<HashSet<String>>>,
    n: Mutex<u64>,
}

impl Irc {
    async fn start(channels: &[(&str, i64)]) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("ws://{}", listener.local_addr()?);
        let (lines, _) = broadcast::channel::<(String, String)>(1024);
        let joined: Arc<Mutex<HashSet<String>>> = Arc::default();
        let ids: BTreeMap<String, i64> = channels
            .iter()
            .map(|(l, id)| (l.to_string(), *id))
            .collect();
        let (tx, j) = (lines.clone(), joined.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (mut rx, j, ids) = (tx.subscribe(), j.clone(), ids.clone());
                tokio::spawn(async move {
                    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    let (mut sink, mut stream) = ws.split();
                    let mut mine: HashSet<String> = HashSet::new();
                    loop {
                        tokio::select! {
                            frame = stream.next() => {
                                let Some(Ok(Ws::Text(t))) = frame else { return };
                                for l in t.as_str().lines() {
                                    if let Some(c) = l.strip_prefix("JOIN #") {
                                        let id = ids.get(c).copied().unwrap_or_default();
                                        let rs = format!("@emote-only=0;followers-only=-1;r9k=0;room-id={id};slow=0;subs-only=0 :tmi.twitch.tv ROOMSTATE #{c}\r\n");
                                        mine.insert(c.to_string());
                                        j.lock().unwrap().insert(c.to_string());
                                        if sink.send(Ws::Text(rs.into())).await.is_err() { return; }
                                    } else if l.starts_with("PING")
                                        && sink.send(Ws::Text("PONG :tmi.twitch.tv\r\n".into())).await.is_err()
                                    {
                                        return;
                                    }
                                }
                            }
                            line = rx.recv() => {
                                let Ok((channel, line)) = line else { return };
                                if mine.contains(&channel) && sink.send(Ws::Text(format!("{line}\r\n").into())).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Ok(Self {
            url,
            lines,
            joined,
            n: Mutex::new(0),
        })
    }

    /// Sends a PRIVMSG from `sender` (login, user id) in `channel`, with `display` as the
    /// display name; returns the message id.
    fn say_as(
        &self,
        channel: (&str, i64),
        login: &str,
        display: &str,
        user_id: i64,
        text: &str,
    ) -> String {
        let n = {
            let mut n = self.n.lock().unwrap();
            *n += 1;
            *n
        };
        let id = format!("optout-it-{n:04}");
        let ts = tci_common::now_ms();
        let (c, room_id) = channel;
        let line = format!(
            "@badge-info=;badges=;color=;display-name={display};emotes=;id={id};mod=0;room-id={room_id};subscriber=0;tmi-sent-ts={ts};turbo=0;user-id={user_id};user-type= :{login}!{login}@{login}.tmi.twitch.tv PRIVMSG #{c} :{text}"
        );
        let _ = self.lines.send((c.to_string(), line));
        id
    }

    fn say(&self, channel: (&str, i64), sender: (&str, i64), text: &str) -> String {
        self.say_as(channel, sender.0, sender.0, sender.1, text)
    }
}

async fn publish_live(env: &TestEnv, channels: &[(&str, i64)]) -> anyhow::Result<()> {
    let codec = AvroCodec::new(&env.cfg.registry)?;
    let topic = &env.cfg.topics.live_streams;
    codec
        .register_value_schema(topic, tci_schemas::LIVE_STREAM_AVSC)
        .await?;
    let producer = kafka::producer(&env.cfg.kafka, "it-live", &[])?;
    for (login, id) in channels {
        let rec = LiveStream {
            broadcaster_id: *id,
            broadcaster_login: login.to_string(),
            broadcaster_name: login.to_string(),
            stream_id: format!("s{id}"),
            observed_at: tci_common::now_ms(),
            poll_id: "it".into(),
            ..LiveStream::default()
        };
        let payload = codec.encode(topic, &rec).await?;
        let key = id.to_string();
        producer
            .send(
                FutureRecord::to(topic).key(&key).payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    Ok(())
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn get(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> anyhow::Result<(u16, reqwest::header::HeaderMap, String)> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await?;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        Ok((status, headers, r.text().await?))
    }

    /// Every page of `path` in `format`, concatenated; or the status of a refusal.
    async fn all(&self, path: &str, format: &str) -> anyhow::Result<Result<String, (u16, String)>> {
        let mut out = String::new();
        let mut after: Option<String> = None;
        for _ in 0..100 {
            let mut q = vec![
                ("start", "2020-01-01T00:00:00Z"),
                ("end", "2035-01-01T00:00:00Z"),
                ("limit", "100"),
                ("format", format),
            ];
            if let Some(a) = &after {
                q.push(("after", a.as_str()));
            }
            let (status, headers, body) = self.get(path, &q).await?;
            if status != 200 {
                return Ok(Err((status, body)));
            }
            let next = if format == "json" {
                let v: serde_json::Value = serde_json::from_str(&body)?;
                v["cursor"].as_str().map(str::to_string)
            } else {
                headers
                    .get("x-cursor")
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
            };
            out.push_str(&body);
            match next {
                Some(c) => after = Some(c),
                None => return Ok(Ok(out)),
            }
        }
        anyhow::bail!("{path}: more than 100 pages")
    }

    /// Message ids of a channel's chat (json format).
    async fn ids(&self, broadcaster_id: i64) -> anyhow::Result<BTreeSet<String>> {
        let body = self
            .all(&format!("/v1.0/{broadcaster_id}/chat"), "json")
            .await?
            .map_err(|(s, b)| anyhow::anyhow!("{s}: {b}"))?;
        // Pages are concatenated JSON documents.
        let mut ids = BTreeSet::new();
        for doc in serde_json::Deserializer::from_str(&body).into_iter::<serde_json::Value>() {
            for m in doc?["messages"].as_array().cloned().unwrap_or_default() {
                ids.insert(m["message_id"].as_str().unwrap_or_default().to_string());
            }
        }
        Ok(ids)
    }
}

/// Every row of a table as `(broadcaster_id, user_id, id-ish text)`.
async fn scan(
    session: &Session,
    ks: &str,
    cql: &str,
) -> anyhow::Result<Vec<(i64, Option<i64>, String)>> {
    let mut rows = session
        .query_iter(cql.replace("{ks}", ks), ())
        .await?
        .rows_stream::<(i64, Option<i64>, String)>()?;
    let mut out = Vec::new();
    while let Some(r) = rows.try_next().await? {
        out.push(r);
    }
    Ok(out)
}

/// Rows of one table as `(broadcaster_id, user_id, key text)`.
type Rows = BTreeSet<(i64, Option<i64>, String)>;
/// Rows per table.
type Tables = BTreeMap<&'static str, Rows>;

/// What is stored per table, as comparable sets.
async fn stored(session: &Session, ks: &str) -> anyhow::Result<Tables> {
    let mut m = BTreeMap::new();
    for (table, cql) in [
        (
            "chat_messages",
            "SELECT broadcaster_id, user_id, message_id FROM {ks}.chat_messages",
        ),
        (
            "user_chat_index",
            "SELECT broadcaster_id, user_id, message_id FROM {ks}.user_chat_index",
        ),
        (
            "user_chat_days",
            "SELECT broadcaster_id, user_id, CAST(day AS text) FROM {ks}.user_chat_days",
        ),
        // Rows stored before storage v3 (none here: the purge of them is the same walk).
        (
            "user_chat_messages",
            "SELECT broadcaster_id, user_id, message_id FROM {ks}.user_chat_messages",
        ),
        (
            "user_chat_buckets",
            "SELECT broadcaster_id, user_id, CAST(bucket AS text) FROM {ks}.user_chat_buckets",
        ),
        (
            "chat_buckets",
            "SELECT broadcaster_id, broadcaster_id, CAST(bucket AS text) FROM {ks}.chat_buckets",
        ),
        (
            "user_channels",
            "SELECT broadcaster_id, user_id, CAST(user_id AS text) FROM {ks}.user_channels",
        ),
    ] {
        m.insert(table, scan(session, ks, cql).await?.into_iter().collect());
    }
    Ok(m)
}

/// Opt-out records on the topic now.
async fn optout_records(env: &TestEnv) -> anyhow::Result<Vec<OptOut>> {
    let codec = AvroCodec::new(&env.cfg.registry)?;
    let mut out = Vec::new();
    for (_, payload) in read_all(&env.cfg, &env.cfg.topics.optouts).await? {
        out.push(codec.decode(Some(&payload)).await?);
    }
    Ok(out)
}

const FORMATS: [&str; 4] = ["json", "ndjson", "text", "raw"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opting_out_in_chat_removes_a_chatter_or_channel_everywhere() -> anyhow::Result<()> {
    let env = TestEnv::new("optout");
    env.create_topics(2).await?;
    let session = env.migrate().await?;
    let ks = env.cfg.cassandra.keyspace.clone();
    let irc = Irc::start(&[CHAN_A, CHAN_B, CHAN_C]).await?;
    publish_live(&env, &[CHAN_A, CHAN_B, CHAN_C]).await?;

    let token = CancellationToken::new();
    let mut lc = chat_listener::Config {
        common: env.cfg.clone(),
        ..Default::default()
    };
    lc.common.admin.addr = "127.0.0.1:0".into();
    lc.irc.url = irc.url.clone();
    lc.irc.joins_per_window = 1000;
    lc.channels.group_id = env.group("listener");
    lc.channels.check_interval = Duration::from_millis(200);
    let listener = tokio::spawn(chat_listener::App::build(lc, token.clone()).await?.run());
    let mut ic = chat_ingestor::Config {
        common: env.cfg.clone(),
        ..Default::default()
    };
    ic.common.admin.addr = "127.0.0.1:0".into();
    ic.ingest.group_id = env.group("ingestor");
    let ingestor = tokio::spawn(
        chat_ingestor::App::build(ic.clone(), token.clone())
            .await?
            .run(),
    );
    let mut ac = chat_api::Config {
        common: env.cfg.clone(),
        ..Default::default()
    };
    ac.common.admin.addr = "127.0.0.1:0".into();
    ac.http.addr = "127.0.0.1:0".into();
    let api_app = chat_api::App::build(ac, token.clone()).await?;
    let api = Api {
        base: format!("http://{}", api_app.http_addr()),
        http: reqwest::Client::new(),
    };
    let api_task = tokio::spawn(api_app.run());

    eventually(Duration::from_secs(30), || async {
        (irc.joined.lock().unwrap().len() == 3).then_some(())
    })
    .await
    .expect("chat-listener joined the three channels");

    // Before: Alice chats in two channels, Bob and Mallory in one or two, Dave in channel C.
    let t0 = tci_common::now_ms();
    let mut alice_old = vec![
        irc.say(CHAN_A, ALICE, "alice-old-a1"),
        irc.say(CHAN_A, ALICE, "alice-old-a2"),
        irc.say(CHAN_B, ALICE, "alice-old-b1"),
    ];
    let bob_ids = [
        irc.say(CHAN_A, BOB, "bob-a1"),
        irc.say(CHAN_B, BOB, "bob-b1"),
        irc.say(CHAN_A, BOB, "bob-a2"),
    ];
    let mallory = irc.say(CHAN_A, MALLORY, "mallory-a1");
    let dave = irc.say(CHAN_C, DAVE, "dave-c1");
    let all_before: BTreeSet<String> = alice_old
        .iter()
        .chain(&bob_ids)
        .chain([&mallory, &dave])
        .cloned()
        .collect();
    let served = eventually(Duration::from_secs(60), || async {
        let mut got = BTreeSet::new();
        for c in [CHAN_A.1, CHAN_B.1, CHAN_C.1] {
            got.extend(api.ids(c).await.ok()?);
        }
        (got == all_before).then_some(got)
    })
    .await;
    assert!(served.is_some(), "the first messages were not all served");

    // Mallory types the command under Alice's login and display name (her own user id), and
    // Dave, who is not the broadcaster, types the channel form in channel C.
    let spoof = irc.say_as(CHAN_A, "alice", "Alice", MALLORY.1, "!archive optout");
    // Not the broadcaster's: ordinary chat, archived as such.
    let not_broadcaster = irc.say(CHAN_C, DAVE, "!archive optout channel");
    let marker = irc.say(CHAN_A, BOB, "bob-marker");
    eventually(Duration::from_secs(30), || async {
        api.ids(CHAN_A.1)
            .await
            .ok()?
            .contains(&marker)
            .then_some(())
    })
    .await
    .expect("the marker after the spoofed command arrived");
    // Mallory is out (it was her own user id), Alice and channel C are not.
    eventually(Duration::from_secs(30), || async {
        (!api.ids(CHAN_A.1).await.ok()?.contains(&mallory)).then_some(())
    })
    .await
    .expect("Mallory's own opt-out took effect");
    let a = api.ids(CHAN_A.1).await?;
    for id in &alice_old[..2] {
        assert!(
            a.contains(id),
            "a command in Alice's name by someone else removed {id}"
        );
    }
    assert!(api.ids(CHAN_B.1).await?.contains(&alice_old[2]));
    assert!(
        api.ids(CHAN_C.1).await?.contains(&dave),
        "not the broadcaster: nothing changes"
    );
    let (status, _, _) = api
        .get(
            &format!("/v1.0/{}/users/{}/chat", CHAN_A.1, ALICE.1),
            &[
                ("start", "2020-01-01T00:00:00Z"),
                ("end", "2035-01-01T00:00:00Z"),
            ],
        )
        .await?;
    assert_eq!(status, 200, "Alice's user log is still served");
    let keys: Vec<String> = optout_records(&env)
        .await?
        .iter()
        .map(OptOut::key)
        .collect();
    assert_eq!(
        keys,
        [format!("user:{}", MALLORY.1)],
        "only the sender's own id opted out"
    );

    // The state others see, before Alice opts out.
    let before = stored(&session, &ks).await?;
    let others = |m: &Tables| {
        m.iter()
            .map(|(t, rows)| {
                let rows: BTreeSet<_> = rows
                    .iter()
                    .filter(|(b, u, _)| {
                        *u != Some(ALICE.1)
                            && *u != Some(MALLORY.1)
                            && *b != CHAN_C.1
                            && *u != Some(DAVE.1)
                    })
                    .cloned()
                    .collect();
                (*t, rows)
            })
            .collect::<BTreeMap<_, _>>()
    };
    let others_before = others(&before);
    assert!(
        before["chat_messages"]
            .iter()
            .any(|(_, u, _)| *u == Some(ALICE.1)),
        "Alice's messages are stored before she opts out"
    );

    // Alice opts out (in channel B: it counts for every channel), then chats again; the
    // broadcaster of channel C opts the channel out; Bob goes on chatting.
    let cmd_a = irc.say(CHAN_B, ALICE, "!archive optout");
    let alice_new = [
        irc.say(CHAN_A, ALICE, "alice-new-a3"),
        irc.say(CHAN_B, ALICE, "alice-new-b2"),
    ];
    let cmd_c = irc.say(CHAN_C, ("chanc", CHAN_C.1), "!archive optout channel");
    let dave_new = irc.say(CHAN_C, DAVE, "dave-new-c2");
    let bob_after = irc.say(CHAN_A, BOB, "bob-after");
    eventually(Duration::from_secs(30), || async {
        api.ids(CHAN_A.1)
            .await
            .ok()?
            .contains(&bob_after)
            .then_some(())
    })
    .await
    .expect("Bob's message after the opt-outs arrived");

    // Gone from every table (the purge ran), Bob's rows unchanged.
    let after = eventually(Duration::from_secs(60), || async {
        let s = stored(&session, &ks).await.ok()?;
        let clean = s
            .values()
            .flatten()
            .all(|(b, u, _)| *u != Some(ALICE.1) && *u != Some(MALLORY.1) && *b != CHAN_C.1);
        clean.then_some(s)
    })
    .await;
    let Some(after) = after else {
        panic!(
            "rows of opted-out chatters or channels are still stored: {:#?}",
            stored(&session, &ks).await?
        );
    };
    let mut others_after = others(&after);
    for rows in others_after.values_mut() {
        rows.retain(|(_, _, id)| *id != bob_after && *id != marker);
    }
    let mut expected = others_before.clone();
    for rows in expected.values_mut() {
        rows.retain(|(_, _, id)| *id != marker);
    }
    assert_eq!(
        others_after["chat_messages"], expected["chat_messages"],
        "other chatters' messages are untouched"
    );
    assert_eq!(others_after["user_chat_index"], expected["user_chat_index"]);
    assert_eq!(others_after["user_chat_days"], expected["user_chat_days"]);

    // chat-api reads the opt-outs every 2 s.
    eventually(Duration::from_secs(10), || async {
        let user = format!("/v1.0/{}/users/{}/chat", CHAN_A.1, ALICE.1);
        let channel = format!("/v1.0/{}/chat", CHAN_C.1);
        let refused = api.all(&user, "json").await.ok()?.is_err()
            && api.all(&channel, "json").await.ok()?.is_err();
        refused.then_some(())
    })
    .await
    .expect("chat-api refuses the opted-out routes");
    // Every route and format: no trace of Alice, Mallory or channel C; 403 where it names them.
    for format in FORMATS {
        for c in [CHAN_A.1, CHAN_B.1] {
            let body = api
                .all(&format!("/v1.0/{c}/chat"), format)
                .await?
                .map_err(|(s, b)| anyhow::anyhow!("{s}: {b}"))?;
            for gone in ["alice-", "mallory-", "!archive"] {
                assert!(!body.contains(gone), "{format} of {c} still has {gone:?}");
            }
            assert!(body.contains("bob-"), "{format} of {c} lost Bob");
        }
        for path in [
            format!("/v1.0/{}/users/{}/chat", CHAN_A.1, ALICE.1),
            format!("/v1.0/{}/users/{}/chat", CHAN_B.1, ALICE.1),
            format!("/v1.0/{}/chat", CHAN_C.1),
            format!("/v1.0/{}/users/{}/chat", CHAN_C.1, DAVE.1),
        ] {
            let (status, body) = api.all(&path, format).await?.expect_err("refused");
            assert_eq!(status, 403, "{path} {format}: {body}");
            let v: serde_json::Value = serde_json::from_str(&body)?;
            assert_eq!(v["error"]["code"], "opted_out", "{body}");
            assert!(v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("opted out"));
        }
    }
    let bob_log = api
        .all(&format!("/v1.0/{}/users/{}/chat", CHAN_A.1, BOB.1), "json")
        .await?
        .map_err(|(s, b)| anyhow::anyhow!("{s}: {b}"))?;
    assert!(bob_log.contains("bob-a1"));

    // Nothing new of theirs reached Kafka, nor the commands.
    let codec = AvroCodec::new(&env.cfg.registry)?;
    let mut in_kafka = BTreeSet::new();
    for (_, payload) in read_all(&env.cfg, &env.cfg.topics.chat).await? {
        let m: ChatMessage = codec.decode(Some(&payload)).await?;
        if m.text.starts_with("!archive") {
            assert_eq!(m.id, not_broadcaster, "a command was published: {}", m.text);
        }
        in_kafka.insert(m.id);
    }
    for id in alice_new.iter().chain([&dave_new, &cmd_a, &cmd_c, &spoof]) {
        assert!(!in_kafka.contains(id), "{id} published after the opt-out");
    }
    assert!(
        in_kafka.is_superset(&alice_old.iter().cloned().collect()),
        "Kafka still holds the old copies (they age out)"
    );
    let states: BTreeMap<String, bool> = optout_records(&env)
        .await?
        .into_iter()
        .map(|e| (e.key(), e.opted_out))
        .collect();
    assert_eq!(states.get(&format!("user:{}", ALICE.1)), Some(&true));
    assert_eq!(states.get(&format!("channel:{}", CHAN_C.1)), Some(&true));

    // A replay of the chat topic over the whole range brings none of it back.
    let summary = chat_ingestor::backfill::run(
        ic.clone(),
        chat_ingestor::backfill::BackfillArgs {
            from_ms: t0 - 60_000,
            to_ms: tci_common::now_ms() + 60_000,
            broadcaster_id: None,
        },
        CancellationToken::new(),
    )
    .await?;
    eprintln!("{summary}");
    assert!(summary.read > 0);
    let replayed = stored(&session, &ks).await?;
    assert_eq!(replayed, after, "the replay changed nothing stored");

    // Alice opts back in: only what she says from now on is kept.
    irc.say(CHAN_A, ALICE, "!archive optin");
    let back = irc.say(CHAN_A, ALICE, "alice-back");
    alice_old.extend(alice_new);
    let log = eventually(Duration::from_secs(30), || async {
        let body = api
            .all(
                &format!("/v1.0/{}/users/{}/chat", CHAN_A.1, ALICE.1),
                "json",
            )
            .await
            .ok()?
            .ok()?;
        body.contains("alice-back").then_some(body)
    })
    .await;
    let Some(log) = log else {
        let codec = AvroCodec::new(&env.cfg.registry)?;
        let mut texts = Vec::new();
        for (_, payload) in read_all(&env.cfg, &env.cfg.topics.chat).await? {
            let m: ChatMessage = codec.decode(Some(&payload)).await?;
            texts.push((m.text, m.sent_timestamp));
        }
        panic!(
            "Alice's message after opting back in is not served; opt-outs: {:?}; chat: {texts:?}; user log: {:?}",
            optout_records(&env).await?,
            api.all(&format!("/v1.0/{}/users/{}/chat", CHAN_A.1, ALICE.1), "json").await?
        );
    };
    assert!(
        !log.contains("alice-old") && !log.contains("alice-new"),
        "{log}"
    );
    assert!(api.ids(CHAN_A.1).await?.contains(&back));
    let ids_a = api.ids(CHAN_A.1).await?;
    for id in &alice_old {
        assert!(!ids_a.contains(id), "{id} came back after the opt-in");
    }

    token.cancel();
    listener.await??;
    ingestor.await??;
    api_task.await??;
    Ok(())
}

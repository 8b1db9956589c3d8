//! The fault suite: the whole system (all five service binaries, the real Kafka, Cassandra and
//! registry, and twitch-sim as Twitch) under steady chat while, one after the other, each part
//! is killed or cut off. The simulator keeps a ledger of every message it sent into a channel;
//! at the end the suite reads every channel back through chat-api, as a user would, and compares.
//!
//! Every case must lose nothing and duplicate nothing, except where Twitch's own design loses
//! chat: a message sent while no connection of ours is joined to its channel is never replayed
//! by Twitch. Those cases (all connections dropped at once, RECONNECT of every connection, and
//! `kill -9` of the only capture lane) are *measured*: each lost message must fall inside a gap
//! window, and for the cases where the listener lives on it must have reported the gap (a log
//! line with the channel and the window, and `tci_chat_listener_capture_gaps_total`). With two
//! capture lanes (two chat-listener replicas in different consumer groups, each joining every
//! channel) a `kill -9` of one lane loses nothing.
//!
//! Cases: kill -9 of chat-listener (one of two lanes), chat-ingestor, streamer-listener,
//! streamer-ingestion and chat-api, each restarted after 3 s; Cassandra stopped for 30 s; the
//! Kafka broker killed with -9 and restarted; the registry restarted; every WebSocket dropped at
//! once; RECONNECT sent to every connection; a poison record in the chat topic; kill -9 of the
//! only lane. Services that lose a dependency must stay up (no restart) and report it on
//! `/readyz`.
//!
//! Runs the debug binaries built by `make test` (`cargo build --workspace --bins`) and
//! `dev/stack.sh` to stop and start the stack's servers; the servers are started again when the
//! suite ends, also when it fails. Service logs go to `$CARGO_TARGET_DIR/fault-suite/<id>/`.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::TcpListener,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use integration_tests::{read_all, TestEnv};
use rdkafka::producer::FutureRecord;
use serde_json::Value;
use tci_common::kafka;
use tokio::process::{Child, Command};
use twitch_sim::{Sim, SimConfig};

const SECRET: &str = "fault-suite-cursor-secret";
/// Steady chat: messages per second over all channels.
const RATE: f64 = 60.0;
const CHANNELS: usize = 6;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn now_ms() -> i64 {
    tci_common::now_ms()
}

/// `dev/stack.sh <args>`.
async fn stack(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(root().join("dev/stack.sh"))
        .args(args)
        .stdout(Stdio::null())
        .status()
        .await?;
    anyhow::ensure!(status.success(), "dev/stack.sh {args:?} failed");
    Ok(())
}

fn stack_dir() -> PathBuf {
    std::env::var_os("TCI_STACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".stack"))
}

/// `kill -9` of a stack server's whole process group.
async fn kill9_server(name: &str) -> anyhow::Result<()> {
    let pid = std::fs::read_to_string(stack_dir().join(format!("run/{name}.pid")))
        .with_context(|| format!("{name} was not started by dev/stack.sh"))?;
    let pid = pid.trim();
    let status = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .status()
        .await?;
    if !status.success() {
        Command::new("kill").args(["-KILL", pid]).status().await?;
    }
    Ok(())
}

/// Starts every stack server again when dropped (after a failed case too).
struct StackGuard;

impl Drop for StackGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new(root().join("dev/stack.sh"))
            .arg("start")
            .stdout(Stdio::null())
            .status();
    }
}

/// One service process: its binary, arguments and environment, so it can be killed and
/// started again the same way.
struct Svc {
    name: &'static str,
    bin: PathBuf,
    args: Vec<&'static str>,
    env: Vec<(String, String)>,
    admin: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Svc {
    fn new(
        name: &'static str,
        args: Vec<&'static str>,
        env: Vec<(String, String)>,
        logs: &Path,
    ) -> anyhow::Result<Self> {
        let bin = target_dir()
            .join("debug")
            .join(name.split('#').next().unwrap_or(name));
        anyhow::ensure!(
            bin.exists(),
            "{} not found: build the services first (`cargo build --workspace --bins`)",
            bin.display()
        );
        Ok(Self {
            name,
            bin,
            args,
            env,
            admin: free_port()?,
            log: logs.join(format!("{}.log", name.replace('#', "-"))),
            child: None,
        })
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.bin)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("TCI__ADMIN__ADDR", format!("127.0.0.1:{}", self.admin))
            .env("TCI__LOG__FORMAT", "json")
            .env("TCI__LOG__FILTER", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.name))?;
        self.child = Some(child);
        Ok(())
    }

    async fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.start_kill()?; // SIGKILL
            c.wait().await?;
        }
        Ok(())
    }

    async fn terminate(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            if let Some(pid) = c.id() {
                Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await?;
            }
            if tokio::time::timeout(Duration::from_secs(30), c.wait())
                .await
                .is_err()
            {
                c.start_kill()?;
            }
        }
        Ok(())
    }

    /// Still the same process, not exited.
    fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    async fn readyz(&self, http: &reqwest::Client) -> Option<u16> {
        http.get(format!("http://127.0.0.1:{}/readyz", self.admin))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    async fn metric(&self, http: &reqwest::Client, name: &str) -> f64 {
        let Ok(r) = http
            .get(format!("http://127.0.0.1:{}/metrics", self.admin))
            .send()
            .await
        else {
            return 0.0;
        };
        r.text()
            .await
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// What one case did, for the report and the loss accounting.
#[derive(Debug, Clone)]
struct Case {
    name: &'static str,
    from_ms: i64,
    to_ms: i64,
    /// Twitch's design may lose messages sent in this window (no connection joined).
    gap_expected: bool,
}

/// A capture gap reported by a chat-listener in its log.
#[derive(Debug, Clone)]
struct ReportedGap {
    channel: String,
    from_ms: i64,
    to_ms: i64,
}

fn reported_gaps(log: &Path) -> Vec<ReportedGap> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("chat capture gap"))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            Some(ReportedGap {
                channel: v["channel"].as_str()?.to_string(),
                from_ms: v["from_ms"].as_i64()?,
                to_ms: v["to_ms"].as_i64()?,
            })
        })
        .collect()
}

/// Every message id of channel `b` in `[start, end]`, paging through chat-api with its cursors.
async fn archived_ids(
    http: &reqwest::Client,
    api: &str,
    b: &str,
    start: i64,
    end: i64,
) -> anyhow::Result<Vec<String>> {
    let iso = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_default()
    };
    let (start, end) = (iso(start), iso(end));
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut q = vec![
            ("start", start.as_str()),
            ("end", end.as_str()),
            ("limit", "100"),
        ];
        if let Some(a) = after.as_deref() {
            q.push(("after", a));
        }
        let r = http
            .get(format!("{api}/v1.0/{b}/chat"))
            .query(&q)
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await?;
        anyhow::ensure!(status.is_success(), "chat-api answered {status}: {body}");
        for m in body["messages"].as_array().into_iter().flatten() {
            ids.push(m["message_id"].as_str().unwrap_or_default().to_string());
        }
        match body["cursor"].as_str() {
            Some(c) => after = Some(c.to_string()),
            None => return Ok(ids),
        }
    }
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    anyhow::bail!("timed out after {timeout:?} waiting for {what}")
}

/// Waits until the sim's IRC clients hold `memberships` channel memberships again (each lane
/// reconnected and rejoined every channel): a window where chat is expected to be lost lasts
/// until then.
async fn rejoined(sim: &Sim, memberships: usize) -> anyhow::Result<()> {
    wait_until(
        &format!("{memberships} channel memberships again"),
        Duration::from_secs(60),
        || async { sim.memberships() == memberships },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_survives_every_fault_and_reports_what_twitch_cannot_replay(
) -> anyhow::Result<()> {
    let env = TestEnv::new("faults");
    env.create_topics(3).await?;
    let session = env.migrate().await?;
    drop(session);
    let _stack = StackGuard;
    let http = reqwest::Client::new();
    let logs = target_dir().join("fault-suite").join(&env.id);
    std::fs::create_dir_all(&logs)?;
    eprintln!("fault suite: service logs in {}", logs.display());

    let sim = Sim::start(SimConfig {
        channels: CHANNELS,
        rate: RATE,
        duplicate_probability: 0.01,
        chat_while_unjoined: true,
        ..SimConfig::default()
    })
    .await?;
    let room_of: HashMap<String, String> = sim
        .live()
        .iter()
        .map(|c| (c.user_login.clone(), c.user_id.clone()))
        .collect();

    // The same configuration layers the services read in production, as environment.
    let t = &env.cfg.topics;
    let common: Vec<(String, String)> = [
        ("TCI__KAFKA__BROKERS", env.cfg.kafka.brokers.clone()),
        ("TCI__TOPICS__LIVE_STREAMS", t.live_streams.clone()),
        ("TCI__TOPICS__CHAT", t.chat.clone()),
        ("TCI__TOPICS__MODERATION", t.moderation.clone()),
        ("TCI__TOPICS__DEAD_LETTER", t.dead_letter.clone()),
        ("TCI__TOPICS__OPTOUTS", t.optouts.clone()),
        (
            "TCI__CASSANDRA__KEYSPACE",
            env.cfg.cassandra.keyspace.clone(),
        ),
        ("TCI__CASSANDRA__CONSISTENCY", "one".into()),
        ("TCI__REGISTRY__URL", env.cfg.registry.url.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let with = |extra: &[(&str, String)]| {
        let mut e = common.clone();
        e.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        e
    };
    let helix = sim.helix_url();
    let api_port = free_port()?;
    let api = format!("http://127.0.0.1:{api_port}");
    let listener_env = |lane: &str| {
        with(&[
            ("TCI__IRC__URL", sim.irc_url()),
            ("TCI__IRC__RECONNECT_MIN", "50ms".into()),
            ("TCI__IRC__RECONNECT_MAX", "1s".into()),
            // A half-open connection is noticed only by the PING timeout: a short one here.
            ("TCI__IRC__PING_INTERVAL", "3s".into()),
            ("TCI__IRC__PONG_TIMEOUT", "5s".into()),
            (
                "TCI__CHANNELS__GROUP_ID",
                env.group(&format!("chat-listener-lane-{lane}")),
            ),
        ])
    };
    let mut streamer_listener = Svc::new(
        "streamer-listener",
        vec![],
        with(&[
            ("TCI__TWITCH__AUTH_URL", helix.clone()),
            ("TCI__TWITCH__HELIX_URL", helix.clone()),
            ("TCI__TWITCH__CLIENT_ID", "sim-client-id".into()),
            ("TCI__TWITCH__CLIENT_SECRET", "sim-client-secret".into()),
            ("TCI__POLL__INTERVAL", "2s".into()),
        ]),
        &logs,
    )?;
    let mut streamer_ingestion = Svc::new(
        "streamer-ingestion",
        vec![],
        with(&[("TCI__INGEST__GROUP_ID", env.group("streamer-ingestion"))]),
        &logs,
    )?;
    let mut lane_a = Svc::new("chat-listener#a", vec!["run"], listener_env("a"), &logs)?;
    let mut lane_b = Svc::new("chat-listener#b", vec!["run"], listener_env("b"), &logs)?;
    let mut ingestor = Svc::new(
        "chat-ingestor",
        vec!["run"],
        with(&[("TCI__INGEST__GROUP_ID", env.group("chat-ingestor"))]),
        &logs,
    )?;
    let mut chat_api = Svc::new(
        "chat-api",
        vec![],
        with(&[
            ("TCI__HTTP__ADDR", format!("127.0.0.1:{api_port}")),
            ("TCI__CURSOR__SECRET", SECRET.into()),
        ]),
        &logs,
    )?;
    for s in [
        &mut chat_api,
        &mut ingestor,
        &mut streamer_ingestion,
        &mut lane_a,
        &mut lane_b,
        &mut streamer_listener,
    ] {
        s.start()?;
    }

    // Steady state: both lanes joined every channel, and chat is readable through the API.
    let first_room = room_of.values().next().cloned().unwrap_or_default();
    let channels = room_of.len();
    wait_until(
        "both capture lanes joined",
        Duration::from_secs(60),
        || async { sim.connections() >= 2 },
    )
    .await?;
    let t_join = now_ms();
    wait_until(
        "chat readable through chat-api",
        Duration::from_secs(90),
        || async {
            archived_ids(&http, &api, &first_room, t_join, now_ms() + 60_000)
                .await
                .is_ok_and(|ids| !ids.is_empty())
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let steady_from = now_ms();
    let mut cases: Vec<Case> = Vec::new();
    let pause = Duration::from_secs(3);

    // kill -9 of each service in turn, restarted after 3 s.
    for (name, svc) in [
        (
            "kill -9 chat-listener (lane a; lane b captures)",
            &mut lane_a,
        ),
        ("kill -9 chat-ingestor", &mut ingestor),
        ("kill -9 streamer-listener", &mut streamer_listener),
        ("kill -9 streamer-ingestion", &mut streamer_ingestion),
        ("kill -9 chat-api", &mut chat_api),
    ] {
        let from_ms = now_ms();
        svc.kill9().await?;
        tokio::time::sleep(pause).await;
        svc.start()?;
        tokio::time::sleep(pause).await;
        cases.push(Case {
            name,
            from_ms,
            to_ms: now_ms(),
            gap_expected: false,
        });
        eprintln!("fault suite: {name}: done");
    }

    // Cassandra down for 30 s: the ingestor stays up, says so on /readyz, and catches up.
    let from_ms = now_ms();
    stack(&["stop", "cassandra"]).await?;
    let stopped = Instant::now();
    wait_until(
        "chat-ingestor /readyz to report Cassandra down",
        Duration::from_secs(30),
        || async { ingestor.readyz(&http).await == Some(503) },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(stopped.elapsed())).await;
    stack(&["start", "cassandra"]).await?;
    wait_until(
        "chat-ingestor ready again",
        Duration::from_secs(90),
        || async { ingestor.readyz(&http).await == Some(200) },
    )
    .await?;
    cases.push(Case {
        name: "Cassandra stopped for 30 s",
        from_ms,
        to_ms: now_ms(),
        gap_expected: false,
    });
    eprintln!("fault suite: Cassandra outage: done");

    // The Kafka broker killed with -9 and restarted: no service is restarted.
    let from_ms = now_ms();
    kill9_server("kafka").await?;
    tokio::time::sleep(pause).await;
    stack(&["start", "kafka"]).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    cases.push(Case {
        name: "Kafka broker kill -9 and restart",
        from_ms,
        to_ms: now_ms(),
        gap_expected: false,
    });
    eprintln!("fault suite: Kafka restart: done");

    // The registry restarted.
    let from_ms = now_ms();
    stack(&["stop", "registry"]).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stack(&["start", "registry"]).await?;
    tokio::time::sleep(pause).await;
    cases.push(Case {
        name: "registry restarted",
        from_ms,
        to_ms: now_ms(),
        gap_expected: false,
    });

    // Every WebSocket dropped at once (TCP reset, both lanes): Twitch replays nothing.
    let from_ms = now_ms();
    sim.drop_all();
    tokio::time::sleep(Duration::from_secs(5)).await;
    rejoined(&sim, 2 * channels).await?;
    cases.push(Case {
        name: "every WebSocket dropped at once",
        from_ms,
        to_ms: now_ms(),
        gap_expected: true,
    });

    // RECONNECT to every connection (both lanes at once).
    let from_ms = now_ms();
    sim.reconnect_all();
    tokio::time::sleep(Duration::from_secs(5)).await;
    rejoined(&sim, 2 * channels).await?;
    cases.push(Case {
        name: "RECONNECT to every connection",
        from_ms,
        to_ms: now_ms(),
        gap_expected: true,
    });

    // Half-open connections (both lanes): the sockets stay open and go silent, so only the
    // listeners' PING timeout (3 s + 5 s here) notices. What Twitch sent meanwhile is lost,
    // and the reported gaps must start when each connection last delivered anything. (2 s of
    // steady chat first, so this window and the last one's slack do not overlap.)
    tokio::time::sleep(Duration::from_secs(2)).await;
    let from_ms = now_ms();
    sim.stall_all();
    tokio::time::sleep(Duration::from_secs(10)).await;
    rejoined(&sim, 2 * channels).await?;
    cases.push(Case {
        name: "half-open connections (silent, socket open)",
        from_ms,
        to_ms: now_ms(),
        gap_expected: true,
    });

    // A poison record in the chat topic: dead-lettered, nothing else disturbed.
    let from_ms = now_ms();
    let producer = kafka::producer(&env.cfg.kafka, "fault-suite", &[])?;
    producer
        .send(
            FutureRecord::to(&env.cfg.topics.chat)
                .key("poison")
                .payload(&b"\x00\x00\x00\x00\x01not avro at all"[..]),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    tokio::time::sleep(pause).await;
    cases.push(Case {
        name: "poison record in the chat topic",
        from_ms,
        to_ms: now_ms(),
        gap_expected: false,
    });

    // kill -9 of the only capture lane: lane b stopped first, then lane a killed and restarted.
    lane_b.terminate().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let from_ms = now_ms();
    lane_a.kill9().await?;
    tokio::time::sleep(pause).await;
    lane_a.start()?;
    rejoined(&sim, channels).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    cases.push(Case {
        name: "kill -9 chat-listener (the only lane)",
        from_ms,
        to_ms: now_ms(),
        gap_expected: true,
    });
    let steady_to = now_ms();

    // Drain: stop chat, wait until chat-ingestor has committed the whole chat topic (it
    // commits only what it has written), then read the archive. A read that fails is retried.
    sim.pause();
    let ledger: Vec<_> = sim
        .ledger()
        .into_iter()
        .filter(|e| (steady_from..=steady_to).contains(&(e.sent_ms as i64)))
        .collect();
    anyhow::ensure!(
        ledger.len() > 3000,
        "too little chat to prove anything: {}",
        ledger.len()
    );
    // Lane a (the only one left running) has published everything it captured...
    wait_until(
        "chat-listener's buffer and in-flight records to drain",
        Duration::from_secs(120),
        || async {
            lane_a
                .metric(&http, "tci_chat_listener_buffer_records")
                .await
                == 0.0
                && lane_a
                    .metric(&http, "tci_chat_listener_in_flight_records")
                    .await
                    == 0.0
        },
    )
    .await?;
    // ...and chat-ingestor has written and committed all of it.
    env.wait_committed_all(
        &env.group("chat-ingestor"),
        &env.cfg.topics.chat,
        3,
        Duration::from_secs(180),
    )
    .await?;
    let mut archived: Vec<String> = Vec::new();
    let mut last_error = None;
    for _ in 0..5 {
        archived.clear();
        last_error = None;
        for room in room_of.values() {
            match archived_ids(&http, &api, room, steady_from - 60_000, steady_to + 60_000).await {
                Ok(ids) => archived.extend(ids),
                Err(e) => {
                    last_error = Some(e);
                    break;
                }
            }
        }
        if last_error.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    if let Some(e) = last_error {
        return Err(e.context("reading the archive through chat-api"));
    }

    // Nothing duplicated.
    let distinct: HashSet<&str> = archived.iter().map(String::as_str).collect();
    assert_eq!(
        distinct.len(),
        archived.len(),
        "a message id is served twice"
    );

    // Nothing lost outside the windows where Twitch's design loses chat.
    let gaps_a = reported_gaps(&lane_a.log);
    let gaps_b = reported_gaps(&lane_b.log);
    let login_of: HashMap<&str, &str> = room_of
        .iter()
        .map(|(l, r)| (r.as_str(), l.as_str()))
        .collect();
    let mut lost_by_case: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut unexplained = Vec::new();
    let mut sent_in_case: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &ledger {
        let ts = e.sent_ms as i64;
        for c in &cases {
            if (c.from_ms..=c.to_ms).contains(&ts) {
                *sent_in_case.entry(c.name).or_default() += 1;
            }
        }
        if distinct.contains(e.id.as_str()) {
            continue;
        }
        // Lost: it must lie in (or just around) a window where a gap was expected.
        let case = cases
            .iter()
            .find(|c| c.gap_expected && (c.from_ms - 1_000..=c.to_ms + 1_000).contains(&ts));
        match case {
            Some(c) => {
                let entry = lost_by_case.entry(c.name).or_default();
                entry.0 += 1;
                // Where the listener lived on, it reported the gap for this channel.
                let login = login_of
                    .get(e.room_id.as_str())
                    .copied()
                    .unwrap_or_default();
                let reported = gaps_a.iter().chain(&gaps_b).any(|g| {
                    g.channel == login && (g.from_ms - 2_000..=g.to_ms + 500).contains(&ts)
                });
                if reported {
                    entry.1 += 1;
                }
            }
            None => unexplained.push(e.clone()),
        }
    }
    eprintln!(
        "\nfault suite: {} messages sent in {:.0} s, {} archived",
        ledger.len(),
        (steady_to - steady_from) as f64 / 1000.0,
        archived.len()
    );
    eprintln!(
        "| case | window (s) | sent in window | lost | lost inside a gap the listener reported |"
    );
    eprintln!("|---|---:|---:|---:|---:|");
    for c in &cases {
        let (lost, reported) = lost_by_case.get(c.name).copied().unwrap_or_default();
        eprintln!(
            "| {} | {:.1} | {} | {lost} | {reported} |",
            c.name,
            (c.to_ms - c.from_ms) as f64 / 1000.0,
            sent_in_case.get(c.name).copied().unwrap_or_default(),
        );
    }
    eprintln!(
        "capture gaps reported: lane a {}, lane b {}",
        gaps_a.len(),
        gaps_b.len()
    );
    assert!(
        unexplained.is_empty(),
        "{} messages lost outside any Twitch-design gap, e.g. {:?}",
        unexplained.len(),
        &unexplained[..unexplained.len().min(5)]
    );
    // The drop-everything case cut both lanes while they lived on: they must have said so.
    let reported_total = lane_a
        .metric(&http, "tci_chat_listener_capture_gaps_total")
        .await;
    assert!(
        !gaps_a.is_empty() || !gaps_b.is_empty() || reported_total > 0.0,
        "the listeners reported no capture gap after every socket was dropped"
    );
    for (case, (lost, reported)) in &lost_by_case {
        if !case.contains("only lane") {
            assert_eq!(
                lost, reported,
                "{case}: lost messages outside any reported gap"
            );
        }
    }

    // The poison record went to the dead-letter topic.
    let dead = read_all(&env.cfg, &env.cfg.topics.dead_letter).await?;
    assert!(
        dead.iter()
            .any(|(k, _)| k.as_deref() == Some(&b"poison"[..])),
        "the poison record is not in the dead-letter topic"
    );

    // No service needed a restart for the stack's outages: the processes started before the
    // Cassandra, Kafka and registry cases are still the same ones.
    for s in [
        &mut ingestor,
        &mut streamer_listener,
        &mut streamer_ingestion,
        &mut chat_api,
    ] {
        assert!(
            s.alive(),
            "{} exited during the stack outages; see {}",
            s.name,
            s.log.display()
        );
    }

    for s in [
        &mut streamer_listener,
        &mut lane_a,
        &mut lane_b,
        &mut streamer_ingestion,
        &mut ingestor,
        &mut chat_api,
    ] {
        s.terminate().await?;
    }
    sim.shutdown().await?;
    Ok(())
}

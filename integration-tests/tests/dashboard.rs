//! The Grafana dashboard shipped with the Helm chart
//! (`helm/twitch-chat-ingestor/dashboards/twitch-chat-ingestor.json`) queries only metrics the
//! services really export. The whole pipeline runs in-process against twitch-sim and the real
//! Kafka, registry and Cassandra — streamer-listener → streamer-ingestion, chat-listener →
//! chat-ingestor, chat-api — with a poison record and a refused API request so that the labelled
//! series exist too (a labelled metric appears in `/metrics` only once a label set was used), and
//! every metric name the dashboard uses must appear in the services' `/metrics`.

use std::collections::BTreeSet;
use std::time::Duration;

use integration_tests::TestEnv;
use rdkafka::producer::FutureRecord;
use secrecy::SecretString;
use tci_common::kafka;
use tokio_util::sync::CancellationToken;
use twitch_sim::{Sim, SimConfig};

const DASHBOARD: &str =
    include_str!("../../helm/twitch-chat-ingestor/dashboards/twitch-chat-ingestor.json");

/// Every string of the dashboard that Grafana sends to Prometheus: panel `expr`s and the
/// template variables' `query`/`definition`.
fn queries(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "query" | "definition", serde_json::Value::String(s)) => {
                        out.push(s.clone())
                    }
                    _ => queries(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

/// The `tci_*` metric names in a PromQL expression.
fn metric_names(expr: &str, out: &mut BTreeSet<String>) {
    let b = expr.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut i = 0;
    while let Some(p) = expr[i..].find("tci_") {
        let start = i + p;
        let mut end = start;
        while end < b.len() && word(b[end]) {
            end += 1;
        }
        if start == 0 || !word(b[start - 1]) {
            out.insert(expr[start..end].to_string());
        }
        i = end.max(start + 1);
    }
}

fn dashboard_metric_names() -> BTreeSet<String> {
    let v: serde_json::Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let mut q = Vec::new();
    queries(&v, &mut q);
    let mut names = BTreeSet::new();
    for e in &q {
        metric_names(e, &mut names);
    }
    names
}

/// Names in a Prometheus text exposition: every sample name (histograms give `_bucket`, `_sum`,
/// `_count`) and every family name of a `# TYPE` line.
fn exported_names(text: &str, out: &mut BTreeSet<String>) {
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.split_whitespace().next() {
                out.insert(name.to_string());
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            out.insert(line[..end].to_string());
        }
    }
}

#[test]
fn names_are_extracted_from_promql_and_expositions() {
    let mut n = BTreeSet::new();
    metric_names(
        r#"histogram_quantile(0.99, sum by (le) (rate(tci_a_seconds_bucket{x="tci_not"}[5m]))) / tci_b_total"#,
        &mut n,
    );
    // A label value that merely contains tci_ is a false positive the check would report
    // loudly; dashboards here filter on namespace/status/outcome only.
    assert!(n.contains("tci_a_seconds_bucket") && n.contains("tci_b_total"));
    let mut e = BTreeSet::new();
    exported_names(
        "# HELP tci_h h\n# TYPE tci_h histogram\ntci_h_bucket{le=\"1\"} 0\ntci_h_sum 0\ntci_h_count 0\ntci_c_total{k=\"v\"} 1\n",
        &mut e,
    );
    for x in [
        "tci_h",
        "tci_h_bucket",
        "tci_h_sum",
        "tci_h_count",
        "tci_c_total",
    ] {
        assert!(e.contains(x), "{x}");
    }
    assert!(
        dashboard_metric_names().len() >= 20,
        "the dashboard uses at least 20 metrics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_uses_is_in_a_running_service_metrics() -> anyhow::Result<()> {
    let wanted = dashboard_metric_names();
    let env = TestEnv::new("dashboard");
    env.create_topics(3).await?;
    let session = env.migrate().await?;
    let sim_cfg = SimConfig {
        channels: 6,
        rate: 200.0,
        duplicate_probability: 0.0,
        record_ids: false,
        // A small Helix bucket, so the walk really waits for it.
        ratelimit_bucket: 2,
        ratelimit_refill: Duration::from_secs(1),
        ..SimConfig::default()
    };
    let sim = Sim::start(sim_cfg.clone()).await?;
    let token = CancellationToken::new();
    let mut admins = Vec::new();
    let mut tasks = Vec::new();

    // chat-listener first: it reads the live-streams topic from the latest offset.
    let mut cl = chat_listener::Config {
        common: env.cfg.clone(),
        ..Default::default()
    };
    cl.irc.url = sim.irc_url();
    cl.irc.joins_per_window = 1000;
    cl.channels.group_id = env.group("chat-listener");
    cl.channels.check_interval = Duration::from_millis(200);
    let app = chat_listener::App::build(cl, token.clone()).await?;
    admins.push(app.admin_addr());
    tasks.push(tokio::spawn(app.run()));

    let mut ci = chat_ingestor::Config {
        common: env.cfg.clone(),
        ..Default::default()
    };
    ci.ingest.group_id = env.group("chat-ingestor");
    let app = chat_ingestor::App::build(ci, token.clone()).await?;
    admins.push(app.admin_addr());
    tasks.push(tokio::spawn(app.run()));

    let mut si = streamer_ingestion::Config {
        common: env.cfg.clone(),
        ..Default::default()
    };
    si.ingest.group_id = env.group("streamer-ingestion");
    si.ingest.linger = Duration::from_millis(100);
    let app = streamer_ingestion::App::build(si, token.clone()).await?;
    admins.push(app.admin_addr());
    tasks.push(tokio::spawn(app.run()));

    let mut sl = streamer_listener::Config {
        common: env.cfg.clone(),
        ..Default::default()
    };
    sl.twitch.client_id = sim_cfg.client_id.clone();
    sl.twitch.client_secret = Some(SecretString::from(sim_cfg.client_secret.clone()));
    sl.twitch.auth_url = sim.helix_url();
    sl.twitch.helix_url = sim.helix_url();
    sl.poll.interval = Duration::from_secs(2);
    sl.poll.page_size = 3;
    let app = streamer_listener::App::build(sl, token.clone()).await?;
    admins.push(app.admin_addr());
    tasks.push(tokio::spawn(app.run()));

    let mut api = chat_api::Config {
        common: env.cfg.clone(),
        ..Default::default()
    };
    api.http.addr = "127.0.0.1:0".into();
    api.common.admin.addr = "127.0.0.1:0".into();
    api.cursor.secret = Some("dashboard-test-cursor-secret".into());
    let app = chat_api::App::build(api, token.clone()).await?;
    let api_base = format!("http://{}", app.http_addr());
    admins.push(app.admin_addr());
    tasks.push(tokio::spawn(app.run()));

    // An undecodable record on the chat topic: the dead-letter series.
    let producer = kafka::producer(&env.cfg.kafka, "it-dashboard", &[])?;
    producer
        .send(
            FutureRecord::to(&env.cfg.topics.chat)
                .key("1")
                .payload(&b"not avro at all"[..]),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;

    let channel = sim
        .live()
        .first()
        .map(|c| c.user_id.clone())
        .unwrap_or_default();
    let http = reqwest::Client::new();
    let mut exported = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut complete = false;
    while !complete && tokio::time::Instant::now() < deadline {
        // One good and one refused API call per round: the request, latency, query and 4xx series.
        let _ = http
            .get(format!("{api_base}/v1.0/{channel}/chat"))
            .query(&[
                ("start", "2000-01-01T00:00:00Z"),
                ("end", "2100-01-01T00:00:00Z"),
            ])
            .send()
            .await;
        let _ = http
            .get(format!("{api_base}/v1.0/not-a-number/chat"))
            .send()
            .await;
        exported.clear();
        for a in &admins {
            if let Ok(r) = http.get(format!("http://{a}/metrics")).send().await {
                exported_names(&r.text().await.unwrap_or_default(), &mut exported);
            }
        }
        complete = wanted.iter().all(|n| exported.contains(n));
        if !complete {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    token.cancel();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(60), t).await;
    }
    env.drop_keyspace(&session).await;
    let absent: Vec<&String> = wanted.iter().filter(|n| !exported.contains(*n)).collect();
    println!(
        "dashboard uses {} metric names; missing from the services' /metrics: {absent:?}",
        wanted.len()
    );
    assert!(
        complete,
        "the dashboard queries metrics no service exports: {absent:?}"
    );
    Ok(())
}

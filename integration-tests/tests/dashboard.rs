//! The Grafana dashboard shipped with the Helm chart
//! (`helm/twitch-chat-ingestor/dashboards/twitch-chat-ingestor.json`) queries only metrics the
//! services really export. The whole pipeline runs in-process against twitch-sim and the real
//! Kafka, registry and Cassandra — streamer-listener → streamer-ingestion, chat-listener →
//! chat-ingestor, chat-api — with a poison record and a refused API request so that the labelled
//! series exist too (a labelled metric appears in `/metrics` only once a label set was used), and
//! every metric name the dashboard uses must appear in the services' `/metrics`.
//!
//! The chart's alert rules (`helm/twitch-chat-ingestor/alerts/twitch-chat-ingestor.rules.yaml`)
//! are held to more: every expression parses as PromQL, and every series selector in it names
//! an exported metric, with label names that metric has and, for `=` and literal `a|b` regex
//! matchers, label values the run produced. An alert on a misspelled metric, label or value
//! never fires, and nothing else would tell.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use integration_tests::TestEnv;
use promql_parser::label::MatchOp;
use promql_parser::parser::{Expr, VectorSelector};
use promql_parser::util::{walk_expr, ExprVisitor};
use rdkafka::producer::FutureRecord;
use secrecy::SecretString;
use tci_common::kafka;
use tokio_util::sync::CancellationToken;
use twitch_sim::{Sim, SimConfig};

const DASHBOARD: &str =
    include_str!("../../helm/twitch-chat-ingestor/dashboards/twitch-chat-ingestor.json");

const RULES: &str =
    include_str!("../../helm/twitch-chat-ingestor/alerts/twitch-chat-ingestor.rules.yaml");

/// Label values an alert matches that this run cannot produce, and why. Every other value an
/// alert matches must be seen in the services' `/metrics` during the run.
const NOT_PRODUCED_HERE: &[(&str, &str, &str, &str)] = &[
    (
        "tci_chat_ingestor_offset_commits_total",
        "result",
        "error",
        "needs Kafka to refuse an offset commit (chat-ingestor's pipeline counts ok/error)",
    ),
    (
        "tci_streamer_listener_errors_total",
        "kind",
        "unauthorized",
        "needs Helix to refuse a freshly obtained token (HelixError::Unauthorized)",
    ),
];

/// Metrics an alert uses that this run cannot make appear (a labelled metric is exported only
/// once a label set was used), and why. Each must still be registered by a service: its name is
/// a literal in some `services/*/src/metrics.rs`.
const NOT_EXPORTED_HERE: &[(&str, &str)] = &[
    (
        "tci_chat_api_cassandra_errors_total",
        "needs a Cassandra query of chat-api to fail",
    ),
    (
        "tci_chat_listener_parse_errors_total",
        "needs an unparseable IRC line (twitch-sim sends none)",
    ),
    (
        "tci_chat_listener_publish_failed_total",
        "needs Kafka to refuse a record past the producer's timeout",
    ),
];

/// Whether `"literal"` is written in the sources of the service that exports `metric` (the
/// service named by the metric's prefix: `tci_chat_ingestor_…` is services/chat-ingestor).
fn in_service_source(metric: &str, literal: &str) -> bool {
    fn rs_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                rs_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let services = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../services");
    let Some(service) = std::fs::read_dir(&services)
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .filter(|name| metric.starts_with(&format!("tci_{}_", name.replace('-', "_"))))
        .max_by_key(String::len)
    else {
        return false;
    };
    let mut files = Vec::new();
    rs_files(&services.join(service).join("src"), &mut files);
    let quoted = format!("\"{literal}\"");
    files
        .iter()
        .any(|f| std::fs::read_to_string(f).is_ok_and(|t| t.contains(&quoted)))
}

/// Whether `metric` is registered by the service that exports it (its name is in its sources).
fn registered_in_source(metric: &str) -> bool {
    in_service_source(metric, metric)
}

/// One series selector of an alert expression: the metric and its label matchers.
#[derive(Debug)]
struct Selector {
    alert: String,
    metric: String,
    /// (label, values to find: the `=` value or each literal of an `a|b` regex; empty for
    /// other regexes and `!=`, where only the label name is checked)
    labels: Vec<(String, Vec<String>)>,
}

struct Selectors<'a> {
    alert: &'a str,
    out: &'a mut Vec<Selector>,
}

impl Selectors<'_> {
    fn add(&mut self, vs: &VectorSelector) {
        let labels = vs
            .matchers
            .matchers
            .iter()
            .filter(|m| m.name != "__name__")
            .map(|m| {
                let literal_alternatives = !m.value.is_empty()
                    && m.value.split('|').all(|v| {
                        !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    });
                let values = match &m.op {
                    MatchOp::Equal => vec![m.value.clone()],
                    MatchOp::Re(_) if literal_alternatives => {
                        m.value.split('|').map(str::to_string).collect()
                    }
                    _ => Vec::new(),
                };
                (m.name.clone(), values)
            })
            .collect();
        self.out.push(Selector {
            alert: self.alert.to_string(),
            metric: vs.name.clone().unwrap_or_default(),
            labels,
        });
    }
}

impl ExprVisitor for Selectors<'_> {
    type Error = std::convert::Infallible;
    fn pre_visit(&mut self, e: &Expr) -> Result<bool, Self::Error> {
        match e {
            Expr::VectorSelector(vs) => self.add(vs),
            Expr::MatrixSelector(ms) => self.add(&ms.vs),
            _ => {}
        }
        Ok(true)
    }
}

/// Every series selector of every alert in the chart's rule file; panics (naming the alert)
/// when the file is not a rule file or an expression is not valid PromQL.
fn alert_selectors() -> Vec<Selector> {
    let doc: serde_yaml::Value = serde_yaml::from_str(RULES).expect("the rule file is YAML");
    let mut out = Vec::new();
    let groups = doc["groups"].as_sequence().expect("a rule file has groups");
    for g in groups {
        for r in g["rules"].as_sequence().expect("a group has rules") {
            let alert = r["alert"].as_str().expect("every rule is an alert");
            let expr = r["expr"].as_str().expect("every alert has an expr");
            let ast = promql_parser::parser::parse(expr)
                .unwrap_or_else(|e| panic!("alert {alert}: not valid PromQL ({e}): {expr}"));
            let mut v = Selectors {
                alert,
                out: &mut out,
            };
            let _ = walk_expr(&mut v, &ast);
        }
    }
    out
}

/// Series labels in a Prometheus text exposition: metric name → label name → values seen.
fn exported_labels(text: &str, out: &mut BTreeMap<String, BTreeMap<String, BTreeSet<String>>>) {
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let Some((name, rest)) = line.split_once('{') else {
            continue;
        };
        let labels = out.entry(name.to_string()).or_default();
        let mut rest = rest;
        // key="value" pairs, values with \\, \" and \n escapes, up to the closing brace.
        while let Some((key, after)) = rest.split_once("=\"") {
            let mut value = String::new();
            let mut chars = after.char_indices();
            let mut end = after.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(if n == 'n' { '\n' } else { n });
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            labels
                .entry(key.trim_start_matches(',').to_string())
                .or_default()
                .insert(value);
            rest = &after[end..];
            if rest.starts_with('}') {
                break;
            }
        }
    }
}

/// What the alert rules need that `names` and `labels` (from the services' `/metrics`) lack.
fn alert_gaps(
    selectors: &[Selector],
    names: &BTreeSet<String>,
    labels: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
) -> Vec<String> {
    let mut gaps = Vec::new();
    for s in selectors {
        if !names.contains(&s.metric) {
            let excused = NOT_EXPORTED_HERE.iter().any(|(m, _)| *m == s.metric)
                && s.labels.is_empty()
                && registered_in_source(&s.metric);
            if !excused {
                gaps.push(format!("{}: metric {} is not exported", s.alert, s.metric));
            }
            continue;
        }
        let seen = labels.get(&s.metric);
        for (label, values) in &s.labels {
            let Some(have) = seen.and_then(|l| l.get(label)) else {
                gaps.push(format!("{}: {} has no label {label}", s.alert, s.metric));
                continue;
            };
            for v in values {
                // An excused value must still be one the service writes.
                let excused = NOT_PRODUCED_HERE
                    .iter()
                    .any(|(m, l, x, _)| *m == s.metric && l == label && x == v)
                    && in_service_source(&s.metric, v);
                if !have.contains(v) && !excused {
                    gaps.push(format!(
                        "{}: {}{{{label}=\"{v}\"}} was not seen (seen: {have:?})",
                        s.alert, s.metric
                    ));
                }
            }
        }
    }
    gaps
}

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

#[test]
fn every_alert_is_promql_over_the_services_metrics() {
    let selectors = alert_selectors();
    let alerts: BTreeSet<&str> = selectors.iter().map(|s| s.alert.as_str()).collect();
    assert!(alerts.len() >= 20, "{} alerts", alerts.len());
    for s in &selectors {
        assert!(s.metric.starts_with("tci_"), "{s:?}");
    }
    let creds = selectors
        .iter()
        .find(|s| s.alert == "TciTwitchCredentialsRejected")
        .expect("the credentials alert");
    assert_eq!(
        creds.labels,
        [(
            "kind".to_string(),
            vec!["token_refused".to_string(), "unauthorized".to_string()]
        )]
    );

    // The check itself: a misspelled label and an unseen value are both reported.
    let exposition =
        "tci_x_total{kind=\"a\",route=\"/v1.0/{id}/chat\"} 1\ntci_x_total{kind=\"b\\\"q\"} 2\n";
    let mut labels = BTreeMap::new();
    exported_labels(exposition, &mut labels);
    let kinds: Vec<&str> = labels["tci_x_total"]["kind"]
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(kinds, ["a", "b\"q"]);
    assert!(labels["tci_x_total"]["route"].contains("/v1.0/{id}/chat"));
    let names = BTreeSet::from(["tci_x_total".to_string()]);
    let sel = |labels: Vec<(&str, Vec<&str>)>| Selector {
        alert: "A".into(),
        metric: "tci_x_total".into(),
        labels: labels
            .into_iter()
            .map(|(l, v)| (l.to_string(), v.into_iter().map(str::to_string).collect()))
            .collect(),
    };
    assert!(alert_gaps(&[sel(vec![("kind", vec!["a", "b\"q"])])], &names, &labels).is_empty());
    assert_eq!(
        alert_gaps(
            &[sel(vec![("kinds", vec![])]), sel(vec![("kind", vec!["c"])])],
            &names,
            &labels
        )
        .len(),
        2
    );
    for (m, _) in NOT_EXPORTED_HERE {
        assert!(registered_in_source(m), "{m} is registered by no service");
    }
    assert!(!registered_in_source("tci_chat_api_cassandra_errorz_total"));
    for (m, _, v, _) in NOT_PRODUCED_HERE {
        assert!(
            in_service_source(m, v),
            "{m}: the service never writes \"{v}\""
        );
    }
    assert!(!in_service_source(
        "tci_chat_ingestor_offset_commits_total",
        "errors"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_uses_is_in_a_running_service_metrics() -> anyhow::Result<()> {
    let wanted = dashboard_metric_names();
    let selectors = alert_selectors();
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
    // Two more pollers for the alerts' series (the metrics are process-wide): one whose secret
    // Twitch refuses (a failed poll, errors{kind="token_refused"}), one capped at one page.
    let mut refused = sl.clone();
    refused.twitch.client_secret = Some(SecretString::from("not-the-secret".to_string()));
    refused.common.admin.addr = "127.0.0.1:0".into();
    let mut capped = sl.clone();
    capped.poll.max_pages = 1;
    capped.common.admin.addr = "127.0.0.1:0".into();
    let app = streamer_listener::App::build(sl, token.clone()).await?;
    admins.push(app.admin_addr());
    tasks.push(tokio::spawn(app.run()));
    for cfg in [refused, capped] {
        let app = streamer_listener::App::build(cfg, token.clone()).await?;
        tasks.push(tokio::spawn(app.run()));
    }

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

    // An undecodable record on the chat and on the live-streams topic: the dead-letter series.
    let producer = kafka::producer(&env.cfg.kafka, "it-dashboard", &[])?;
    for topic in [&env.cfg.topics.chat, &env.cfg.topics.live_streams] {
        producer
            .send(
                FutureRecord::to(topic)
                    .key("1")
                    .payload(&b"not avro at all"[..]),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
    }

    let channel = sim
        .live()
        .first()
        .map(|c| c.user_id.clone())
        .unwrap_or_default();
    let http = reqwest::Client::new();
    let mut exported = BTreeSet::new();
    let mut labels = BTreeMap::new();
    let mut gaps = Vec::new();
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
        labels.clear();
        for a in &admins {
            if let Ok(r) = http.get(format!("http://{a}/metrics")).send().await {
                let text = r.text().await.unwrap_or_default();
                exported_names(&text, &mut exported);
                exported_labels(&text, &mut labels);
            }
        }
        // A RECONNECT from the server: the reconnect series.
        if !exported.contains("tci_chat_listener_reconnects_total") {
            sim.reconnect_all();
        }
        gaps = alert_gaps(&selectors, &exported, &labels);
        complete = wanted.iter().all(|n| exported.contains(n)) && gaps.is_empty();
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
    println!(
        "{} alerts, {} selectors; values not produced here: {:?}",
        selectors
            .iter()
            .map(|s| &s.alert)
            .collect::<BTreeSet<_>>()
            .len(),
        selectors.len(),
        NOT_PRODUCED_HERE
            .iter()
            .map(|(m, l, v, why)| format!("{m}{{{l}=\"{v}\"}}: {why}"))
            .chain(
                NOT_EXPORTED_HERE
                    .iter()
                    .map(|(m, why)| format!("{m}: {why}"))
            )
            .collect::<Vec<_>>()
    );
    assert!(
        absent.is_empty(),
        "the dashboard queries metrics no service exports: {absent:?}"
    );
    assert!(
        gaps.is_empty(),
        "alerts that could never fire:\n{}",
        gaps.join("\n")
    );
    assert!(complete);
    Ok(())
}

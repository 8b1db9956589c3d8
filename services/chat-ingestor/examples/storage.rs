//! Bytes on disk per archived message, per table, after flush and compaction.
//!
//! ```text
//! # the demo's keyspace (after `make up` has run a while):
//! cargo run --release -p chat-ingestor --example storage -- --keyspace tci
//! # or N synthetic messages (the ingest benchmark's generator) written by the ingestor's own
//! # writer into a scratch keyspace that is dropped afterwards:
//! cargo run --release -p chat-ingestor --example storage -- --generate 200000
//! TCI_BENCH_NO_RAW_LINE=1 cargo run ... -- --generate 200000   # as before raw lines were kept
//! # a lever: other table options, applied before the compaction that measures
//! cargo run ... -- --generate 200000 --with "compression = {'class': 'ZstdCompressor'}"
//! ```
//!
//! `bench/storage/run.sh` wraps it. Steps: `nodetool flush` and `nodetool compact` of the
//! keyspace (through `$TCI_NODETOOL`, default `dev/nodetool.sh`), `nodetool tablestats -F json`
//! for each table's live bytes, and a scan of `chat_messages` for the number of messages and the
//! size of their `message` JSON and raw lines. Prints a Markdown table: bytes per message per
//! table and in all, and that as a share of the message JSON (what the original service
//! stored per message).

#[path = "support/synth.rs"]
mod synth;

use std::{process::Command, sync::Arc};

use anyhow::{bail, Context as _};
use chat_ingestor::{decode::Record, writer};
use chat_store::StoredChatRef;
use futures::TryStreamExt;
use synth::synth;
use tci_common::cassandra;
use tokio_util::sync::CancellationToken;

/// The chat tables: what one archived message costs (moderation events and deletion marks
/// included: they are part of what archiving a channel's chat stores).
const CHAT_TABLES: &[&str] = &chat_store::table::ALL;

fn nodetool(args: &[&str]) -> anyhow::Result<String> {
    let tool = std::env::var("TCI_NODETOOL").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../dev/nodetool.sh").to_string()
    });
    let out = Command::new(&tool)
        .args(args)
        .output()
        .with_context(|| format!("running {tool}"))?;
    if !out.status.success() {
        bail!(
            "{tool} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut cfg: chat_ingestor::Config = tci_common::config::load(None)?;
    let usage = "usage: storage (--keyspace KS | --generate N) [--with \"TABLE OPTIONS\"]";
    let (source, with) = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [a, b] => ((a, b), None),
        [a, b, "--with", w] => ((a, b), Some(w.to_string())),
        _ => bail!(usage),
    };
    let (keyspace, generate) = match source {
        ("--keyspace", ks) => (ks.to_string(), None),
        ("--generate", n) => (
            format!("storage_{}", tci_common::now_ms() % 1_000_000_000),
            Some(n.parse::<u64>().context("--generate N")?),
        ),
        _ => bail!(usage),
    };
    if with.is_some() && generate.is_none() {
        bail!("--with changes the tables: only with --generate (a scratch keyspace)");
    }
    cfg.common.cassandra.keyspace = keyspace.clone();
    let session = Arc::new(cassandra::connect_once(&cfg.common.cassandra).await?);
    if let Some(n) = generate {
        cassandra::migrate(&session, &cfg.common.cassandra).await?;
        let result = write_synthetic(&cfg, session.clone(), n).await;
        let altered = match result {
            Ok(()) => alter(&session, &keyspace, with.as_deref()).await,
            Err(e) => Err(e),
        };
        let report = match altered {
            Ok(()) => report(&session, &keyspace).await,
            Err(e) => Err(e),
        };
        session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ())
            .await?;
        println!("{}", report?);
    } else {
        println!("{}", report(&session, &keyspace).await?);
    }
    Ok(())
}

/// `ALTER TABLE … WITH <with>` on every chat table (a storage lever to measure, e.g.
/// `compression = {'class': 'ZstdCompressor', 'chunk_length_in_kb': 64}`); the compaction of the
/// report then rewrites the data with it.
async fn alter(
    session: &scylla::client::session::Session,
    keyspace: &str,
    with: Option<&str>,
) -> anyhow::Result<()> {
    let Some(with) = with else { return Ok(()) };
    for t in CHAT_TABLES {
        session
            .query_unpaged(format!("ALTER TABLE {keyspace}.{t} WITH {with}"), ())
            .await
            .with_context(|| format!("ALTER TABLE {t} WITH {with}"))?;
    }
    Ok(())
}

async fn write_synthetic(
    cfg: &chat_ingestor::Config,
    session: Arc<scylla::client::session::Session>,
    n: u64,
) -> anyhow::Result<()> {
    let w = writer::Writer::prepare(
        session,
        &cfg.common.cassandra.keyspace,
        cfg.ingest.writer_settings(),
    )
    .await?;
    let token = CancellationToken::new();
    // 5 messages per millisecond over 50 channels, as the ingest benchmark.
    let base = tci_common::now_ms() - (n as i64 / 5);
    for start in (0..n).step_by(5000) {
        let records: Vec<Record> = (start..(start + 5000).min(n))
            .map(|i| Record::Chat(Box::new(synth(i, 50, base + (i / 5) as i64))))
            .collect();
        let plan = writer::plan(&records, cfg.ingest.max_rows_per_batch);
        w.write(&plan, &token)
            .await
            .map_err(|_| anyhow::anyhow!("write abandoned"))?;
    }
    Ok(())
}

async fn report(
    session: &scylla::client::session::Session,
    keyspace: &str,
) -> anyhow::Result<String> {
    // Count messages and measure what the original service stored (the JSON, rendered from the
    // raw line where storage keeps no JSON) and the raw lines.
    let mut rows = session
        .query_iter(chat_store::cql::scan_chat(keyspace), ())
        .await?
        .rows_stream::<chat_store::ScanChatTuple>()?;
    let (mut messages, mut json_bytes, mut raw_bytes) = (0u64, 0u64, 0u64);
    let (mut kept_json, mut unrenderable) = (0u64, 0u64);
    let mut scratch = tci_schemas::PyJson::default();
    while let Some((b, ts, id, u, message, raw, room, at)) = rows.try_next().await? {
        let owned = (ts, id, u, message, raw, room, at);
        let row = StoredChatRef::from(&owned);
        messages += 1;
        kept_json += u64::from(row.message.is_some());
        match row.message_json(b, &mut scratch) {
            Ok(()) => json_bytes += scratch.as_str().len() as u64,
            Err(_) => unrenderable += 1,
        }
        raw_bytes += row.raw_line.map_or(0, |r| r.len() as u64);
    }
    if messages == 0 {
        bail!("{keyspace}.chat_messages is empty");
    }

    nodetool(&["flush", keyspace])?;
    nodetool(&["compact", keyspace])?;
    let stats: serde_json::Value =
        serde_json::from_str(&nodetool(&["tablestats", "-F", "json", keyspace])?)
            .context("tablestats JSON")?;
    let tables = &stats[keyspace]["tables"];
    let per_msg = |bytes: f64| bytes / messages as f64;
    let json_per_msg = per_msg(json_bytes as f64);
    let mut out = format!(
        "{messages} messages in `{keyspace}` ({kept_json} keep their JSON, {unrenderable} have no body); message JSON {json_per_msg:.0} B/message, raw IRC line {:.0} B/message (uncompressed)\n\n\
         | table | bytes on disk | bytes/message | share of the JSON |\n|---|---:|---:|---:|\n",
        per_msg(raw_bytes as f64)
    );
    let mut total = 0.0;
    for t in CHAT_TABLES {
        let live = tables[*t]["space_used_live"]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .or_else(|| tables[*t]["space_used_live"].as_f64())
            .unwrap_or(0.0);
        total += live;
        out.push_str(&format!(
            "| {t} | {live:.0} | {:.0} | {:.0}% |\n",
            per_msg(live),
            100.0 * per_msg(live) / json_per_msg
        ));
    }
    out.push_str(&format!(
        "| **all chat tables** | {total:.0} | **{:.0}** | **{:.0}%** |\n",
        per_msg(total),
        100.0 * per_msg(total) / json_per_msg
    ));
    Ok(out)
}

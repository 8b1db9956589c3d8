//! The CQL baseline of the API benchmark: the very query a `limit=100` API page issues
//! (`execute_single_page` on `chat_messages`, page size 100, rows deserialized), at a fixed
//! concurrency for a fixed duration. Prints p50/p90/p99/max and throughput as one JSON line.
//!
//! `cargo run --release -p chat-api --example cql_bench -- --keyspace tci_bench_api --bucket <ms>`

use std::time::{Duration, Instant};

use clap::Parser;
use scylla::response::PagingState;
use tci_common::{cassandra, CassandraConfig};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value = "tci_bench_api")]
    keyspace: String,
    #[arg(long, default_value = "127.0.0.1:9042")]
    node: String,
    /// Consistency (the API's default is local_quorum).
    #[arg(long, default_value = "local_quorum")]
    consistency: String,
    #[arg(long, default_value_t = 24538518)]
    broadcaster: i64,
    /// Bucket to read (ms since the epoch, a bucket boundary).
    #[arg(long)]
    bucket: i64,
    /// Range within the bucket, inclusive (defaults: the whole bucket).
    #[arg(long)]
    start: Option<i64>,
    #[arg(long)]
    end: Option<i64>,
    #[arg(long, default_value_t = 100)]
    limit: i32,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 20)]
    duration: u64,
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let cfg = CassandraConfig {
        nodes: vec![a.node.clone()],
        keyspace: a.keyspace.clone(),
        consistency: a.consistency.clone(),
        ..CassandraConfig::default()
    };
    let s = std::sync::Arc::new(cassandra::connect_once(&cfg).await?);
    let mut stmt = s
        // The very query chat-api pages with, prepared here without chat-api's code.
        .prepare(chat_store::cql::select_chat_page(&a.keyspace))
        .await?;
    stmt.set_page_size(a.limit);
    let values = (
        a.broadcaster,
        a.bucket,
        a.start.unwrap_or(a.bucket),
        a.end.unwrap_or(a.bucket + chat_store::BUCKET_MS - 1),
    );
    let deadline = Instant::now() + Duration::from_secs(a.duration);
    let mut workers = Vec::new();
    for _ in 0..a.concurrency {
        let (s, stmt) = (s.clone(), stmt.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut rows_seen = 0usize;
            while Instant::now() < deadline {
                let t = Instant::now();
                let (qr, _) = s
                    .execute_single_page(&stmt, values, PagingState::start())
                    .await?;
                let rows = qr.into_rows_result()?;
                let n = rows
                    .rows::<chat_store::StoredChatTuple>()?
                    .filter(|r| r.is_ok())
                    .count();
                lat.push(t.elapsed());
                rows_seen = n;
            }
            anyhow::Ok((lat, rows_seen))
        }));
    }
    let mut all = Vec::new();
    let mut rows = 0;
    for w in workers {
        let (l, r) = w.await??;
        all.extend(l);
        rows = r;
    }
    all.sort();
    println!(
        "{{\"requests\": {}, \"rows_per_page\": {rows}, \"rps\": {:.1}, \"p50_ms\": {:.3}, \"p90_ms\": {:.3}, \"p99_ms\": {:.3}, \"max_ms\": {:.3}}}",
        all.len(),
        all.len() as f64 / a.duration as f64,
        pct(&all, 0.50),
        pct(&all, 0.90),
        pct(&all, 0.99),
        all.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    );
    Ok(())
}

//! `tci`: the project's operator commands.
//!
//! ```text
//! tci topics apply [--replication-factor N]   create/update the Kafka topics of kafka/topics.toml
//! tci schemas register                         register the Avro schemas (BACKWARD compatibility)
//! tci migrate                                  apply the CQL migrations of schemas/cql
//! tci setup                                    all three, in that order
//! tci optout add|remove <user id> [--channel]  opt a chatter (or, --channel, a channel) out / back in
//! tci optout list                              every opt-out, from the optouts table
//! tci optout reindex                           index chatters' channels stored before 0007
//! tci reindex user-logs                        copy the by-user index of chat stored before 0008
//! ```
//! Configuration: the same layers as the services (`--config FILE`, `TCI__…` environment).

use std::path::PathBuf;

use anyhow::Context;
use chat_store::optout::OptOutStatements;
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use tci_common::{
    cassandra, config, kafka,
    registry::{AvroCodec, RegistryAdmin},
    telemetry, CommonConfig,
};
use tci_schemas::{OptOut, OptOutScope, OptOutSource};

#[derive(Parser)]
#[command(name = "tci", about = "Twitch Chat Ingestor operator commands")]
struct Cli {
    /// Optional TOML config file (also TCI_CONFIG).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Kafka topics.
    Topics {
        #[command(subcommand)]
        cmd: TopicsCmd,
    },
    /// Avro schemas in the registry.
    Schemas {
        #[command(subcommand)]
        cmd: SchemasCmd,
    },
    /// Apply the Cassandra migrations.
    Migrate,
    /// topics apply + schemas register + migrate.
    Setup {
        #[arg(long)]
        replication_factor: Option<i32>,
    },
    /// Opt-outs (README "Opting out"): the same events as the chat commands.
    Optout {
        #[command(subcommand)]
        cmd: OptoutCmd,
    },
    /// Rebuild an index from the data it points at (after an upgrade).
    Reindex {
        #[command(subcommand)]
        cmd: ReindexCmd,
    },
}

#[derive(Subcommand)]
enum ReindexCmd {
    /// Copy the by-user index of chat stored before storage v3 (migration 0008:
    /// user_chat_buckets and user_chat_messages) into user_chat_index and user_chat_days, which
    /// are what user logs and purges read since. One pass over user_chat_buckets' partition keys;
    /// idempotent, run again after an error; run once after upgrading.
    UserLogs,
}

#[derive(Subcommand)]
enum OptoutCmd {
    /// Opt a chatter out (every channel), or with --channel a channel; their stored chat is purged.
    Add {
        /// Numeric Twitch user id; with --channel also a channel login (looked up in the
        /// streamers table).
        who: String,
        #[arg(long)]
        channel: bool,
    },
    /// Opt back in: only chat sent from now on is kept again.
    Remove {
        who: String,
        #[arg(long)]
        channel: bool,
    },
    /// Every opt-out recorded by chat-ingestor.
    List,
    /// Index the channels of every chatter whose chat was stored before the opt-out tables
    /// existed (migration 0007), so that their purge finds it: one pass over the partition keys
    /// of user_chat_buckets. Idempotent; run once after upgrading.
    Reindex,
}

#[derive(Subcommand)]
enum TopicsCmd {
    /// Create missing topics and apply the configured settings to existing ones.
    Apply {
        /// Override the file's replication factor (clusters: 3).
        #[arg(long)]
        replication_factor: Option<i32>,
    },
}

#[derive(Subcommand)]
enum SchemasCmd {
    /// Register the value schemas under `<topic>-value` with BACKWARD compatibility.
    Register,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct CtlConfig {
    #[serde(flatten)]
    common: CommonConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg: CtlConfig = config::load(cli.config.as_deref())?;
    telemetry::init(&cfg.common.log);
    let c = &cfg.common;
    match cli.cmd {
        Cmd::Topics {
            cmd: TopicsCmd::Apply { replication_factor },
        } => topics(c, replication_factor).await,
        Cmd::Schemas {
            cmd: SchemasCmd::Register,
        } => schemas(c).await,
        Cmd::Migrate => migrate(c).await,
        Cmd::Setup { replication_factor } => {
            topics(c, replication_factor).await?;
            schemas(c).await?;
            migrate(c).await
        }
        Cmd::Optout { cmd } => match cmd {
            OptoutCmd::Add { who, channel } => optout_set(c, &who, channel, true).await,
            OptoutCmd::Remove { who, channel } => optout_set(c, &who, channel, false).await,
            OptoutCmd::List => optout_list(c).await,
            OptoutCmd::Reindex => optout_reindex(c).await,
        },
        Cmd::Reindex { cmd } => match cmd {
            ReindexCmd::UserLogs => reindex_user_logs(c).await,
        },
    }
}

async fn topics(c: &CommonConfig, rf: Option<i32>) -> anyhow::Result<()> {
    let specs = kafka::topic_specs()?;
    let done = kafka::ensure_topics(&c.kafka, &c.topics, &specs, rf, None)
        .await
        .with_context(|| format!("applying topics on Kafka at {}", c.kafka.brokers))?;
    for (name, action) in done {
        println!("topic {name}: {action:?}");
    }
    Ok(())
}

async fn schemas(c: &CommonConfig) -> anyhow::Result<()> {
    let admin = RegistryAdmin::new(&c.registry)?;
    admin.set_global_compatibility("BACKWARD").await?;
    for (topic, avsc) in [
        (&c.topics.live_streams, tci_schemas::LIVE_STREAM_AVSC),
        (&c.topics.chat, tci_schemas::CHAT_MESSAGE_AVSC),
        (&c.topics.moderation, tci_schemas::MODERATION_EVENT_AVSC),
        (&c.topics.optouts, tci_schemas::OPTOUT_AVSC),
    ] {
        let subject = format!("{topic}-value");
        let id = admin.register(&subject, avsc).await?;
        admin
            .set_subject_compatibility(&subject, "BACKWARD")
            .await?;
        println!("schema {subject}: id {id}, compatibility BACKWARD");
    }
    Ok(())
}

async fn migrate(c: &CommonConfig) -> anyhow::Result<()> {
    let session = cassandra::connect_once(&c.cassandra).await?;
    let applied = cassandra::migrate(&session, &c.cassandra).await?;
    for f in applied {
        println!("migration {f}: applied (keyspace {})", c.cassandra.keyspace);
    }
    Ok(())
}

async fn optout_store(
    c: &CommonConfig,
) -> anyhow::Result<(scylla::client::session::Session, OptOutStatements)> {
    let session = cassandra::connect_once(&c.cassandra).await?;
    let st = OptOutStatements::prepare(&session, &c.cassandra.keyspace)
        .await
        .context("preparing the opt-out statements (run `tci migrate`)")?;
    Ok((session, st))
}

/// A numeric id, or (channels only) a login found in the streamers table.
async fn resolve(
    session: &scylla::client::session::Session,
    c: &CommonConfig,
    who: &str,
    channel: bool,
) -> anyhow::Result<(i64, Option<String>)> {
    if let Ok(id) = who.parse::<i64>() {
        anyhow::ensure!(id > 0, "{who}: not a Twitch id");
        return Ok((id, None));
    }
    anyhow::ensure!(
        channel,
        "{who:?}: give the chatter's numeric Twitch user id (chatters are not indexed by login; \
         it is the user-id tag of their messages, or Helix GET /users?login={who})"
    );
    use futures::TryStreamExt;
    let login = who.trim_start_matches('#').to_ascii_lowercase();
    let mut rows = session
        .query_iter(
            format!(
                "SELECT broadcaster_id, login FROM {}.streamers",
                c.cassandra.keyspace
            ),
            (),
        )
        .await?
        .rows_stream::<(i64, Option<String>)>()?;
    while let Some((id, l)) = rows.try_next().await? {
        if l.as_deref() == Some(login.as_str()) {
            return Ok((id, Some(login)));
        }
    }
    anyhow::bail!("no channel with login {login:?} in the streamers table; give its numeric id")
}

async fn optout_set(
    c: &CommonConfig,
    who: &str,
    channel: bool,
    opted_out: bool,
) -> anyhow::Result<()> {
    let (session, st) = optout_store(c).await?;
    let (id, login) = resolve(&session, c, who, channel).await?;
    let scope = if channel {
        OptOutScope::Channel
    } else {
        OptOutScope::User
    };
    let current = st.get(&session, scope, id).await?;
    if !opted_out && !current.as_ref().is_some_and(|r| r.opted_out) {
        println!("{} {id} is not opted out: nothing to do", scope.as_str());
        return Ok(());
    }
    let e = OptOut {
        scope,
        id,
        login,
        opted_out,
        at: tci_common::now_ms(),
        source: OptOutSource::Operator,
    };
    let codec = AvroCodec::new(&c.registry)?;
    let payload = codec
        .encode(&c.topics.optouts, &e)
        .await
        .context("encoding the opt-out (run `tci schemas register`)")?;
    let producer = kafka::producer(&c.kafka, "tci-optout", &[])?;
    let key = e.key();
    producer
        .send(
            rdkafka::producer::FutureRecord::to(&c.topics.optouts)
                .key(&key)
                .payload(&payload),
            std::time::Duration::from_secs(30),
        )
        .await
        .map_err(|(err, _)| anyhow::anyhow!("publishing to {}: {err}", c.topics.optouts))?;
    println!(
        "{key}: {} (published to {}; chat-listener stops publishing, chat-ingestor {}, chat-api follows within seconds)",
        if opted_out { "opted out" } else { "opted back in" },
        c.topics.optouts,
        if opted_out { "purges what is stored" } else { "keeps chat sent from now on" },
    );
    Ok(())
}

async fn reindex_user_logs(c: &CommonConfig) -> anyhow::Result<()> {
    let (session, st) = optout_store(c).await?;
    let started = std::time::Instant::now();
    let mut last = std::time::Instant::now();
    let (pairs, rows) = st
        .reindex_user_logs(&session, |pairs, rows| {
            if last.elapsed() >= std::time::Duration::from_secs(10) {
                last = std::time::Instant::now();
                eprintln!("... {pairs} (channel, chatter) pairs, {rows} messages indexed");
            }
        })
        .await?;
    println!(
        "user_chat_index: {rows} messages of {pairs} (channel, chatter) pairs indexed in keyspace {} in {:.1}s",
        c.cassandra.keyspace,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn optout_reindex(c: &CommonConfig) -> anyhow::Result<()> {
    use futures::TryStreamExt;
    let session = cassandra::connect_once(&c.cassandra).await?;
    let ks = &c.cassandra.keyspace;
    let mut insert = session
        .prepare(chat_store::optout::cql::insert_user_channel(ks))
        .await
        .context("preparing the user_channels insert (run `tci migrate`)")?;
    insert.set_is_idempotent(true);
    let mut pairs = session
        .query_iter(
            chat_store::optout::cql::select_user_bucket_partitions(ks),
            (),
        )
        .await?
        .rows_stream::<(i64, i64)>()?;
    let mut n = 0u64;
    while let Some((broadcaster_id, user_id)) = pairs.try_next().await? {
        session
            .execute_unpaged(&insert, (user_id, broadcaster_id))
            .await?;
        n += 1;
    }
    println!("user_channels: {n} (chatter, channel) pairs indexed in keyspace {ks}");
    Ok(())
}

async fn optout_list(c: &CommonConfig) -> anyhow::Result<()> {
    let (session, st) = optout_store(c).await?;
    let rows = st.list(&session).await?;
    println!("scope    id            login                 state        at                         source    purged");
    for r in rows {
        let at = chrono::DateTime::from_timestamp_millis(r.at)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        println!(
            "{:<8} {:<13} {:<21} {:<12} {:<26} {:<9} {}",
            r.scope.as_str(),
            r.id,
            r.login.as_deref().unwrap_or("-"),
            if r.opted_out { "opted out" } else { "opted in" },
            at,
            r.source.as_deref().unwrap_or("-"),
            if r.purged_at.is_some() { "yes" } else { "-" }
        );
    }
    Ok(())
}

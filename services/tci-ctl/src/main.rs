//! `tci`: the project's operator commands.
//!
//! ```text
//! tci topics apply [--replication-factor N]   create/update the Kafka topics of kafka/topics.toml
//! tci schemas register                         register the Avro schemas (BACKWARD compatibility)
//! tci migrate                                  apply the CQL migrations of schemas/cql
//! tci setup                                    all three, in that order
//! ```
//! Configuration: the same layers as the services (`--config FILE`, `TCI__…` environment).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use tci_common::{cassandra, config, kafka, registry::RegistryAdmin, telemetry, CommonConfig};

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

//! The `chat-ingestor` binary: `run` (default) consumes the topics into Cassandra; `backfill`
//! replays a time range.

use std::path::PathBuf;

use anyhow::Context as _;
use chat_ingestor::{backfill, App, Config};
use clap::{Parser, Subcommand};
use tci_common::{config, telemetry, Shutdown};

/// Writes chat and moderation records from Kafka to Cassandra.
#[derive(Debug, Parser)]
#[command(name = "chat-ingestor", version, about)]
struct Cli {
    /// TOML configuration file (also `TCI_CONFIG`); `TCI__SECTION__KEY` variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Consume the chat and moderation topics into Cassandra (the default).
    Run,
    /// Replay a time range of the topics into Cassandra (idempotent; the live group is untouched).
    Backfill {
        /// Start of the range, ISO 8601 (e.g. 2024-01-10T01:01:01.011Z), inclusive.
        #[arg(long)]
        from: String,
        /// End of the range, ISO 8601, inclusive.
        #[arg(long)]
        to: String,
        /// Only this channel.
        #[arg(long)]
        broadcaster_id: Option<i64>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg: Config = config::load(cli.config.as_deref())?;
    telemetry::init(&cfg.common.log);
    let shutdown = Shutdown::with_signals();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let app = App::build(cfg, shutdown.token())
                .await
                .context("starting chat-ingestor")?;
            app.run().await
        }
        Command::Backfill {
            from,
            to,
            broadcaster_id,
        } => {
            let args = backfill::BackfillArgs {
                from_ms: backfill::parse_time(&from)?,
                to_ms: backfill::parse_time(&to)?,
                broadcaster_id,
            };
            let summary = backfill::run(cfg, args, shutdown.token()).await?;
            println!("{summary}");
            Ok(())
        }
    }
}
